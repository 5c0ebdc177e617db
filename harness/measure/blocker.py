"""NVBench's blocking kernel in pollbench: hold the stream while a sample is enqueued.

:class:`Blocker` owns two u32 words of mapped, pinned host memory (``cuMemHostAlloc``
with ``DEVICEMAP | PORTABLE``): the flag the host sets to release the stream, and the
word the kernel sets when it gave up waiting.
"""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING

import numpy as np

from harness.measure.errors import StreamBlockTimeout

if TYPE_CHECKING:  # pragma: no cover
    from harness.gpu import KernelHandle, Runtime

__all__ = ["MappedWords", "Blocker"]


class MappedWords:
    """``n`` u32 words of host memory that kernels read and write through :attr:`ptr`."""

    def __init__(self, n: int) -> None:
        from harness.gpu import driver as drv

        d = drv.driver_module()
        flags = d.CU_MEMHOSTALLOC_DEVICEMAP | d.CU_MEMHOSTALLOC_PORTABLE
        self.host_ptr: int = int(drv.call("cuMemHostAlloc", 4 * n, flags))
        try:
            self.ptr: int = int(drv.call("cuMemHostGetDevicePointer", self.host_ptr, 0))
        except Exception:
            drv.call("cuMemFreeHost", self.host_ptr)
            raise
        self._words = (ctypes.c_uint32 * n).from_address(self.host_ptr)
        for i in range(n):
            self._words[i] = 0

    def __getitem__(self, i: int) -> int:
        return int(self._words[i])

    def __setitem__(self, i: int, value: int) -> None:
        self._words[i] = int(value) & 0xFFFFFFFF

    def free(self) -> None:
        """Release the host memory (after the kernels using it are done)."""
        from harness.gpu import driver as drv

        if self.host_ptr:
            host_ptr, self.host_ptr = self.host_ptr, 0
            drv.call("cuMemFreeHost", host_ptr)


class Blocker:
    """:meth:`block` enqueues the spinning kernel; :meth:`unblock` releases it."""

    _FLAG, _TIMED_OUT = 0, 1

    def __init__(self, rt: Runtime, kernel: KernelHandle, timeout_s: float = 5.0) -> None:
        self._rt = rt
        self._kernel = kernel
        self._timeout_ns = np.uint64(int(timeout_s * 1e9))
        self.timeout_s = timeout_s
        self._words = MappedWords(2)

    def block(self) -> None:
        """Enqueue the blocking kernel on ``rt.stream`` (work after it waits for :meth:`unblock`)."""
        self._words[self._FLAG] = 0
        self._words[self._TIMED_OUT] = 0
        w = self._words.ptr
        self._rt.launch(self._kernel, 1, 1, w, w + 4, self._timeout_ns, check=False)

    def unblock(self) -> None:
        """Let the stream go on."""
        self._words[self._FLAG] = 1

    def check(self) -> None:
        """After the stream has drained: raise :class:`StreamBlockTimeout` if the kernel gave up waiting."""
        if self._words[self._TIMED_OUT]:
            raise StreamBlockTimeout(
                f"the stream was held {self.timeout_s:g} s while the sample was enqueued: the launch "
                "function waits for the GPU (a synchronize or a copy to the host); make it only "
                "enqueue work, or measure with TimingConfig(blocking=False)"
            )

    def free(self) -> None:
        """Release the mapped words (the stream must be idle)."""
        self._words.free()
