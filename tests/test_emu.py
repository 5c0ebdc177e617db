"""The CPU emulator (architecture §3): the differential cases against numpy, op-table coverage,
hangs, seeded scheduling, sleeping, memory errors, instruction counts, and exit."""

from __future__ import annotations

import time

import numpy as np
import pytest

from harness.backend import EmuBackend
from harness.difftest import all_cases, diff_outputs, expected, run_diff
from harness.emu import EmuError, EmuHang, Emulator
from harness.errors import PollbenchError
from harness.ptx import B32, BF16, F32, F64, OPS, S32, S64, U32, U64, Builder, Module

CASES = all_cases()
BY_NAME = {c.name: c for c in CASES}
SEED = 20240611


# ------------------------------------------------------------ (a) difftest vs numpy

def _case_seed(name: str) -> int:
    return SEED + sum(name.encode())  # stable across runs, different per case


def _poisoned(a: np.ndarray) -> np.ndarray:
    """Elements still holding the 0xCD fill: never written."""
    raw = np.ascontiguousarray(a).view(np.uint8).reshape(a.size, a.itemsize)
    return (raw == 0xCD).all(axis=1)


@pytest.mark.parametrize("name", [c.name for c in CASES
                                  if "traps" not in c.tags and "sm90" not in c.tags])
def test_difftest_case_on_emulator(name):
    case = BY_NAME[name]
    run = run_diff(case, EmuBackend(), _case_seed(name))
    assert run.error is None, run.error
    want = expected(case, run)
    if want is None:
        want = EXTRA_REFERENCES[name](*run.inputs) if name in EXTRA_REFERENCES else None
    if want is None:
        # no numpy answer: still every output element must have been written
        want = [None] * len(case.outputs)
        for o, got in zip(case.outputs, run.outputs):
            assert not _poisoned(got).any(), f"{o.name}: unwritten elements"
    why = diff_outputs(case, run.outputs, want)
    assert why is None, why


def test_every_value_output_or_property_is_checked_somewhere():
    """Cases compared by nothing would pass whatever the emulator did."""
    unchecked = [c.name for c in CASES
                 if c.reference is None and "zero_out0" not in c.tags and "traps" not in c.tags
                 and not any(o.check for o in c.outputs) and c.name not in EXTRA_REFERENCES]
    assert set(unchecked) <= {"fma.f32", "fma.f64"}, unchecked


@pytest.mark.parametrize("name", [c.name for c in CASES if "sm90" in c.tags])
def test_gpu_only_case_stops_the_emulator_saying_so(name):
    """wgmma and the bulk tensor copy are not modeled: a kernel reaching one is an error
    naming the instruction, never a silent wrong answer (their check is the GPU's)."""
    case = BY_NAME[name]
    m = Module()
    kernel = case.build(m)
    be = EmuBackend()
    be.load(m)
    args = [be.to_device(x) for x in case.inputs(np.random.default_rng(SEED))]
    args += [be.alloc(np.dtype(o.dtype).itemsize * o.count) for o in case.outputs]
    args += [be.alloc(128) for _ in case.tensor_maps]
    with pytest.raises(PollbenchError, match="not modeled by the emulator"):
        be.launch(kernel, case.grid, case.block, args)
    with pytest.raises(PollbenchError, match="no tensor maps"):
        be.tensor_map(args[0], 1, 8, 1, 8)


def test_trap_case_fails_naming_the_trap():
    case = next(c for c in CASES if "traps" in c.tags)
    run = run_diff(case, EmuBackend(), SEED)
    assert run.error is not None and "trap" in run.error
    # the kernel traps where its global index is 77: block 0, thread 77
    assert "thread (77, 0, 0)" in run.error
    # ... and the error points at the trap instruction itself, not the one after it
    assert run.error.rstrip().endswith("trap;"), run.error


def test_special_register_properties_are_really_checked():
    """The %smid/clock outputs are property-checked; a wrong value must fail them."""
    case = BY_NAME["special registers+nanosleep"]
    run = run_diff(case, EmuBackend(), SEED)
    want = expected(case, run)
    assert diff_outputs(case, run.outputs, want) is None
    k = [o.check is not None for o in case.outputs].index(True)
    bad = [o.copy() for o in run.outputs]
    bad[k][:] = 10**6 if bad[k].dtype == np.uint32 else 0
    assert diff_outputs(case, bad, want) is not None


