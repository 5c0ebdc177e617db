"""The sm_90 TMA + wgmma GEMM (workloads/gemm_wgmma.py): its PTX says what it is (tensor
copies, wgmma m64nNk16 from descriptors, the sm_90a target), ptxas takes it without spills
in the registers a 384-thread block has, the matmul workload builds it only for sm_90; and
``-m gpu`` runs it on a card of compute capability 9.0 against numpy's sampled tiles with
the stage ring wrapping, one persistent block walking every tile, and output poisoned."""

from __future__ import annotations

import numpy as np
import pytest

from harness.compile import compile_ptx
from harness.gpu.testing import requires_gpu
from harness.ptx import Module
from workloads import gemm_wgmma
from workloads.matmul import MatmulWorkload, bf16_bits, sampled_tiles


def _ptx(cfg=gemm_wgmma.Config()) -> str:
    m = Module(arch="sm_90")
    gemm_wgmma.build(m, cfg)
    return m.to_ptx()


def test_the_kernel_is_tma_and_wgmma_on_sm90a():
    text = _ptx()
    assert ".target sm_90a" in text
    assert text.count("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx"
                      "::bytes") == 2
    steps = gemm_wgmma.BK // 16
    assert text.count("wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16") == steps
    assert "wgmma.wait_group.sync.aligned 0;" in text
    assert "ldmatrix" not in text and "mma.sync" not in text


@pytest.mark.parametrize("cfg", [gemm_wgmma.Config(), gemm_wgmma.Config(inflight=1),
                                 gemm_wgmma.Config(bn=128, stages=6)], ids=lambda c: c.name)
def test_ptxas_takes_it_without_spills(cfg):
    res = compile_ptx(_ptx(cfg), "sm_90").resources[cfg.name]
    assert res.spill_stores == 0 and res.spill_loads == 0
    assert res.registers * gemm_wgmma.THREADS <= 65536  # one block an SM: the whole file
    assert cfg.shared <= 227 * 1024  # the opt-in dynamic shared memory of an sm_90 block


def test_configs_and_shapes_it_refuses():
    with pytest.raises(ValueError):
        gemm_wgmma.build(Module(arch="sm_90"), gemm_wgmma.Config(bn=260))
    assert gemm_wgmma.check_shape(8192, 8192, 8192, gemm_wgmma.Config()) is None
    assert "multiple" in gemm_wgmma.check_shape(128, 128, 96, gemm_wgmma.Config())


@pytest.mark.parametrize("arch,built", [("sm_90", True), ("sm_80", False), ("sm_100", False)])
def test_matmul_builds_the_wgmma_reference_for_sm90_only(arch, built):
    m = Module(arch=arch)
    MatmulWorkload("matmul_8192").build_references(m)
    assert (gemm_wgmma.Config().name in m.functions) is built
    assert m.target == ("sm_90a" if built else arch)


def _run(be, shape, grid_cap=None, cfg=gemm_wgmma.Config()):
    m, n, k = shape
    rng = np.random.default_rng(m + n + k)
    a = bf16_bits(rng.standard_normal((m, k), dtype=np.float32))
    bt = bf16_bits(rng.standard_normal((n, k), dtype=np.float32))
    ap, bp = be.to_device(a), be.to_device(bt)
    out = be.alloc(4 * m * n)  # poisoned: an unwritten element fails the verdict
    tiles = gemm_wgmma.tiles_for(m, n, cfg)
    grid = min(tiles, be.rt.sm_count, grid_cap or tiles)
    be.launch(cfg.name, grid, gemm_wgmma.THREADS,
              [*gemm_wgmma.tensor_maps(be, ap, bp, m, n, k, cfg), out, np.uint32(m),
               np.uint32(n), np.uint32(k)], checked=True, shared=cfg.shared)
    return sampled_tiles(a, bt, shape).verdict(be.read(out, np.float32, m * n))


@requires_gpu
@pytest.mark.parametrize("shape,grid_cap", [((256, 512, 1024), None), ((512, 1024, 512), 1),
                                            ((1024, 768, 256), 3)])
def test_wgmma_gemm_on_this_gpu(gpu_backend, shape, grid_cap):
    if gpu_backend.arch != "sm_90":
        pytest.skip(f"wgmma is an sm_90a instruction; this GPU is {gpu_backend.arch}")
    for cfg in (gemm_wgmma.Config(), gemm_wgmma.Config(inflight=1)):
        mod = Module(arch=gpu_backend.arch)
        gemm_wgmma.build(mod, cfg)
        gpu_backend.load(mod)
        assert _run(gpu_backend, shape, grid_cap, cfg) == "pass"


@pytest.mark.parametrize("args,why", [
    ((0x1000, 128, 100, 128, 64), "row pitch"),  # 200-byte rows: not a multiple of 16
    ((0x1008, 128, 128, 128, 64), "aligned"),
    ((0x1000, 512, 128, 512, 64), "at most 256"),
    ((0x1000, 128, 128, 128, 128), "wider than the 128-byte swizzle"),
])
def test_tensor_maps_refuse_what_the_copy_engine_cannot_do(args, why):
    """Checked before the driver is asked (so also here, without one), one line each."""
    from harness.gpu.errors import GpuError
    from harness.gpu.tensormap import encode_2d

    with pytest.raises(GpuError, match=why):
        encode_2d(*args)


def test_numpys_picture_of_the_128_byte_swizzle():
    from harness.gpu.tensormap import swizzle_128b

    box = np.arange(16 * 128, dtype=np.uint32).astype(np.uint8).reshape(16, 128)
    out = swizzle_128b(box).reshape(16, 8, 16)
    rows = box.reshape(16, 8, 16)
    assert (out[0] == rows[0]).all() and (out[8] == rows[8]).all()  # row % 8 == 0: as is
    assert (out[3, 1 ^ 3] == rows[3, 1]).all() and (out[13, 7 ^ 5] == rows[13, 7]).all()
