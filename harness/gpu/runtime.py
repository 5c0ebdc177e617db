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

The objects it hands out live in their own modules, each importing only lower ones
(errors, driver, args; then kernel, module, memory, events; then watchdog, graphs; then
this one): :class:`~harness.gpu.module.LoadedModule`, :class:`~harness.gpu.kernel.KernelHandle`,
:class:`~harness.gpu.memory.DeviceArray`, :class:`~harness.gpu.events.EventTimer`,
:class:`~harness.gpu.watchdog.StopFlag`, :class:`~harness.gpu.graphs.ExecGraph`.
They reach the runtime only through its public members.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Union

import numpy as np

from harness.gpu import driver as _drv
from harness.gpu.args import check_arg_layout, pack_args
from harness.gpu.errors import CoreErrors, GpuError, KernelFault
from harness.gpu.events import EventTimer
from harness.gpu.graphs import ExecGraph
from harness.gpu.graphs import capture_graph as _capture_graph
from harness.gpu.graphs import while_graph as _while_graph
from harness.gpu.kernel import KernelHandle
from harness.gpu.memory import DeviceArray
from harness.gpu.module import LoadedModule
from harness.gpu.watchdog import Outcome, StopFlag, run_and_wait

# LoadedModule, KernelHandle, DeviceArray and EventTimer live in their own modules since
# the split; they are re-exported here so ``from harness.gpu.runtime import X`` keeps working.
__all__ = ["Runtime", "LoadedModule", "KernelHandle", "DeviceArray", "EventTimer", "Dim"]

#: A grid or block size: an int or a sequence of up to three ints.
Dim = Union[int, Sequence[int]]


