"""pollbench's CUDA runtime: one device, one stream, modules, memory, launches, timing.

Built on cuda.core (``Device``, ``Stream``, ``ObjectCode``, ``Kernel``,
``LaunchConfig``, ``launch``, ``Event``, ``Buffer``, ``GraphBuilder``); the raw
driver (``cuda.bindings.driver``, every return code checked) is used only where
cuda.core has no equivalent: host<->device copies from numpy, mapped pinned host
memory for the stop flag, non-blocking event queries, the stream error check.

Typical use::

    with Runtime() as rt:
        k = rt.load(cubin).kernel("vadd")
        a = rt.to_device(x)
        out = rt.alloc(x.nbytes)
        out.fill_bytes(0xAB)                       # poison
        rt.launch(k, grid, block, out, a, np.uint32(n))
        y = out.to_host(np.float32, x.shape)

A ``Runtime`` is meant to be used from the thread that created it.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from harness.gpu import driver as _drv
from harness.gpu.args import check_arg_layout, pack_args
from harness.gpu.errors import CudaCallError, GpuError, KernelFault

if TYPE_CHECKING:  # pragma: no cover
    from harness.gpu.graphs import ExecGraph
    from harness.gpu.watchdog import Outcome, StopFlag

__all__ = ["Runtime", "Module", "KernelHandle", "DeviceArray", "EventTimer", "Dim"]

#: A grid or block size: an int or a sequence of up to three ints.
Dim = Union[int, Sequence[int]]

_DEFAULT_DYNAMIC_SMEM_LIMIT = 48 * 1024


def _dim3(value: int | Sequence[int], what: str) -> tuple[int, int, int]:
    dims = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
    if not 1 <= len(dims) <= 3 or any(int(d) < 1 for d in dims):
        raise GpuError(f"{what} must be 1-3 positive ints, not {value!r}")
    dims = tuple(int(d) for d in dims) + (1,) * (3 - len(dims))
    return dims  # type: ignore[return-value]


class _CoreErrors:
    """Context manager turning cuda.core / cuda.bindings exceptions into CudaCallError."""

    def __init__(self, rt: Runtime | None, what: str) -> None:
        self.rt = rt
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None or isinstance(exc, GpuError):
            if isinstance(exc, KernelFault) and self.rt is not None:
                self.rt._wedged = True
            return False
        if isinstance(exc, (RuntimeError, ValueError, TypeError, OSError, NotImplementedError)) or (
            type(exc).__name__ == "CUDAError"
        ):
            err = _drv.error_from_exception(self.what, exc)
            if isinstance(err, KernelFault) and self.rt is not None:
                self.rt._wedged = True
            raise err from exc
        return False


class KernelHandle:
    """A kernel of a loaded module, with its resource attributes.

    Attributes come from the driver (``cuKernelGetAttribute`` through cuda.core's
    ``Kernel.attributes``) for this runtime's device.
    """

    def __init__(self, rt: Runtime, module: Module, name: str, kernel: Any) -> None:
        self._rt = rt
        self.module = module
        self.name = name
        #: the cuda.core ``Kernel``
        self.kernel = kernel
        self._param_sizes: tuple[int, ...] | None | bool = False  # False: not queried yet
        self._dynamic_smem_limit = _DEFAULT_DYNAMIC_SMEM_LIMIT

    def __repr__(self) -> str:
        return f"KernelHandle({self.name!r})"

    def _attr(self, name: str) -> int:
        with _CoreErrors(self._rt, f"reading attribute {name} of kernel {self.name!r}"):
            attrs = self.kernel.attributes
            try:
                view = attrs[self._rt.device]
            except TypeError:  # older cuda.core: methods taking the device
                view = attrs
            value = getattr(view, name)
            if callable(value):
                value = value(self._rt.device)
            return int(value)

    @property
    def num_regs(self) -> int:
        """Registers per thread."""
        return self._attr("num_regs")

    @property
    def local_bytes(self) -> int:
        """Local memory (stack + spills) per thread, in bytes."""
        return self._attr("local_size_bytes")

    @property
    def shared_bytes(self) -> int:
        """Static shared memory per block, in bytes."""
        return self._attr("shared_size_bytes")

    @property
    def const_bytes(self) -> int:
        """User constant memory, in bytes."""
        return self._attr("const_size_bytes")

    @property
    def max_threads_per_block(self) -> int:
        """The largest block this kernel can be launched with on this device."""
        return self._attr("max_threads_per_block")

    def max_active_blocks_per_sm(self, block_size: int, dynamic_smem: int = 0) -> int:
        """Theoretical occupancy: resident blocks per SM (``cuOccupancyMaxActiveBlocksPerMultiprocessor``)."""
        with _CoreErrors(self._rt, f"occupancy query for kernel {self.name!r}"):
            return int(self.kernel.occupancy.max_active_blocks_per_multiprocessor(int(block_size), int(dynamic_smem)))

    @property
    def param_sizes(self) -> tuple[int, ...] | None:
        """Byte size of each kernel parameter (``cuKernelGetParamInfo``), or None if the driver can't say."""
        if self._param_sizes is False:
            try:
                self._param_sizes = tuple(int(p.size) for p in self.kernel.arguments_info)
            except Exception:
                self._param_sizes = None
        return self._param_sizes  # type: ignore[return-value]

    def set_max_dynamic_shared(self, nbytes: int) -> None:
        """Allow launches with more than 48 KiB of dynamic shared memory (``cuKernelSetAttribute``)."""
        drv = _drv.driver_module()
        _drv.call(
            "cuKernelSetAttribute",
            drv.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            int(nbytes),
            self.kernel.handle,
            self._rt._cu_device,
        )
        self._dynamic_smem_limit = int(nbytes)


