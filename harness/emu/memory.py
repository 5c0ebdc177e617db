"""Emulated state spaces: a global heap of allocations, and flat windows for shared, local
and param memory. Every access is bounds-checked, so a wrong address is an error that names
the address rather than silent corruption."""

from __future__ import annotations

import bisect

import numpy as np

from harness.errors import PollbenchError


class EmuMemoryError(PollbenchError):
    """An access outside every allocation of a state space."""


class GlobalMemory:
    """The global space: bump-allocated buffers at realistic 64-bit addresses."""

    BASE = 0x7F00_0000_0000

    def __init__(self):
        self.data = bytearray()
        self._starts: list[int] = []
        self._sizes: list[int] = []

    def alloc(self, nbytes: int, align: int = 256) -> int:
        """A new buffer of ``nbytes`` (filled with 0xCD, so unwritten output is visible)."""
        offset = -(-len(self.data) // align) * align
        self.data.extend(b"\xcd" * (offset + nbytes - len(self.data)))
        self._starts.append(offset)
        self._sizes.append(nbytes)
        return self.BASE + offset

    def _offset(self, addr: int, n: int) -> int:
        off = addr - self.BASE
        i = bisect.bisect_right(self._starts, off) - 1
        if i < 0 or off + n > self._starts[i] + self._sizes[i] or off < 0:
            raise EmuMemoryError(f"global access of {n} bytes at {addr:#x} is outside every allocation")
        return off

    def load(self, addr: int, n: int) -> int:
        off = self._offset(addr, n)
        return int.from_bytes(self.data[off:off + n], "little")

    def store(self, addr: int, n: int, bits: int) -> None:
        off = self._offset(addr, n)
        self.data[off:off + n] = (bits & ((1 << (8 * n)) - 1)).to_bytes(n, "little")

    def write(self, addr: int, array: np.ndarray) -> None:
        raw = np.ascontiguousarray(array).tobytes()
        off = self._offset(addr, len(raw))
        self.data[off:off + len(raw)] = raw

    def read(self, addr: int, dtype, count: int) -> np.ndarray:
        n = np.dtype(dtype).itemsize * count
        off = self._offset(addr, n)
        return np.frombuffer(bytes(self.data[off:off + n]), dtype=dtype).copy()


class Window:
    """A small flat space (one block's shared memory, one thread's local or param space)."""

    def __init__(self, name: str, nbytes: int = 0, fill: int = 0xCD):
        self.name = name
        self.data = bytearray([fill]) * nbytes

    def grow(self, nbytes: int, align: int = 8) -> int:
        """Reserve ``nbytes`` more; returns their offset."""
        off = -(-len(self.data) // align) * align
        self.data.extend(b"\xcd" * (off + nbytes - len(self.data)))
        return off

    def load(self, addr: int, n: int) -> int:
        if addr < 0 or addr + n > len(self.data):
            raise EmuMemoryError(f"{self.name} access of {n} bytes at {addr:#x} is outside its "
                                 f"{len(self.data)} bytes")
        return int.from_bytes(self.data[addr:addr + n], "little")

    def store(self, addr: int, n: int, bits: int) -> None:
        if addr < 0 or addr + n > len(self.data):
            raise EmuMemoryError(f"{self.name} access of {n} bytes at {addr:#x} is outside its "
                                 f"{len(self.data)} bytes")
        self.data[addr:addr + n] = (bits & ((1 << (8 * n)) - 1)).to_bytes(n, "little")
