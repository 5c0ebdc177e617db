"""The PTX builder: typed instruction IR, op table, emission (architecture §2)."""

from harness.ptx.builder import SPECIAL_REGS, Builder, Loop
from harness.ptx.ir import (
    Function, Imm, Instr, Label, Mem, Module, Param, PtxBuildError, Reg, SReg, Sym, Vec,
)
from harness.ptx.ops import OPS
from harness.ptx.types import (
    B16, B32, B64, BF16, F16, F32, F64, PRED, S8, S16, S32, S64, TYPES, U8, U16, U32, U64,
    PtxType,
)

__all__ = [
    "Builder", "Loop", "SPECIAL_REGS", "Function", "Imm", "Instr", "Label", "Mem", "Module",
    "Param", "PtxBuildError", "Reg", "SReg", "Sym", "Vec", "OPS", "PtxType", "TYPES",
    "B16", "B32", "B64", "BF16", "F16", "F32", "F64", "PRED", "S8", "S16", "S32", "S64",
    "U8", "U16", "U32", "U64",
]
