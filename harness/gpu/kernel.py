"""``KernelHandle``: one kernel of a loaded module, with its resource attributes.

Get one with ``rt.load(cubin).kernel(name)`` (:meth:`~harness.gpu.module.LoadedModule.kernel`)
and launch it with :meth:`~harness.gpu.runtime.Runtime.launch`.
"""

from __future__ import annotations

from typing import Any

from harness.gpu import driver as _drv
from harness.gpu.errors import CoreErrors

__all__ = ["KernelHandle"]

_DEFAULT_DYNAMIC_SMEM_LIMIT = 48 * 1024


# ``Runtime`` and ``LoadedModule`` below are annotations only (strings, by ``from __future__ import
# annotations``): this module sits below harness.gpu.module and harness.gpu.runtime and imports neither.
class KernelHandle:
    """A kernel of a loaded module, with its resource attributes.

    Attributes come from the driver (``cuKernelGetAttribute`` through cuda.core's
    ``Kernel.attributes``) for this runtime's device.
    """

    def __init__(self, rt: Runtime, module: LoadedModule, name: str, kernel: Any) -> None:
        self._rt = rt
        self.module = module
        self.name = name
        #: the cuda.core ``Kernel``
        self.kernel = kernel
        self._param_sizes: tuple[int, ...] | None | bool = False  # False: not queried yet
        self.dynamic_smem_limit = _DEFAULT_DYNAMIC_SMEM_LIMIT  # launches may use this many bytes

    def __repr__(self) -> str:
        return f"KernelHandle({self.name!r})"

    def _attr(self, name: str) -> int:
        with CoreErrors(self._rt, f"reading attribute {name} of kernel {self.name!r}"):
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
        with CoreErrors(self._rt, f"occupancy query for kernel {self.name!r}"):
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
            self._rt.cu_device,
        )
        self.dynamic_smem_limit = int(nbytes)
