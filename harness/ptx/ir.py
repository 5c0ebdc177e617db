"""The typed instruction IR: operands, instructions, functions, modules, and PTX emission.

An ``Instr`` is one PTX instruction. Its spelling is ``opcode`` + ``mods`` + ``types`` joined
with dots (``atom`` + ``relaxed gpu global add`` + ``u32``), then its operands; the few opcodes
with their own syntax (``call``, ``brx.idx``) get a spelling function in the op table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from harness.errors import PollbenchError
from harness.ptx.types import PRED, REG_PREFIX, U32, U64, PtxType, float_literal


class PtxBuildError(PollbenchError):
    """A module that cannot be emitted: an undefined label, a misused operand, ..."""


# ---------------------------------------------------------------------------- operands


@dataclass(frozen=True)
class Reg:
    """A virtual register of one PTX type."""

    name: str
    type: PtxType

    def __str__(self) -> str:
        return f"%{self.name}"


@dataclass(frozen=True)
class Imm:
    """An immediate; floats are emitted as exact hex literals."""

    value: Union[int, float]
    type: PtxType

    def __str__(self) -> str:
        if self.type.is_float:
            return float_literal(self.value, self.type)
        return str(int(self.value))


@dataclass(frozen=True)
class SReg:
    """A special register such as ``%tid.x`` or ``%globaltimer``."""

    name: str

    @property
    def type(self) -> PtxType:
        return U64 if self.name in ("clock64", "globaltimer", "gridid") else U32

    def __str__(self) -> str:
        return f"%{self.name}"


@dataclass(frozen=True)
class Sym:
    """The address of a named variable, parameter or function."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Label:
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Mem:
    """A memory operand ``[base+offset]``; base is a register or a symbol."""

    base: Union[Reg, Sym]
    offset: int = 0

    def __str__(self) -> str:
        if self.offset:
            return f"[{self.base}+{self.offset}]"  # PTX spells a negative offset [%rd1+-8]
        return f"[{self.base}]"


@dataclass(frozen=True)
class Vec:
    """A vector operand ``{%r1, %r2, ...}`` for ``.v2``/``.v4`` loads and stores."""

    regs: tuple

    def __str__(self) -> str:
        return "{" + ", ".join(str(r) for r in self.regs) + "}"


Operand = Union[Reg, Imm, SReg, Sym, Label, Mem, Vec]


# -------------------------------------------------------------------------- instructions


@dataclass
class Instr:
    """One PTX instruction. ``pred`` is ``(reg, negated)`` for ``@%p``/``@!%p`` guards."""

    op: str
    mods: tuple = ()
    types: tuple = ()
    dst: object = None
    srcs: tuple = ()
    pred: tuple | None = None
    extra: dict = field(default_factory=dict)  # op-specific data (call target, branch table)

    @property
    def type(self) -> PtxType | None:
        return self.types[0] if self.types else None

    def opcode(self) -> str:
        """``atom.relaxed.gpu.global.add.u32``: opcode, modifiers, types."""
        return ".".join([self.op, *self.mods, *(t.name for t in self.types)])

    def to_ptx(self) -> str:
        from harness.ptx.ops import OPS  # the op table owns any special spelling

        guard = ""
        if self.pred is not None:
            reg, neg = self.pred
            guard = f"@{'!' if neg else ''}{reg} "
        row = OPS.get(self.op)
        if row is not None and row.spell is not None:
            return row.spell(self, guard)
        operands = ([self.dst] if self.dst is not None else []) + list(self.srcs)
        text = self.opcode()
        if operands:
            text += " " + ", ".join(str(o) for o in operands)
        return guard + text + ";"


@dataclass
class LabelDef:
    """A label's position in a function body (``L3:``)."""

    label: Label


@dataclass
class Param:
    name: str
    type: PtxType

    def decl(self) -> str:
        return f".param .{self.type.name} {self.name}"


@dataclass
class LocalVar:
    """A per-function ``.local`` or per-module ``.shared``/``.global`` array; ``nbytes``
    None is the ``.extern .shared`` array at the start of the launch's dynamic shared
    memory (its size is the launch's, not the module's)."""

    space: str
    name: str
    nbytes: int | None
    align: int = 8

    @property
    def dynamic(self) -> bool:
        return self.nbytes is None

    def decl(self) -> str:
        if self.dynamic:
            return f".extern .{self.space} .align {self.align} .b8 {self.name}[];"
        return f".{self.space} .align {self.align} .b8 {self.name}[{self.nbytes}];"


