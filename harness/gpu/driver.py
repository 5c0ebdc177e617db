"""The CUDA driver, seen from pollbench: is there one, which GPUs, and checked calls.

Nothing here touches the driver at import time.  ``cuda.bindings`` is imported on
first use, and ``libcuda.so`` is loaded by its first call, so ``import harness.gpu``
works on a machine without a GPU.

Note: :func:`gpu_available` calls ``cuInit``.  A process that forks workers after
that must start them with the ``spawn`` method (CUDA does not survive ``fork``).
"""

from __future__ import annotations

import functools
from typing import Any

from harness.gpu.errors import STICKY_ERRORS, CudaCallError, GpuUnavailable, KernelFault, error_from_exception

__all__ = [
    "NO_DRIVER_MESSAGE",
    "driver_module",
    "result_name",
    "check",
    "call",
    "raise_for",
    "error_from_exception",  # lives in harness.gpu.errors (CoreErrors uses it); re-exported here
    "gpu_available",
    "unavailable_reason",
    "device_count",
    "driver_version",
    "list_gpus",
    "require_device",
]

NO_DRIVER_MESSAGE = (
    "no CUDA driver found (libcuda.so): pollbench needs an NVIDIA GPU for this; use --backend emu"
)
_NEEDS_GPU = "pollbench needs an NVIDIA GPU for this; use --backend emu"


def driver_module() -> Any:
    """Return ``cuda.bindings.driver`` (imported lazily; loading it does not load libcuda)."""
    from cuda.bindings import driver

    return driver


def result_name(err: Any) -> str:
    """Return the ``CUresult`` name of ``err`` (``"CUDA_ERROR_NOT_READY"``) without calling the driver."""
    name = getattr(err, "name", None)
    if isinstance(name, str):
        return name
    try:
        return driver_module().CUresult(int(err)).name
    except Exception:  # an unknown code
        return f"CUresult({int(err)})"


def _is_success(err: Any) -> bool:
    return int(err) == 0


def raise_for(call_name: str, err: Any, detail: str = "") -> None:
    """Raise :class:`CudaCallError` (or :class:`KernelFault` for sticky errors) unless ``err`` is success."""
    if _is_success(err):
        return
    name = result_name(err)
    cls = KernelFault if name in STICKY_ERRORS else CudaCallError
    raise cls(call_name, name, detail)


def check(call_name: str, result: Any) -> Any:
    """Check the tuple a ``cuda.bindings.driver`` function returned.

    ``result`` is ``(CUresult, *values)``.  Raises :class:`CudaCallError` naming
    ``call_name`` and the ``CUresult`` name on failure; otherwise returns ``None``
    (no values), the single value, or a tuple of the values.
    """
    if not isinstance(result, tuple):
        result = (result,)
    err, values = result[0], result[1:]
    raise_for(call_name, err)
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return values


def call(name: str, *args: Any) -> Any:
    """Call ``cuda.bindings.driver.<name>(*args)`` and :func:`check` its result."""
    fn = getattr(driver_module(), name)
    return check(name, fn(*args))


@functools.lru_cache(maxsize=1)
def _probe() -> tuple[int, str]:
    """Return ``(device_count, reason)``; ``reason`` is ``""`` when a device is usable."""
    try:
        driver = driver_module()
    except ImportError as exc:  # cuda-bindings not installed
        return 0, f"cuda-bindings is not importable ({exc}): install pollbench's dependencies; or use --backend emu"
    try:
        (err,) = driver.cuInit(0)
    except Exception:  # cuda.pathfinder's DynamicLibNotFoundError (a RuntimeError), OSError, ...
        return 0, NO_DRIVER_MESSAGE
    if not _is_success(err):
        name = result_name(err)
        if name == "CUDA_ERROR_NO_DEVICE":
            return 0, f"no CUDA device found (cuInit: {name}; check CUDA_VISIBLE_DEVICES): {_NEEDS_GPU}"
        return 0, f"the CUDA driver failed to initialise (cuInit: {name}): {_NEEDS_GPU}"
    try:
        err, count = driver.cuDeviceGetCount()
    except Exception as exc:
        return 0, f"the CUDA driver failed (cuDeviceGetCount: {exc}): {_NEEDS_GPU}"
    if not _is_success(err):
        return 0, f"the CUDA driver failed (cuDeviceGetCount: {result_name(err)}): {_NEEDS_GPU}"
    if count == 0:
        return 0, f"no CUDA device found (check CUDA_VISIBLE_DEVICES): {_NEEDS_GPU}"
    return int(count), ""


def gpu_available() -> bool:
    """True when a CUDA driver is installed and at least one device is visible. Never raises."""
    try:
        return _probe()[0] > 0
    except Exception:
        return False


def unavailable_reason() -> str:
    """Why :func:`gpu_available` is False, as a one-line message (``""`` when a GPU is available)."""
    try:
        return _probe()[1]
    except Exception as exc:  # pragma: no cover - _probe catches everything it expects
        return f"the CUDA driver could not be probed ({exc}): {_NEEDS_GPU}"


def device_count() -> int:
    """Number of visible CUDA devices (0 without a driver). Never raises."""
    try:
        return _probe()[0]
    except Exception:
        return 0


def require_device(index: int) -> None:
    """Raise :class:`GpuUnavailable` unless CUDA device ``index`` exists."""
    count, reason = _probe()
    if count == 0:
        raise GpuUnavailable(reason)
    if not 0 <= index < count:
        raise GpuUnavailable(f"no CUDA device {index} (found {count}): pick --device 0..{count - 1}")


def _format_version(v: int) -> str:
    return f"{v // 1000}.{(v % 1000) // 10}"


def driver_version() -> str:
    """The CUDA version the driver supports, e.g. ``"13.0"``. Raises :class:`GpuUnavailable` without a driver."""
    try:
        fn = driver_module().cuDriverGetVersion
        result = fn()
    except ImportError as exc:
        raise GpuUnavailable(f"cuda-bindings is not importable ({exc}): install pollbench's dependencies") from None
    except Exception:  # libcuda.so could not be loaded
        raise GpuUnavailable(NO_DRIVER_MESSAGE) from None
    return _format_version(int(check("cuDriverGetVersion", result)))


def list_gpus() -> list[dict[str, Any]]:
    """Describe every visible GPU; ``[]`` when there is no driver or device (see :func:`unavailable_reason`).

    Each dict has ``index``, ``name``, ``arch`` (``"sm_90"``), ``compute_capability``
    (``"9.0"``), ``sm_count``, ``memory_bytes`` and ``driver_version`` (``"13.0"``).
    Creates no CUDA context.
    """
    count, _ = _probe()
    if count == 0:
        return []
    drv = driver_module()
    attr = drv.CUdevice_attribute
    version = driver_version()
    gpus: list[dict[str, Any]] = []
    for index in range(count):
        dev = call("cuDeviceGet", index)
        raw_name = call("cuDeviceGetName", 256, dev)
        name = raw_name.split(b"\0", 1)[0].decode(errors="replace") if isinstance(raw_name, bytes) else str(raw_name)
        major = int(call("cuDeviceGetAttribute", attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev))
        minor = int(call("cuDeviceGetAttribute", attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev))
        sms = int(call("cuDeviceGetAttribute", attr.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev))
        mem = int(call("cuDeviceTotalMem", dev))
        gpus.append(
            {
                "index": index,
                "name": name.strip(),
                "arch": f"sm_{major}{minor}",
                "compute_capability": f"{major}.{minor}",
                "sm_count": sms,
                "memory_bytes": mem,
                "driver_version": version,
            }
        )
    return gpus
