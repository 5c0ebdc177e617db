"""Executor conformance (architecture §9): every registered executor, on the emulator (CI) and on a
GPU (``-m gpu``), keeps the promises an async runtime relies on.

- results equal the numpy reference, for every workload the executor can run;
- every task is Ready exactly once, and never polled after Ready (a probe root counts its
  polls and Readies, flags a poll that finds itself already Ready, and wakes its partner
  on every poll, so tasks are also woken after they finished);
- no lost wake-ups under randomised stress: ping_pong under 100 seeded random schedules on
  the emulator; >= 10^6 wakes in one run on the GPU (a lost wake-up is a hang: the
  watchdog's stop turns it into a failure);
- a self-waking task cannot starve the others: with one hog and several yielding victims on
  one worker, no victim sees the hog polled more than the executor's stated
  ``poll_gap_bound`` times between two of its own polls;
- a deadlocked task (waiting on a flag nobody sets: busy re-polling, or parked with no
  waker) ends as a clean timeout: ``EmuHang`` on the emulator, the watchdog's stop on the
  GPU, after which the GPU context still works;
- a full task pool is ``ERROR_POOL_FULL`` with the spawner seeing SPAWN_FAILED (executors
  with spawn).
"""

from __future__ import annotations

import numpy as np
import pytest

from conformance.helpers import (
    bump, executor_names, poll_gap_bound, probe_leaf, probe_root, row_addr, run_root,
)
from executors import get_executor
from executors.base import ERROR_POOL_FULL, LaunchArgs
from harness.backend import EmuBackend
from harness.cases import CaseSpec, Unsupported, build_case, run_case
from harness.emu import EmuHang
from harness.errors import PollbenchError
from harness.futures import SPAWN_FAILED, wait_flag
from harness.gpu.testing import gpu_marks
from harness.ptx.types import U32
from workloads import DEFAULT_WORKLOADS, get_workload

EXECUTORS = executor_names()
BACKENDS = ["emu", pytest.param("gpu", marks=gpu_marks)]


@pytest.fixture(scope="module")
def gpu_backend():
    from harness.backend import GpuBackend

    with GpuBackend(timeout_s=15.0) as be:
        yield be


def backend_for(name: str, request, **emu):
    if name == "emu":
        return EmuBackend(**emu)
    return request.getfixturevalue("gpu_backend")


# ------------------------------------------------------------------ reference


@pytest.mark.parametrize("backend", BACKENDS)
# the small workloads, one pipeline (its K only sets how many FMAs an element gets), the rest
@pytest.mark.parametrize("workload", [*DEFAULT_WORKLOADS, "pipeline_k16", "irregular", "idle_wait",
                                      "matmul_1024"])
@pytest.mark.parametrize("executor", EXECUTORS)
def test_results_equal_the_reference(executor, workload, backend, request):
    ex = get_executor(executor)
    wl = get_workload(workload)
    if wl.cooperative:  # a tile's tasks, polled by a block together: block granularity
        # (the emulator: one tile, its frame in memory; inline is tests/test_matmul.py's)
        combos = [(d, "block") for d in ex.dispatch_modes if backend == "gpu" or d == "direct"]
        n, block = (wl.cooperative if backend == "emu" else 1 << 16), wl.cooperative
    elif backend == "emu":  # CI: the first granularity, both dispatch modes on one workload
        combos = [("direct", ex.granularities[0])]
        if workload == "yield_storm":
            combos.append(("indirect", ex.granularities[0]))
        n, block = 16, 16
    else:  # every granularity with direct dispatch, indirect on the first
        combos = [("direct", g) for g in ex.granularities] + [("indirect", ex.granularities[0])]
        n, block = 1 << 16, 128
    be = backend_for(backend, request, policy="random", seed=7)
    for dispatch, gran in combos:
        spec = CaseSpec(executor, workload, dispatch, gran, ntasks=wl.tasks(n),
                        block=32 if gran == "warp" and block < 32 else block, seed=11)
        try:
            r = run_case(spec, be, repeats=1, instrument=False)
        except Unsupported as e:
            pytest.skip(str(e))
        assert r.check == "pass", f"{spec.label}: {r.check}"


# ------------------------------------------------------- Ready exactly once

K, POLLS, READIES, DONE, VIOLATIONS = range(5)


def _exactly_once(f):
    f.local("i", U32)
    f.set("i", f.mov(0, type=U32))
    f.new_state()  # every poll lands here
    bump(f, POLLS)
    with f.if_(f.setp("ne", f.ld("global", row_addr(f, DONE), U32), 0)):
        bump(f, VIOLATIONS)  # polled after it returned Ready
    partner = f.xor(f.arg("task"), 1, type=U32)
    n = f.ld("global", f.arg("args"), U32)
    with f.if_(f.setp("lt", partner, n, type=U32)):
        f.call("wake", [partner, f.exec])  # spurious, and also after the partner is Ready
    i = f.get("i")
    with f.if_(f.setp("lt", i, f.ld("global", row_addr(f, K), U32))):
        f.set("i", f.add(i, 1))
        f.wake_self()
        f.pending()
    f.st("global", row_addr(f, DONE), f.mov(1, type=U32))
    bump(f, READIES)
    f.ready()


