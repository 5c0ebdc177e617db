"""The mma.sync bf16 GEMM kernel (workloads/gemm_mma.py): exact on integer inputs, within
f32 rounding on random ones, on the emulator; ptxas takes it without spills; ``-m gpu``
checks it against numpy on a card (fresh random inputs, a poisoned output)."""

from __future__ import annotations

import numpy as np
import pytest

from harness.backend import EmuBackend
from harness.compile import compile_ptx
from harness.gpu.testing import requires_gpu
from harness.ptx import Module
from workloads import gemm_mma


def _bf16(x: np.ndarray) -> np.ndarray:
    """bf16 bits of float32 values (truncated: the inputs are drawn as bf16 values)."""
    return (np.asarray(x, np.float32).view(np.uint32) >> 16).astype(np.uint16)


def _value(h: np.ndarray) -> np.ndarray:
    return (h.astype(np.uint32) << 16).view(np.float32)


def _run(be, m: int, n: int, k: int, a_h, bt_h) -> np.ndarray:
    mod = Module(arch=getattr(be, "arch", "sm_90"))
    gemm_mma.build(mod)
    be.load(mod)
    pa, pb, pc = be.to_device(a_h), be.to_device(bt_h), be.alloc(4 * m * n)
    be.launch(gemm_mma.KERNEL, gemm_mma.blocks_for(m, n), gemm_mma.THREADS,
              [pa, pb, pc, np.uint32(m), np.uint32(n), np.uint32(k)], checked=True)
    return be.read(pc, np.float32, m * n).reshape(m, n)


def _want(a_h, bt_h) -> np.ndarray:
    return _value(a_h).astype(np.float64) @ _value(bt_h).astype(np.float64).T


@pytest.mark.parametrize("m,n,k,integers", [(128, 128, 64, True), (256, 128, 96, False)])
def test_gemm_on_the_emulator(m, n, k, integers):
    rng = np.random.default_rng(m + n + k)
    draw = (lambda s: rng.integers(-8, 9, s)) if integers else rng.standard_normal
    a_h, bt_h = _bf16(draw((m, k))), _bf16(draw((n, k)))
    got, want = _run(EmuBackend(max_steps=200_000_000), m, n, k, a_h, bt_h), _want(a_h, bt_h)
    if integers:  # every partial sum is exact: any layout or indexing slip shows
        assert (got == want).all()
    else:
        assert np.abs(got - want).max() <= 1e-6 * np.abs(want).max()


def test_ptxas_takes_it_without_spills():
    mod = Module(arch="sm_90")
    gemm_mma.build(mod)
    res = compile_ptx(mod.to_ptx(), "sm_90").resources[gemm_mma.KERNEL]
    assert res.spill_stores == 0  # two stages of both operands' tiles and their barriers
    assert res.shared_static == 2 * gemm_mma.STAGES * gemm_mma.STAGE_BYTES + 8 * gemm_mma.STAGES


@requires_gpu
def test_gemm_on_this_gpu(gpu_backend):
    m, n, k = 512, 384, 640
    rng = np.random.default_rng(5)
    a_h, bt_h = _bf16(rng.standard_normal((m, k))), _bf16(rng.standard_normal((n, k)))
    got, want = _run(gpu_backend, m, n, k, a_h, bt_h), _want(a_h, bt_h)
    # bf16 inputs are exact; f32 accumulation of K products: a few ulps of the row's scale
    tol = 1e-5 * np.sqrt(k) * np.abs(want).max()
    assert np.isfinite(got).all() and np.abs(got - want).max() <= tol
