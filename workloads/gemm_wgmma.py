"""A bf16 GEMM for Hopper (sm_90a): the bulk tensor copy (TMA) feeds ``wgmma`` from a ring of
shared-memory stages, a producer warpgroup and consumer warpgroups, persistent blocks.

``C = A @ B`` with A (M x K) and ``Bt = B.T`` (N x K) row-major bf16 (both K-major, as
wgmma reads them without a transpose) and C (M x N) row-major f32, f32 accumulation: the
``matmul`` workloads' hand-written sm_90 baseline (``gemm_mma`` is the portable one).

A block is ``1 + CONSUMERS`` warpgroups. One thread of the first (the producer) walks the
block's output tiles and their K steps, and for each step waits until the ring's next stage
is *empty*, expects its bytes on the stage's *full* mbarrier and issues two tensor copies
(A's BM x BK box and Bt's BN x BK box, 128-byte swizzled by the tensor maps). Consumer
warpgroup ``c`` owns rows ``64c .. 64c + 63`` of the BM x BN tile: it waits on *full*,
issues ``BK / 16`` ``wgmma.m64n{BN}k16`` reading both operands from the stage through
matrix descriptors, commits them as a group, waits for it (``wgmma.wait_group 0``) and each
warp's lane 0 arrives on the stage's *empty* barrier. (``inflight=1`` leaves one group
running while the next stage is awaited and frees the stage before: on the H200 at 8192^3
that was 687 TFLOP/s against 722 waiting for each; the other warpgroup keeps the tensor
cores busy meanwhile.) After a tile's last step it stores its accumulators (the wgmma D
fragment: a thread's pairs of adjacent columns) to C.

Phases: the ring's r-th use of a stage is awaited on *full* with parity ``r & 1``; before
its r-th refill (r >= 1) the producer awaits *empty*'s phase ``r - 1``. The shared-memory
layout the copies write and the descriptors describe is the 128-byte swizzle: an operand
row of BK = 64 bf16 is one 128-byte line, its 16-byte chunks XORed with the row mod 8, in
1024-byte groups of 8 rows (the descriptor's stride); a k16 slice of the stage starts 32
bytes further (the swizzle is a function of the address, so the stage must be 1024-byte
aligned, which the kernel rounds its dynamic shared memory up to).

Tiles are visited in groups of ``group_m`` tile rows (column by column inside a group), so
the blocks running at once share A's and Bt's rows in L2.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.ptx import Builder, Module
from harness.ptx.types import F32, U32, U64

BM, BK = 128, 64
CONSUMERS = 2  # consumer warpgroups: 64 rows of the tile each
THREADS = 128 * (1 + CONSUMERS)
PARAMS = (("a_map", U64), ("b_map", U64), ("c", U64), ("m", U32), ("n", U32), ("k", U32))
A_BYTES = BM * BK * 2  # one stage of A (16 KiB)
ALIGN = 1024  # the 128-byte swizzle's period: stages start on it


@dataclass(frozen=True)
class Config:
    """The kernel's tile and ring: ``bn`` columns a tile (wgmma N; 128 accumulators a
    consumer thread at 256), ``stages`` in the ring, ``inflight`` wgmma groups left
    running at a step's end (0: wait for each), ``group_m`` tile rows a raster group."""

    bn: int = 256
    stages: int = 4
    inflight: int = 0
    group_m: int = 8

    @property
    def name(self) -> str:
        return f"gemm_wgmma_n{self.bn}_s{self.stages}_f{self.inflight}_g{self.group_m}"

    @property
    def b_bytes(self) -> int:
        return self.bn * BK * 2

    @property
    def stage_bytes(self) -> int:
        """Transaction bytes one stage's two copies complete."""
        return A_BYTES + self.b_bytes

    @property
    def shared(self) -> int:
        """Dynamic shared memory a launch asks for (the ring, plus room to align it)."""
        return self.stages * self.stage_bytes + ALIGN


