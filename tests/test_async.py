"""The async model on the emulator (CI) and on a GPU (-m gpu): lowering, combinators,
block_on x seed_demo for every granularity and dispatch mode."""

import numpy as np
import pytest

from executors import get_executor
from executors.base import LaunchArgs, define_noop_wake
from harness.backend import EmuBackend
from harness.cases import CaseSpec, build_case, run_case
from harness.futures import FutureBuildError, async_fn, ready, yield_now
from harness.futures.lib import AsyncFn
from harness.gpu.testing import requires_gpu
from harness.ptx import Module
from harness.ptx.types import S32, U32, U64
from workloads.seed_demo import async_block, async_conditional, async_double, async_multi_step

GRID = [(d, g) for d in ("inline", "direct", "indirect") for g in ("thread", "warp", "block")]


def _module():
    m = Module()
    define_noop_wake(m)
    return m


def test_a_future_that_never_suspends_has_one_state_and_writes_no_frame():
    m = _module()
    async_block.emit(m)
    async_block.emit_start(m)
    # four awaits of children that never suspend: straight-line code, one state
    assert async_block.states == 1
    start = m.functions[async_block.start_name].to_ptx()
    assert "st.global" not in start and "ld.global" not in start  # registers only
    assert "call" not in start  # the children are inlined
    # the resume entry reads resume and the argument (row 1), nothing else
    poll = m.functions[async_block.poll_name].to_ptx()
    assert poll.count("ld.global") == 2 and "st.global" not in poll


def test_frame_rows_are_interleaved_and_only_live_dirty_slots_are_stored():
    from harness.futures import ROW_BYTES

    @async_fn(params=[("x", U32), ("p", U64)], output=None, name="spill_probe")
    def spill_probe(f, x, p):
        f.local("kept", U32)
        f.local("dead", U32)
        f.set("kept", f.add(x, 1))
        f.set("dead", f.add(x, 2))
        f.st("global", p, f.get("dead"))  # dead after this: never stored
        f.await_(yield_now())
        f.await_(yield_now())  # kept is clean here: stored once, on the first suspension
        f.st("global", f.arg("p"), f.get("kept"))
        return None

    m = _module()
    spill_probe.emit_start(m)
    spill_probe.emit(m)
    assert spill_probe.states == 3
    rows = spill_probe.slots
    assert rows["spill_probe.x"][0] == 1 and rows["spill_probe.p"][0] == 2  # resume is row 0
    start = m.functions[spill_probe.start_name].to_ptx()
    assert "spill_probe.dead" not in rows  # never crosses a suspension: no frame row at all
    kept = ROW_BYTES * rows["spill_probe.kept"][0]
    assert f"+{kept}]" in start
    assert "+128]" not in start  # x is never read after a suspension
    # kept is stored at the first suspension only: resumed there, it is clean at the second
    for fn in (spill_probe.start_name, spill_probe.poll_name):
        body = m.functions[fn].to_ptx()
        assert sum(f"+{kept}]" in ln for ln in body.splitlines() if "st.global" in ln) == 1


def test_register_live_across_await_is_a_build_error():
    @async_fn(params=[("x", S32)], output=S32, name="bad_live")
    def bad(f, x):
        y = f.add(x, 1)
        f.await_(async_double(x))
        return f.add(y, 1)  # y was defined before the await

    with pytest.raises(FutureBuildError, match=r"%\w+ is live across an await"):
        bad.emit(_module())


def test_local_declared_after_an_await_lives_across_the_next(run_root):
    def body(f, task, args):
        f.await_(yield_now())
        f.local("late", U32)
        f.set("late", f.add(f.arg("task"), 5))
        f.await_(yield_now())
        _count(f, 0)
        addr = f.element_addr(f.arg("args"), f.add(f.mov(64, type=U32), f.arg("task")), 4)
        f.st("global", addr, f.get("late"))
        return None

    c = run_root(body, counters=2)
    assert (c[0] == 1).all() and (c[1] == np.arange(64) + 5).all()


RUNNERS = ("block_on/inline", "block_on/direct", "embassy/indirect", "smem_ready/direct")


@pytest.fixture(params=RUNNERS)
def run_root(request):
    """``run_root(body, n=64, counters=4)``: run a root future ``body(f, task, args)`` on the
    emulator under one executor/dispatch (the task's frame in registers, a global frame
    through the ABI, a run queue with type-erased polls, shared-memory frames); ``args``
    points at a u32[counters * n] array the body may count into. Returns that array."""
    executor, dispatch = request.param.split("/")

    def run(body, n=64, counters=4):
        root = AsyncFn(f"root_{body.__name__}", [("task", U32), ("args", U64)], None, body)
        m = Module()
        ex = get_executor(executor)
        k = ex.build(m, root, dispatch)
        be = EmuBackend()
        be.load(m)
        counts = be.to_device(np.zeros(counters * n, np.uint32))
        ex.launch(be, k, 1, n, LaunchArgs.allocate(be, k, n, counts))
        return be.read(counts, np.uint32, counters * n).reshape(counters, n)

    return run