class Module:
    """A loaded cubin or PTX module; :meth:`kernel` looks kernels up by name."""

    def __init__(self, rt: Runtime, object_code: Any, kind: str, name: str = "") -> None:
        self._rt = rt
        #: the cuda.core ``ObjectCode``
        self.object_code = object_code
        self.kind = kind
        self.name = name
        self._kernels: dict[str, KernelHandle] = {}

    def __repr__(self) -> str:
        return f"Module({self.kind}, {self.name!r})"

    def kernel(self, name: str) -> KernelHandle:
        """Return the kernel ``name`` (the ``.entry`` name in the PTX)."""
        handle = self._kernels.get(name)
        if handle is None:
            with _CoreErrors(self._rt, f"looking up kernel {name!r} in {self.kind} module {self.name!r}"):
                k = self.object_code.get_kernel(name)
            handle = KernelHandle(self._rt, self, name, k)
            self._kernels[name] = handle
        return handle


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
            self._rt._memcpy_dtoh(out, self.ptr, out.nbytes)
        self._rt._sync_stream("copying device memory to the host")
        return out

    def copy_from_host(self, array: np.ndarray) -> None:
        """Copy a numpy array's bytes to the start of this array (waits until the copy is done)."""
        src = np.ascontiguousarray(array)
        if src.nbytes > self.nbytes:
            raise GpuError(f"copy_from_host: {src.nbytes} bytes do not fit in a {self.nbytes}-byte DeviceArray")
        self._live_buffer()
        if src.nbytes:
            self._rt._memcpy_htod(self.ptr, src, src.nbytes)
        self._rt._sync_stream("copying host memory to the device")

    def fill_bytes(self, byte: int) -> None:
        """Set every byte to ``byte`` (0..255), e.g. to poison an output; ordered on the runtime's stream."""
        if not 0 <= int(byte) <= 255:
            raise GpuError(f"fill_bytes: {byte!r} is not a byte value (0..255)")
        buf = self._live_buffer()
        with _CoreErrors(self._rt, "filling device memory"):
            buf.fill(int(byte), stream=self._rt.stream)

    def free(self) -> None:
        """Release the memory now (ordered after work already queued on the runtime's stream)."""
        buf, self._buffer = self._buffer, None
        if buf is None:
            return
        self._rt._forget_array(self)
        if self._rt._wedged:
            return  # the context is unusable: leave the memory to the process exit
        with _CoreErrors(self._rt, "freeing device memory"):
            buf.close(self._rt.stream)