EXACTLY_ONCE = probe_leaf("probe_exactly_once", _exactly_once)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("executor", EXECUTORS)
def test_every_task_ready_exactly_once_and_never_polled_after(executor, backend, request):
    n = 24 if backend == "emu" else 1 << 16
    be = backend_for(backend, request, policy="random", seed=3)
    yields = np.random.default_rng(5).integers(0, 6, n, dtype=np.uint32)
    for gran in get_executor(executor).granularities:
        geometry = (-(-n // 32), 32) if backend == "emu" else None
        r = run_root(executor, EXACTLY_ONCE, n, be, rows=5, init={K: yields},
                     granularity=gran, geometry=geometry)
        assert (r.rows[READIES] == 1).all(), f"{gran}: Ready counts {np.unique(r.rows[READIES])}"
        assert (r.rows[VIOLATIONS] == 0).all(), f"{gran}: {int(r.rows[VIOLATIONS].sum())} polls after Ready"
        assert (r.rows[POLLS] == yields + 1).all(), f"{gran}: polls != yields + 1"
        if backend == "emu":
            break  # CI time: one granularity on the emulator


# ----------------------------------------------------------- lost wake-ups


@pytest.mark.parametrize("executor", EXECUTORS)
def test_no_lost_wakeups_under_100_random_schedules_emulator(executor):
    """ping_pong under 100 seeded random interleavings (any lost wake-up hangs the pair)."""
    wl = get_workload("ping_pong")
    spec = CaseSpec(executor, "ping_pong", "direct", get_executor(executor).granularities[0],
                    ntasks=2, block=2)
    m, kernel, _, _ = build_case(spec)
    ex = get_executor(executor)
    rng = np.random.default_rng(0)
    for seed in range(100):
        be = EmuBackend(policy="random", seed=seed, max_steps=400_000)
        be.load(m)
        inputs = wl.make_inputs(rng, 2)
        inputs["rounds"][:] = 2
        args, out = wl.upload(be, inputs, 2)
        ex.launch(be, kernel, 1, 2, LaunchArgs.allocate(be, kernel, 2, args), checked=True)
        got = wl.read_output(be, out, 2)
        assert (got == wl.reference(inputs, 2)).all(), f"seed {seed}: {got}"


@pytest.mark.parametrize("executor", [pytest.param(e, marks=gpu_marks) for e in EXECUTORS])
def test_no_lost_wakeups_million_wakes_gpu(executor, request):
    """One run of ping_pong with > 10^6 messages (each a channel publish that wakes a
    parked peer) completes and is correct; the instrumented run counts the wakes."""
    be = backend_for("gpu", request)
    spec = CaseSpec(executor, "ping_pong", "direct", get_executor(executor).granularities[0],
                    ntasks=1 << 18, block=128, seed=21)
    r = run_case(spec, be, repeats=3, instrument=True)
    assert r.check == "pass", r.check
    messages = r.extra["metrics"]["messages_per_run"]
    wakes = r.extra.get("counters", {}).get("wakes", 0)
    assert messages >= 1_000_000
    if not get_executor(executor).wake_is_noop:  # block_on's counts nothing
        assert wakes >= 1_000_000, f"only {wakes} wakes"


# ------------------------------------------------------------- starvation

HOG, FINISHED, GAP, VK, VPOLLS = range(5)


def _starve(f):
    f.local("i", U32)
    f.local("last", U32)
    f.set("i", f.mov(0, type=U32))
    f.set("last", f.ld("global", row_addr(f, HOG, f.mov(0, type=U32)), U32))
    f.new_state()
    zero = f.mov(0, type=U32)
    n = f.ld("global", f.arg("args"), U32)
    with f.if_(f.setp("eq", f.arg("task"), 0)):  # the hog: wakes itself until all are done
        bump(f, HOG, zero)
        done = f.ld("global", row_addr(f, FINISHED, zero), U32, sem="relaxed", scope="gpu")
        with f.if_(f.setp("ge", done, f.sub(n, 1))):
            f.ready()
        f.wake_self()
        f.pending()
    bump(f, VPOLLS)  # a victim: how many hog polls since my last poll?
    h = f.ld("global", row_addr(f, HOG, zero), U32, sem="relaxed", scope="gpu")
    gap_at = row_addr(f, GAP)
    f.st("global", gap_at, f.max(f.ld("global", gap_at, U32), f.sub(h, f.get("last"))))
    f.set("last", h)
    i = f.get("i")
    with f.if_(f.setp("lt", i, f.ld("global", row_addr(f, VK), U32))):
        f.set("i", f.add(i, 1))
        f.wake_self()
        f.pending()
    bump(f, FINISHED, zero)
    f.ready()


STARVE = probe_leaf("probe_starve", _starve)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("executor", EXECUTORS)
def test_self_waking_task_cannot_starve_others(executor, backend, request):
    n = 8 if backend == "emu" else 64
    be = backend_for(backend, request, policy="random", seed=9)
    ex = get_executor(executor)
    shared_worker = getattr(ex, "poll_gap_bound", None) is not None
    # All tasks on one worker (one thread) where the executor has shared workers.
    geometry = (1, 1) if shared_worker else (1, n)
    k = np.full(n, 12 if backend == "emu" else 200, np.uint32)
    r = run_root(executor, STARVE, n, be, rows=5, init={VK: k}, geometry=geometry)
    assert (r.rows[VPOLLS][1:] == k[1:] + 1).all()
    bound = poll_gap_bound(executor, r.kernel)
    if bound is not None:
        worst = int(r.rows[GAP][1:].max())
        assert worst <= bound, f"a victim waited {worst} hog polls (bound {bound})"
        assert r.rows[HOG][0] > 0


# --------------------------------------------------------------- deadlock


def _parked(f):
    f.new_state()
    f.pending()  # waits for a wake nobody sends


def _spinning(f):
    f.await_(wait_flag(row_addr(f, 0), f.mov(1, type=U32)))  # a flag nobody sets
    f.ready()


DEADLOCKS = {"parked": probe_leaf("probe_parked", _parked),
             "spinning": probe_leaf("probe_spinning", _spinning)}


@pytest.mark.parametrize("kind", list(DEADLOCKS))
@pytest.mark.parametrize("executor", EXECUTORS)
def test_deadlock_is_a_clean_timeout_emulator(executor, kind):
    be = EmuBackend(max_steps=60_000)
    with pytest.raises(EmuHang):
        run_root(executor, DEADLOCKS[kind], 4, be, rows=1, geometry=(1, 4))


@pytest.mark.parametrize("kind", list(DEADLOCKS))
@pytest.mark.parametrize("executor", [pytest.param(e, marks=gpu_marks) for e in EXECUTORS])
def test_deadlock_is_a_clean_timeout_gpu(executor, kind):
    from harness.backend import GpuBackend

    with GpuBackend(timeout_s=0.5) as be:
        # every granularity: a warp or block worker's first thread alone reads the flag
        for granularity in get_executor(executor).granularities:
            with pytest.raises(PollbenchError, match="stop flag"):
                run_root(executor, DEADLOCKS[kind], 1024, be, rows=1, granularity=granularity)
            assert not be.rt.wedged, granularity  # the kernel saw the flag and returned
        r = run_root(executor, EXACTLY_ONCE, 64, be, rows=5)  # the context still works
        assert (r.rows[READIES] == 1).all()


# -------------------------------------------------------------- pool full

SPAWNED_OK, SPAWN_FAILURES, CHILDREN_RAN = range(3)
ATTEMPTS = 1024


def _child(f, task, args):
    bump(f, CHILDREN_RAN, f.mov(0, type=U32))
    return None


CHILD = probe_root("probe_pool_child", _child)


def _spawn_until_full(f, task, args):
    j = f.mov(0, type=U32)
    with f.loop() as lp:
        lp.break_if(f.setp("ge", j, ATTEMPTS))
        tid = f.spawn(CHILD, f.arg("args"))
        failed = f.setp("eq", tid, SPAWN_FAILED, type=U32)
        bump(f, SPAWN_FAILURES, value=f.selp(1, 0, failed, type=U32))
        bump(f, SPAWNED_OK, value=f.selp(0, 1, failed, type=U32))
        f.add(j, 1, dst=j)
    return None


SPAWNER = probe_root("probe_spawn_until_full", _spawn_until_full)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("executor", EXECUTORS)
def test_full_task_pool_is_a_clear_error(executor, backend, request):
    """A root spawns until the pool is full: the executor sets ERROR_POOL_FULL, the spawner
    sees SPAWN_FAILED (never a bad id), and exactly the spawned children run."""
    if not get_executor(executor).supports_spawn:
        pytest.skip(f"{executor} has no spawn")
    be = backend_for(backend, request)
    r = run_root(executor, SPAWNER, 1, be, rows=3, tasks=(CHILD,), spawn_capacity=3,
                 geometry=(1, 1))
    ok, failed, ran = (int(r.rows[k][0]) for k in (SPAWNED_OK, SPAWN_FAILURES, CHILDREN_RAN))
    assert r.error == ERROR_POOL_FULL, f"error word {r.error}"
    assert ok + failed == ATTEMPTS and failed > 0 and ran == ok, (ok, failed, ran)