# Independent references for cases the difftest leaves to the hardware: PTX cvt from float
# to int rounds toward zero, saturates, and turns NaN into 0; int to float rounds to nearest.
def _f2i(dtype):
    info = np.iinfo(dtype)

    def one(v):
        if np.isnan(v):
            return 0
        if np.isinf(v):
            return info.max if v > 0 else info.min
        return min(max(int(v), info.min), info.max)  # int() truncates toward zero

    return lambda x: [np.array([one(float(v)) for v in x], dtype=dtype)]


def _i2f(dtype):
    return lambda x: [x.astype(dtype)]  # numpy's int->float cast rounds to nearest even


def _bf16(x):
    """f32 -> bf16 bits, nearest even, by comparing the two neighbours' exact values."""
    out = np.empty(x.size, np.uint16)
    for k, v in enumerate(x.astype(np.float32)):
        bits = int(np.array([v]).view(np.uint32)[0])
        lo = bits >> 16
        cands = [lo, lo + 1]
        vals = [float(np.array([c << 16], np.uint32).view(np.float32)[0]) for c in cands]
        d = [abs(val - float(v)) for val in vals]
        out[k] = cands[0] if d[0] < d[1] or (d[0] == d[1] and lo % 2 == 0) else cands[1]
    return [out]


EXTRA_REFERENCES = {
    "cvt_s32.f32": _f2i(np.int32), "cvt_u32.f32": _f2i(np.uint32),
    "cvt_s64.f64": _f2i(np.int64),
    "cvt_f32.s32": _i2f(np.float32), "cvt_f32.u32": _i2f(np.float32),
    "cvt_f64.s64": _i2f(np.float64),
    "cvt_bf16.f32": _bf16,
}


# ----------------------------------------------------------------- (b) op coverage


def _ops_emitted(case) -> set:
    m = Module()
    case.build(m)
    return {i.op for f in m.functions.values() for i in f.instructions()}


def test_every_op_row_is_covered_by_a_case_that_emits_it():
    claimed = set().union(*(c.covers for c in CASES))
    assert set(OPS) <= claimed, f"rows no case covers: {sorted(set(OPS) - claimed)}"
    really = set()
    for c in CASES:
        really |= set(c.covers) & _ops_emitted(c)
    assert set(OPS) <= really, f"rows claimed but never emitted: {sorted(set(OPS) - really)}"


# ------------------------------------------------------------------------ helpers


def _flag_kernel(m, name="k"):
    b = Builder.entry(m, name, [("p", U64)])
    return b, b.cvta_to_global(b.param("p")), b.special("tid.x")


def _spin_until(b, addr, value=1):
    """loop { if (ld.volatile [addr] == value) break; }"""
    with b.loop() as lp:
        v = b.ld("global", addr, U32, sem="volatile")
        lp.break_if(b.setp("eq", v, value))


def _at(report: str, text: str) -> bool:
    return f": {text}" in report


# -------------------------------------------------------------------------- (c) hangs


def test_two_halves_at_different_barriers_deadlock_naming_both():
    m = Module()
    b = Builder.entry(m, "k")
    lo = b.setp("lt", b.special("tid.x"), 32)
    with b.if_(lo):
        b.bar_sync(0)
    with b.if_(lo, negate=True):
        b.bar_sync(1)
    b.ret()
    t0 = time.perf_counter()
    with pytest.raises(EmuHang) as e:
        Emulator(m).launch("k", 1, 64)
    assert time.perf_counter() - t0 < 2
    msg = str(e.value)
    assert "deadlock" in msg
    # both stuck places, each with a thread that is there and the instruction it waits at
    assert "thread (0, 0, 0) in k at pc 3: bar.sync 0;" in msg, msg
    assert "thread (32, 0, 0) in k at pc 5: bar.sync 1;" in msg, msg
    assert "+31 more threads there: (1, 0, 0), (2, 0, 0)" in msg, msg


