"""Tensor maps for the bulk tensor copy (TMA, sm_90): ``cuTensorMapEncodeTiled``'s opaque
128 bytes describing a row-major 2-D array in global memory and the box one copy moves."""

from __future__ import annotations

import numpy as np

from harness.gpu.driver import call, driver_module
from harness.gpu.errors import GpuError

_ELEMENTS = {"bf16": ("CU_TENSOR_MAP_DATA_TYPE_BFLOAT16", 2),
             "f32": ("CU_TENSOR_MAP_DATA_TYPE_FLOAT32", 4)}
ELEMENT_BYTES = {name: size for name, (_, size) in _ELEMENTS.items()}
_SWIZZLES = {0: "CU_TENSOR_MAP_SWIZZLE_NONE", 32: "CU_TENSOR_MAP_SWIZZLE_32B",
             64: "CU_TENSOR_MAP_SWIZZLE_64B", 128: "CU_TENSOR_MAP_SWIZZLE_128B"}


def encode_2d(ptr: int, rows: int, cols: int, box_rows: int, box_cols: int,
              element: str = "bf16", swizzle: int = 128) -> np.ndarray:
    """The tensor map (16 u64) of the ``rows x cols`` row-major array at device address
    ``ptr`` whose copies move ``box_rows x box_cols`` boxes into shared memory, each box
    row's 16-byte chunks XORed with the row mod 8 when ``swizzle`` is 128 (the layout
    wgmma's 128-byte-swizzle descriptors read). Raises :class:`GpuError` naming the
    constraint a shape breaks."""
    if element not in _ELEMENTS or swizzle not in _SWIZZLES:
        raise GpuError(f"no tensor map for {element} elements with a {swizzle}-byte swizzle")
    kind, size = _ELEMENTS[element]
    if ptr % 16 or (cols * size) % 16:
        raise GpuError(f"a tensor map needs a 16-byte aligned base and row pitch "
                       f"({ptr:#x}, {cols * size} bytes)")
    if not (0 < box_rows <= 256 and 0 < box_cols <= 256):
        raise GpuError(f"a tensor copy's box is at most 256 x 256 elements, not "
                       f"{box_rows} x {box_cols}")
    if swizzle and box_cols * size > swizzle:
        raise GpuError(f"a box row of {box_cols * size} bytes is wider than the "
                       f"{swizzle}-byte swizzle")
    d = driver_module()
    tmap = call("cuTensorMapEncodeTiled", getattr(d.CUtensorMapDataType, kind), 2, ptr,
                [d.cuuint64_t(cols), d.cuuint64_t(rows)], [d.cuuint64_t(cols * size)],
                [d.cuuint32_t(box_cols), d.cuuint32_t(box_rows)],
                [d.cuuint32_t(1), d.cuuint32_t(1)],
                d.CUtensorMapInterleave.CU_TENSOR_MAP_INTERLEAVE_NONE,
                getattr(d.CUtensorMapSwizzle, _SWIZZLES[swizzle]),
                d.CUtensorMapL2promotion.CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                d.CUtensorMapFloatOOBfill.CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE)
    return np.array([int(w) for w in tmap.opaque], dtype=np.uint64)


def swizzle_128b(box: np.ndarray) -> np.ndarray:
    """numpy's picture of a box as a 128-byte-swizzled copy leaves it in shared memory:
    ``box`` (rows x 128 bytes, as uint8) with row r's 16-byte chunk j moved to j ^ (r % 8)."""
    rows = box.reshape(box.shape[0], 8, 16)
    out = np.empty_like(rows)
    for r in range(rows.shape[0]):
        out[r, np.arange(8) ^ (r % 8)] = rows[r]
    return out.reshape(box.shape)