def _count(f, k, counts=None, task=None):
    """counts[k][task] += 1 (a child future gets counts and task as its arguments)."""
    counts = counts if counts is not None else f.arg("args")
    task = task if task is not None else f.arg("task")
    addr = f.element_addr(counts, f.add(f.mul(f.mov(k, type=U32), 64), task), 4)
    f.red("global", "add", addr, f.mov(1, type=U32))


CHILD = [("c", U64), ("t", U32)]


def test_join_polls_only_unfinished_children(run_root):
    @async_fn(params=CHILD + [("k", U32)], output=U32, name="counted_yield")
    def counted_yield(f, c, t, k):
        _count(f, 0, c, t)  # one count per poll of this child's first state
        f.await_(yield_now())
        return f.arg("k")

    @async_fn(params=CHILD, output=None, name="counted_ready")
    def counted_ready(f, c, t):
        _count(f, 1, c, t)
        return None

    def body(f, task, args):
        outs = f.join(counted_yield(args, task, f.mov(7, type=U32)), counted_ready(args, task))
        _count(f, 2)
        addr = f.element_addr(f.arg("args"), f.add(f.mov(3 * 64, type=U32), f.arg("task")), 4)
        f.st("global", addr, outs[0])
        return None

    c = run_root(body)
    assert (c[1] == 1).all(), "the Ready child was polled again after it finished"
    assert (c[0] == 1).all()
    assert (c[2] == 1).all() and (c[3] == 7).all()


def test_select_drops_the_losers(run_root):
    @async_fn(params=CHILD, output=U32, name="slow")
    def slow(f, c, t):
        f.await_(yield_now())
        _count(f, 0, f.arg("c"), f.arg("t"))  # never reached: dropped after its first Pending
        return f.mov(1, type=U32)

    @async_fn(params=CHILD, output=U32, name="fast")
    def fast(f, c, t):
        _count(f, 1, c, t)
        return f.mov(2, type=U32)

    def body(f, task, args):
        index, value = f.select(slow(args, task), fast(args, task))
        addr = f.element_addr(f.arg("args"), f.add(f.mov(2 * 64, type=U32), f.arg("task")), 4)
        f.st("global", addr, f.add(f.mul(index, 10), value))
        return None

    c = run_root(body)
    assert (c[0] == 0).all() and (c[1] == 1).all()
    assert (c[2] == 12).all()  # index 1, value 2


def test_ready_then_and_yield_now(run_root):
    def body(f, task, args):
        f.await_(ready(f.mov(5, type=S32)))
        f.await_(yield_now())
        addr = f.element_addr(f.arg("args"), f.arg("task"), 4)
        f.st("global", addr, f.add(f.mov(5, type=S32), 1))
        return None

    c = run_root(body, counters=1)
    assert (c[0] == 6).all()


@pytest.mark.parametrize("dispatch,granularity", GRID)
def test_seed_demo_block_on_emulator(dispatch, granularity):
    spec = CaseSpec("block_on", "seed_demo", dispatch, granularity, ntasks=200, block=64, seed=3)
    r = run_case(spec, EmuBackend())
    assert r.check == "pass" and r.baseline_check == "pass"
    assert r.instructions_per_task > r.baseline_instructions_per_task  # polls cost something
    assert r.registers > 0
    assert (r.frame_bytes == 0) if dispatch == "inline" else r.frame_bytes > 0  # registers


@requires_gpu
@pytest.mark.parametrize("dispatch,granularity", GRID)
def test_seed_demo_block_on_gpu(dispatch, granularity, gpu_backend):
    spec = CaseSpec("block_on", "seed_demo", dispatch, granularity, ntasks=1 << 20, seed=11)
    r = run_case(spec, gpu_backend, repeats=10)
    assert r.check == "pass", r.check
    assert r.baseline_check == "pass", r.baseline_check
    assert r.time_ms > 0 and r.baseline_ms > 0
    print(f"{spec.label}: {r.time_ms:.4f} ms vs baseline {r.baseline_ms:.4f} ms, "
          f"regs {r.extra.get('registers_driver')} (report {r.registers})")


