"""One interface over the two places a builder module runs: the CPU emulator and a GPU.

Workloads, self-tests and executors talk to a ``Backend``: copy inputs in, allocate poisoned
outputs, launch a kernel of a ``Module``, read results back. Pointers are plain ints on both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from harness.errors import PollbenchError
from harness.ptx.ir import Module

POISON = 0xCD  # outputs start as 0xCDCD...: an unwritten element never looks like a result
EMU_HANDLE = 0x6A0D  # what the emulator passes a round kernel as its conditional handle


@dataclass
class Launch:
    """What a backend reports about one launch."""

    kernel: str
    grid: tuple
    block: tuple
    time_ms: float | None = None  # GPU: event-timed; emulator: None (not a GPU timing)
    instructions: int | None = None  # emulator: dynamic instructions, all threads
    extra: dict = field(default_factory=dict)


class Backend:
    """Common interface; see ``EmuBackend`` and ``GpuBackend``."""

    name = "abstract"

    def load(self, module: Module) -> None:
        raise NotImplementedError

    def to_device(self, array: np.ndarray) -> int:
        raise NotImplementedError

    def alloc(self, nbytes: int) -> int:
        """A poisoned buffer of ``nbytes``."""
        raise NotImplementedError

    def read(self, ptr: int, dtype, count: int) -> np.ndarray:
        raise NotImplementedError

    def write(self, ptr: int, array: np.ndarray) -> None:
        """Copy ``array``'s bytes to ``ptr`` (inside a buffer of this backend), in stream
        order: an input refreshed between launches without a new buffer."""
        raise NotImplementedError

    def poison(self, ptr: int, nbytes: int) -> None:
        """Set ``nbytes`` at ``ptr`` to ``POISON`` again, in stream order (an output reused
        across launches: an element a launch does not write never looks like a result)."""
        self.write(ptr, np.full(nbytes, POISON, np.uint8))

    def launch(self, kernel: str, grid, block, args=(), checked: bool = False,
               shared: int = 0) -> Launch:
        """Run ``kernel`` with ``shared`` bytes of dynamic shared memory per block;
        ``checked`` runs it under the watchdog (a hang is an error)."""
        raise NotImplementedError

    def enqueue(self, kernel: str, grid, block, args=(), shared: int = 0) -> None:
        """Queue a launch without waiting for it (what the timing protocol times)."""
        self.launch(kernel, grid, block, args, shared=shared)

    def launch_rounds(self, kernel: str, grid, block, args=(), checked: bool = False) -> Launch:
        """Run ``kernel`` again and again until it ends the loop: it takes ``args`` and a
        u64 conditional handle, and a round calls ``cudaGraphSetConditional(handle, 0)``
        to make itself the last (a WHILE graph on a GPU, a host loop on the emulator).
        ``extra["rounds"]`` counts them where the backend can."""
        raise NotImplementedError

    def enqueue_rounds(self, kernel: str, grid, block, args=()) -> None:
        """Queue ``launch_rounds`` without waiting (what the timing protocol times)."""
        self.launch_rounds(kernel, grid, block, args)

    def stop_ptr(self) -> int:
        """Device address of the u32 stop flag executor kernels poll (0 = keep going)."""
        raise NotImplementedError

    def zero(self, ptr: int, nbytes: int) -> None:
        """Set ``nbytes`` at ``ptr`` (inside a buffer of this backend) to 0, in stream order."""
        raise NotImplementedError

    def zero_rows(self, ptr: int, pitch: int, nbytes: int, count: int) -> None:
        """Set the first ``nbytes`` of each of ``count`` chunks ``pitch`` bytes apart from
        ``ptr`` to 0, in stream order (the header rows of interleaved task records)."""
        raise NotImplementedError

    def copy(self, dst: int, src: int, nbytes: int) -> None:
        """Queue a copy of ``nbytes`` from ``src`` to ``dst`` (both inside buffers of this
        backend), in stream order: the driver's device copy, a roofline's yardstick."""
        raise NotImplementedError

    def tensor_map(self, ptr: int, rows: int, cols: int, box_rows: int, box_cols: int,
                   element: str = "bf16", swizzle: int = 128) -> int:
        """The device address of a tensor map of the ``rows x cols`` array at ``ptr`` (the
        bulk tensor copy's operand): GPU-only, the emulator does not model tensor copies."""
        raise PollbenchError(f"the {self.name} backend has no tensor maps (bulk tensor "
                             "copies are GPU-only, sm_90)")

    def resident_blocks(self, kernel: str, block: int, shared: int = 0) -> int:
        """How many blocks of ``kernel`` fit on the device at once (the occupancy API's
        blocks per SM x SMs; the emulator says 1): a persistent grid's size."""
        return 1

    def kernel_registers(self, kernel: str) -> int | None:
        """Registers per thread as the driver reports them (None without a GPU)."""
        return None

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class EmuBackend(Backend):
    """The CPU emulator; one ``Emulator`` per loaded module, sharing nothing."""

    name = "emu"

    def __init__(self, policy: str = "round_robin", seed: int = 0, max_steps: int = 5_000_000):
        from harness.emu import Emulator  # noqa: F401 (fail early if broken)

        self.policy, self.seed, self.max_steps = policy, seed, max_steps
        self.emu = None
        self.last = None

    def load(self, module: Module) -> None:
        from harness.emu import Emulator

        self.emu = Emulator(module, policy=self.policy, seed=self.seed, max_steps=self.max_steps)

    def _need(self):
        if self.emu is None:
            raise PollbenchError("no module loaded on the emulator backend")
        return self.emu

    def to_device(self, array: np.ndarray) -> int:
        return self._need().to_device(array)

    def alloc(self, nbytes: int) -> int:
        return self._need().alloc(nbytes)  # the emulator's heap is poisoned with 0xCD

    def read(self, ptr: int, dtype, count: int) -> np.ndarray:
        return self._need().read(ptr, dtype, count)

    def write(self, ptr: int, array: np.ndarray) -> None:
        self._need().write(ptr, np.ascontiguousarray(array).view(np.uint8).ravel())

    def stop_ptr(self) -> int:
        # nothing sets it: the emulator's own step budget is its watchdog
        return self.to_device(np.zeros(1, np.uint32))

    def zero(self, ptr: int, nbytes: int) -> None:
        if nbytes:
            self._need().write(ptr, np.zeros(nbytes, np.uint8))

    def copy(self, dst: int, src: int, nbytes: int) -> None:
        if nbytes:
            self._need().write(dst, self._need().read(src, np.uint8, nbytes))

    def zero_rows(self, ptr: int, pitch: int, nbytes: int, count: int) -> None:
        zeros = np.zeros(nbytes, np.uint8)
        for i in range(count):
            self._need().write(ptr + i * pitch, zeros)

    def launch(self, kernel: str, grid, block, args=(), checked: bool = False,
               shared: int = 0) -> Launch:
        r = self._need().launch(kernel, grid, block, list(args), shared=shared)
        self.last = r
        return Launch(kernel, r.grid, r.block, None, int(r.per_thread.sum()),
                      {"per_thread": r.per_thread, "regions": r.regions})

    def launch_rounds(self, kernel: str, grid, block, args=(), checked: bool = False) -> Launch:
        """A host loop of launches; ``cudaGraphSetConditional`` is answered by a hook
        (``Emulator.externs``). One step budget for the whole loop: a loop that never ends
        is an ``EmuHang``, as one launch that never ends is."""
        from harness.emu import EmuHang

        emu = self._need()
        cond = {"value": 1}

        def set_conditional(thread, raw):
            if raw[0] != EMU_HANDLE:
                thread.trap(f"cudaGraphSetConditional with handle {raw[0]:#x}, not the loop's")
            cond["value"] = raw[1] & 0xFFFFFFFF

        emu.externs["cudaGraphSetConditional"] = set_conditional
        steps = instructions = rounds = 0
        while cond["value"]:
            r = self.launch(kernel, grid, block, list(args) + [EMU_HANDLE])
            rounds += 1
            steps += self.last.steps
            instructions += r.instructions
            if steps >= self.max_steps:
                raise EmuHang(f"{kernel}: {rounds} rounds spent the step budget of "
                              f"{self.max_steps} instructions without ending the loop")
        return Launch(kernel, r.grid, r.block, None, instructions, {"rounds": rounds})


class GpuBackend(Backend):
    """A CUDA GPU through nvJitLink (harness.compile) and cuda-python (harness.gpu)."""

    name = "gpu"

    def __init__(self, device: int = 0, arch: str | None = None, timeout_s: float = 30.0):
        from harness.gpu import Runtime

        self.timeout_s = timeout_s
        self.rt = Runtime(device)
        self.arch = arch or self.rt.arch
        self.module = None
        self.compiled = None
        self._arrays = []
        self._while_graphs = {}  # (kernel, grid, block, args) -> its WHILE graph

    def load(self, module: Module) -> None:
        from harness.compile import compile_ptx

        module.arch = self.arch
        self.compiled = compile_ptx(module.to_ptx(), self.arch)
        self.module = self.rt.load(self.compiled.cubin)
        self._while_graphs.clear()  # their kernels belong to the module before

    def to_device(self, array: np.ndarray) -> int:
        arr = self.rt.to_device(np.ascontiguousarray(array))
        self._arrays.append(arr)
        return arr.ptr

    def alloc(self, nbytes: int) -> int:
        arr = self.rt.alloc(max(1, nbytes))
        arr.fill_bytes(POISON)
        self._arrays.append(arr)
        return arr.ptr

    def tensor_map(self, ptr: int, rows: int, cols: int, box_rows: int, box_cols: int,
                   element: str = "bf16", swizzle: int = 128) -> int:
        """The device address of a tensor map (``harness.gpu.tensormap.encode_2d``) of the
        ``rows x cols`` array at ``ptr``, a buffer of this backend: a bulk tensor copy's
        ``tmap`` operand (written before any launch that reads it)."""
        from harness.gpu.tensormap import ELEMENT_BYTES, encode_2d

        self._span(ptr, rows * cols * ELEMENT_BYTES.get(element, 1))  # encode_2d names a bad one
        return self.to_device(encode_2d(ptr, rows, cols, box_rows, box_cols, element, swizzle))

    def _find(self, ptr: int):
        for a in self._arrays:
            if a.ptr <= ptr < a.ptr + a.nbytes:
                return a
        raise PollbenchError(f"{ptr:#x} is not a buffer of this backend")

    def _span(self, ptr: int, nbytes: int) -> None:
        """``nbytes`` from ``ptr`` lie inside one buffer of this backend."""
        a = self._find(ptr)
        if ptr + nbytes > a.ptr + a.nbytes:
            raise PollbenchError(f"{nbytes} bytes at {ptr:#x} run past the end of their buffer "
                                 f"({a.nbytes} bytes at {a.ptr:#x}): not a buffer of this backend")

    def write(self, ptr: int, array: np.ndarray) -> None:
        src = np.ascontiguousarray(array)
        self._span(ptr, src.nbytes)
        if src.nbytes:
            self.rt.memcpy_htod(ptr, src, src.nbytes)
            self.rt.sync_stream("copying host memory to the device")

    def poison(self, ptr: int, nbytes: int) -> None:
        from harness.gpu.driver import call

        self._span(ptr, nbytes)
        if nbytes:
            call("cuMemsetD8Async", ptr, POISON, nbytes, self.rt.stream_handle)

    def read(self, ptr: int, dtype, count: int) -> np.ndarray:
        arr = self._find(ptr)
        out = arr.to_host(np.uint8, (arr.nbytes,))
        off = ptr - arr.ptr
        n = np.dtype(dtype).itemsize * count
        return out[off:off + n].view(dtype).copy()

    def launch(self, kernel: str, grid, block, args=(), checked: bool = False,
               shared: int = 0) -> Launch:
        k = self.module.kernel(kernel)
        if checked:
            outcome = self.rt.run_with_watchdog(k, grid, block, *args, shared=shared,
                                                timeout_s=self.timeout_s)
            if outcome != "ok":
                raise PollbenchError(f"{kernel} did not finish within {self.timeout_s:g} s "
                                     f"and was stopped through its stop flag")
            return Launch(kernel, grid, block)
        ms = self.rt.launch_timed(k, grid, block, *args, shared=shared)
        return Launch(kernel, grid, block, ms)

    def enqueue(self, kernel: str, grid, block, args=(), shared: int = 0) -> None:
        self.rt.launch(self.module.kernel(kernel), grid, block, *args, shared=shared)

    def _while_graph(self, kernel: str, grid, block, args):
        """The WHILE graph repeating ``kernel`` (built once per kernel, geometry and
        arguments, then relaunched: a graph's kernel arguments are fixed when it is built)."""
        key = (kernel, str(grid), str(block), tuple(int(a) for a in args))
        g = self._while_graphs.get(key)
        if g is None:
            k = self.module.kernel(kernel)
            g = self._while_graphs[key] = self.rt.while_graph(
                lambda h: self.rt.launch(k, grid, block, *args, h))
        return g

    def launch_rounds(self, kernel: str, grid, block, args=(), checked: bool = False) -> Launch:
        """One launch of the kernel's WHILE graph: event-timed, or under the watchdog."""
        g = self._while_graph(kernel, grid, block, args)
        if checked:
            if self.rt.run_graph_with_watchdog(g, timeout_s=self.timeout_s) != "ok":
                raise PollbenchError(f"{kernel}'s graph did not finish within "
                                     f"{self.timeout_s:g} s and was stopped through its "
                                     f"stop flag")
            return Launch(kernel, grid, block)
        return Launch(kernel, grid, block, self.rt.time_graph(g))

    def enqueue_rounds(self, kernel: str, grid, block, args=()) -> None:
        self.rt.launch_graph(self._while_graph(kernel, grid, block, args))

    def stop_ptr(self) -> int:
        return self.rt.stop_flag.ptr

    def zero(self, ptr: int, nbytes: int) -> None:
        from harness.gpu.driver import call

        self._span(ptr, nbytes)  # only inside our own buffers
        if nbytes:
            call("cuMemsetD8Async", ptr, 0, nbytes, self.rt.stream_handle)

    def zero_rows(self, ptr: int, pitch: int, nbytes: int, count: int) -> None:
        from harness.gpu.driver import call

        if nbytes % 4 or pitch % 4:
            raise PollbenchError("zero_rows works in whole u32s")
        self._find(ptr)
        if count and nbytes:
            self._span(ptr, (count - 1) * pitch + nbytes)
            call("cuMemsetD2D32Async", ptr, pitch, 0, nbytes // 4, count, self.rt.stream_handle)

    def copy(self, dst: int, src: int, nbytes: int) -> None:
        from harness.gpu.driver import call

        self._span(src, nbytes)
        self._span(dst, nbytes)
        if nbytes:
            call("cuMemcpyDtoDAsync", dst, src, nbytes, self.rt.stream_handle)

    def resident_blocks(self, kernel: str, block: int, shared: int = 0) -> int:
        return self.module.kernel(kernel).max_active_blocks_per_sm(block, shared) * self.rt.sm_count

    def kernel_registers(self, kernel: str) -> int | None:
        return self.module.kernel(kernel).num_regs

    def close(self) -> None:
        self._while_graphs.clear()
        self._arrays.clear()
        self.rt.close()


def make_backend(name: str | None, device: int = 0, **kw) -> Backend:
    """``"gpu"``, ``"emu"``, or None for the GPU when one is present, else the emulator."""
    if name is None:
        from harness.gpu import gpu_available

        name = "gpu" if gpu_available() else "emu"
    if name == "emu":
        return EmuBackend(**kw)
    if name == "gpu":
        return GpuBackend(device)
    raise PollbenchError(f"unknown backend {name!r} (gpu or emu)")
