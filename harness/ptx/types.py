"""PTX scalar types, and the bit-level conversions the emulator does with them.

Register values are kept as raw bit patterns (Python ints masked to the type's width), so
``mov``, ``ld``/``st`` and ``cvt`` between same-size types are exact; arithmetic decodes to a
value (signed int, numpy float) and encodes the result back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PtxType:
    """One PTX fundamental type: ``.u32``, ``.f32``, ``.pred`` ..."""

    name: str
    bits: int
    kind: str  # 'u' unsigned, 's' signed, 'b' untyped bits, 'f' float, 'p' predicate

    def __str__(self) -> str:
        return self.name

    @property
    def nbytes(self) -> int:
        return max(1, self.bits // 8)

    @property
    def mask(self) -> int:
        return (1 << self.bits) - 1

    @property
    def is_float(self) -> bool:
        return self.kind == "f"

    @property
    def is_int(self) -> bool:
        return self.kind in "usb"


def _t(name: str, bits: int, kind: str) -> PtxType:
    return PtxType(name, bits, kind)


U8, U16, U32, U64 = _t("u8", 8, "u"), _t("u16", 16, "u"), _t("u32", 32, "u"), _t("u64", 64, "u")
S8, S16, S32, S64 = _t("s8", 8, "s"), _t("s16", 16, "s"), _t("s32", 32, "s"), _t("s64", 64, "s")
B8, B16, B32, B64 = _t("b8", 8, "b"), _t("b16", 16, "b"), _t("b32", 32, "b"), _t("b64", 64, "b")
F16, BF16, F32, F64 = _t("f16", 16, "f"), _t("bf16", 16, "f"), _t("f32", 32, "f"), _t("f64", 64, "f")
PRED = _t("pred", 1, "p")

TYPES: dict[str, PtxType] = {
    t.name: t for t in (U8, U16, U32, U64, S8, S16, S32, S64, B8, B16, B32, B64, F16, BF16, F32, F64, PRED)
}

# Register-name prefix per type, so emitted PTX reads like nvcc's.
REG_PREFIX = {
    "u8": "rc", "s8": "rcs", "b8": "rcb", "u16": "rh", "s16": "rhs", "b16": "rhb",
    "u32": "r", "s32": "rs", "b32": "rb", "u64": "rd", "s64": "rds", "b64": "rdb",
    "f16": "hf", "bf16": "hb", "f32": "f", "f64": "fd", "pred": "p",
}

_NP_FLOAT = {"f16": np.float16, "f32": np.float32, "f64": np.float64}
_NP_UINT = {16: np.uint16, 32: np.uint32, 64: np.uint64}


def same_size_int(t: PtxType, kind: str = "u") -> PtxType:
    """The integer type of the same width as ``t`` (``f32`` -> ``u32``)."""
    return TYPES[f"{kind}{t.bits}"]


def decode(bits: int, t: PtxType):
    """Raw bits -> the value arithmetic works on (int, numpy float or bool)."""
    if t.kind in "ub":
        return bits & t.mask
    if t.kind == "s":
        bits &= t.mask
        return bits - (1 << t.bits) if bits >> (t.bits - 1) else bits
    if t.kind == "p":
        return bool(bits & 1)
    if t.name == "bf16":
        return np.array([(bits & 0xFFFF) << 16], dtype=np.uint32).view(np.float32)[0]
    return np.array([bits & t.mask], dtype=_NP_UINT[t.bits]).view(_NP_FLOAT[t.name])[0]


def encode(value, t: PtxType) -> int:
    """A value -> raw bits of type ``t`` (ints wrap, floats round to nearest even)."""
    if t.kind in "usb":
        return int(value) & t.mask
    if t.kind == "p":
        return 1 if value else 0
    if t.name == "bf16":
        return f32_to_bf16_bits(np.float32(value))
    f = _NP_FLOAT[t.name](value)
    return int(np.array([f]).view(_NP_UINT[t.bits])[0])


def f32_to_bf16_bits(x: np.float32) -> int:
    """Round an f32 to bf16 (nearest even, NaN kept quiet), as ``cvt.rn.bf16.f32`` does."""
    u = int(np.array([x], dtype=np.float32).view(np.uint32)[0])
    if (u & 0x7F800000) == 0x7F800000 and (u & 0x7FFFFF):
        return 0x7FFF  # canonical NaN, what the hardware returns
    u += 0x7FFF + ((u >> 16) & 1)
    return (u >> 16) & 0xFFFF


def float_literal(value: float, t: PtxType) -> str:
    """Exact PTX spelling of a float immediate (``0f3F800000``), never a lossy decimal."""
    if t.name == "f64":
        return "0d%016X" % encode(value, t)
    return "0f%08X" % encode(value, F32)