def test_await_inside_a_loop_with_a_frame_local_counter(run_root):
    def body(f, task, args):
        f.local("i", U32)
        f.set("i", f.mov(0, type=U32))
        with f.loop() as lp:
            i = f.get("i")
            lp.break_if(f.setp("ge", i, 5))
            f.await_(yield_now())
            _count(f, 0)
            f.set("i", f.add(f.get("i"), 1))
        return None

    c = run_root(body, counters=1)
    assert (c[0] == 5).all()


def test_sleep_waits_for_the_global_timer(run_root):
    from harness.futures import sleep

    def body(f, task, args):
        f.local("t0", U64)
        f.set("t0", f.special("globaltimer"))
        f.await_(sleep(f.mov(500, type=U32)))
        waited = f.sub(f.special("globaltimer"), f.get("t0"))
        addr = f.element_addr(f.arg("args"), f.arg("task"), 4)
        f.st("global", addr, f.cvt(f.min(waited, 1 << 30, type=U64), U32))
        return None

    c = run_root(body, counters=1)
    assert (c[0] >= 500).all()


def test_wait_flag_completes_once_another_task_sets_it(run_root):
    from harness.futures import wait_flag

    def body(f, task, args):
        last = f.setp("eq", f.arg("task"), 62)  # counts[63] is the flag
        with f.if_(last):  # task 62 sets the flag after yielding a few times
            f.await_(yield_now())
            f.await_(yield_now())
            f.st("global", f.add(f.arg("args"), 63 * 4, type=U64), f.mov(9, type=U32),
                 sem="release", scope="gpu")
        with f.if_(f.setp("ne", f.arg("task"), 63)):
            f.await_(wait_flag(f.add(f.arg("args"), 63 * 4, type=U64), f.mov(9, type=U32)))
            _count(f, 1)
        return None

    c = run_root(body, counters=2)
    assert (c[1][:63] == 1).all()
    assert c[0][63] == 9


@pytest.mark.parametrize("granularity", ["thread", "warp", "block"])
def test_instrumented_block_on_counts_polls(granularity):
    from executors.base import COUNTER_FIELDS

    @async_fn(params=[("task", U32), ("args", U64)], output=None, name="yield_thrice")
    def root(f, task, args):
        f.local("i", U32)
        f.set("i", f.mov(0, type=U32))
        with f.loop() as lp:
            lp.break_if(f.setp("ge", f.get("i"), f.and_(f.arg("task"), 3, type=U32)))
            f.await_(yield_now())
            f.set("i", f.add(f.get("i"), 1))
        return None

    n = 64
    m = Module()
    k = get_executor("block_on").build(m, root, granularity=granularity, instrument=True)
    be = EmuBackend()
    be.load(m)
    counters = be.to_device(np.zeros(n * len(COUNTER_FIELDS), np.uint64))
    be.launch(k.name, 1, n, [be.alloc(k.frames_bytes(n)), np.uint32(n), 0, be.stop_ptr(), counters])
    c = be.read(counters, np.uint64, n * len(COUNTER_FIELDS)).reshape(n, -1)
    field = {f: c[:, i] for i, f in enumerate(COUNTER_FIELDS)}
    yields = np.arange(n) % 4
    assert (field["polls"] == yields + 1).all()
    assert (field["pending_polls"] == yields).all()
    assert (field["poll_cycles"] > 0).all() and (field["total_cycles"] > field["poll_cycles"]).all()
    assert (field["end_ns"] >= field["start_ns"]).all()
    if granularity != "thread":  # lanes that finish early wait for the others
        assert field["idle_cycles"].sum() > 0


def test_inline_dispatch_has_no_poll_calls_and_fewer_registers():
    from harness.compile import compile_ptx

    specs = {d: CaseSpec("block_on", "seed_demo", d, "thread") for d in ("inline", "direct")}
    built = {d: build_case(s) for d, s in specs.items()}
    regs = {}
    for d, (m, kernel, _, _) in built.items():
        body = m.functions[kernel.name].to_ptx()
        calls = [ln for ln in body.splitlines() if "call" in ln and "poll_" in ln]
        assert (not calls) if d == "inline" else calls
        regs[d] = compile_ptx(m.to_ptx(), "sm_90").resources[kernel.name]
    assert regs["inline"].registers < regs["direct"].registers
    assert regs["inline"].stack_frame == 0


def test_start_and_poll_must_agree_on_the_layout():
    m = _module()
    async_block.emit(m)
    async_block.slots["async_block.val"] = (999, "s32")  # as if poll_ had laid it out elsewhere
    with pytest.raises(FutureBuildError, match="laid out its frame differently"):
        async_block.emit_start(m)
