"""Errors raised by pollbench's GPU runtime.

Every class is a :class:`harness.errors.PollbenchError`, so ``str(err)`` is one
line the user can act on.  ``CudaCallError`` carries the failing call and the
``CUresult`` name as attributes for programs that want to branch on them.
:class:`CoreErrors` turns the exceptions cuda.core raises into these.
"""

from __future__ import annotations

import re
from typing import Any

from harness.errors import PollbenchError

# The error classes, as harness.gpu re-exports them.
ERROR_CLASSES = ("GpuError", "GpuUnavailable", "CudaCallError", "KernelFault", "KernelTimeout",
                 "LaunchArgError")

__all__ = [
    *ERROR_CLASSES,
    "ERROR_CLASSES",
    "STICKY_ERRORS",
    "CoreErrors",
    "error_from_exception",
]

#: CUresult names after which the CUDA context is unusable: the process must exit.
STICKY_ERRORS = frozenset(
    {
        "CUDA_ERROR_ILLEGAL_ADDRESS",
        "CUDA_ERROR_LAUNCH_FAILED",
        "CUDA_ERROR_ILLEGAL_INSTRUCTION",
        "CUDA_ERROR_MISALIGNED_ADDRESS",
        "CUDA_ERROR_INVALID_ADDRESS_SPACE",
        "CUDA_ERROR_INVALID_PC",
        "CUDA_ERROR_HARDWARE_STACK_ERROR",
        "CUDA_ERROR_ASSERT",
        "CUDA_ERROR_LAUNCH_TIMEOUT",
        "CUDA_ERROR_ECC_UNCORRECTABLE",
        "CUDA_ERROR_CONTEXT_IS_DESTROYED",
        "CUDA_ERROR_TENSOR_MEMORY_LEAK",
    }
)

# One short, actionable hint per CUresult name we know how to explain.
_HINTS = {
    "CUDA_ERROR_NO_BINARY_FOR_GPU": "the code was built for another GPU architecture; rebuild it for this GPU's --arch",
    "CUDA_ERROR_UNSUPPORTED_PTX_VERSION": "the PTX .version is newer than this driver accepts; emit an older .version or update the driver",
    "CUDA_ERROR_INVALID_PTX": "the driver's JIT rejected the PTX; link it with nvJitLink (pollbench ptx) to see ptxas's log",
    "CUDA_ERROR_INVALID_IMAGE": "the cubin is corrupt or not a cubin",
    "CUDA_ERROR_NOT_FOUND": "no such symbol: is the kernel declared `.visible .entry` with that exact name?",
    "CUDA_ERROR_OUT_OF_MEMORY": "out of GPU memory; use smaller sizes",
    "CUDA_ERROR_INVALID_VALUE": "an argument was out of range (grid/block size, shared memory, pointer)",
    "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES": "too many registers or too much shared memory for this block size; use a smaller block",
    "CUDA_ERROR_NO_DEVICE": "no CUDA device is visible (check CUDA_VISIBLE_DEVICES)",
    "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH": "the CUDA driver and the kernel module versions differ; reboot or reinstall the driver",
    "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED": "this operation is not allowed while a graph is being captured",
}

_STICKY_HINT = "a kernel faulted; the CUDA context is unusable and this process must exit"


def hint_for(result_name: str) -> str:
    """Return a short hint for a ``CUresult`` name, or ``""`` when there is none."""
    if result_name in STICKY_ERRORS:
        return _STICKY_HINT
    return _HINTS.get(result_name, "")


class GpuError(PollbenchError):
    """Any failure of the GPU runtime."""


class GpuUnavailable(GpuError):
    """No CUDA driver, no device, or no device with the requested index."""


class LaunchArgError(GpuError, TypeError):
    """A kernel argument that cannot be passed with a well-defined width."""


class CudaCallError(GpuError):
    """A CUDA driver call (or a cuda.core operation) returned an error.

    Attributes:
        call: the driver function or operation that failed (``"cuMemHostAlloc"``).
        result: the ``CUresult`` name (``"CUDA_ERROR_OUT_OF_MEMORY"``), or ``""``
            when cuda.core did not report one.
    """

    def __init__(self, call: str, result: str, detail: str = "") -> None:
        self.call = call
        self.result = result
        hint = hint_for(result)
        parts = [f"{call} failed"]
        if result:
            parts[0] += f": {result}"
        if detail:
            parts.append(detail)
        if hint:
            parts.append(hint)
        super().__init__(" — ".join(_one_line(p) for p in parts))


class KernelFault(CudaCallError):
    """A kernel hit a sticky error (illegal address, trap, ...).

    The CUDA context is unusable afterwards; the process must exit, which is why
    pollbench runs each case in its own process.
    """


class KernelTimeout(GpuError):
    """A kernel did not finish within its timeout, nor within the grace period after
    the stop flag was raised.

    The kernel is still running, so the CUDA context is unusable: the process must
    exit (``os._exit``) — that is why pollbench runs each case in its own process.
    """

    def __init__(self, what: str, timeout_s: float, grace_s: float) -> None:
        self.what = what
        self.timeout_s = timeout_s
        self.grace_s = grace_s
        super().__init__(
            f"{what} did not finish within {timeout_s:g} s, nor {grace_s:g} s after the stop flag "
            "was raised (does it poll the flag?); the GPU context is now unusable and this process must exit"
        )


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


_CUDA_ERROR_RE = re.compile(r"\b(CUDA_ERROR_[A-Z0-9_]+)\b")


def error_from_exception(what: str, exc: BaseException) -> CudaCallError:
    """Turn an exception from cuda.core (``CUDAError``, ``RuntimeError``) into a :class:`CudaCallError`.

    The ``CUresult`` name is taken from the message when it contains one.
    """
    text = " ".join(str(exc).split())
    m = _CUDA_ERROR_RE.search(text)
    name = m.group(1) if m else ""
    detail = text
    if name:
        # drop the name itself from the detail, keep the driver's description
        detail = text.replace(name, "", 1).strip(" :-—")
    cls = KernelFault if name in STICKY_ERRORS else CudaCallError
    return cls(what, name, detail)


class CoreErrors:
    """Context manager turning cuda.core / cuda.bindings exceptions into CudaCallError.

    ``rt`` (a :class:`~harness.gpu.runtime.Runtime`, or None) is marked wedged
    (``rt.mark_wedged()``) when the error is a :class:`KernelFault`.
    """

    # ``Runtime`` is only an annotation here (a string: ``from __future__ import annotations``);
    # errors.py is the lowest layer of harness.gpu and imports nothing from it.
    def __init__(self, rt: Runtime | None, what: str) -> None:
        self.rt = rt
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None or isinstance(exc, GpuError):
            if isinstance(exc, KernelFault) and self.rt is not None:
                self.rt.mark_wedged()
            return False
        if isinstance(exc, (RuntimeError, ValueError, TypeError, OSError, NotImplementedError)) or (
            type(exc).__name__ == "CUDAError"
        ):
            err = error_from_exception(self.what, exc)
            if isinstance(err, KernelFault) and self.rt is not None:
                self.rt.mark_wedged()
            raise err from exc
        return False