def test_bar_sync_half_the_block_reaches_is_a_hang_naming_threads_and_pcs():
    """Threads 0-31 wait at bar.sync for threads 32-63, which spin on a flag that thread 0
    sets only after the barrier: the step budget runs out, quickly, with both places named."""
    m = Module()
    b, flag, tid = _flag_kernel(m)
    lo = b.setp("lt", tid, 32)
    with b.if_(lo):
        b.bar_sync(0)
        b.st("global", flag, 1, type=U32)
    with b.if_(lo, negate=True):
        _spin_until(b, flag)
    b.ret()
    emu = Emulator(m, max_steps=5000)
    p = emu.to_device(np.zeros(1, np.uint32))
    t0 = time.perf_counter()
    with pytest.raises(EmuHang) as e:
        emu.launch("k", 1, 64, [p])
    assert time.perf_counter() - t0 < 2
    msg = str(e.value)
    assert "step budget of 5000" in msg
    assert "[wait] block (0, 0, 0) thread (0, 0, 0) in k at pc " in msg
    assert _at(msg, "bar.sync 0;"), msg
    assert "[run] block (0, 0, 0) thread (32, 0, 0)" in msg, msg
    assert "pc " in msg


def test_spin_on_a_flag_nobody_sets_exhausts_a_small_step_budget():
    m = Module()
    b, flag, _ = _flag_kernel(m, "spin")
    _spin_until(b, flag)
    b.ret()
    emu = Emulator(m, max_steps=300)
    p = emu.to_device(np.zeros(1, np.uint32))
    t0 = time.perf_counter()
    with pytest.raises(EmuHang, match="step budget of 300 instructions spent") as e:
        emu.launch("spin", 1, 4, [p])
    assert time.perf_counter() - t0 < 1
    msg = str(e.value)
    assert "[run] block (0, 0, 0) thread (0, 0, 0) in spin at pc " in msg, msg
    for t in range(1, 4):  # every spinning thread is named
        assert f"({t}, 0, 0)" in msg, msg
    assert isinstance(e.value, EmuError) and isinstance(e.value, PollbenchError)


# --------------------------------------------------------------- (d) seeded schedules


def _rmw_kernel(kind: str) -> Module:
    """Every thread adds 1 to one counter: a racy ld/add/st, a CAS retry loop, or atom.add."""
    m = Module()
    b, ctr, _ = _flag_kernel(m, "inc")
    if kind == "racy":
        v = b.ld("global", ctr, U32)
        b.st("global", ctr, b.add(v, 1))
    elif kind == "cas":
        with b.loop() as lp:
            old = b.ld("global", ctr, U32, sem="volatile")
            got = b.atom("global", "cas", ctr, old, b.add(old, 1), type=B32)
            lp.break_if(b.setp("eq", got, old))
    else:
        b.atom("global", "add", ctr, 1, type=U32)
    b.ret()
    return m


def _run_counter(kind, policy, seed, n=32):
    emu = Emulator(_rmw_kernel(kind), policy=policy, seed=seed)
    p = emu.to_device(np.zeros(1, np.uint32))
    r = emu.launch("inc", 1, n, [p])
    return int(emu.read(p, np.uint32, 1)[0]), r


def test_same_seed_same_interleaving():
    a = _run_counter("cas", "random", 7)
    b = _run_counter("cas", "random", 7)
    assert a[0] == b[0] == 32
    assert a[1].per_thread.tolist() == b[1].per_thread.tolist()
    assert a[1].steps == b[1].steps
    assert _run_counter("racy", "random", 11)[0] == _run_counter("racy", "random", 11)[0]


def test_different_seeds_explore_different_interleavings():
    counts = {tuple(_run_counter("cas", "random", s)[1].per_thread) for s in range(6)}
    assert len(counts) > 1  # CAS retries differ with the schedule
    racy = {_run_counter("racy", "random", s)[0] for s in range(6)}
    assert max(racy) <= 32 and min(racy) < 32, racy  # some schedule loses an update
    assert len(racy) > 1
    assert all(_run_counter("atom", "random", s)[0] == 32 for s in range(6))
    assert all(_run_counter("cas", "random", s)[0] == 32 for s in range(6))


def test_round_robin_loses_racy_updates_deterministically():
    # each sweep steps every thread once: all load 0, all store 1
    assert _run_counter("racy", "round_robin", 0)[0] == 1
    assert _run_counter("atom", "round_robin", 0)[0] == 32


