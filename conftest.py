"""The GPU fixtures for every test folder, in one home: ``gpu_runtime`` (a
``harness.gpu.Runtime``, from ``harness.gpu.testing``) and ``gpu_backend`` (a
``harness.backend.GpuBackend``); test modules use them without importing them."""

import pytest

pytest_plugins = ["harness.gpu.testing"]


@pytest.fixture
def gpu_backend():
    """A fresh GpuBackend on device 0 for one test (its own context: a kernel fault cannot
    spill into the next test); skips without a GPU."""
    from harness.backend import GpuBackend
    from harness.gpu.testing import GPU_SKIP_REASON

    if GPU_SKIP_REASON:
        pytest.skip(GPU_SKIP_REASON)

    with GpuBackend() as be:
        yield be
