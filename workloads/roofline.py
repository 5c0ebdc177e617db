"""A roofline measured in the same run as the case: the driver's device copy (bandwidth) and
an FMA kernel that keeps every lane issuing (compute), each a ``Reference`` of the case.

The FMA kernel: each thread runs ``ACCUMULATORS`` independent chains (enough independent
work per warp to hide the FMA's latency at full occupancy), ``UNROLL`` FMAs of each chain
per loop iteration (so the loop's add/compare/branch are a few percent of the issue
slots), and stores the chains' sum so nothing is dead code. ``x = x * A + B`` with
``A = 0.5`` stays finite and normal for any start.
"""

from __future__ import annotations

import numpy as np

from harness.ptx import Builder, Module
from harness.ptx.types import F32, U32, U64
from workloads.base import Reference, Work
from workloads.stream_tma import A, B

FMA_KERNEL = "roofline_fma"
FMA_BLOCK = 256
ACCUMULATORS = 8
UNROLL = 8
FMA_ITERATIONS = 2048  # loop iterations per thread: ~0.3 ms at an H200's full grid


def build_fma_peak(module: Module, name: str = FMA_KERNEL) -> str:
    """Emit ``name(out: u64, iters: u32)``: ``2 * ACCUMULATORS * UNROLL * iters`` FLOPs per
    thread, one float stored per thread."""
    b = Builder.entry(module, name, [("out", U64), ("iters", U32)], maxntid=FMA_BLOCK)
    out, iters = b.param("out"), b.param("iters")
    tid = b.global_index()
    seed = b.cvt(tid, F32)
    accs = [b.fma(seed, 2.0 ** -20, float(j), type=F32) for j in range(ACCUMULATORS)]
    i = b.mov(0, type=U32)
    with b.loop() as lp:
        lp.break_if(b.setp("ge", i, iters, type=U32))
        for _ in range(UNROLL):
            for acc in accs:
                b.fma(acc, A, B, type=F32, dst=acc)
        b.add(i, 1, dst=i)
    total = accs[0]
    for acc in accs[1:]:
        total = b.add(total, acc, type=F32)
    b.st("global", b.element_addr(out, tid, 4), total, type=F32)
    b.ret()
    return name


def fma_peak_reference(backend, iterations: int = FMA_ITERATIONS) -> Reference:
    """The FMA kernel over every block that fits at once: the compute roof (FP32 FMA)."""
    grid = max(1, backend.resident_blocks(FMA_KERNEL, FMA_BLOCK))
    sink = backend.alloc(4 * grid * FMA_BLOCK)
    flops = 2 * ACCUMULATORS * UNROLL * iterations * grid * FMA_BLOCK
    return Reference("fma_peak", f"FP32 FMA peak: {grid} blocks x {FMA_BLOCK} threads, "
                     f"{ACCUMULATORS} independent chains each", Work(0, flops),
                     kernel=FMA_KERNEL, grid=grid, block=FMA_BLOCK,
                     args=(sink, np.uint32(iterations)), roof="compute")


def copy_reference(backend, src: int, nbytes: int) -> Reference:
    """The driver's device-to-device copy of ``nbytes`` (read and written): the bandwidth roof."""
    dst = backend.alloc(nbytes)
    return Reference("copy", f"device copy of {nbytes / 2**30:.2f} GiB (cuMemcpyDtoDAsync)",
                     Work(2 * nbytes, 0), copy=(dst, src, nbytes), roof="bandwidth")


def roofline_ms(work: Work, bytes_per_ms: float | None, flops_per_ms: float | None) -> float | None:
    """The least time ``work`` can take under the two roofs (either may be missing)."""
    bounds = []
    if bytes_per_ms and work.bytes:
        bounds.append(work.bytes / bytes_per_ms)
    if flops_per_ms and work.flops:
        bounds.append(work.flops / flops_per_ms)
    return max(bounds) if bounds else None
