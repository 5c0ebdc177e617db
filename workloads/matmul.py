"""``matmul_<shape>``: a bf16 GEMM on tensor cores (f32 accumulation), as tasks.

``C = A @ B`` with A (M x K) and ``Bt = B.T`` (N x K) row-major bf16 and C (M x N) f32. One
128 x 128 output tile is the work of a block of 256 threads (``workloads/gemm_mma.py``'s tile
code: ``mma.sync`` fragments, two ``cp.async`` stages, one mbarrier per stage). As tasks,
each thread of a tile is a task and the tile's 256 tasks are polled *together* by one block
worker: a *cooperative* task. Waiting for a stage is an awaited leaf future
(``stage_landed``) whose poll tests the stage barrier's phase parity and agrees with the
block (``bar.red.and``) whether it is Ready, so every thread of the tile suspends or goes on
together; the accumulators and the K step are the task's frame slots (registers under
``inline`` dispatch). Only an executor whose block worker polls its threads' tasks in
lockstep can run such tasks (``Executor.polls_block_together``, at block granularity:
``block_on``; ``persistent``, whose block workers claim tile after tile, the tile's stage
barriers invalidated at its end for the next; and ``embassy``/``backoff``, whose block
worker's threads poll their own run queues in one loop); the others skip with the reason (a thread or warp worker would poll
one thread of a tile at a time, and its barrier would wait for threads that are elsewhere).

Shapes (``SHAPES``): 8192^3, the sweep 1024 -> 16384 and a skinny one (M = 256). Below
``SMALL_BELOW`` tasks (the emulator's sizes) a case is one row of tiles, 128 x 128n x 96
(three K steps: both stages and a refill). The task count is the shape's (256 per tile),
whatever ``--ntasks`` asked for; its block, the tile's 256 threads.

Checked against numpy in float64 on sampled tiles (the corners and random ones) within the
worst-case bound of an f32 sum of K products (doubled for the tensor core's own
accumulation order), and no output left unwritten. Beside each GPU case: on sm_90 the
hand-written TMA + wgmma kernel (``workloads/gemm_wgmma.py``, the ``wgmma`` reference,
checked as the case is), and cuBLAS through torch, when torch is importable and sees the
GPU, as the ceiling (bf16 output, f32 accumulation; never a dependency).
"""

from __future__ import annotations

import numpy as np

from harness.futures.lib import AsyncFn, LeafFuture
from harness.ptx import Builder, Module
from harness.ptx.types import U32, U64
from workloads import gemm_mma, gemm_wgmma
from workloads.base import BASELINE_PARAMS, Reference, Work, Workload
from workloads.gemm_mma import BK, BM, BN, THREADS, TileState, emit_tile

SHAPES = {"matmul_1024": (1024, 1024, 1024), "matmul_2048": (2048, 2048, 2048),
          "matmul_4096": (4096, 4096, 4096), "matmul_8192": (8192, 8192, 8192),
          "matmul_16384": (16384, 16384, 16384), "matmul_skinny": (256, 8192, 8192)}
SMALL_BELOW = 1 << 12  # fewer tasks asked for: the emulator's one row of tiles. Every shape
#                       has more (matmul_1024: 64 tiles, 16384 tasks), so a case's own task
#                       count always maps back to its shape
WGMMA = gemm_wgmma.Config()  # the sm_90 baseline's tile and ring (gemm_wgmma: measured)
SAMPLED_TILES = 8
U = 2.0 ** -24  # f32 unit roundoff


def _stage_landed_body(f):
    with f.if_(f.setp("ne", f.arg("landed"), 0, type=U32)):
        f.ready()  # the block agreed so at the step's closing barrier: no barrier here
    f.new_state()
    landed = f.mbarrier_wait(f.arg("bar"), f.arg("parity"), parity=True)
    with f.if_(f.bar_red("and", landed, aligned=False)):  # the whole tile goes on, or none
        f.ready()
    f.wake_self()
    f.pending()


STAGE_LANDED = LeafFuture("stage_landed", [("bar", U32), ("parity", U32), ("landed", U32)],
                          None, _stage_landed_body)


def stage_landed(bar, parity, landed):
    """A cooperative leaf: Ready once the mbarrier at ``bar`` (a shared address) has
    completed the phase of ``parity``, as every thread of the block sees it (``bar.red``:
    the block's threads poll it together); at once when ``landed`` (block-uniform) says
    the block already agreed so."""
    return STAGE_LANDED(bar, parity, landed)


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """bf16 bits of float32 values, truncated (inputs are drawn as bf16 values)."""
    return (np.asarray(x, np.float32).view(np.uint32) >> 16).astype(np.uint16)