def test_unknown_policy_is_an_error():
    with pytest.raises(EmuError, match="unknown scheduling policy"):
        Emulator(Module(), policy="fifo")


# --------------------------------------------------------------------- (e) sleeping


def _timer_kernel(ns=1000):
    m = Module()
    b, out, tid = _flag_kernel(m, "nap")
    g0 = b.special("globaltimer")
    b.nanosleep(ns)
    g1 = b.special("globaltimer")
    b.st("global", b.element_addr(out, tid, 8), b.sub(g1, g0))
    b.ret()
    return m


@pytest.mark.parametrize("policy", ["round_robin", "random"])
def test_nanosleep_advances_globaltimer_and_all_asleep_is_no_hang(policy):
    emu = Emulator(_timer_kernel(1000), policy=policy, seed=3, max_steps=10_000)
    out = emu.alloc(8 * 32)
    r = emu.launch("nap", 1, 32, [out])  # every thread sleeps at once: time jumps ahead
    d = emu.read(out, np.uint64, 32)
    assert (d >= 1000).all(), d
    assert r.time_ns >= 1000
    assert r.steps < 10_000  # sleeping costs no steps


def test_one_thread_sleeps_as_long_as_asked():
    emu = Emulator(_timer_kernel(5000))
    out = emu.alloc(8)
    emu.launch("nap", 1, 1, [out])
    assert 5000 <= emu.read(out, np.uint64, 1)[0] < 5000 + 8


def test_sleeping_pollers_wait_for_a_late_setter():
    """Threads 1.. poll a flag with nanosleep backoff; thread 0 sleeps 20 us, then sets it."""
    m = Module()
    b, flag, tid = _flag_kernel(m)
    first = b.setp("eq", tid, 0)
    with b.if_(first):
        b.nanosleep(20_000)
        b.st("global", flag, 1, type=U32, sem="release", scope="gpu")
    with b.if_(first, negate=True):
        with b.loop() as lp:
            v = b.ld("global", flag, U32, sem="acquire", scope="gpu")
            lp.break_if(b.setp("eq", v, 1))
            b.nanosleep(500)
    b.ret()
    emu = Emulator(m, max_steps=50_000)
    p = emu.to_device(np.zeros(1, np.uint32))
    r = emu.launch("k", 1, 8, [p])
    assert r.time_ns >= 20_000
    assert r.steps < 50_000


# ----------------------------------------------------------------- (f) memory errors


def test_out_of_bounds_global_store_names_the_address_and_thread():
    m = Module()
    b, base, tid = _flag_kernel(m, "oob")
    b.st("global", b.element_addr(base, tid, 4), tid)
    b.ret()
    emu = Emulator(m)
    p = emu.alloc(16 * 4)  # room for 16 threads; 32 run
    with pytest.raises(EmuError) as e:
        emu.launch("oob", 1, 32, [p])
    msg = str(e.value)
    assert f"{p + 64:#x}" in msg, msg
    assert "outside every allocation" in msg
    assert "thread (16, 0, 0)" in msg
    assert "st.global.u32" in msg  # the faulting instruction


def test_out_of_bounds_global_load_below_the_heap():
    m = Module()
    b, base, _ = _flag_kernel(m, "oob")
    b.ld("global", b.sub(base, 8), U32)
    b.ret()
    emu = Emulator(m)
    p = emu.alloc(4)
    with pytest.raises(EmuError, match=f"{p - 8:#x}"):
        emu.launch("oob", 1, 1, [p])


def test_out_of_bounds_shared_access():
    m = Module()
    buf = Builder.shared(m, "buf", 16)
    b = Builder.entry(m, "k")
    off = b.add(b.mov(buf, type=U32), 64)
    b.ld("shared", off, U32)
    b.ret()
    with pytest.raises(EmuError, match=r"shared memory .* at 0x40 is outside its 16 bytes"):
        Emulator(m).launch("k", 1, 1)