@dataclass
class Function:
    """A ``.entry`` kernel or a ``.func`` device function with its body."""

    name: str
    kind: str  # 'entry' | 'func' | 'extern'
    params: list = field(default_factory=list)
    ret: Param | None = None
    body: list = field(default_factory=list)  # Instr | LabelDef
    locals: list = field(default_factory=list)
    regs: dict = field(default_factory=dict)  # name -> Reg
    maxntid: int | None = None
    minnctapersm: int | None = None  # with maxntid: ptxas caps registers so this many fit an SM
    prototypes: dict = field(default_factory=dict)  # name -> Function (signature only)
    counters: dict = field(default_factory=dict)  # register-name prefix -> next number

    def signature(self, name: str | None = None) -> str:
        ret = f"({self.ret.decl()}) " if self.ret else ""
        params = ", ".join(p.decl() for p in self.params)
        return f"{ret}{name or self.name}({params})"

    def label_index(self) -> dict:
        """Label name -> index of the next instruction (the emulator's branch targets)."""
        index, n = {}, 0
        for item in self.body:
            if isinstance(item, LabelDef):
                index[item.label.name] = n
            else:
                n += 1
        return index

    def instructions(self) -> list:
        return [i for i in self.body if isinstance(i, Instr)]

    def to_ptx(self) -> str:
        if self.kind == "extern":
            return f".extern .func {self.signature()};"
        head = ".visible .entry " if self.kind == "entry" else ".visible .func "
        lines = [head + self.signature()]
        if self.maxntid:
            lines.append(f".maxntid {self.maxntid}, 1, 1")
        if self.minnctapersm:
            lines.append(f".minnctapersm {self.minnctapersm}")
        lines.append("{")
        by_type: dict[str, list] = {}
        for reg in self.regs.values():
            # PTX has no .bf16 registers: bf16 values live in .b16 ones
            decl = "b16" if reg.type.name == "bf16" else reg.type.name
            by_type.setdefault(decl, []).append(reg.name)
        for tname, names in by_type.items():
            lines.append(f"\t.reg .{tname} " + ", ".join("%" + n for n in names) + ";")
        for var in self.locals:
            lines.append("\t" + var.decl())
        for name, proto in self.prototypes.items():
            lines.append(f"\t{name}: .callprototype {proto.signature('_')};")
        for item in self.body:
            if isinstance(item, LabelDef):
                lines.append(f"{item.label.name}:")
            else:
                lines.append("\t" + item.to_ptx())
        lines.append("}")
        return "\n".join(lines)


# Default .version per target: the oldest ISA that knows the target (and has every
# instruction the builder emits), so older drivers still accept the text. The one table:
# the self-test kernels use it too.
PTX_VERSION = {"sm_80": "8.0", "sm_86": "8.0", "sm_89": "8.0", "sm_90": "8.0", "sm_90a": "8.0",
               "sm_100": "8.6", "sm_100a": "8.6", "sm_101": "8.6", "sm_101a": "8.6",
               "sm_120": "8.7", "sm_120a": "8.7", "sm_103": "8.8", "sm_103a": "8.8",
               "sm_121": "8.8", "sm_121a": "8.8", "sm_110": "9.0", "sm_110a": "9.0"}


ARCH_SPECIFIC_OPS = frozenset({"wgmma.fence", "wgmma.commit_group", "wgmma.wait_group",
                               "wgmma.mma_async"})  # the sm_90a target only


def ptx_isa_for(arch: str) -> str:
    """The ``.version`` for ``arch`` (``PTX_VERSION``; a target newer than the table gets
    the newest ISA named here, an older one 8.0)."""
    if arch in PTX_VERSION:
        return PTX_VERSION[arch]
    newest = max(PTX_VERSION.values(), key=lambda v: tuple(map(int, v.split("."))))
    return "8.0" if int(arch.removeprefix("sm_").rstrip("af")) < 100 else newest


@dataclass
class Module:
    """A PTX module: module-scope variables, extern declarations, funcs and entries."""

    arch: str = "sm_90"
    functions: dict = field(default_factory=dict)
    globals: list = field(default_factory=list)  # LocalVar with space 'shared' or 'global'
    version: str | None = None

    def add(self, fn: Function) -> Function:
        if fn.name in self.functions:
            raise PtxBuildError(f"function {fn.name!r} defined twice in one module")
        self.functions[fn.name] = fn
        return fn

    def entries(self) -> list:
        return [f for f in self.functions.values() if f.kind == "entry"]

    @property
    def target(self) -> str:
        """The ``.target``: ``arch``, or ``sm_90a`` for sm_90 when a function uses an
        instruction only that target has (``ARCH_SPECIFIC_OPS``: wgmma, which no other
        architecture has). Such code runs on compute capability 9.0 alone, which is what
        it is built for; elsewhere ptxas refuses the instruction by name."""
        if self.arch != "sm_90" or not any(
                i.op in ARCH_SPECIFIC_OPS for f in self.functions.values()
                for i in f.instructions()):
            return self.arch
        return self.arch + "a"

    def to_ptx(self) -> str:
        """The module as PTX text, ready for nvJitLink or the driver JIT."""
        target = self.target
        version = self.version or ptx_isa_for(target)
        out = [f"//\n// Generated by pollbench\n//\n.version {version}", f".target {target}",
               ".address_size 64", ""]
        out += [v.decl() for v in self.globals]
        funcs = [f for f in self.functions.values() if f.kind == "func"]
        out += [f.to_ptx() for f in self.functions.values() if f.kind == "extern"]
        # Forward declarations let funcs call each other in any order.
        out += [f".visible .func {f.signature()};" for f in funcs]
        out.append("")
        for fn in funcs + self.entries():
            out += [fn.to_ptx(), ""]
        return "\n".join(out)


def new_reg(fn: Function, t: PtxType, hint: str | None = None) -> Reg:
    """A fresh register of type ``t`` in ``fn``, named ``%<hint>`` or ``%<prefix><n>``."""
    base = hint or REG_PREFIX[t.name]
    name = base
    if hint is None or name in fn.regs:
        n = fn.counters.get(base, 0)
        while f"{base}{n}" in fn.regs:
            n += 1
        fn.counters[base] = n + 1
        name = f"{base}{n}"
    reg = Reg(name, t)
    fn.regs[name] = reg
    return reg


__all__ = ["Reg", "Imm", "SReg", "Sym", "Label", "Mem", "Vec", "Instr", "LabelDef", "Param",
           "LocalVar", "Function", "Module", "PtxBuildError", "new_reg", "PRED", "U32"]
