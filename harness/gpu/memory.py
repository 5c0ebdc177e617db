"""``DeviceArray``: device memory (a cuda.core ``Buffer``) that frees itself.

Made by :meth:`~harness.gpu.runtime.Runtime.alloc` / :meth:`~harness.gpu.runtime.Runtime.to_device`;
copies and fills are ordered on the runtime's stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from harness.gpu.errors import CoreErrors, GpuError

__all__ = ["DeviceArray"]


# ``Runtime`` below is an annotation only (a string, by ``from __future__ import annotations``):
# this module sits below harness.gpu.runtime and does not import it.
class DeviceArray:
    """Device memory that frees itself: on :meth:`free`, on garbage collection, or when the runtime closes.

    ``ptr`` is the device address (an int); pass the array itself as a kernel
    argument and it goes as that u64 pointer.
    """

    def __init__(self, rt: Runtime, buffer: Any, nbytes: int) -> None:
        self._rt = rt
        self._buffer = buffer
        self.nbytes = int(nbytes)
        self.ptr = int(buffer.handle)

    def __repr__(self) -> str:
        state = "freed" if self._buffer is None else f"ptr=0x{self.ptr:x}"
        return f"DeviceArray({self.nbytes} bytes, {state})"

    def _live_buffer(self) -> Any:
        if self._buffer is None:
            raise GpuError(f"use of a freed DeviceArray ({self.nbytes} bytes)")
        return self._buffer

    def to_host(self, dtype: Any = np.uint8, shape: int | Sequence[int] | None = None) -> np.ndarray:
        """Copy to a new numpy array (waits for the runtime's stream).

        ``shape`` defaults to as many ``dtype`` elements as fit in the array.
        """
        dt = np.dtype(dtype)
        if shape is None:
            shape = (self.nbytes // dt.itemsize,)
        out = np.empty(shape, dtype=dt)
        if out.nbytes > self.nbytes:
            raise GpuError(f"to_host: {out.nbytes} bytes requested from a {self.nbytes}-byte DeviceArray")
        self._live_buffer()
        if out.nbytes:
            self._rt.memcpy_dtoh(out, self.ptr, out.nbytes)
        self._rt.sync_stream("copying device memory to the host")
        return out

    def copy_from_host(self, array: np.ndarray) -> None:
        """Copy a numpy array's bytes to the start of this array (waits until the copy is done)."""
        src = np.ascontiguousarray(array)
        if src.nbytes > self.nbytes:
            raise GpuError(f"copy_from_host: {src.nbytes} bytes do not fit in a {self.nbytes}-byte DeviceArray")
        self._live_buffer()
        if src.nbytes:
            self._rt.memcpy_htod(self.ptr, src, src.nbytes)
        self._rt.sync_stream("copying host memory to the device")

    def fill_bytes(self, byte: int) -> None:
        """Set every byte to ``byte`` (0..255), e.g. to poison an output; ordered on the runtime's stream."""
        if not 0 <= int(byte) <= 255:
            raise GpuError(f"fill_bytes: {byte!r} is not a byte value (0..255)")
        buf = self._live_buffer()
        with CoreErrors(self._rt, "filling device memory"):
            buf.fill(int(byte), stream=self._rt.stream)

    def free(self) -> None:
        """Release the memory now (ordered after work already queued on the runtime's stream)."""
        buf, self._buffer = self._buffer, None
        if buf is None:
            return
        self._rt.forget_array(self)
        if self._rt.wedged:
            return  # the context is unusable: leave the memory to the process exit
        with CoreErrors(self._rt, "freeing device memory"):
            buf.close(self._rt.stream)
