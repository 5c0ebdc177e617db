"""pollbench's cuda-python runtime (see architecture §1, §5, §7, §8, §11).

Importing this package touches no driver: ``cuda.core`` / ``cuda.bindings`` are
imported, and ``libcuda.so`` loaded, only when a GPU function is first called.

Public API::

    gpu_available() -> bool                  # never raises
    unavailable_reason() -> str              # why not, one line ("" if available)
    list_gpus() -> list[dict]                # index, name, arch, sm_count, memory_bytes, driver_version
    Runtime(device=0)                        # context manager: load/load_ptx, alloc/to_device,
                                             # launch, timer/time_launch, run_with_watchdog,
                                             # capture_graph/while_graph/launch_graph
    pack_args(args) -> list[np.generic]      # the launch-argument rules, as a pure function

Errors (all ``harness.errors.PollbenchError``): ``GpuError``, ``GpuUnavailable``,
``CudaCallError``, ``KernelFault``, ``KernelTimeout``, ``LaunchArgError``.
"""

from harness.gpu.args import check_arg_layout, pack_args
from harness.gpu.driver import (
    device_count,
    driver_version,
    gpu_available,
    list_gpus,
    unavailable_reason,
)
from harness.gpu.errors import (
    ERROR_CLASSES,
    CudaCallError,
    GpuError,
    GpuUnavailable,
    KernelFault,
    KernelTimeout,
    LaunchArgError,
)
from harness.gpu.events import EventTimer
from harness.gpu.graphs import ExecGraph
from harness.gpu.kernel import KernelHandle
from harness.gpu.memory import DeviceArray
from harness.gpu.module import LoadedModule
from harness.gpu.runtime import Runtime, grid_for
from harness.gpu.watchdog import Outcome, StopFlag

__all__ = [
    "gpu_available",
    "unavailable_reason",
    "device_count",
    "driver_version",
    "list_gpus",
    "Runtime",
    "LoadedModule",
    "KernelHandle",
    "DeviceArray",
    "EventTimer",
    "ExecGraph",
    "StopFlag",
    "Outcome",
    "grid_for",
    "pack_args",
    "check_arg_layout",
    *ERROR_CLASSES,
]