def bf16_values(h: np.ndarray) -> np.ndarray:
    """float64 values of bf16 bits."""
    return (h.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


class SampledTiles:
    """numpy's answer on some output tiles: judges a whole output by them (within the f32
    accumulation bound) and by no element left poisoned."""

    def __init__(self, shape: tuple, tiles: list, want: list, bound: list):
        self.shape, self.tiles, self.want, self.bound = shape, tiles, want, bound

    def verdict(self, got: np.ndarray) -> str:
        m, n, _ = self.shape
        if got.size != m * n:
            return f"FAIL: {got.size} outputs, expected {m * n}"
        c = got.reshape(m, n)
        unwritten = int(np.count_nonzero(c.view(np.uint32) == 0xCDCDCDCD))
        if unwritten:
            return f"FAIL: {unwritten} of {got.size} outputs never written"
        for (i, j), want, bound in zip(self.tiles, self.want, self.bound):
            tile = c[i * BM:(i + 1) * BM, j * BN:(j + 1) * BN].astype(np.float64)
            err = np.abs(tile - want) - bound
            if (err > 0).any():
                r, q = np.unravel_index(int(np.argmax(err)), err.shape)
                return (f"FAIL: tile ({i}, {j}): C[{i * BM + r}, {j * BN + q}] = "
                        f"{tile[r, q]} != {want[r, q]} (bound {bound[r, q]:.3g})")
        return "pass"


def sampled_tiles(a_bits: np.ndarray, bt_bits: np.ndarray, shape: tuple) -> SampledTiles:
    """numpy's float64 answer on ``SAMPLED_TILES`` BM x BN tiles of A @ Bt.T (the four
    corners and random ones, drawn from the shape) and each element's bound: twice the
    worst case of an f32 sum of K products."""
    m, nn, k = shape
    tm, tn = m // BM, nn // BN
    rng = np.random.default_rng(m * 31 + nn * 7 + k)
    tiles = list(dict.fromkeys([(0, 0), (0, tn - 1), (tm - 1, 0), (tm - 1, tn - 1)] + [
        (int(rng.integers(tm)), int(rng.integers(tn))) for _ in range(SAMPLED_TILES - 4)]))
    gamma = 2 * k * U / (1 - k * U)
    want, bound = [], []
    for i, j in tiles:
        a = bf16_values(a_bits.reshape(m, k)[i * BM:(i + 1) * BM])
        bt = bf16_values(bt_bits.reshape(nn, k)[j * BN:(j + 1) * BN])
        want.append(a @ bt.T)
        bound.append(gamma * (np.abs(a) @ np.abs(bt).T) + 1e-30)
    return SampledTiles((m, nn, k), tiles, want, bound)


class MatmulWorkload(Workload):
    input_names = ("a", "bt")
    output_dtype = np.float32
    cooperative = THREADS

    def __init__(self, name: str):
        self.name = name
        self.full = SHAPES[name]
        m, n, k = self.full
        self.summary = (f"bf16 {m}x{n}x{k} GEMM on tensor cores, a {BM}x{BN} tile per block "
                        f"of cooperative tasks: against the mma.sync kernel, wgmma (sm_90) and "
                        "cuBLAS")

    def shape(self, n: int) -> tuple:
        """(M, N, K) of a run asked for ``n`` tasks: the workload's own, or (below
        ``SMALL_BELOW``) one row of ``n // THREADS`` tiles, K three steps."""
        if n >= SMALL_BELOW:
            return self.full
        return BM, BN * max(1, n // THREADS), 3 * BK

    def tasks(self, n: int) -> int:
        m, nn, _ = self.shape(n)
        return THREADS * gemm_mma.blocks_for(m, nn)

    def outputs(self, n: int) -> int:
        m, nn, _ = self.shape(n)
        return m * nn

    def table_extras(self, n: int) -> list:
        return list(self.shape(n))

    def work(self, n: int) -> Work:
        m, nn, k = self.shape(n)
        return Work(2 * (m * k + nn * k) + 4 * m * nn, 2 * m * nn * k)

    def _inputs(self, b, args, task, tid) -> dict:
        """The tile code's inputs from the args table (``task`` a tile's thread)."""
        return {"a": self.input_ptr(b, args, 0), "bt": self.input_ptr(b, args, 1),
                "c": self.input_ptr(b, args, 2), "n": self.table_word(b, args, 1),
                "k": self.table_word(b, args, 2), "tile": b.div(task, THREADS, type=U32),
                "tid": tid(b)}

    def root(self) -> AsyncFn:
        w = self

        def body(f, task, args):
            smem = gemm_mma.shared_arrays(f.module, f"{w.name}_task")
            emit_tile(f, smem,
                      lambda f: w._inputs(f, f.arg("args"), f.arg("task"),
                                          lambda f: f.rem(f.arg("task"), THREADS, type=U32)),
                      TileState.slots(f),
                      lambda f, bar, parity, landed: f.await_(stage_landed(bar, parity, landed)),
                      agree=True)
            return None

        return AsyncFn(f"{self.name}_root", [("task", U32), ("args", U64)], None, body)

    def build_baseline(self, module: Module) -> str:
        """The same tile code in a plain kernel: a block per tile, spinning on the stage
        barriers, its inputs re-read from the args table where the task re-reads them, so
        that the two differ by the executor alone."""
        name = f"{self.name}_baseline"
        # two blocks an SM (<= 128 registers): left alone, ptxas takes 210 and fits one,
        # 8 warps to hide the loads' latency, where the task's kernel gets 128 and 16
        b = Builder.entry(module, name, BASELINE_PARAMS, maxntid=THREADS, minnctapersm=2)
        emit_tile(b, gemm_mma.shared_arrays(module, name),
                  lambda b: self._inputs(b, b.param("args"), b.global_index(),
                                         lambda b: b.special("tid.x")),
                  TileState.registers(b), gemm_mma.spin_wait)
        b.ret()
        return name

    def make_inputs(self, rng: np.random.Generator, n: int) -> dict:
        m, nn, k = self.shape(n)
        return {"a": bf16_bits(rng.standard_normal((m, k), dtype=np.float32)),
                "bt": bf16_bits(rng.standard_normal((nn, k), dtype=np.float32))}

    def reference(self, inputs: dict, n: int) -> SampledTiles:
        return sampled_tiles(inputs["a"], inputs["bt"], self.shape(n))

    def build_references(self, module: Module) -> None:
        if module.arch == "sm_90":  # wgmma: the sm_90a target, compute capability 9.0 alone
            gemm_wgmma.build(module, WGMMA)

    def references(self, backend, inputs: dict, args_ptr: int, n: int) -> list:
        if backend.name != "gpu":
            return []
        m, nn, k = self.shape(n)
        refs = []
        if backend.arch == "sm_90" and gemm_wgmma.check_shape(m, nn, k, WGMMA) is None:
            a, bt = (self.input_buffer(backend, args_ptr, name) for name in ("a", "bt"))
            out = backend.alloc(4 * m * nn)
            grid = min(gemm_wgmma.tiles_for(m, nn, WGMMA), backend.rt.sm_count)
            refs.append(Reference(
                "wgmma", f"TMA + wgmma kernel ({grid} persistent blocks: a producer and "
                f"{gemm_wgmma.CONSUMERS} consumer warpgroups, {gemm_wgmma.BM}x{WGMMA.bn} "
                f"tiles, {WGMMA.stages} stages)", self.work(n), kernel=WGMMA.name, grid=grid,
                block=gemm_wgmma.THREADS, shared=WGMMA.shared,
                args=(*gemm_wgmma.tensor_maps(backend, a, bt, m, nn, k, WGMMA), out,
                      np.uint32(m), np.uint32(nn), np.uint32(k)),
                output=(out, m * nn)))
        ref = cublas_reference(backend, inputs, (m, nn, k), self.work(n))
        return refs + ([ref] if ref is not None else [])


def cublas_reference(backend, inputs: dict, shape: tuple, work: Work) -> Reference | None:
    """cuBLAS's bf16 GEMM through torch on the backend's stream (the ceiling beside the
    figures), or None where torch is not importable or sees no GPU. Its C is bf16 (torch's
    bf16 matmul), accumulated in f32 (reduced-precision reductions off); unchecked."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    m, n, k = shape
    dev = torch.device("cuda", backend.rt.device)
    a = torch.from_numpy(inputs["a"].view(np.int16)).to(dev).view(torch.bfloat16)
    bt = torch.from_numpy(inputs["bt"].view(np.int16)).to(dev).view(torch.bfloat16)
    out = torch.empty((m, n), dtype=torch.bfloat16, device=dev)
    torch.cuda.synchronize(dev)
    stream = torch.cuda.ExternalStream(int(backend.rt.stream.handle), device=dev)

    def call():  # on the stream the timing protocol records its events on
        with torch.cuda.stream(stream):
            torch.matmul(a, bt.t(), out=out)

    return Reference("cublas", f"cuBLAS through torch {torch.__version__} (bf16 C, f32 "
                     "accumulation; the ceiling, unchecked)", work, call=call, graph_safe=False)