def tiles_for(m: int, n: int, cfg: Config) -> int:
    """Output tiles of an M x N product."""
    return (m // BM) * (n // cfg.bn)


def check_shape(m: int, n: int, k: int, cfg: Config) -> str | None:
    """Why the kernel cannot compute this shape, or None."""
    if m % BM or n % cfg.bn or k % BK or not k:
        return (f"{m}x{n}x{k}: the wgmma kernel needs M a multiple of {BM}, N of {cfg.bn} "
                f"and K of {BK}")
    return None


def _raster(b: Builder, tile, tiles_m, tiles_n, group_m: int) -> tuple:
    """(tile row, tile column) of ``tile``: groups of ``group_m`` tile rows, column-major
    inside a group (the last group may be shorter)."""
    per_group = b.mul(tiles_n, group_m, type=U32)
    group = b.div(tile, per_group, type=U32)
    first = b.mul(group, group_m, type=U32)
    rows = b.min(b.sub(tiles_m, first, type=U32), group_m, type=U32)
    inside = b.rem(tile, per_group, type=U32)
    return b.add(first, b.rem(inside, rows, type=U32), type=U32), b.div(inside, rows, type=U32)


def _spin(b: Builder, bar, parity) -> None:
    with b.loop() as wait:
        wait.break_if(b.mbarrier_wait(bar, parity, "try_wait", parity=True))


def build(module: Module, cfg: Config = Config()) -> str:
    """Emit the kernel into ``module`` (its target becomes sm_90a); returns its name. Launch
    with at most one block an SM (``persistent_grid``), ``THREADS`` threads and
    ``cfg.shared`` bytes of dynamic shared memory; ``a_map``/``b_map`` are the device
    addresses of the tensor maps of ``tensor_maps``."""
    name = cfg.name
    if cfg.bn % 8 or not 8 <= cfg.bn <= 256 or cfg.inflight not in (0, 1):
        raise ValueError(f"no wgmma kernel for {cfg}")
    b = Builder.entry(module, name, PARAMS, maxntid=THREADS, minnctapersm=1)
    dyn = Builder.dynamic_shared(module, f"{name}_ring", 16)
    full_sym = Builder.shared(module, f"{name}_full", 8 * cfg.stages, 8)
    empty_sym = Builder.shared(module, f"{name}_empty", 8 * cfg.stages, 8)
    a_map, b_map, c = b.param("a_map"), b.param("b_map"), b.cvta_to_global(b.param("c"))
    m, n, k = b.param("m"), b.param("n"), b.param("k")
    ring = b.and_(b.add(b.mov(dyn, type=U32), ALIGN - 1, type=U32), -ALIGN & 0xFFFFFFFF,
                  type=U32)
    b_ring = b.add(ring, cfg.stages * A_BYTES, type=U32)
    full, empty = b.mov(full_sym, type=U32), b.mov(empty_sym, type=U32)
    tid = b.special("tid.x")
    wg = b.div(tid, 128, type=U32)
    with b.if_(b.setp("eq", tid, 0, type=U32)):
        for s in range(cfg.stages):
            b.mbarrier_init(b.add(full, 8 * s, type=U32), 1)
            b.mbarrier_init(b.add(empty, 8 * s, type=U32), 4 * CONSUMERS)  # a consumer warp each
    b.bar_sync(0)  # the barriers are initialised before anyone waits or arrives on them
    tiles_m, tiles_n = b.div(m, BM, type=U32), b.div(n, cfg.bn, type=U32)
    tiles = b.mul(tiles_m, tiles_n, type=U32)
    ksteps = b.div(k, BK, type=U32)
    grid = b.special("nctaid.x")

    def stage(it):
        """(stage index, its use count r, full barrier, empty barrier) of ring use ``it``."""
        s = b.rem(it, cfg.stages, type=U32)
        return (s, b.div(it, cfg.stages, type=U32), b.mad(s, 8, full, type=U32),
                b.mad(s, 8, empty, type=U32))

    with b.if_(b.setp("eq", tid, 0, type=U32)):  # the producer
        it = b.mov(0, type=U32)
        tile = b.mov(b.special("ctaid.x"), type=U32)
        with b.loop() as tiles_lp:
            tiles_lp.break_if(b.setp("ge", tile, tiles, type=U32))
            tm, tn = _raster(b, tile, tiles_m, tiles_n, cfg.group_m)
            row_a, row_b = b.mul(tm, BM, type=U32), b.mul(tn, cfg.bn, type=U32)
            kt = b.mov(0, type=U32)
            with b.loop() as steps:
                steps.break_if(b.setp("ge", kt, ksteps, type=U32))
                s, r, f, e = stage(it)
                with b.if_(b.setp("ne", r, 0, type=U32)):  # wait until the consumers freed it
                    _spin(b, e, b.and_(b.sub(r, 1, type=U32), 1, type=U32))
                b.mbarrier_arrive_expect_tx(f, cfg.stage_bytes)
                col = b.mul(kt, BK, type=U32)
                b.cp_async_bulk_tensor(b.mad(s, A_BYTES, ring, type=U32), a_map, (col, row_a), f)
                b.cp_async_bulk_tensor(b.mad(s, cfg.b_bytes, b_ring, type=U32), b_map,
                                       (col, row_b), f)
                b.add(it, 1, dst=it)
                b.add(kt, 1, dst=kt)
            b.add(tile, grid, dst=tile)
    with b.if_(b.setp("ne", wg, 0, type=U32)):  # the consumers
        _consume(b, cfg, ring, b_ring, stage, c, n, tiles, tiles_m, tiles_n, ksteps, grid, tid)
    b.ret()
    return name


def _consume(b, cfg, ring, b_ring, stage, c, n, tiles, tiles_m, tiles_n, ksteps, grid, tid):
    cw = b.sub(b.div(tid, 128, type=U32), 1, type=U32)  # this warpgroup's 64 rows
    warp, lane = b.rem(b.div(tid, 32, type=U32), 4, type=U32), b.rem(tid, 32, type=U32)
    lane0 = b.setp("eq", lane, 0, type=U32)
    acc = [b.mov(0.0, type=F32) for _ in range(cfg.bn // 2)]
    on = b.setp("ne", ksteps, 0, type=U32)  # true wherever a wgmma runs: accumulate
    a_rows = b.mul(cw, 64 * 128, type=U32)  # 64 rows of 128 bytes into a stage of A
    it = b.mov(0, type=U32)
    tile = b.mov(b.special("ctaid.x"), type=U32)

    def release(it_done):
        """The warp's reads of ring use ``it_done`` are over: free its stage."""
        _, _, _, e = stage(it_done)
        with b.if_(lane0):
            b.mbarrier_arrive(e)

    with b.loop() as tiles_lp:
        tiles_lp.break_if(b.setp("ge", tile, tiles, type=U32))
        kt = b.mov(0, type=U32)
        with b.loop() as steps:
            steps.break_if(b.setp("ge", kt, ksteps, type=U32))
            s, r, f, _ = stage(it)
            _spin(b, f, b.and_(r, 1, type=U32))
            first = b.setp("ne", kt, 0, type=U32)  # a tile's first step overwrites D
            a_st = b.add(b.mad(s, A_BYTES, ring, type=U32), a_rows, type=U32)
            b_st = b.mad(s, cfg.b_bytes, b_ring, type=U32)
            b.wgmma_fence()  # the accumulators' last plain accesses come before
            for kk in range(BK // 16):
                b.wgmma_bf16(acc, b.wgmma_desc(b.add(a_st, 32 * kk, type=U32)),
                             b.wgmma_desc(b.add(b_st, 32 * kk, type=U32)),
                             first if kk == 0 else on)
            b.wgmma_commit()
            b.wgmma_wait(cfg.inflight)
            if cfg.inflight:
                with b.if_(b.setp("ne", kt, 0, type=U32)):
                    release(b.sub(it, 1, type=U32))
            else:
                release(it)
            b.add(it, 1, dst=it)
            b.add(kt, 1, dst=kt)
        if cfg.inflight:
            b.wgmma_wait(0)
            with b.if_(b.setp("ne", ksteps, 0, type=U32)):
                release(b.sub(it, 1, type=U32))
        tm, tn = _raster(b, tile, tiles_m, tiles_n, cfg.group_m)
        row = b.add(b.mad(tm, BM, b.mul(cw, 64, type=U32), type=U32),
                    b.mad(warp, 16, b.div(lane, 4, type=U32), type=U32), type=U32)
        col = b.mad(tn, cfg.bn, b.mul(b.rem(lane, 4, type=U32), 2, type=U32), type=U32)
        top = b.element_addr(c, b.mad(row, n, col, type=U32), 4)
        bottom = b.element_addr(c, b.mad(b.add(row, 8, type=U32), n, col, type=U32), 4)
        for i in range(cfg.bn // 8):  # the D fragment: n8 block i, rows +0 and +8
            b.st("global", b.add(top, 32 * i, type=U64), (acc[4 * i], acc[4 * i + 1]))
            b.st("global", b.add(bottom, 32 * i, type=U64), (acc[4 * i + 2], acc[4 * i + 3]))
        b.add(tile, grid, dst=tile)


def tensor_maps(backend, a_ptr: int, bt_ptr: int, m: int, n: int, k: int,
                cfg: Config) -> tuple:
    """Device addresses of the tensor maps of A (M x K) and Bt (N x K): boxes of BK x BM and
    BK x ``cfg.bn`` elements, 128-byte swizzled."""
    return (backend.tensor_map(a_ptr, m, k, BM, BK, swizzle=128),
            backend.tensor_map(bt_ptr, n, k, cfg.bn, BK, swizzle=128))
