"""The warp-specialized TMA streaming kernel (workloads/stream_tma.py): every element equals
numpy's k FMAs on the emulator, with the stage ring wrapping (the producer waits on the
*empty* barriers) and with several persistent blocks; ptxas takes it; ``-m gpu`` runs it
on a card (sm_90) at 64 MiB against numpy, output poisoned first."""

from __future__ import annotations

import numpy as np
import pytest

from harness.backend import EmuBackend
from harness.compile import compile_ptx
from harness.gpu.testing import requires_gpu
from harness.ptx import Module
from workloads import stream_tma


def _run(be, x: np.ndarray, blocks: int, k: int) -> np.ndarray:
    mod = Module(arch=getattr(be, "arch", "sm_90"))
    stream_tma.build(mod)
    be.load(mod)
    src, dst = be.to_device(x), be.alloc(4 * x.size)
    be.launch(stream_tma.KERNEL, blocks, stream_tma.THREADS,
              [src, dst, np.uint32(x.size // stream_tma.TILE), np.uint32(k)], checked=True)
    return be.read(dst, np.float32, x.size)


@pytest.mark.parametrize("tiles,blocks,k", [(9, 1, 1), (6, 2, 3)])
def test_stream_on_the_emulator(tiles, blocks, k):
    x = np.random.default_rng(tiles * 7 + k).standard_normal(tiles * stream_tma.TILE,
                                                             dtype=np.float32)
    got = _run(EmuBackend(max_steps=500_000_000), x, blocks, k)
    assert (got == stream_tma.reference(x, k)).all()


def test_ptxas_takes_the_stream_kernel():
    mod = Module(arch="sm_90")
    stream_tma.build(mod)
    res = compile_ptx(mod.to_ptx(), "sm_90").resources[stream_tma.KERNEL]
    assert res.spill_stores == 0
    assert res.shared_static >= stream_tma.STAGES * stream_tma.TILE * 4


@requires_gpu
def test_stream_on_this_gpu(gpu_backend):
    if int(gpu_backend.arch.removeprefix("sm_").rstrip("af")) < 90:
        pytest.skip("cp.async.bulk (the TMA) needs sm_90")
    x = np.random.default_rng(9).standard_normal(16 << 20, dtype=np.float32)
    got = _run(gpu_backend, x, gpu_backend.rt.sm_count, 4)
    assert (got == stream_tma.reference(x, 4)).all()
