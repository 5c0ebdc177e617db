"""Kernel argument packing: every argument gets one exact, explicit width.

Pure functions (no driver), so the packing rules are unit-tested without a GPU:

========================================  ==========================================
argument                                  passed as
========================================  ==========================================
numpy scalar (``np.uint32(7)``, ...)      itself: its dtype's width (1/2/4/8 bytes)
``np.bool_``                              ``np.uint8`` (PTX has no .pred params)
object with an integer ``.ptr``           ``np.uint64(obj.ptr)`` (DeviceArray, StopFlag)
graph condition (``GraphCondition``,      ``np.uint64(int(handle))``
``CUgraphConditionalHandle``)
Python ``int`` in [0, 2**64)              ``np.uint64``
Python ``int`` in [-2**63, 0)             ``np.int64``
Python ``bool`` / ``float``, ndarray ...  rejected (:class:`LaunchArgError`): ambiguous width
========================================  ==========================================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from harness.gpu.errors import LaunchArgError

__all__ = ["SUPPORTED_DTYPES", "pack_args", "arg_sizes", "check_arg_layout"]

#: numpy scalar types cuda.core's launcher passes with their own width.
SUPPORTED_DTYPES = (
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
    np.float16,
    np.float32,
    np.float64,
)

_U64_LIMIT = 1 << 64
_I64_MIN = -(1 << 63)


def _condition_value(arg: Any) -> int | None:
    """The integer value of a CUDA graph conditional handle, or None if ``arg`` is not one."""
    type_name = type(arg).__name__
    if type_name == "GraphCondition":  # cuda.core.graph.GraphCondition
        return int(arg.handle)
    if type_name == "CUgraphConditionalHandle":  # cuda.bindings.driver
        return int(arg)
    return None


def _pack_one(index: int, arg: Any) -> np.generic:
    where = f"kernel argument {index}"
    if isinstance(arg, (bool, np.bool_)):
        if isinstance(arg, np.bool_):
            return np.uint8(1 if arg else 0)
        raise LaunchArgError(
            f"{where} is a Python bool, whose width is ambiguous: pass np.uint8(...) or np.uint32(...)"
        )
    if isinstance(arg, np.generic):
        if isinstance(arg, SUPPORTED_DTYPES):
            return arg
        raise LaunchArgError(
            f"{where} is a numpy {arg.dtype} scalar, which cannot be a kernel parameter: "
            "use an integer or float type of 1-8 bytes"
        )
    if isinstance(arg, int):
        if 0 <= arg < _U64_LIMIT:
            return np.uint64(arg)
        if _I64_MIN <= arg < 0:
            return np.int64(arg)
        raise LaunchArgError(f"{where} = {arg} does not fit in 64 bits")
    if isinstance(arg, float):
        raise LaunchArgError(
            f"{where} is a Python float, whose width is ambiguous: pass np.float32(...) or np.float64(...)"
        )
    if isinstance(arg, np.ndarray):
        raise LaunchArgError(
            f"{where} is a host numpy array: copy it to the GPU with rt.to_device(...) and pass that"
        )
    cond = _condition_value(arg)
    if cond is not None:
        return np.uint64(cond)
    ptr = getattr(arg, "ptr", None)
    if ptr is not None:
        if isinstance(ptr, (bool, np.bool_)) or not isinstance(ptr, (int, np.integer)):
            raise LaunchArgError(f"{where}: {type(arg).__name__}.ptr must be an int, not {type(ptr).__name__}")
        ptr = int(ptr)
        if not 0 <= ptr < _U64_LIMIT:
            raise LaunchArgError(f"{where}: {type(arg).__name__}.ptr = {ptr} is not a 64-bit address")
        return np.uint64(ptr)
    raise LaunchArgError(
        f"{where} has type {type(arg).__name__}, which cannot be a kernel parameter: "
        "pass a DeviceArray, a numpy scalar (np.uint32(...)) or an int (passed as u64)"
    )


def pack_args(args: Sequence[Any]) -> list[np.generic]:
    """Convert launch arguments to numpy scalars of explicit width (see the module table).

    Raises :class:`LaunchArgError` (a ``PollbenchError`` and a ``TypeError``) naming the
    offending argument.
    """
    return [_pack_one(i, a) for i, a in enumerate(args)]


def arg_sizes(packed: Sequence[np.generic]) -> list[int]:
    """Byte width of each packed argument."""
    return [int(a.dtype.itemsize) for a in packed]


def check_arg_layout(kernel_name: str, packed: Sequence[np.generic], param_sizes: Sequence[int] | None) -> None:
    """Check packed arguments against the kernel's parameter sizes (``cuKernelGetParamInfo``).

    ``param_sizes=None`` means the sizes are unknown, and nothing is checked.
    Raises :class:`LaunchArgError` on a count or width mismatch.
    """
    if param_sizes is None:
        return
    sizes = arg_sizes(packed)
    if len(sizes) != len(param_sizes):
        raise LaunchArgError(
            f"kernel {kernel_name!r} takes {len(param_sizes)} parameter(s) but was given {len(sizes)}"
        )
    for i, (got, want) in enumerate(zip(sizes, param_sizes)):
        if got != want:
            raise LaunchArgError(
                f"kernel {kernel_name!r} parameter {i} is {want} bytes but argument {i} "
                f"({packed[i].dtype}) is {got} bytes: pass a numpy scalar of the right width"
            )
