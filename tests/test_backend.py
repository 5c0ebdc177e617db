"""The backends' buffer operations, the same on the emulator and (``-m gpu``) a GPU:
``write`` refreshes part of a buffer in place, ``poison`` makes it look unwritten again,
``zero`` clears, all inside the backend's own buffers only."""

from __future__ import annotations

import numpy as np
import pytest

from harness.backend import POISON, EmuBackend
from harness.errors import PollbenchError
from harness.gpu.testing import requires_gpu
from harness.ptx import Module


def _exercise(be) -> None:
    rng = np.random.default_rng(11)
    p = be.alloc(64)
    assert (be.read(p, np.uint8, 64) == POISON).all()
    data = rng.integers(1, 2**32, 8, dtype=np.uint32)
    be.write(p + 16, data)
    got = be.read(p, np.uint32, 16)
    assert (got[4:12] == data).all() and (got[:4] == 0xCDCDCDCD).all()
    be.zero(p, 64)
    be.poison(p + 8, 8)
    got = be.read(p, np.uint8, 64)
    assert (got[8:16] == POISON).all() and not got[:8].any() and not got[16:].any()


def test_write_and_poison_on_the_emulator():
    be = EmuBackend()
    be.load(Module())
    _exercise(be)


@requires_gpu
def test_write_and_poison_on_a_gpu(gpu_backend):
    _exercise(gpu_backend)
    p = gpu_backend.alloc(16)
    with pytest.raises(PollbenchError, match="not a buffer of this backend"):
        gpu_backend.write(p + 8, np.zeros(4, np.uint32))  # runs past its end