class EventTimer:
    """Times GPU work with two timing-enabled cuda.core Events on the runtime's stream.

    Use as a context manager (``with rt.timer() as t: ...; t.elapsed_ms()``) or with
    :meth:`start`/:meth:`stop`.  :meth:`elapsed_ms` waits for the stop event.
    """

    def __init__(self, rt: Runtime) -> None:
        from cuda.core import EventOptions

        self._rt = rt
        opts = EventOptions(timing_enabled=True)
        with _CoreErrors(rt, "creating timing events"):
            self._start = rt.core_device.create_event(opts)
            self._stop = rt.core_device.create_event(opts)
        self._started = self._stopped = False

    def start(self) -> None:
        """Record the start event on the runtime's stream."""
        with _CoreErrors(self._rt, "recording the start event"):
            self._rt.stream.record(self._start)
        self._started, self._stopped = True, False

    def stop(self) -> None:
        """Record the stop event on the runtime's stream."""
        if not self._started:
            raise GpuError("EventTimer.stop() called before start()")
        with _CoreErrors(self._rt, "recording the stop event"):
            self._rt.stream.record(self._stop)
        self._stopped = True

    def elapsed_ms(self) -> float:
        """Milliseconds between the start and stop records (waits for the stop event)."""
        if not self._stopped:
            raise GpuError("EventTimer.elapsed_ms() called before stop()")
        with _CoreErrors(self._rt, "reading the event timer"):
            self._stop.sync()
            return float(self._stop - self._start)

    def __enter__(self) -> EventTimer:
        self.start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.stop()

    def close(self) -> None:
        """Destroy the events."""
        for ev in (self._start, self._stop):
            try:
                ev.close()
            except Exception:
                pass


