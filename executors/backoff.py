"""``backoff``: ``embassy`` whose idle workers sleep with exponential ``nanosleep`` instead of
spinning on the swap (architecture §5): after an empty swap a worker sleeps ``s`` ns, ``s`` starting
at ``min_ns`` and growing by ``factor`` per empty swap up to ``max_ns``; a non-empty batch
resets it to ``min_ns``. What it trades: wake-to-poll latency (a woken task waits out its
worker's current sleep) against issue slots, memory traffic and power left to other warps.

Defaults (``DEFAULT_MIN_NS``, ``DEFAULT_MAX_NS``, ``DEFAULT_FACTOR``), and why:
- min 128 ns: about one dependent global atomic on the H100 (≈276 cycles ≈ 140 ns at
  1.98 GHz, architecture §11): a sleep shorter than one empty swap saves nothing; and the H100
  sleeps the next power of two (100 -> 128), so 128 is what any min in 65..128 gives.
- max 4096 ns: about one WHILE-graph round (≈4.1 µs, §11): an idle worker then adds at most
  what the ``graph`` executor pays per round anyway.
- factor 2: the hardware rounds to powers of two, so a smaller factor repeats sleeps.
The sweep (``sweep``) measures latency against co-resident throughput for other choices.
"""

from __future__ import annotations

import numpy as np

from executors.embassy import Embassy
from harness.errors import PollbenchError
from harness.ptx import Builder, Module
from harness.ptx.types import U32

DEFAULT_MIN_NS, DEFAULT_MAX_NS, DEFAULT_FACTOR = 128, 4096, 2.0
# (min_ns, max_ns) pairs of the default sweep, from "about one atomic" to "tens of µs"
DEFAULT_SWEEP = ((32, 256), (128, 1024), (128, 4096), (512, 16384), (2048, 65536))


class Backoff(Embassy):
    name = "backoff"

    def __init__(self, min_ns: int = DEFAULT_MIN_NS, max_ns: int = DEFAULT_MAX_NS,
                 factor: float = DEFAULT_FACTOR):
        if not 0 < min_ns <= max_ns or factor < 1:
            raise ValueError(f"backoff needs 0 < min_ns <= max_ns and factor >= 1 "
                             f"(got {min_ns}, {max_ns}, {factor})")
        self.min_ns, self.max_ns, self.factor = int(min_ns), int(max_ns), float(factor)
        self.summary = (f"embassy whose idle workers sleep with exponential nanosleep "
                        f"(min {self.min_ns} ns, max {self.max_ns} ns, factor {self.factor:g})")

    @property
    def params(self) -> dict:
        return {"min_ns": self.min_ns, "max_ns": self.max_ns, "factor": self.factor}

    def kernel_name(self, granularity, dispatch, root, instrument) -> str:
        base = super().kernel_name(granularity, dispatch, root, False)
        tag = f"_s{self.min_ns}_{self.max_ns}_{int(round(self.factor * 256))}"
        return base + tag + ("_instr" if instrument else "")

    def idle_setup(self, b: Builder):
        return b.mov(self.min_ns, type=U32)

    def on_idle(self, b: Builder, sleep) -> None:
        b.nanosleep(sleep)
        # sleep = min(sleep * factor, max), factor in 8.8 fixed point (exact for integers)
        f = int(round(self.factor * 256))
        grown = b.shr(b.mul(b.cvt(sleep, "u64"), f, mode="lo", type="u64"), 8, type="u64")
        b.cvt(b.min(grown, self.max_ns, type="u64"), U32, dst=sleep)

    def on_busy(self, b: Builder, sleep) -> None:
        b.mov(self.min_ns, type=U32, dst=sleep)


# ---------------------------------------------------------------------------- sweep


def sweep(backend, settings=DEFAULT_SWEEP, factor: float = DEFAULT_FACTOR, rounds: int = 256,
          pairs_per_block: int = 256, compute_block: int = 256, compute_blocks_per_sm: int = 2,
          seed: int = 0) -> list:
    """Wake-to-poll latency against the issue slots left to co-resident compute, for
    ``embassy`` (spinning idle workers) and ``backoff`` at each ``(min_ns, max_ns)``.

    Setup (GPU only): ``ping_pong`` with one block of ``2 * pairs_per_block`` threads per
    SM (every worker is idle about half the time: its task waits for its peer's reply),
    and ``executors.coresident``'s ``fma_spin`` on a second stream with
    ``compute_blocks_per_sm`` blocks of ``compute_block`` threads per SM. For each setting:
    ping_pong alone (checked, then timed), then ping_pong with fma_spin beside it for half
    of ping_pong's alone time. Each row: ``latency_ns_alone``/``latency_ns_beside`` (mean
    wake-to-poll over that run's messages), ``compute_share`` (fma_spin's FMA rate beside
    the executor / alone: the issue slots the executor left over), ``overlap`` (the share
    of the compute window the executor was still running), ``executor_ms_*`` and the
    correctness ``check``.
    """
    from executors import coresident
    from harness.cases import _verdict
    from workloads.ping_pong import COUNT, SUM, PingPongWorkload

    if backend.name != "gpu":
        raise PollbenchError("the backoff sweep measures co-resident kernels: it needs a GPU")
    sms = backend.rt.sm_count
    block = 2 * pairs_per_block
    n = sms * block
    wl = PingPongWorkload(rounds)
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
        frames = backend.alloc(kernel.frames_bytes(n))
        launch_args = [frames, np.uint32(n), args, backend.stop_ptr(), 0]

        def latency(run):
            before = backend.read(stats, np.uint64, 4 * n).reshape(4, n)
            result = run()
            after = backend.read(stats, np.uint64, 4 * n).reshape(4, n)
            count = int(after[COUNT].sum() - before[COUNT].sum())
            return result, float(after[SUM].sum() - before[SUM].sum()) / max(count, 1)

        ex.launch(backend, kernel, sms, block, launch_args, checked=True)
        check = _verdict(wl.read_output(backend, out, n), want)
        alone, lat_alone = latency(lambda: ex.launch(backend, kernel, sms, block, launch_args))
        duration = int(alone.time_ms * 0.5e6)
        compute = coresident.run_alone(backend, cgrid, compute_block, duration)

        def start_executor():  # queued, not waited for: fma_spin must start beside it
            ex.prepare(backend, kernel, sms, block, launch_args)
            backend.rt.launch(backend.module.kernel(kernel.name), sms, block, *launch_args,
                              check=False)

        beside, lat_beside = latency(lambda: coresident.run_beside(
            backend, start_executor, cgrid, compute_block, duration))
        rows.append({"executor": label, "min_ns": getattr(ex, "min_ns", None),
                     "max_ns": getattr(ex, "max_ns", None), "factor": getattr(ex, "factor", None),
                     "check": check, "executor_ms_alone": alone.time_ms,
                     "executor_ms_beside": beside["executor_ms"],
                     "latency_ns_alone": lat_alone, "latency_ns_beside": lat_beside,
                     "compute_share": beside["fma_per_s"] / compute,
                     "overlap": beside["overlap"], "compute_window_ms": duration * 1e-6,
                     "compute_fma_per_s_alone": compute})
    return rows