@pytest.mark.parametrize("misuse", ["init twice", "wait before init", "arrive after inval"])
def test_mbarrier_misuse_traps(misuse):
    """PTX leaves these undefined (a persistent block re-initialising its barriers for
    the next tile must mbarrier.inval them first): the emulator stops, naming the rule."""
    m = Module()
    bar = Builder.shared(m, "bar", 8, align=8)
    b = Builder.entry(m, "k")
    if misuse != "wait before init":
        b.mbarrier_init(bar, 1)
    if misuse == "init twice":
        b.mbarrier_init(bar, 1)
    if misuse == "arrive after inval":
        b.mbarrier_inval(bar)
        b.mbarrier_arrive(bar)
    b.mbarrier_wait(bar, b.mov(0, type=U32), parity=True)
    b.ret()
    want = "holds a valid mbarrier" if misuse == "init twice" else "no valid mbarrier there"
    with pytest.raises(EmuError, match=want):
        Emulator(m).launch("k", 1, 1)


def test_uninitialised_register_read_names_register_and_instruction():
    m = Module()
    b = Builder.entry(m, "k")
    r = b.reg(U32, "never")
    b.mov(1, type=U32)
    s = b.add(r, 1)
    b.ret()
    with pytest.raises(EmuError) as e:
        Emulator(m).launch("k", 1, 1)
    msg = str(e.value)
    assert "uninitialised register %never" in msg
    assert f"at pc 1: add.u32 {s}, %never, 1;" in msg, msg


def test_launch_argument_errors():
    m = Module()
    _flag_kernel(m, "k")[0].ret()
    emu = Emulator(m)
    with pytest.raises(EmuError, match="takes 1 arguments, got 0"):
        emu.launch("k", 1, 1, [])
    with pytest.raises(EmuError, match="no kernel 'nope'"):
        emu.launch("nope", 1, 1, [])


# ---------------------------------------------------------- (g) instruction counts


def _count_kernel() -> Module:
    """for (k = 0; k < tid; k++) acc += k; then acc = f(acc): 7 + 5*tid instructions,
    plus 4 in f."""
    m = Module()
    f = Builder.func(m, "f", [("x", U32)], ret=U32)
    f.ret(f.add(f.param("x"), 1))                  # ld.param, add, st.param, ret
    b = Builder.entry(m, "count")
    n = b.special("tid.x")                         # <entry>: mov
    acc = b.mov(0, type=U32)                       #          mov
    k = b.mov(0, type=U32)                         #          mov
    with b.loop() as lp:                           # $L_loop_1:
        lp.break_if(b.setp("ge", k, n))            #   setp, @p bra
        b.add(acc, k, dst=acc)                     #   add
        b.add(k, 1, dst=k)                         #   add
    #                                                  bra $L_loop_1
    b.call("f", [acc])                             # $L_endloop_2: call
    b.ret()                                        #               ret
    return m


@pytest.mark.parametrize("policy", ["round_robin", "random"])
def test_dynamic_instruction_counts_are_exact(policy):
    m = _count_kernel()
    T = 40  # two warps, the second partial
    r = Emulator(m, policy=policy, seed=5).launch("count", 1, T)
    tid = np.arange(T)
    # 3 set-up + (5 per iteration + setp and the taken branch on exit) + call + ret + f's 4
    assert r.per_thread.tolist() == (3 + 5 * tid + 2 + 2 + 4).tolist()
    assert r.regions == {
        ("count", "<entry>"): 3 * T,
        ("count", "$L_loop_1"): int((5 * tid + 2).sum()),
        ("count", "$L_endloop_2"): 2 * T,
        ("f", "<entry>"): 4 * T,
    }
    assert r.steps == r.per_thread.sum()


def test_predicated_off_instructions_still_count():
    m = Module()
    b = Builder.entry(m, "k")
    p = b.setp("eq", b.special("tid.x"), 0)
    with b.when(p):
        b.add(b.special("tid.x"), 1)
    b.ret()
    r = Emulator(m).launch("k", 1, 4)
    assert r.per_thread.tolist() == [5, 5, 5, 5]  # mov setp mov @p add ret


def test_backend_reports_the_total():
    m = _count_kernel()
    be = EmuBackend()
    be.load(m)
    launch = be.launch("count", 1, 8)
    assert launch.instructions == sum(9 + 5 * t + 2 for t in range(8))
    assert launch.time_ms is None  # the emulator never pretends to time a GPU