class Runtime:
    """One CUDA device with one non-blocking stream; a context manager.

    Attributes:
        device: the device ordinal.
        core_device: the cuda.core ``Device``.
        arch: ``"sm_90"`` on an H100.
        compute_capability: ``(major, minor)``.
        sm_count: number of SMs.
        name: the GPU's name.
        driver_version: the CUDA version the driver supports, e.g. ``"13.0"``.
        stream: the cuda.core ``Stream`` every operation is ordered on.
        stop_flag: a host-mapped pinned u32 (:class:`~harness.gpu.watchdog.StopFlag`);
            pass it to a kernel and the kernel receives its *device* pointer.

    Raises :class:`~harness.gpu.errors.GpuUnavailable` (one line) when there is no
    driver or no such device.
    """

    def __init__(self, device: int = 0) -> None:
        _drv.require_device(device)
        from cuda.core import Device

        self._closed = False
        self._wedged = False
        self._arrays: weakref.WeakSet[DeviceArray] = weakref.WeakSet()
        self._graphs: weakref.WeakSet[Any] = weakref.WeakSet()
        self._capture: list[tuple[Any, list[Any]]] = []  # (GraphBuilder, keepalive) stack
        self._capture_stream: Any = None
        self._wd_event: Any = None
        self.last_wait_s: float = 0.0

        self.device = int(device)
        with _CoreErrors(self, f"initialising CUDA device {device}"):
            dev = Device(self.device)
            dev.set_current()
            self.core_device = dev
            cc = dev.compute_capability
            self.compute_capability = (int(cc.major), int(cc.minor))
            self.arch = f"sm_{cc.major}{cc.minor}"
            self.name = str(dev.name)
            self.sm_count = int(dev.properties.multiprocessor_count)
            self.stream = dev.create_stream()
        self._cu_device = _drv.call("cuDeviceGet", self.device)
        self.driver_version = _drv.driver_version()

        from harness.gpu.watchdog import StopFlag

        self.stop_flag: StopFlag = StopFlag(self)

    def __repr__(self) -> str:
        return f"Runtime(device={self.device}, {self.name!r}, {self.arch}, {self.sm_count} SMs)"

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    @property
    def wedged(self) -> bool:
        """True after a kernel fault or timeout: the context is unusable and the process must exit."""
        return self._wedged

    def close(self) -> None:
        """Wait for the stream, free every array, graph, event and the stop flag, destroy the stream.

        After a kernel fault or timeout (:attr:`wedged`) nothing is waited for or
        freed: the process must exit, and the driver reclaims everything then.
        """
        if self._closed:
            return
        self._closed = True
        if self._wedged:
            return
        try:
            self.stream.sync()
        except Exception:
            self._wedged = True
            return
        for g in list(self._graphs):
            try:
                g.close()
            except Exception:
                pass
        for arr in list(self._arrays):
            try:
                arr.free()
            except Exception:
                pass
        try:
            self.stop_flag._free()
        except Exception:
            pass
        try:
            self.stream.sync()
        except Exception:
            pass
        for obj in (self._wd_event, self._capture_stream, self.stream):
            if obj is not None:
                try:
                    obj.close()
                except Exception:
                    pass

    def _check_open(self) -> None:
        if self._closed:
            raise GpuError("this GPU Runtime is closed")
        if self._wedged:
            raise GpuError(
                "a kernel faulted or timed out earlier: the GPU context is unusable and this process must exit"
            )

    # ------------------------------------------------------------------ modules
    def load(self, cubin: bytes, name: str = "") -> Module:
        """Load a cubin (e.g. from nvJitLink) and return its :class:`Module`."""
        self._check_open()
        from cuda.core import ObjectCode

        if not isinstance(cubin, (bytes, bytearray)):
            raise GpuError(f"load() takes the cubin's bytes, not {type(cubin).__name__}")
        with _CoreErrors(self, f"loading cubin {name!r}" if name else "loading a cubin"):
            oc = ObjectCode.from_cubin(bytes(cubin), name=name)
            _ = oc.handle  # load now (cuLibraryLoadData), so errors surface here
        return Module(self, oc, "cubin", name)

    def load_ptx(self, ptx: str | bytes, name: str = "") -> Module:
        """JIT-compile PTX with the driver (``cuLibraryLoadData``) and return its :class:`Module`.

        The driver JIT resolves ``cudaGraphSetConditional`` (architecture §11).  Passes the
        PTX as bytes: cuda.core treats a ``str`` as a file path.
        """
        self._check_open()
        from cuda.core import ObjectCode

        data = ptx.encode() if isinstance(ptx, str) else bytes(ptx)
        if not data.endswith(b"\0"):
            data += b"\0"  # the driver wants NUL-terminated PTX text
        with _CoreErrors(self, f"JIT-loading PTX {name!r}" if name else "JIT-loading PTX"):
            oc = ObjectCode.from_ptx(data, name=name)
            _ = oc.handle
        return Module(self, oc, "ptx", name)

    # ------------------------------------------------------------------ memory
    def alloc(self, nbytes: int) -> DeviceArray:
        """Allocate ``nbytes`` of device memory (contents undefined; see :meth:`DeviceArray.fill_bytes`)."""
        self._check_open()
        nbytes = int(nbytes)
        if nbytes < 0:
            raise GpuError(f"alloc: negative size {nbytes}")
        with _CoreErrors(self, f"allocating {nbytes} bytes of device memory"):
            buf = self.core_device.allocate(max(nbytes, 1), stream=self.stream)
        arr = DeviceArray(self, buf, nbytes)
        self._arrays.add(arr)
        return arr

    def to_device(self, array: np.ndarray) -> DeviceArray:
        """Allocate device memory holding a copy of ``array``'s bytes."""
        src = np.ascontiguousarray(array)
        arr = self.alloc(src.nbytes)
        arr.copy_from_host(src)
        return arr

    def _forget_array(self, arr: DeviceArray) -> None:
        self._arrays.discard(arr)

    def _memcpy_htod(self, dst: int, src: np.ndarray, nbytes: int) -> None:
        self._check_open()
        _drv.call("cuMemcpyHtoDAsync", dst, src.ctypes.data, nbytes, self.stream.handle)

    def _memcpy_dtoh(self, dst: np.ndarray, src: int, nbytes: int) -> None:
        self._check_open()
        _drv.call("cuMemcpyDtoHAsync", dst.ctypes.data, src, nbytes, self.stream.handle)

    # ------------------------------------------------------------------ launch
    def _launch_target(self) -> Any:
        return self._capture[-1][0] if self._capture else self.stream

    @property
    def stream_handle(self) -> Any:
        """The stream handle work is queued on: the capturing stream while a graph is
        captured (so a memset becomes a graph node), else the runtime's stream."""
        return self._capture[-1][0].stream.handle if self._capture else self.stream.handle

    @property
    def capturing(self) -> bool:
        """True while :meth:`capture_graph` / :meth:`while_graph` is recording launches."""
        return bool(self._capture)

    def launch(
        self,
        kernel: KernelHandle,
        grid: Dim,
        block: Dim,
        *args: Any,
        shared: int = 0,
        check: bool = True,
    ) -> None:
        """Launch ``kernel`` on the runtime's stream (or into the graph being captured).

        ``args``: DeviceArray / StopFlag (passed as u64 pointers), numpy scalars (their
        exact width), Python ints (u64) — see :mod:`harness.gpu.args`.  ``shared`` is
        the dynamic shared memory per block in bytes.  With ``check`` (and not
        capturing) the stream is queried afterwards, so an earlier asynchronous fault
        is reported here rather than later.
        """
        self._check_open()
        if not isinstance(kernel, KernelHandle):
            raise GpuError(f"launch() takes a KernelHandle (module.kernel(name)), not {type(kernel).__name__}")
        packed = pack_args(args)
        check_arg_layout(kernel.name, packed, kernel.param_sizes)
        grid3, block3 = _dim3(grid, "grid"), _dim3(block, "block")
        shared = int(shared)
        if shared > kernel._dynamic_smem_limit:
            kernel.set_max_dynamic_shared(shared)
        from cuda.core import LaunchConfig, launch

        target = self._launch_target()
        with _CoreErrors(self, f"launching kernel {kernel.name!r} grid={grid3} block={block3} shared={shared}"):
            config = LaunchConfig(grid=grid3, block=block3, shmem_size=shared)
            launch(target, config, kernel.kernel, *packed)
        if self._capture:
            keep = self._capture[-1][1]
            keep.append(kernel)
            keep.extend(a for a in args if isinstance(a, DeviceArray))
        elif check:
            self.check_stream(f"after launching kernel {kernel.name!r}")

    def check_stream(self, what: str = "checking the stream") -> bool:
        """Non-blocking ``cuStreamQuery``: True if idle, False if busy; raises if earlier work failed."""
        drv = _drv.driver_module()
        (err,) = drv.cuStreamQuery(self.stream.handle)
        name = _drv.result_name(err)
        if name == "CUDA_SUCCESS":
            return True
        if name == "CUDA_ERROR_NOT_READY":
            return False
        try:
            _drv.raise_for(f"cuStreamQuery ({what})", err)
        except KernelFault:
            self._wedged = True
            raise
        return False  # pragma: no cover

    def _sync_stream(self, what: str) -> None:
        with _CoreErrors(self, f"synchronising the stream ({what})"):
            self.stream.sync()

    def synchronize(self) -> None:
        """Wait for everything queued on the runtime's stream (blocking; see run_with_watchdog for kernels that may hang)."""
        self._check_open()
        self._sync_stream("synchronize")

    # ------------------------------------------------------------------ timing
    def timer(self) -> EventTimer:
        """A new :class:`EventTimer` on the runtime's stream."""
        self._check_open()
        return EventTimer(self)

    def time_launch(
        self,
        kernel: KernelHandle,
        grid: Dim,
        block: Dim,
        *args: Any,
        shared: int = 0,
        repeat: int = 1,
    ) -> float:
        """Launch ``kernel`` ``repeat`` times between two events; return the mean milliseconds per launch."""
        repeat = max(1, int(repeat))
        t = self.timer()
        try:
            t.start()
            for _ in range(repeat):
                self.launch(kernel, grid, block, *args, shared=shared, check=False)
            t.stop()
            ms = t.elapsed_ms()
        finally:
            t.close()
        self.check_stream(f"after timing kernel {kernel.name!r}")
        return ms / repeat

    def launch_timed(self, kernel: KernelHandle, grid: Dim, block: Dim, *args: Any, shared: int = 0) -> float:
        """Launch ``kernel`` once between two timing events, wait for it, return its milliseconds."""
        return self.time_launch(kernel, grid, block, *args, shared=shared, repeat=1)

    def time_graph(self, graph: ExecGraph, repeat: int = 1) -> float:
        """Launch ``graph`` ``repeat`` times between two events; return the mean milliseconds per launch."""
        repeat = max(1, int(repeat))
        t = self.timer()
        try:
            t.start()
            for _ in range(repeat):
                self.launch_graph(graph)
            t.stop()
            ms = t.elapsed_ms()
        finally:
            t.close()
        return ms / repeat

    # ------------------------------------------------------------------ watchdog
    def run_with_watchdog(
        self,
        kernel: KernelHandle,
        grid: Dim,
        block: Dim,
        *args: Any,
        shared: int = 0,
        timeout_s: float = 10.0,
        grace_s: float = 2.0,
    ) -> Outcome:
        """Launch ``kernel`` and wait for it without blocking, with a timeout.

        Resets :attr:`stop_flag` to 0, launches, then polls an event until the kernel
        is done (``"ok"``) or ``timeout_s`` passes; then raises the stop flag and waits
        up to ``grace_s`` more (``"stopped"``: the kernel saw the flag and returned).
        If even the grace expires it raises :class:`~harness.gpu.errors.KernelTimeout`;
        the runtime is then :attr:`wedged` and the process must exit.
        """
        from harness.gpu.watchdog import run_and_wait

        def start() -> None:
            self.launch(kernel, grid, block, *args, shared=shared, check=False)

        return run_and_wait(self, start, f"kernel {kernel.name!r}", timeout_s=timeout_s, grace_s=grace_s)

    def run_graph_with_watchdog(self, graph: ExecGraph, *, timeout_s: float = 10.0, grace_s: float = 2.0) -> Outcome:
        """Like :meth:`run_with_watchdog` for a graph (e.g. a :meth:`while_graph` whose body polls the stop flag)."""
        from harness.gpu.watchdog import run_and_wait

        return run_and_wait(self, lambda: self.launch_graph(graph), "graph", timeout_s=timeout_s, grace_s=grace_s)

    # ------------------------------------------------------------------ graphs
    def capture_graph(self, fn: Callable[[], Any]) -> ExecGraph:
        """Build an executable graph from the launches ``fn()`` makes with :meth:`launch` (stream capture)."""
        from harness.gpu.graphs import capture_graph

        return capture_graph(self, fn)

    def while_graph(self, body_fn: Callable[[int], Any], *, default: int = 1) -> ExecGraph:
        """Build a graph whose body repeats under a WHILE conditional node.

        ``body_fn(handle)`` is called once, while the body is captured; it launches the
        body's kernels with :meth:`launch`, passing ``handle`` (an int: the
        ``CUgraphConditionalHandle``, a u64 kernel argument) to the kernel that calls
        ``cudaGraphSetConditional(handle, 0)`` to end the loop.  The condition is reset
        to ``default`` at every graph launch (``default=1``: the body runs at least once).
        """
        from harness.gpu.graphs import while_graph

        return while_graph(self, body_fn, default=default)

    def launch_graph(self, graph: ExecGraph) -> None:
        """Launch an executable graph on the runtime's stream."""
        self._check_open()
        graph.launch(self.stream, self)


def grid_for(n: int, block: int) -> int:
    """Blocks needed to cover ``n`` items with ``block`` threads each (at least 1)."""
    return max(1, math.ceil(int(n) / int(block)))
