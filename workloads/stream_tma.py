"""A warp-specialized streaming kernel: ``dst[i] = f^k(src[i])`` with ``f(x) = x * A + B``
(k dependent FMAs per element, f32), tiles moved into shared memory by the TMA.

The hand-written baseline of the ``pipeline`` workload's plan (sm_90): in each block, one
producer lane issues ``cp.async.bulk`` copies of ``TILE``-float tiles into a ring of
``STAGES`` shared-memory stages, each copy completing its bytes on the stage's *full*
mbarrier; ``CONSUMERS`` warps wait on *full*, apply the FMAs (``GROUP`` elements a thread
at once, their chains interleaved: on the H100 one chain a thread left the kernel at 74%
of the FMA roof), store to global memory (a warp's 32 consecutive floats per store:
coalesced) and arrive on the stage's *empty*
mbarrier, which the producer waits on before it refills the stage. Blocks are persistent:
block b takes tiles b, b + grid, ... The ``pipeline`` workloads time it as their ``tma``
reference (the emulator's TMA model lands a copy at the first wait on its barrier).

Phases: a stage's r-th fill is awaited on *full* with parity r & 1; before its r-th refill
(r >= 1) the producer awaits *empty*'s phase r - 1, i.e. parity (r - 1) & 1.
"""

from __future__ import annotations

from harness.ptx import Builder, Module
from harness.ptx.types import F32, U32, U64

TILE = 2048  # floats per tile (8 KiB)
STAGES = 4
CONSUMERS = 4  # consumer warps; warp 0 is the producer
THREADS = 32 * (1 + CONSUMERS)
GROUP = 8  # elements a consumer thread works on together (its FMA chains interleave)
STRIDE = 32 * CONSUMERS  # consumer threads: a tile's element j goes to thread j % STRIDE
assert TILE % (STRIDE * GROUP) == 0
A, B = 0.5, 0.25
KERNEL = "stream_tma"
PARAMS = (("src", U64), ("dst", U64), ("tiles", U32), ("k", U32))


def build(module: Module, name: str = KERNEL, k: int | None = None) -> str:
    """Emit the streaming kernel into ``module``; returns its name. Launch with any number
    of blocks of ``THREADS`` threads (every block that fits at once is the persistent
    shape). With ``k`` the FMA count is that constant (the parameter is then ignored), as
    in code compiled for one k; else it is the ``k`` parameter."""
    b = Builder.entry(module, name, PARAMS, maxntid=THREADS)
    src, dst, tiles = b.param("src"), b.param("dst"), b.param("tiles")
    k = b.param("k") if k is None else k
    buf = b.mov(Builder.shared(module, f"{name}_buf", STAGES * TILE * 4, 128), type=U32)
    full = b.mov(Builder.shared(module, f"{name}_full", STAGES * 8, 8), type=U32)
    empty = b.mov(Builder.shared(module, f"{name}_empty", STAGES * 8, 8), type=U32)
    tid = b.special("tid.x")
    warp, lane = b.div(tid, 32, type=U32), b.and_(tid, 31, type=U32)
    with b.if_(b.setp("eq", tid, 0, type=U32)):
        for s in range(STAGES):
            b.mbarrier_init(b.add(full, 8 * s, type=U32), 1)
            b.mbarrier_init(b.add(empty, 8 * s, type=U32), CONSUMERS)
    b.bar_sync(0)
    block, grid = b.special("ctaid.x"), b.special("nctaid.x")

    def stage_of(it):
        s = b.rem(it, STAGES, type=U32)
        return s, b.div(it, STAGES, type=U32), b.mad(s, 8, full, type=U32), \
            b.mad(s, 8, empty, type=U32), b.mad(s, TILE * 4, buf, type=U32)

    it = b.mov(0, type=U32)
    tile = b.mov(block, type=U32)
    with b.if_(b.setp("eq", tid, 0, type=U32)):  # the producer
        with b.loop() as lp:
            lp.break_if(b.setp("ge", tile, tiles, type=U32))
            _, r, f, e, stage = stage_of(it)
            with b.if_(b.setp("ne", r, 0, type=U32)):
                parity = b.and_(b.sub(r, 1, type=U32), 1, type=U32)
                with b.loop() as wait:
                    wait.break_if(b.mbarrier_wait(e, parity, "try_wait", parity=True))
            b.mbarrier_arrive_expect_tx(f, TILE * 4)
            b.cp_async_bulk(stage, b.element_addr(src, b.mul(tile, TILE, type=U32), 4),
                            TILE * 4, f)
            b.add(it, 1, dst=it)
            b.add(tile, grid, dst=tile)
    with b.if_(b.setp("ne", warp, 0, type=U32)):  # the consumers
        ctid = b.sub(tid, 32, type=U32)
        with b.loop() as lp:
            lp.break_if(b.setp("ge", tile, tiles, type=U32))
            _, r, f, e, stage = stage_of(it)
            parity = b.and_(r, 1, type=U32)
            with b.loop() as wait:
                wait.break_if(b.mbarrier_wait(f, parity, "try_wait", parity=True))
            base = b.mul(tile, TILE, type=U32)
            j = b.mov(ctid, type=U32)
            with b.loop() as elems:  # GROUP elements a thread: independent FMA chains
                elems.break_if(b.setp("ge", j, TILE, type=U32))
                js = [b.add(j, STRIDE * g, type=U32) for g in range(GROUP)]
                xs = [b.ld("shared", b.mad(jg, 4, stage, type=U32), F32) for jg in js]
                n = b.mov(0, type=U32)
                with b.loop() as fmas:
                    fmas.break_if(b.setp("ge", n, k, type=U32))
                    for x in xs:
                        b.fma(x, A, B, type=F32, dst=x)
                    b.add(n, 1, dst=n)
                for jg, x in zip(js, xs):
                    b.st("global", b.element_addr(dst, b.add(base, jg, type=U32), 4), x, type=F32)
                b.add(j, STRIDE * GROUP, dst=j)
            b.bar_warp_sync(0xFFFFFFFF)  # the warp's reads of the stage are done
            with b.if_(b.setp("eq", lane, 0, type=U32)):
                b.mbarrier_arrive(e)
            b.add(it, 1, dst=it)
            b.add(tile, grid, dst=tile)
    b.ret()
    return name


def reference(src, k: int):
    """numpy's answer: k rounds of ``x * A + B`` in float32 (each fma rounded once: with
    ``A`` a power of two the product is exact, so one f32 add is the same rounding)."""
    import numpy as np

    x = np.asarray(src, np.float32).copy()
    for _ in range(k):
        x = (x * np.float32(A) + np.float32(B)).astype(np.float32)
    return x
