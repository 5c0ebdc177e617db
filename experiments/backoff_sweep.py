"""The backoff sweep: ``backoff``'s min/max sleep against wake-to-poll latency and the issue
slots left to a co-resident compute kernel (``pollbench sweep``, GPU only). An experiment
over executors, not an executor: it runs ``ping_pong`` or ``idle_wait`` under ``embassy`` and
``backoff`` beside ``experiments.coresident``'s ``fma_spin``."""

from __future__ import annotations

import numpy as np

from executors.backoff import DEFAULT_FACTOR, Backoff
from executors.base import LaunchArgs
from executors.embassy import Embassy
from experiments import coresident
from harness.errors import PollbenchError
from harness.ptx import Module

# (min_ns, max_ns) pairs of the default sweep, from "about one atomic" to "tens of µs"
DEFAULT_SWEEP = ((32, 256), (128, 1024), (128, 4096), (512, 16384), (2048, 65536))



SWEEP_WORKLOADS = ("ping_pong", "idle_wait")


def sweep(backend, settings=DEFAULT_SWEEP, factor: float = DEFAULT_FACTOR, rounds: int = 256,
          pairs_per_block: int = 256, compute_block: int = 256, compute_blocks_per_sm: int = 2,
          seed: int = 0, workload: str = "ping_pong") -> list:
    """Wake-to-poll latency against the issue slots left to co-resident compute, for
    ``embassy`` (spinning idle workers) and ``backoff`` at each ``(min_ns, max_ns)``.

    Setup (GPU only): one block per SM of ``workload`` — ``ping_pong`` with
    ``2 * pairs_per_block`` threads (every worker is idle about half the time: its task
    waits for its peer's reply), or ``idle_wait`` with one group of its tasks (a setter and
    a few waiters parked 10 µs-10 ms: workers idle nearly all the time) —
    and ``experiments.coresident``'s ``fma_spin`` on a second stream with
    ``compute_blocks_per_sm`` blocks of ``compute_block`` threads per SM. For each setting:
    the workload alone (checked, then timed), then with fma_spin beside it for half of its
    alone time. Each row: ``latency_ns_alone``/``latency_ns_beside`` (mean
    wake-to-poll over that run's messages), ``compute_share`` (fma_spin's FMA rate beside
    the executor / alone: the issue slots the executor left over), ``overlap`` (the share
    of the compute window the executor was still running), ``executor_ms_*`` and the
    correctness ``check``.
    """
    from harness.cases import verdict
    from workloads.idle_wait import GROUP, IdleWaitWorkload
    from workloads.latency import COUNT, ROWS, SUM
    from workloads.ping_pong import PingPongWorkload

    if workload not in SWEEP_WORKLOADS:
        raise PollbenchError(f"the sweep runs {' or '.join(SWEEP_WORKLOADS)}, not {workload!r}")
    if backend.name != "gpu":
        raise PollbenchError("the backoff sweep measures co-resident kernels: it needs a GPU")
    sms = backend.rt.sm_count
    if workload == "ping_pong":
        block, wl = 2 * pairs_per_block, PingPongWorkload(rounds)
    else:
        block, wl = GROUP, IdleWaitWorkload()
    n = sms * block
    inputs = wl.make_inputs(np.random.default_rng(seed), n)
    want = wl.reference(inputs, n)
    cgrid = sms * compute_blocks_per_sm
    variants = [("embassy", Embassy())] + [("backoff", Backoff(lo, hi, factor))
                                           for lo, hi in settings]
    rows = []
    for label, ex in variants:
        m = Module(arch=backend.arch)
        kernel = ex.build(m, wl.root())
        coresident.build(m)
        backend.load(m)
        args, out = wl.upload(backend, inputs, n)
        stats = wl.input_buffer(backend, args, "stats")
        run = LaunchArgs.allocate(backend, kernel, n, args)

        def latency(run):
            before = backend.read(stats, np.uint64, ROWS * n).reshape(ROWS, n)
            result = run()
            after = backend.read(stats, np.uint64, ROWS * n).reshape(ROWS, n)
            count = int(after[COUNT].sum() - before[COUNT].sum())
            return result, float(after[SUM].sum() - before[SUM].sum()) / max(count, 1)

        ex.launch(backend, kernel, sms, block, run, checked=True)
        check = verdict(wl.read_output(backend, out, n), want)
        alone, lat_alone = latency(lambda: ex.launch(backend, kernel, sms, block, run))
        duration = int(alone.time_ms * 0.5e6)
        compute = coresident.run_alone(backend, cgrid, compute_block, duration)

        def start_executor():  # queued, not waited for: fma_spin must start beside it
            ex.prepare(backend, kernel, sms, block, run)
            backend.rt.launch(backend.module.kernel(kernel.name), sms, block, *run.params(),
                              check=False)

        beside, lat_beside = latency(lambda: coresident.run_beside(
            backend, start_executor, cgrid, compute_block, duration))
        rows.append({"workload": workload, "executor": label, "min_ns": getattr(ex, "min_ns", None),
                     "max_ns": getattr(ex, "max_ns", None), "factor": getattr(ex, "factor", None),
                     "check": check, "executor_ms_alone": alone.time_ms,
                     "executor_ms_beside": beside["executor_ms"],
                     "latency_ns_alone": lat_alone, "latency_ns_beside": lat_beside,
                     "compute_share": beside["fma_per_s"] / compute,
                     "overlap": beside["overlap"], "compute_window_ms": duration * 1e-6,
                     "compute_fma_per_s_alone": compute})
    return rows
