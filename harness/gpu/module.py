"""``LoadedModule``: a cubin or PTX module loaded on the device (a cuda.core ``ObjectCode``)
and its kernels by name -- not ``harness.ptx.Module``, the IR it may have been built from.

Made by :meth:`~harness.gpu.runtime.Runtime.load` / :meth:`~harness.gpu.runtime.Runtime.load_ptx`.
"""

from __future__ import annotations

from typing import Any

from harness.gpu.errors import CoreErrors
from harness.gpu.kernel import KernelHandle

__all__ = ["LoadedModule"]


# ``Runtime`` below is an annotation only (a string, by ``from __future__ import annotations``):
# this module sits below harness.gpu.runtime and does not import it.
class LoadedModule:
    """A loaded cubin or PTX module; :meth:`kernel` looks kernels up by name."""

    def __init__(self, rt: Runtime, object_code: Any, kind: str, name: str = "") -> None:
        self._rt = rt
        #: the cuda.core ``ObjectCode``
        self.object_code = object_code
        self.kind = kind
        self.name = name
        self._kernels: dict[str, KernelHandle] = {}

    def __repr__(self) -> str:
        return f"LoadedModule({self.kind}, {self.name!r})"

    def kernel(self, name: str) -> KernelHandle:
        """Return the kernel ``name`` (the ``.entry`` name in the PTX)."""
        handle = self._kernels.get(name)
        if handle is None:
            with CoreErrors(self._rt, f"looking up kernel {name!r} in {self.kind} module {self.name!r}"):
                k = self.object_code.get_kernel(name)
            handle = KernelHandle(self._rt, self, name, k)
            self._kernels[name] = handle
        return handle
