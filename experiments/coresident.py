"""A co-resident compute kernel: how many issue slots an executor leaves to other work.

``fma_spin(out, duration_ns)``: every thread runs ``CHAINS`` independent f32 FMA chains,
``UNROLL`` FMAs each per iteration, until ``%globaltimer`` says ``duration_ns`` have passed
since the thread started, then adds its iteration count to ``out[0]`` (u64). Independent
chains keep the FMA pipes busy, so the count measures issue slots the SM gave this kernel:
run alone, then launched on a second stream next to an executor kernel that occupies the
same SMs, the ratio of the two rates is the share of issue slots the executor left over.
The chains' results feed a never-taken store so ptxas keeps them.

``run_beside(backend, launch_executor, grid, block, duration_ns)`` launches the executor
(on the backend's stream) and then this kernel (on a second stream), waits for both, and
returns the compute rate and how much of the compute window the executor overlapped.
"""

from __future__ import annotations

import numpy as np

from harness.ptx import Builder, Module
from harness.ptx.types import F32, U64

NAME = "fma_spin"
CHAINS, UNROLL = 8, 32
FMAS_PER_ITER = CHAINS * UNROLL


def build(module: Module) -> str:
    """Emit ``fma_spin(out: u64, duration_ns: u64)`` into ``module``; returns its name."""
    if NAME in module.functions:
        return NAME
    b = Builder.entry(module, NAME, [("out", U64), ("duration_ns", U64)])
    t0 = b.special("globaltimer")
    duration = b.param("duration_ns")
    seed = b.cvt(b.special("tid.x"), F32)
    xs = [b.add(seed, float(k), type=F32) for k in range(CHAINS)]
    m, c = b.mov(0.999, type=F32), b.mov(0.001, type=F32)
    iters = b.mov(0, type=U64)
    with b.loop() as lp:
        for _ in range(UNROLL):
            for x in xs:
                b.fma(x, m, c, dst=x)
        b.add(iters, 1, type=U64, dst=iters)
        elapsed = b.sub(b.special("globaltimer"), t0, type=U64)
        lp.break_if(b.setp("ge", elapsed, duration, type=U64))
    total = xs[0]
    for x in xs[1:]:
        total = b.add(total, x, type=F32)
    out = b.param("out")
    with b.if_(b.setp("eq", total, -1.0, type=F32)):  # never: keeps the chains alive
        b.st("global", b.add(out, 8, type=U64), total, type=F32)
    b.red("global", "add", out, iters, type=U64)
    b.ret()
    return NAME


def fma_rate(iterations: int, threads: int, duration_ns: int) -> float:
    """FMAs per second from the kernel's summed iteration count."""
    del threads  # the count is already summed over threads
    return iterations * FMAS_PER_ITER / (duration_ns * 1e-9)


def _launch_on(stream, kernel, grid: int, block: int, *args) -> None:
    from cuda.core import LaunchConfig, launch

    from harness.gpu.args import pack_args

    launch(stream, LaunchConfig(grid=(grid, 1, 1), block=(block, 1, 1)), kernel.kernel,
           *pack_args(args))


def run_alone(backend, grid: int, block: int, duration_ns: int) -> float:
    """FMAs/s of ``fma_spin`` with the GPU to itself (the module must hold ``fma_spin``)."""
    out = backend.to_device(np.zeros(2, np.uint64))
    backend.launch(NAME, grid, block, [out, np.uint64(duration_ns)])
    backend.rt.synchronize()
    return fma_rate(int(backend.read(out, np.uint64, 1)[0]), grid * block, duration_ns)


def run_beside(backend, launch_executor, grid: int, block: int, duration_ns: int) -> dict:
    """Launch the executor (``launch_executor()`` queues it on the backend's stream), then
    ``fma_spin`` on a second stream; wait for both. Returns the compute rate and the share
    of the compute window during which the executor kernel was still running (from events
    on both streams; below 1 the figure mixes in compute-alone time)."""
    rt = backend.rt
    side = rt.core_device.create_stream()
    try:
        out = backend.to_device(np.zeros(2, np.uint64))
        ev = [rt.core_device.create_event(_timing()) for _ in range(4)]
        rt.stream.record(ev[0])
        launch_executor()
        rt.stream.record(ev[1])
        side.record(ev[2])
        _launch_on(side, backend.module.kernel(NAME), grid, block, out, np.uint64(duration_ns))
        side.record(ev[3])
        side.sync()
        rt.stream.sync()
        exec_ms, comp_ms = ev[1] - ev[0], ev[3] - ev[2]
        overlap = max(0.0, min(ev[1] - ev[2], comp_ms)) / comp_ms if comp_ms > 0 else 0.0
        iters = int(backend.read(out, np.uint64, 1)[0])
        for e in ev:
            e.close()
        return {"fma_per_s": fma_rate(iters, grid * block, duration_ns),
                "executor_ms": exec_ms, "compute_ms": comp_ms, "overlap": overlap}
    finally:
        side.close()


def _timing():
    from cuda.core import EventOptions

    return EventOptions(timing_enabled=True)


__all__ = ["build", "run_alone", "run_beside", "fma_rate", "NAME", "FMAS_PER_ITER"]
