"""pytest helpers for GPU tests, shared by ``tests/`` and ``conformance/``.

::

    from harness.gpu.testing import requires_gpu

    @requires_gpu
    def test_something(gpu_runtime): ...

``gpu_runtime`` is registered for every test folder by the repository's ``conftest.py``
(``pytest_plugins``), which also defines ``gpu_backend`` (a backend is a layer above
this package); a test module imports neither.

``requires_gpu`` marks a test (or class) ``gpu`` and skips it, with the reason
(e.g. "no CUDA driver found (libcuda.so) ..."), when no GPU is usable.
Importing this module calls :func:`~harness.gpu.gpu_available` (``cuInit``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

import pytest

from harness.gpu.driver import gpu_available, unavailable_reason

__all__ = ["requires_gpu", "gpu_marks", "GPU_SKIP_REASON", "gpu_runtime"]

_T = TypeVar("_T")

#: why GPU tests are skipped here ("" when a GPU is available)
GPU_SKIP_REASON = "" if gpu_available() else f"needs a GPU: {unavailable_reason()}"

#: the marks a GPU test carries; use as ``pytestmark = gpu_marks`` for a whole module
gpu_marks = [pytest.mark.gpu, pytest.mark.skipif(not gpu_available(), reason=GPU_SKIP_REASON or "GPU available")]


def requires_gpu(obj: _T) -> _T:
    """Decorator: mark a test function or class ``gpu`` and skip it (with the reason) without a GPU."""
    for mark in reversed(gpu_marks):
        obj = mark(obj)
    return obj


@pytest.fixture(scope="module")
def gpu_runtime() -> Iterator[Any]:
    """A :class:`~harness.gpu.Runtime` on device 0 shared by one test module (skips without a GPU)."""
    if not gpu_available():
        pytest.skip(GPU_SKIP_REASON)
    from harness.gpu.runtime import Runtime

    rt = Runtime(0)
    try:
        yield rt
    finally:
        rt.close()
