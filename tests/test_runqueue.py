"""Run-queue executors (embassy, backoff, graph), their spawn ABI, the channel and latch
futures, and the co-resident compute kernel -- on the emulator and as PTX text."""

import numpy as np
import pytest

from conformance.helpers import bump, probe_root, row_addr, run_root
from executors import get_executor
from experiments import coresident
from executors.backoff import Backoff
from experiments.backoff_sweep import sweep
from harness.backend import EmuBackend
from harness.cases import CaseSpec, run_case
from harness.compile import compile_ptx
from harness.errors import PollbenchError
from harness.futures import FutureBuildError, async_fn
from harness.futures.channel import channel_bytes, recv, send
from harness.ptx import Module
from harness.ptx.types import U32, U64
from tests.filecheck import filecheck
from workloads import get_workload

RUNQUEUE = ("embassy", "backoff", "graph")


@pytest.mark.parametrize("executor", RUNQUEUE)
def test_counters_are_filled(executor):
    r = run_case(CaseSpec(executor, "ping_pong", ntasks=8, block=8, seed=4),
                 EmuBackend(policy="random", seed=1), instrument=True)
    c = r.extra["counters"]
    assert r.check == "pass"
    assert c["polls_per_task"] > 1 and c["pending_per_task"] > 0
    assert c["wakes"] > 0 and c["queue_ops"] > c["wakes"] / 2
    assert c["cas_retries"] >= 0 and 0 < c["bookkeeping_share"] < 1
    if executor != "graph":  # a graph round never waits: idle workers just end the round
        assert c["idle_share"] > 0


def test_embassy_ptx_has_embassys_atomics():
    m, _, _, _ = __import__("harness.cases", fromlist=["build_case"]).build_case(
        CaseSpec("embassy", "yield_storm"))
    ptx = m.to_ptx()
    filecheck(ptx, """
        CHECK: .visible .func wake(
        CHECK: atom.acq_rel.gpu.global.or.b32
        CHECK: fence.sc.gpu;
        CHECK: atom.acq_rel.gpu.global.cas.b32
        CHECK: .visible .entry embassy_thread_direct_yield_storm_root(
        CHECK: atom.acq_rel.gpu.global.exch.b32
        CHECK: atom.acq_rel.gpu.global.and.b32
        CHECK: call.uni (retval0), poll_yield_storm_root
    """)
    compile_ptx(ptx, "sm_90")


def test_graph_calls_set_conditional_and_runs_rounds():
    m, k, _, _ = __import__("harness.cases", fromlist=["build_case"]).build_case(
        CaseSpec("graph", "yield_storm"))
    ptx = m.to_ptx()
    assert ".extern .func cudaGraphSetConditional(.param .b64 handle, .param .b32 value);" in ptx
    assert "call.uni cudaGraphSetConditional" in ptx
    r = run_case(CaseSpec("graph", "yield_storm", ntasks=8, block=8), EmuBackend(),
                 instrument=False)
    assert r.check == "pass"


def test_backoff_parameters():
    with pytest.raises(PollbenchError, match="backoff needs 0 < min_ns <= max_ns"):
        Backoff(min_ns=0)
    with pytest.raises(PollbenchError, match=r"\(got 512, 128, 2.0\)"):
        Backoff(min_ns=512, max_ns=128)
    a, b = Backoff(), Backoff(64, 256, 1.5)
    root = get_workload("yield_storm").root()
    assert a.kernel_name("thread", "direct", root, False) != b.kernel_name("thread", "direct", root, False)
    m = Module()
    b.build(m, root)
    assert "nanosleep.u32" in m.to_ptx()
    with pytest.raises(PollbenchError, match="one executor per module"):
        a.build(m, root)
    with pytest.raises(PollbenchError, match="needs a GPU"):
        sweep(EmuBackend())
    with pytest.raises(PollbenchError, match="ping_pong or idle_wait, not 'fan_out'"):
        sweep(EmuBackend(), workload="fan_out")


def test_backoff_emits_capped_growth():
    """The idle path grows the sleep by the factor and caps it at max."""
    def parked_then_ready(f, task, args):
        return None

    m = Module()
    ex = Backoff(100, 800, 2)
    root = probe_root("quick", parked_then_ready)
    ex.build(m, root)
    assert "min.u64" in m.to_ptx() and "shr.u64" in m.to_ptx()


def test_spawn_needs_the_root_signature_and_an_executor_with_spawn():
    @async_fn(params=[("x", U32)], output=None, name="not_a_task")
    def not_a_task(f, x):
        return None

    def bad(f, task, args):
        f.spawn(not_a_task, args)
        return None

    with pytest.raises(FutureBuildError, match="must take"):
        get_executor("embassy").build(Module(), probe_root("spawns_bad", bad))

    def good(f, task, args):
        f.spawn(probe_root("child_ok", lambda f, t, a: None), args)
        return None

    with pytest.raises(FutureBuildError, match="defines no spawn"):
        get_executor("block_on").build(Module(), probe_root("spawns_on_block_on", good))


def test_channel_with_capacity_4_keeps_order_and_parks_the_sender():
    """Task 0 sends 0, 3, 6, ... through a 4-slot channel (parking when it is full);
    task 1 receives them in order into the probe table."""
    cap, msgs, chan_at = 4, 10, 256

    def body(f, task, args):
        f.local("i", U32)
        f.set("i", f.mov(0, type=U32))

        def chan():
            return f.add(f.arg("args"), chan_at, type=U64)

        with f.if_(f.setp("eq", f.arg("task"), 0)):
            with f.loop() as lp:
                lp.break_if(f.setp("ge", f.get("i"), msgs))
                f.await_(send(chan(), f.mul(f.get("i"), 3), cap))
                f.set("i", f.add(f.get("i"), 1))
        with f.if_(f.setp("eq", f.arg("task"), 1)):
            with f.loop() as lp:
                lp.break_if(f.setp("ge", f.get("i"), msgs))
                v = f.await_(recv(chan(), cap))
                f.st("global", row_addr(f, 0, f.get("i")), v)  # flat: table slot i
                f.set("i", f.add(f.get("i"), 1))
        return None

    rows = (chan_at + channel_bytes(cap)) // 8  # n = 2: 8 bytes per row
    for ex in RUNQUEUE:
        r = run_root(ex, probe_root(f"chan_probe_{ex}", body), 2,
                     EmuBackend(policy="random", seed=2), rows=rows, geometry=(1, 2))
        got = r.rows.reshape(-1)[:msgs]
        assert list(got) == [3 * i for i in range(msgs)], (ex, got)


def test_fma_spin_counts_on_the_emulator():
    m = Module()
    coresident.build(m)
    be = EmuBackend()
    be.load(m)
    out = be.to_device(np.zeros(2, np.uint64))
    be.launch(coresident.NAME, 1, 2, [out, np.uint64(2000)])
    assert int(be.read(out, np.uint64, 1)[0]) >= 2
    assert coresident.fma_rate(10, 1, 1000) == pytest.approx(10 * coresident.FMAS_PER_ITER * 1e6)


def test_bump_helper_counts():
    def body(f, task, args):
        bump(f, 0)
        return None

    r = run_root("embassy", probe_root("bump_probe", body), 4, EmuBackend(), rows=1)
    assert (r.rows[0] == 1).all()