# ------------------------------------------------------- (h) exit releases waiters


def _busy(b, n=20):
    k = b.mov(0, type=U32)
    with b.loop() as lp:
        lp.break_if(b.setp("ge", k, n))
        b.add(k, 1, dst=k)


@pytest.mark.parametrize("exiters_late", [True, False])
def test_exit_releases_bar_sync_of_the_remaining_threads(exiters_late):
    m = Module()
    b, out, tid = _flag_kernel(m)
    odd = b.setp("ne", b.and_(tid, 1), 0)
    with b.if_(odd):
        if exiters_late:
            _busy(b)  # evens are already waiting at bar.sync when odds exit
        b.exit()
    if not exiters_late:
        _busy(b)  # odds are gone before evens arrive
    b.bar_sync(0)
    b.st("global", b.element_addr(out, tid, 4), b.add(tid, 100))
    b.ret()
    emu = Emulator(m)
    out = emu.alloc(4 * 64)
    emu.launch("k", 1, 64, [out])
    got = emu.read(out, np.uint32, 64)
    assert (got[0::2] == np.arange(0, 64, 2) + 100).all()
    assert _poisoned(got[1::2]).all()


def test_exit_releases_warp_collectives():
    """Lanes 16-31 exit after some work while lanes 0-15 wait in vote.sync.ballot and
    shfl.sync with a full mask: the exits release them, and only live lanes vote."""
    m = Module()
    b, out, tid = _flag_kernel(m)
    hi = b.setp("ge", tid, 16)
    with b.if_(hi):
        _busy(b)
        b.exit()
    ballot = b.vote("ballot", b.setp("ne", b.and_(tid, 1), 0))
    nb = b.shfl("down", tid, 1, 0xF)
    b.st("global", b.element_addr(out, tid, 4), ballot)
    b.st("global", b.element_addr(out, b.add(tid, 16), 4), nb)
    b.ret()
    emu = Emulator(m)
    out = emu.alloc(4 * 32)
    emu.launch("k", 1, 32, [out])
    got = emu.read(out, np.uint32, 32)
    assert (got[:16] == 0xAAAA).all(), [hex(x) for x in got[:16]]  # odd lanes of 0-15
    assert got[16:].tolist() == [min(t + 1, 15) for t in range(16)]


def test_a_lane_outside_the_member_mask_is_an_error():
    m = Module()
    b = Builder.entry(m, "k")
    b.vote("any", b.setp("eq", b.special("tid.x"), 0), mask=0x1)
    b.ret()
    with pytest.raises(EmuError, match="not in the member mask"):
        Emulator(m).launch("k", 1, 2)


# ------------------------------------------------------ a few semantics up close


def _unary_run(build, xs, in_t, out_t):
    m = Module()
    b = Builder.entry(m, "k", [("x", U64), ("y", U64)])
    tid = b.special("tid.x")
    xp, yp = b.cvta_to_global(b.param("x")), b.cvta_to_global(b.param("y"))
    v = b.ld("global", b.element_addr(xp, tid, in_t.nbytes), in_t)
    b.st("global", b.element_addr(yp, tid, out_t.nbytes), build(b, v), type=out_t)
    b.ret()
    emu = Emulator(m)
    xs = np.asarray(xs)
    x = emu.to_device(xs)
    y = emu.alloc(out_t.nbytes * xs.size)
    emu.launch("k", 1, xs.size, [x, y])
    return emu.read(y, {"s32": np.int32, "u32": np.uint32, "s64": np.int64,
                        "f32": np.float32, "f64": np.float64, "bf16": np.uint16}[out_t.name],
                    xs.size)


def test_cvt_to_bf16_rounds_ties_to_even():
    bits = np.array([0x3F808000,   # tie, even below: stays 0x3F80
                     0x3F818000,   # tie, odd below: up to 0x3F82
                     0x3F80C000,   # above the tie: up
                     0x3F807FFF,   # below the tie: down
                     0xBF818000,   # negative tie, odd: away from zero in magnitude
                     0x7F800000,   # inf
                     0x7FC00001,   # NaN: the canonical bf16 NaN
                     0x7F7FFFFF],  # max f32 rounds up to bf16 inf
                    np.uint32)
    got = _unary_run(lambda b, v: b.cvt(v, BF16), bits.view(np.float32), F32, BF16)
    assert [hex(x) for x in got] == ["0x3f80", "0x3f82", "0x3f81", "0x3f80", "0xbf82",
                                     "0x7f80", "0x7fff", "0x7f80"]


