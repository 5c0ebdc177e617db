"""A bf16 GEMM on tensor cores with ``mma.sync`` (sm_80+): ``C = A @ B``, A (M x K) and
``Bt = B.T`` (N x K) row-major bf16, C (M x N) row-major f32 with f32 accumulation.

The portable kernel of the ``matmul`` workload's plan (for sm_80/sm_89 and the emulator; the
sm_90 baseline is to be TMA + ``wgmma``): a block of 4 warps computes a 64 x 64 tile, each
warp 32 x 32 (2 x 4 ``mma.m16n8k16``); K advances 32 at a time through two shared-memory
stages filled with ``cp.async`` (the next stage loads while this one is multiplied), and
fragments come from shared memory with ``ldmatrix``. Shapes must be multiples of the tile
(M, N of 64, K of 32). Not yet tuned (no swizzle against ldmatrix bank conflicts, no larger
tiles): correct first; its speed is measured on a GPU.
"""

from __future__ import annotations

from harness.ptx import Builder, Module
from harness.ptx.types import F32, U32, U64

BM = BN = 64
BK = 32
THREADS = 128
STAGE_BYTES = BM * BK * 2  # one operand tile of one stage
KERNEL = "gemm_mma_bf16"
PARAMS = (("a", U64), ("bt", U64), ("c", U64), ("m", U32), ("n", U32), ("k", U32))


def blocks_for(m: int, n: int) -> int:
    """Blocks for an M x N output (one per 64 x 64 tile)."""
    return (m // BM) * (n // BN)


def build(module: Module, name: str = KERNEL) -> str:
    """Emit the GEMM kernel into ``module``; returns its name. Launch with ``blocks_for(M,
    N)`` blocks of ``THREADS`` threads."""
    b = Builder.entry(module, name, PARAMS, maxntid=THREADS)
    a_ptr, bt_ptr, c_ptr = b.param("a"), b.param("bt"), b.param("c")
    n, k = b.param("n"), b.param("k")
    a_s = b.mov(Builder.shared(module, f"{name}_a", 2 * STAGE_BYTES, 128), type=U32)
    b_s = b.mov(Builder.shared(module, f"{name}_b", 2 * STAGE_BYTES, 128), type=U32)
    tid = b.special("tid.x")
    lane, warp = b.and_(tid, 31, type=U32), b.div(tid, 32, type=U32)
    wm, wn = b.div(warp, 2, type=U32), b.rem(warp, 2, type=U32)
    tiles_n = b.div(n, BN, type=U32)
    bx, by = b.rem(b.special("ctaid.x"), tiles_n, type=U32), b.div(b.special("ctaid.x"), tiles_n, type=U32)
    ktiles = b.div(k, BK, type=U32)

    def load_stage(stage, kt):
        """Queue this thread's 16-byte chunks of both operands' k-tile ``kt`` (2 each)."""
        for part in range(2):
            chunk = b.add(tid, THREADS * part, type=U32)
            row, c16 = b.div(chunk, 4, type=U32), b.rem(chunk, 4, type=U32)
            col = b.mad(kt, BK, b.mul(c16, 8, type=U32), type=U32)  # in elements
            off = b.mad(row, BK * 2, b.mul(c16, 16, type=U32), type=U32)
            for src, tile, dst in ((a_ptr, by, a_s), (bt_ptr, bx, b_s)):
                grow = b.mad(tile, BM, row, type=U32)
                elem = b.mad(grow, k, col, type=U32)
                b.cp_async(b.add(b.mad(stage, STAGE_BYTES, dst, type=U32), off, type=U32),
                           b.element_addr(src, elem, 2), 16, cache="cg")
        b.cp_async_commit()

    acc = [[[b.mov(0.0, type=F32) for _ in range(4)] for _ in range(4)] for _ in range(2)]
    g8, r8 = b.div(lane, 8, type=U32), b.rem(lane, 8, type=U32)

    def multiply(stage):
        abase = b.mad(stage, STAGE_BYTES, a_s, type=U32)
        bbase = b.mad(stage, STAGE_BYTES, b_s, type=U32)
        for kk in range(BK // 16):
            afrag = []
            for mi in range(2):  # matrices: rows +0/+8 (bit 0 of g8), k +0/+8 (bit 1)
                row = b.add(b.mad(wm, 32, r8, type=U32),
                            b.add(mi * 16, b.mul(b.and_(g8, 1, type=U32), 8, type=U32), type=U32),
                            type=U32)
                col = b.add(kk * 16, b.mul(b.shr(g8, 1, type=U32), 8, type=U32), type=U32)
                afrag.append(b.ldmatrix(b.add(abase, b.mad(row, BK * 2, b.mul(col, 2, type=U32),
                                                          type=U32), type=U32), 4))
            bfrag = []
            for pair in range(2):  # matrices: n-tile 2*pair (+1 for bit 1), k +0/+8 (bit 0)
                nrow = b.add(b.mad(wn, 32, r8, type=U32),
                             b.add(pair * 16, b.mul(b.shr(g8, 1, type=U32), 8, type=U32),
                                   type=U32), type=U32)
                col = b.add(kk * 16, b.mul(b.and_(g8, 1, type=U32), 8, type=U32), type=U32)
                d = b.ldmatrix(b.add(bbase, b.mad(nrow, BK * 2, b.mul(col, 2, type=U32),
                                                  type=U32), type=U32), 4)
                bfrag += [d[0:2], d[2:4]]
            for mi in range(2):
                for ni in range(4):
                    b.mma_bf16(afrag[mi], bfrag[ni], acc[mi][ni], dst=acc[mi][ni])

    load_stage(b.mov(0, type=U32), b.mov(0, type=U32))
    kt = b.mov(0, type=U32)
    with b.loop() as lp:
        lp.break_if(b.setp("ge", kt, ktiles, type=U32))
        nxt = b.add(kt, 1, type=U32)
        more = b.setp("lt", nxt, ktiles, type=U32)
        with b.if_(more):
            load_stage(b.and_(nxt, 1, type=U32), nxt)
            b.cp_async_wait(1)  # this stage has landed; the next one may still be in flight
        with b.if_(more, negate=True):
            b.cp_async_wait(0)
        b.bar_sync(0)
        multiply(b.and_(kt, 1, type=U32))
        b.bar_sync(0)  # nobody overwrites this stage while another warp still reads it
        b.add(kt, 1, dst=kt)

    g, tig = b.div(lane, 4, type=U32), b.rem(lane, 4, type=U32)
    for mi in range(2):
        for ni in range(4):
            for i, v in enumerate(acc[mi][ni]):
                row = b.add(b.mad(by, BM, b.mad(wm, 32, g, type=U32), type=U32),
                            mi * 16 + 8 * (i >= 2), type=U32)
                col = b.add(b.mad(bx, BN, b.mad(wn, 32, b.mul(tig, 2, type=U32), type=U32),
                                  type=U32), ni * 8 + (i & 1), type=U32)
                b.st("global", b.element_addr(c_ptr, b.mad(row, n, col, type=U32), 4), v,
                     type=F32)
    b.ret()
    return name