def _dim3(value: int | Sequence[int], what: str) -> tuple[int, int, int]:
    dims = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
    if not 1 <= len(dims) <= 3 or any(int(d) < 1 for d in dims):
        raise GpuError(f"{what} must be 1-3 positive ints, not {value!r}")
    dims = tuple(int(d) for d in dims) + (1,) * (3 - len(dims))
    return dims  # type: ignore[return-value]


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
        with CoreErrors(self, f"initialising CUDA device {device}"):
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

    def mark_wedged(self) -> None:
        """Record a kernel fault or timeout: from now on :attr:`wedged` is True, every call
        raises and :meth:`close` frees nothing (used by CoreErrors, the watchdog)."""
        self._wedged = True

    @property
    def cu_device(self) -> Any:
        """The driver's ``CUdevice`` for :attr:`device` (``cuDeviceGet``), for raw ``cuda.bindings`` calls."""
        return self._cu_device

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
            self.stop_flag.free()
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

    def check_open(self) -> None:
        """Raise :class:`~harness.gpu.errors.GpuError` if this runtime is closed or :attr:`wedged`."""
        if self._closed:
            raise GpuError("this GPU Runtime is closed")
        if self._wedged:
            raise GpuError(
                "a kernel faulted or timed out earlier: the GPU context is unusable and this process must exit"
            )

    # ------------------------------------------------------------------ modules
    def load(self, cubin: bytes, name: str = "") -> LoadedModule:
        """Load a cubin (e.g. from nvJitLink) and return its :class:`LoadedModule`."""
        self.check_open()
        from cuda.core import ObjectCode

        if not isinstance(cubin, (bytes, bytearray)):
            raise GpuError(f"load() takes the cubin's bytes, not {type(cubin).__name__}")
        with CoreErrors(self, f"loading cubin {name!r}" if name else "loading a cubin"):
            oc = ObjectCode.from_cubin(bytes(cubin), name=name)
            _ = oc.handle  # load now (cuLibraryLoadData), so errors surface here
        return LoadedModule(self, oc, "cubin", name)

    def load_ptx(self, ptx: str | bytes, name: str = "") -> Module:
        """JIT-compile PTX with the driver (``cuLibraryLoadData``) and return its :class:`LoadedModule`.

        The driver JIT resolves ``cudaGraphSetConditional`` (architecture §11).  Passes the
        PTX as bytes: cuda.core treats a ``str`` as a file path.
        """
        self.check_open()
        from cuda.core import ObjectCode

        data = ptx.encode() if isinstance(ptx, str) else bytes(ptx)
        if not data.endswith(b"\0"):
            data += b"\0"  # the driver wants NUL-terminated PTX text
        with CoreErrors(self, f"JIT-loading PTX {name!r}" if name else "JIT-loading PTX"):
            oc = ObjectCode.from_ptx(data, name=name)
            _ = oc.handle
        return LoadedModule(self, oc, "ptx", name)

    # ------------------------------------------------------------------ memory
    def alloc(self, nbytes: int) -> DeviceArray:
        """Allocate ``nbytes`` of device memory (contents undefined; see :meth:`DeviceArray.fill_bytes`)."""
        self.check_open()
        nbytes = int(nbytes)
        if nbytes < 0:
            raise GpuError(f"alloc: negative size {nbytes}")
        with CoreErrors(self, f"allocating {nbytes} bytes of device memory"):
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

    def forget_array(self, arr: DeviceArray) -> None:
        """Stop tracking ``arr`` (it was freed; :meth:`close` no longer frees it)."""
        self._arrays.discard(arr)

    def memcpy_htod(self, dst: int, src: np.ndarray, nbytes: int) -> None:
        """Queue a copy of ``nbytes`` from host array ``src`` to device address ``dst`` (``cuMemcpyHtoDAsync``)."""
        self.check_open()
        _drv.call("cuMemcpyHtoDAsync", dst, src.ctypes.data, nbytes, self.stream.handle)

    def memcpy_dtoh(self, dst: np.ndarray, src: int, nbytes: int) -> None:
        """Queue a copy of ``nbytes`` from device address ``src`` to host array ``dst`` (``cuMemcpyDtoHAsync``)."""
        self.check_open()
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

    def push_capture(self, builder: Any, keepalive: list[Any]) -> None:
        """Send launches into the cuda.core ``GraphBuilder`` ``builder`` until :meth:`pop_capture`;
        each launch's kernel and DeviceArrays are appended to ``keepalive`` (used by harness.gpu.graphs)."""
        self._capture.append((builder, keepalive))

    def pop_capture(self) -> None:
        """End the innermost :meth:`push_capture`."""
        self._capture.pop()

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
        self.check_open()
        if not isinstance(kernel, KernelHandle):
            raise GpuError(f"launch() takes a KernelHandle (module.kernel(name)), not {type(kernel).__name__}")
        packed = pack_args(args)
        check_arg_layout(kernel.name, packed, kernel.param_sizes)
        grid3, block3 = _dim3(grid, "grid"), _dim3(block, "block")
        shared = int(shared)
        if shared > kernel.dynamic_smem_limit:
            kernel.set_max_dynamic_shared(shared)
        from cuda.core import LaunchConfig, launch

        target = self._launch_target()
        with CoreErrors(self, f"launching kernel {kernel.name!r} grid={grid3} block={block3} shared={shared}"):
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

    def sync_stream(self, what: str) -> None:
        """Wait for the runtime's stream; ``what`` names the operation in an error."""
        with CoreErrors(self, f"synchronising the stream ({what})"):
            self.stream.sync()

    def synchronize(self) -> None:
        """Wait for everything queued on the runtime's stream (blocking; see run_with_watchdog for kernels that may hang)."""
        self.check_open()
        self.sync_stream("synchronize")

    # ------------------------------------------------------------------ timing
    def timer(self) -> EventTimer:
        """A new :class:`EventTimer` on the runtime's stream."""
        self.check_open()
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
    def watchdog_event(self) -> Any:
        """The cuda.core ``Event`` (timing disabled) the watchdog records after a launch and
        polls; created on first use, destroyed by :meth:`close`."""
        if self._wd_event is None:
            from cuda.core import EventOptions

            self._wd_event = self.core_device.create_event(EventOptions(timing_enabled=False))
        return self._wd_event

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

        def start() -> None:
            self.launch(kernel, grid, block, *args, shared=shared, check=False)

        return run_and_wait(self, start, f"kernel {kernel.name!r}", timeout_s=timeout_s, grace_s=grace_s)

    def run_graph_with_watchdog(self, graph: ExecGraph, *, timeout_s: float = 10.0, grace_s: float = 2.0) -> Outcome:
        """Like :meth:`run_with_watchdog` for a graph (e.g. a :meth:`while_graph` whose body polls the stop flag)."""
        return run_and_wait(self, lambda: self.launch_graph(graph), "graph", timeout_s=timeout_s, grace_s=grace_s)

    # ------------------------------------------------------------------ graphs
    def capture_stream(self) -> Any:
        """The cuda.core ``Stream`` graphs are captured on (not :attr:`stream`); created on
        first use, destroyed by :meth:`close`."""
        if self._capture_stream is None:
            self._capture_stream = self.core_device.create_stream()
        return self._capture_stream

    def track_graph(self, graph: ExecGraph) -> None:
        """Have :meth:`close` close ``graph`` (held weakly)."""
        self._graphs.add(graph)

    def capture_graph(self, fn: Callable[[], Any]) -> ExecGraph:
        """Build an executable graph from the launches ``fn()`` makes with :meth:`launch` (stream capture)."""
        return _capture_graph(self, fn)

    def while_graph(self, body_fn: Callable[[int], Any], *, default: int = 1) -> ExecGraph:
        """Build a graph whose body repeats under a WHILE conditional node.

        ``body_fn(handle)`` is called once, while the body is captured; it launches the
        body's kernels with :meth:`launch`, passing ``handle`` (an int: the
        ``CUgraphConditionalHandle``, a u64 kernel argument) to the kernel that calls
        ``cudaGraphSetConditional(handle, 0)`` to end the loop.  The condition is reset
        to ``default`` at every graph launch (``default=1``: the body runs at least once).
        """
        return _while_graph(self, body_fn, default=default)

    def launch_graph(self, graph: ExecGraph) -> None:
        """Launch an executable graph on the runtime's stream."""
        self.check_open()
        graph.launch(self.stream, self)


def grid_for(n: int, block: int) -> int:
    """Blocks needed to cover ``n`` items with ``block`` threads each (at least 1)."""
    return max(1, math.ceil(int(n) / int(block)))