def test_cvt_float_to_int_saturates_and_nan_is_zero():
    xs = np.array([1e20, -1e20, np.nan, -2.7, 2.7, np.inf, -np.inf], np.float32)
    assert _unary_run(lambda b, v: b.cvt(v, S32), xs, F32, S32).tolist() == \
        [2**31 - 1, -2**31, 0, -2, 2, 2**31 - 1, -2**31]
    assert _unary_run(lambda b, v: b.cvt(v, U32), xs, F32, U32).tolist() == \
        [2**32 - 1, 0, 0, 0, 2, 2**32 - 1, 0]
    assert _unary_run(lambda b, v: b.cvt(v, S64), xs.astype(np.float64), F64, S64).tolist() == \
        [2**63 - 1, -2**63, 0, -2, 2, 2**63 - 1, -2**63]


def test_fma_rounds_once():
    # (1 + 2^-23) * (1 - 2^-23) = 1 - 2^-46: a*b rounds to 1.0, so mul-then-add gives 0,
    # while the fused result keeps -2^-46
    a, c = np.float32(1 + 2**-23), np.float32(1 - 2**-23)
    m = Module()
    b = Builder.entry(m, "k", [("y", U64)])
    yp = b.cvta_to_global(b.param("y"))
    x, z = b.mov(float(a), type=F32), b.mov(float(c), type=F32)
    b.st("global", yp, b.fma(x, z, -1.0))
    sep = b.add(b.mul(x, z), -1.0)
    b.st("global", b.add(yp, 4, type=U64), sep)
    b.ret()
    emu = Emulator(m)
    y = emu.alloc(8)
    emu.launch("k", 1, 1, [y])
    fused, separate = emu.read(y, np.float32, 2)
    assert fused == np.float32(-2.0**-46)
    assert separate == np.float32(0.0)


def test_shr_is_arithmetic_for_signed_and_shift_amounts_clamp():
    xs = np.array([-16, 16, -1], np.int32)
    assert _unary_run(lambda b, v: b.shr(v, 2), xs, S32, S32).tolist() == [-4, 4, -1]
    assert _unary_run(lambda b, v: b.shr(v, 40), xs, S32, S32).tolist() == [-1, 0, -1]
    assert _unary_run(lambda b, v: b.shr(v, 40), xs.view(np.uint32), U32, U32).tolist() == [0, 0, 0]
    assert _unary_run(lambda b, v: b.shl(v, 33), xs.view(np.uint32), U32, U32).tolist() == [0, 0, 0]


def test_a_bulk_copy_lands_only_when_its_mbarrier_is_waited_on():
    """Reading the destination before waiting sees the old bytes (poison), so a kernel that
    forgets the wait fails on the emulator instead of passing by luck."""
    m = Module()
    b = Builder.entry(m, "bulk_nowait", [("src", U64), ("out", U64)])
    sm = b.mov(Builder.shared(m, "nw_buf", 64, 128), type=U32)
    bar = Builder.shared(m, "nw_bar", 8, align=8)
    b.mbarrier_init(bar, 1)
    b.mbarrier_arrive_expect_tx(bar, 64)
    b.cp_async_bulk(sm, b.param("src"), 64, bar)
    early = b.ld("shared", sm, U32)
    with b.loop() as lp:
        lp.break_if(b.mbarrier_wait(bar, b.mov(0, type=U32), "try_wait", parity=True))
    late = b.ld("shared", sm, U32)
    b.st("global", b.param("out"), early, type=U32)
    b.st("global", b.add(b.param("out"), 4, type=U64), late, type=U32)
    b.ret()
    be = EmuBackend()
    be.load(m)
    src = be.to_device(np.arange(1, 17, dtype=np.uint32))
    out = be.alloc(8)
    be.launch("bulk_nowait", 1, 1, [src, out])
    early, late = be.read(out, np.uint32, 2)
    assert early == 0xCDCDCDCD and late == 1
