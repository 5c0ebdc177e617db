"""The host-side stop flag and the watchdog that waits for kernels without blocking.

A kernel that may not terminate (a deadlocked executor, a lost wake-up) must poll
the stop flag: a u32 in mapped, pinned host memory (``cuMemHostAlloc`` with
``DEVICEMAP | PORTABLE``).  The kernel receives its *device* pointer as an
argument and polls it with a relaxed system-scope (or volatile) load::

    ld.relaxed.sys.global.u32 %r, [%rd_flag];   // nonzero: stop

The watchdog never blocks in the driver: it polls an event recorded after the
launch (``cuEventQuery``), so it can raise the flag when the timeout passes.
If the kernel ignores the flag, the context is lost: :class:`KernelTimeout`
tells the caller to exit the process.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable
from typing import Literal

from harness.gpu import driver as _drv
from harness.gpu.errors import GpuError, KernelFault, KernelTimeout

__all__ = ["Outcome", "StopFlag", "wait_with_watchdog", "poll_until", "run_and_wait"]

# ``Runtime`` below is an annotation only (a string, by ``from __future__ import annotations``):
# this module sits below harness.gpu.runtime and does not import it.

#: What a watched run ended with: finished by itself, or returned after seeing the stop flag.
Outcome = Literal["ok", "stopped"]

#: query() results for :func:`poll_until`
_DONE, _PENDING = True, False


class StopFlag:
    """A host-mapped pinned u32 the host sets and kernels poll.

    ``ptr`` is the *device* pointer (what a kernel gets when the flag is passed as a
    launch argument); ``host_ptr`` the host address.
    """

    def __init__(self, rt: Runtime) -> None:
        drv = _drv.driver_module()
        flags = drv.CU_MEMHOSTALLOC_DEVICEMAP | drv.CU_MEMHOSTALLOC_PORTABLE
        self._rt = rt
        self.host_ptr: int = int(_drv.call("cuMemHostAlloc", 4, flags))
        try:
            self.ptr: int = int(_drv.call("cuMemHostGetDevicePointer", self.host_ptr, 0))
        except Exception:
            _drv.call("cuMemFreeHost", self.host_ptr)
            raise
        self._cell = ctypes.c_uint32.from_address(self.host_ptr)
        self._cell.value = 0

    def __repr__(self) -> str:
        return f"StopFlag(value={self.get() if self.host_ptr else 'freed'}, ptr=0x{self.ptr:x})"

    def set(self, value: int = 1) -> None:
        """Store ``value`` (kernels see it after the PCIe write lands, typically < 1 µs)."""
        self._live()
        self._cell.value = int(value) & 0xFFFFFFFF

    def reset(self) -> None:
        """Store 0 (done before each watched launch)."""
        self.set(0)

    def get(self) -> int:
        """The current value (a kernel may write it too)."""
        self._live()
        return int(self._cell.value)

    def _live(self) -> None:
        if not self.host_ptr:
            raise GpuError("the stop flag was freed with its Runtime")

    def free(self) -> None:
        """Give the pinned host word back (its ``Runtime`` does, when it closes)."""
        if self.host_ptr:
            host_ptr, self.host_ptr = self.host_ptr, 0
            _drv.call("cuMemFreeHost", host_ptr)


def poll_until(
    query: Callable[[], bool],
    deadline: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    min_sleep_s: float = 20e-6,
    max_sleep_s: float = 1e-3,
) -> bool:
    """Call ``query()`` (True when done) with growing sleeps until it is True or ``deadline`` passes.

    Returns whether the work finished; always queries once more at the deadline.
    Exceptions from ``query`` propagate.
    """
    pause = min_sleep_s
    while True:
        if query():
            return True
        now = clock()
        if now >= deadline:
            return bool(query())
        sleep(min(pause, max(0.0, deadline - now)))
        pause = min(pause * 2, max_sleep_s)


def wait_with_watchdog(
    query: Callable[[], bool],
    raise_flag: Callable[[], None],
    what: str,
    *,
    timeout_s: float,
    grace_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """The watchdog's state machine, free of CUDA so it can be tested.

    Polls ``query`` until ``timeout_s``; then calls ``raise_flag`` and polls until
    ``grace_s`` more.  Returns ``"ok"`` or ``"stopped"``; raises
    :class:`KernelTimeout` when the grace expires too.
    """
    if timeout_s < 0 or grace_s < 0:
        raise GpuError(f"timeout_s and grace_s must be >= 0 (got {timeout_s}, {grace_s})")
    start = clock()
    if poll_until(query, start + timeout_s, clock=clock, sleep=sleep):
        return "ok"
    raise_flag()
    if poll_until(query, clock() + grace_s, clock=clock, sleep=sleep):
        return "stopped"
    raise KernelTimeout(what, timeout_s, grace_s)


def run_and_wait(rt: Runtime, start: Callable[[], None], what: str, *, timeout_s: float, grace_s: float) -> Outcome:
    """Reset the stop flag, call ``start()`` (which queues work on ``rt.stream``), then watch it.

    On :class:`KernelTimeout` or a kernel fault the runtime is marked wedged.
    """
    rt.check_open()
    if rt.capturing:
        raise GpuError("run_with_watchdog cannot be used while a graph is being captured")
    event = rt.watchdog_event()
    drv = _drv.driver_module()

    def query() -> bool:
        (err,) = drv.cuEventQuery(event.handle)
        name = _drv.result_name(err)
        if name == "CUDA_SUCCESS":
            return _DONE
        if name == "CUDA_ERROR_NOT_READY":
            return _PENDING
        _drv.raise_for(f"cuEventQuery (waiting for {what})", err)
        return _PENDING  # pragma: no cover

    rt.stop_flag.reset()
    start()
    rt.stream.record(event)
    t0 = time.monotonic()
    try:
        return wait_with_watchdog(query, rt.stop_flag.set, what, timeout_s=timeout_s, grace_s=grace_s)
    except (KernelTimeout, KernelFault):
        rt.mark_wedged()
        raise
    finally:
        rt.last_wait_s = time.monotonic() - t0
