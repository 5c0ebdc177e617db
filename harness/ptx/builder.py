"""The builder: one method call emits one PTX instruction into a function body.

    m = Module(arch="sm_90")
    b = Builder.entry(m, "axpy", [("x", U64), ("n", U32)])
    i = b.global_index()
    with b.if_(b.setp("lt", i, b.param("n"))):
        ...

Structured helpers (``if_``, ``loop``, ``when``) lower to labels and predicated branches, so
the PTX stays readable. Every method checks that its opcode has a row in the op table.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from harness.ptx.ir import (
    Function, Imm, Instr, Label, LabelDef, LocalVar, Mem, Module, Param, PtxBuildError, Reg,
    SReg, Sym, Vec, new_reg,
)
from harness.ptx.ops import ATOMIC_OPS, OPS, SPACES
from harness.ptx.types import PRED, S32, TYPES, U32, U64, PtxType, same_size_int

SPECIAL_REGS = (
    "tid.x", "tid.y", "tid.z", "ntid.x", "ntid.y", "ntid.z", "ctaid.x", "ctaid.y", "ctaid.z",
    "nctaid.x", "nctaid.y", "nctaid.z", "laneid", "warpid", "nwarpid", "smid", "nsmid",
    "clock", "clock64", "globaltimer", "lanemask_lt", "lanemask_eq",
)
SEMANTICS = ("weak", "relaxed", "acquire", "release", "acq_rel", "volatile")
SCOPES = ("cta", "cluster", "gpu", "sys")
_RESERVED = {s.split(".")[0] for s in SPECIAL_REGS}
_BITS_ONLY = ("and", "or", "xor", "not", "shl", "popc", "clz", "brev")


_BITS_ATOMICS = ("and", "or", "xor", "exch", "cas")  # ptxas takes only .bN types for these


def _atomic_type(op: str, t: PtxType) -> None:
    if op in _BITS_ATOMICS and t.kind != "b":
        raise PtxBuildError(f"atom/red .{op} takes a .b32/.b64 type, not .{t.name}")


def _t(spec) -> PtxType:
    return TYPES[spec] if isinstance(spec, str) else spec


def _half_as_bits(t: PtxType) -> PtxType:
    # ld/st have no .f16/.bf16 forms: half-precision values move as .b16
    return TYPES["b16"] if t.name in ("f16", "bf16") else t


@dataclass
class Loop:
    """Labels of a structured loop: ``start`` (re-test) and ``end`` (after the loop)."""

    builder: "Builder"
    start: Label
    end: Label

    def break_if(self, p: Reg, negate: bool = False) -> None:
        self.builder.bra(self.end, pred=(p, negate))

    def continue_if(self, p: Reg, negate: bool = False) -> None:
        self.builder.bra(self.start, pred=(p, negate))


class Builder:
    """Appends instructions to one ``Function`` of a ``Module``."""

    def __init__(self, module: Module, fn: Function):
        self.module = module
        self.fn = fn
        self._guard: tuple | None = None

    # ------------------------------------------------------------------ construction

    @classmethod
    def entry(cls, module: Module, name: str, params=(), maxntid: int | None = None,
              minnctapersm: int | None = None) -> "Builder":
        """A new ``.entry`` kernel with ``params`` as (name, type) pairs; ``maxntid`` (and
        ``minnctapersm``: blocks an SM must hold at once) bound its registers."""
        fn = Function(name, "entry", [Param(n, _t(t)) for n, t in params], maxntid=maxntid,
                      minnctapersm=minnctapersm)
        return cls(module, module.add(fn))

    @classmethod
    def func(cls, module: Module, name: str, params=(), ret=None) -> "Builder":
        """A new ``.func`` device function, optionally returning one value of type ``ret``."""
        fn = Function(name, "func", [Param(n, _t(t)) for n, t in params],
                      ret=Param("ret", _t(ret)) if ret is not None else None)
        return cls(module, module.add(fn))

    @staticmethod
    def extern(module: Module, name: str, params=(), ret=None) -> Function:
        """Declare an ``.extern .func`` (e.g. ``cudaGraphSetConditional``)."""
        fn = Function(name, "extern", [Param(n, _t(t)) for n, t in params],
                      ret=Param("ret", _t(ret)) if ret is not None else None)
        return module.add(fn)

    @staticmethod
    def shared(module: Module, name: str, nbytes: int, align: int = 16) -> Sym:
        """A module-scope ``.shared`` array; returns its symbol (a shared-window address)."""
        module.globals.append(LocalVar("shared", name, nbytes, align))
        return Sym(name)

    @staticmethod
    def dynamic_shared(module: Module, name: str, align: int = 16) -> Sym:
        """The ``.extern .shared`` array of dynamic shared memory (sized by each launch's
        ``shared`` bytes; it follows the static arrays, and every such array of a module
        starts at the same address)."""
        module.globals.append(LocalVar("shared", name, None, align))
        return Sym(name)

    def local(self, name: str, nbytes: int, align: int = 8) -> Sym:
        """A per-thread ``.local`` array in this function."""
        self.fn.locals.append(LocalVar("local", name, nbytes, align))
        return Sym(name)

    def reg(self, t, hint: str | None = None) -> Reg:
        """A fresh register of type ``t``."""
        if hint in _RESERVED:
            hint += "_"
        return new_reg(self.fn, _t(t), hint)

    def new_label(self, hint: str = "L") -> Label:
        return Label(f"$L_{hint}_{self.next_id()}")

    def next_id(self) -> int:
        """A number unique in this function (labels, jump tables)."""
        # Per function, not per builder: several builders may write one body (an inlined
        # poll function is emitted by its own FnBuilder into its caller's function).
        n = self.fn.counters.get("$label", 0) + 1
        self.fn.counters["$label"] = n
        return n

    def place(self, label: Label) -> Label:
        """Put ``label`` at the current position."""
        self.fn.body.append(LabelDef(label))
        return label

    # ------------------------------------------------------------------------ emit

    def _operand(self, x, t: PtxType | None):
        if isinstance(x, (Reg, Imm, SReg, Sym, Label, Mem, Vec)):
            return x
        if isinstance(x, bool):
            raise PtxBuildError("a Python bool is not a PTX operand; use a predicate register")
        if isinstance(x, (int, float)):
            if t is None:
                raise PtxBuildError(f"cannot infer the type of immediate {x!r}; pass type=")
            return Imm(x, t)
        raise PtxBuildError(f"not a PTX operand: {x!r}")

    def emit(self, op: str, mods=(), types=(), dst=None, srcs=(), pred=None, **extra) -> Instr:
        """Append one instruction; its opcode must have a row in the op table."""
        if op not in OPS:
            raise PtxBuildError(f"opcode {op!r} has no row in the op table")
        t = types[0] if types else None
        ins = Instr(op, tuple(m for m in mods if m), tuple(types), dst,
                    tuple(self._operand(s, t) for s in srcs), pred or self._guard, dict(extra))
        self.fn.body.append(ins)
        return ins

    @staticmethod
    def infer(*xs) -> PtxType:
        for x in xs:
            if isinstance(x, (Reg, SReg)):
                return x.type
        raise PtxBuildError("cannot infer an instruction type from immediates alone; pass type=")

    def _dst(self, dst, t: PtxType) -> Reg:
        return dst if dst is not None else self.reg(t)

    # ----------------------------------------------------------------- arithmetic

    def _binary(self, op, a, b, type=None, dst=None, mods=(), pred=None) -> Reg:
        t = _t(type) if type else self.infer(a, b)
        if op in _BITS_ONLY and t.kind in "us":
            t = same_size_int(t, "b")  # and/or/xor/shl take only .bN (or .pred)
        elif op not in _BITS_ONLY and t.kind == "b":
            t = same_size_int(t, "u")  # arithmetic has no .bN forms
        if t.is_float and op in ("add", "sub", "mul", "div") and not mods:
            mods = ("rn",)  # explicit rounding: ptxas must not contract add/mul into fma
        d = self._dst(dst, t)
        self.emit(op, mods, (t,), d, (a, b), pred)
        return d

    def add(self, a, b, **kw) -> Reg:
        return self._binary("add", a, b, **kw)

    def sub(self, a, b, **kw) -> Reg:
        return self._binary("sub", a, b, **kw)

    def min(self, a, b, **kw) -> Reg:
        return self._binary("min", a, b, **kw)

    def max(self, a, b, **kw) -> Reg:
        return self._binary("max", a, b, **kw)

    def div(self, a, b, **kw) -> Reg:
        return self._binary("div", a, b, **kw)

    def rem(self, a, b, **kw) -> Reg:
        return self._binary("rem", a, b, **kw)

    def and_(self, a, b, **kw) -> Reg:
        return self._binary("and", a, b, **kw)

    def or_(self, a, b, **kw) -> Reg:
        return self._binary("or", a, b, **kw)

    def xor(self, a, b, **kw) -> Reg:
        return self._binary("xor", a, b, **kw)

    def shl(self, a, n, **kw) -> Reg:
        return self._binary("shl", a, n, **kw)

    def shr(self, a, n, **kw) -> Reg:
        return self._binary("shr", a, n, **kw)

    def mul(self, a, b, mode: str = "lo", type=None, dst=None, pred=None) -> Reg:
        """mul.lo/.hi/.wide for ints (wide doubles the width), mul.rn for floats."""
        t = _t(type) if type else self.infer(a, b)
        t = same_size_int(t, "u") if t.kind == "b" else t
        mods = ("rn",) if t.is_float else (mode,)
        dt = TYPES[f"{t.kind}{t.bits * 2}"] if mode == "wide" and not t.is_float else t
        d = self._dst(dst, dt)
        self.emit("mul", mods, (t,), d, (a, b), pred)
        return d

    def mad(self, a, b, c, mode: str = "lo", type=None, dst=None, pred=None) -> Reg:
        """mad.lo/.hi/.wide for ints; for floats this is fma.rn."""
        t = _t(type) if type else self.infer(a, b, c)
        t = same_size_int(t, "u") if t.kind == "b" else t
        if t.is_float:
            return self.fma(a, b, c, type=t, dst=dst, pred=pred)
        dt = TYPES[f"{t.kind}{t.bits * 2}"] if mode == "wide" else t
        d = self._dst(dst, dt)
        self.emit("mad", (mode,), (t,), d, (a, b, c), pred)
        return d

    def fma(self, a, b, c, type=None, dst=None, pred=None) -> Reg:
        """fma.rn: a*b+c rounded once."""
        t = _t(type) if type else self.infer(a, b, c)
        d = self._dst(dst, t)
        self.emit("fma", ("rn",), (t,), d, (a, b, c), pred)
        return d

    def _unary(self, op, a, type=None, dst=None, mods=(), pred=None) -> Reg:
        t = _t(type) if type else self.infer(a)
        if op in _BITS_ONLY and t.kind in "us":
            t = same_size_int(t, "b")
        elif op in ("neg", "abs") and t.kind == "b":
            t = same_size_int(t, "s")  # neg/abs have only .sN forms for integers
        d = self._dst(dst, U32 if op in ("popc", "clz") else t)
        self.emit(op, mods, (t,), d, (a,), pred)
        return d

    def neg(self, a, **kw) -> Reg:
        return self._unary("neg", a, **kw)

    def abs(self, a, **kw) -> Reg:
        return self._unary("abs", a, **kw)

    def not_(self, a, **kw) -> Reg:
        return self._unary("not", a, **kw)

    def popc(self, a, **kw) -> Reg:
        return self._unary("popc", a, **kw)

    def clz(self, a, **kw) -> Reg:
        return self._unary("clz", a, **kw)

    def brev(self, a, **kw) -> Reg:
        return self._unary("brev", a, **kw)

    def sqrt(self, a, **kw) -> Reg:
        return self._unary("sqrt", a, mods=("rn",), **kw)

    def setp(self, cmp: str, a, b, type=None, dst=None, pred=None) -> Reg:
        """setp.<cmp>.<type> -> a new predicate register."""
        t = _t(type) if type else self.infer(a, b)
        if t.kind == "b" and cmp not in ("eq", "ne"):
            t = same_size_int(t, "u")  # .bN compares only eq/ne
        d = self._dst(dst, PRED)
        self.emit("setp", (cmp,), (t,), d, (a, b), pred)
        return d

    def selp(self, a, b, p: Reg, type=None, dst=None, pred=None) -> Reg:
        """d = p ? a : b."""
        t = _t(type) if type else self.infer(a, b)
        d = self._dst(dst, t)
        self.emit("selp", (), (t,), d, (a, b, p), pred)
        return d

    def mov(self, src, type=None, dst=None, pred=None) -> Reg:
        """mov from a register, immediate, special register or symbol address."""
        t = _t(type) if type else (dst.type if dst is not None else
                                   U64 if isinstance(src, Sym) else self.infer(src))
        d = self._dst(dst, t)
        self.emit("mov", (), (t,), d, (src,), pred)
        return d

    def special(self, name: str) -> Reg:
        """Read a special register (``tid.x``, ``clock64``, ``globaltimer``, ...)."""
        if name not in SPECIAL_REGS:
            raise PtxBuildError(f"unknown special register %{name}")
        s = SReg(name)
        return self.mov(s, type=s.type)

    def cvt(self, src, to, rnd: str | None = None, type=None, dst=None, pred=None) -> Reg:
        """cvt.<rnd>.to.from; float->int defaults to .rzi, to-float to .rn where needed."""
        to, frm = _t(to), (_t(type) if type else self.infer(src))
        if frm.kind == "b":
            frm = same_size_int(frm, "u")  # cvt has no .bN forms
        if rnd is None:
            if to.is_int and frm.is_float:
                rnd = "rzi"
            elif to.is_float and (frm.is_int or to.bits < frm.bits):
                rnd = "rn"
        d = self._dst(dst, to)
        self.emit("cvt", (rnd,) if rnd else (), (to, frm), d, (src,), pred)
        return d

    def cvta_to_global(self, ptr) -> Reg:
        d = self.reg(U64)
        self.emit("cvta", ("to", "global"), (U64,), d, (ptr,))
        return d

    # ---------------------------------------------------------------------- memory

    @staticmethod
    def _mem_mods(space: str, sem: str | None, scope: str | None, vec: int = 1):
        if space not in SPACES:
            raise PtxBuildError(f"unknown state space {space!r} (one of {', '.join(SPACES)})")
        if sem is not None and sem not in SEMANTICS:
            raise PtxBuildError(f"unknown memory semantics .{sem}")
        if sem in ("relaxed", "acquire", "release", "acq_rel") and scope not in SCOPES:
            raise PtxBuildError(f".{sem} needs a scope ({', '.join(SCOPES)})")
        if vec not in (1, 2, 4):
            raise PtxBuildError("vector width must be 1, 2 or 4")
        if vec > 1 and sem not in (None, "weak"):
            raise PtxBuildError("vector loads/stores are weak in this builder")
        return (sem if sem != "weak" else None, scope if sem else None, space,
                f"v{vec}" if vec > 1 else None)

    @staticmethod
    def _addr(addr) -> Mem:
        return addr if isinstance(addr, Mem) else Mem(addr)

    def ld(self, space: str, addr, type, sem=None, scope=None, vec: int = 1, dst=None,
           pred=None):
        """ld.space{.sem.scope}{.vN}.type; returns the register (or a tuple for vectors)."""
        rt = _t(type)  # the register keeps the value's type (bf16 is declared .b16)
        t = _half_as_bits(rt)
        mods = self._mem_mods(space, sem, scope, vec)
        if vec > 1:
            regs = tuple(self.reg(rt) for _ in range(vec))
            self.emit("ld", mods, (t,), Vec(regs), (self._addr(addr),), pred)
            return regs
        d = self._dst(dst, rt)
        self.emit("ld", mods, (t,), d, (self._addr(addr),), pred)
        return d

    def st(self, space: str, addr, value, type=None, sem=None, scope=None, pred=None) -> None:
        """st.space{.sem.scope}{.vN}.type [addr], value (a tuple of registers for vectors)."""
        vec = len(value) if isinstance(value, tuple) else 1
        t = _half_as_bits(_t(type) if type else self.infer(*(value if vec > 1 else (value,))))
        mods = self._mem_mods(space, sem, scope, vec)
        val = Vec(tuple(value)) if vec > 1 else value
        self.emit("st", mods, (t,), None, (self._addr(addr), val), pred)

    def param(self, name: str) -> Reg:
        """Load the function parameter ``name`` into a register."""
        for p in self.fn.params:
            if p.name == name:
                return self.ld("param", Sym(name), p.type)
        raise PtxBuildError(f"{self.fn.name} has no parameter {name!r}")

    def atom(self, space: str, op: str, addr, b, c=None, type=None, sem=None, scope=None,
             dst=None, pred=None) -> Reg:
        """atom{.sem}{.scope}.space.op.type: returns the old value."""
        if op not in ATOMIC_OPS:
            raise PtxBuildError(f"unknown atomic operation {op!r}")
        t = _t(type) if type else self.infer(b)
        _atomic_type(op, t)
        d = self._dst(dst, t)
        srcs = (self._addr(addr), b) + ((c,) if c is not None else ())
        self.emit("atom", (sem, scope if sem else None, space, op), (t,), d, srcs, pred)
        return d

    def red(self, space: str, op: str, addr, b, type=None, sem=None, scope=None, pred=None):
        """red{.sem}{.scope}.space.op.type: an atomic update with no result."""
        if op not in ATOMIC_OPS or op in ("cas", "exch"):
            raise PtxBuildError(f"red has no operation {op!r}")
        t = _t(type) if type else self.infer(b)
        _atomic_type(op, t)
        self.emit("red", (sem, scope if sem else None, space, op), (t,), None,
                  (self._addr(addr), b), pred)

    def fence(self, sem: str = "acq_rel", scope: str = "gpu") -> None:
        """fence.{acq_rel,sc}.{cta,gpu,sys}."""
        if sem not in ("acq_rel", "sc") or scope not in SCOPES:
            raise PtxBuildError(f"fence.{sem}.{scope} is not a fence")
        self.emit("fence", (sem, scope))

    # ----------------------------------------------------------------- collectives

    def bar_sync(self, bar_id=0, count=None, aligned: bool = True) -> None:
        """bar.sync id{, count}: wait for the block (or ``count`` threads) at barrier ``id``.
        ``aligned=False``: ``barrier.sync``, which a warp's threads may reach apart."""
        self.emit("bar" if aligned else "barrier", ("sync",), (U32,), None,
                  (bar_id,) + ((count,) if count else ()))

    def bar_arrive(self, bar_id, count) -> None:
        """bar.arrive id, count: signal a named barrier without waiting."""
        self.emit("bar", ("arrive",), (U32,), None, (bar_id, count))

    def bar_red(self, kind: str, p: Reg, bar_id: int = 0, aligned: bool = True) -> Reg:
        """bar.red.popc.u32 (count of true p) or bar.red.{and,or}.pred over the block.
        ``aligned=False``: ``barrier.red``, which a warp's threads may reach apart (after
        divergent code); ``bar.red`` is ``barrier.red.aligned``, which requires them
        converged (Hopper faults with an illegal instruction otherwise)."""
        if kind not in ("popc", "and", "or"):
            raise PtxBuildError(f"bar.red has no reduction {kind!r}")
        t = U32 if kind == "popc" else PRED
        d = self.reg(t)
        self.emit("bar.red" if aligned else "barrier.red", (kind,), (t,), d, (Imm(bar_id, U32), p))
        return d

    def bar_warp_sync(self, mask=0xFFFFFFFF) -> None:
        self.emit("bar", ("warp", "sync"), (U32,), None, (mask,))

    def shfl(self, mode: str, a, b, c=0x1F, mask=0xFFFFFFFF, dst=None) -> Reg:
        """shfl.sync.{up,down,bfly,idx}.b32 d, a, b, c, mask."""
        if mode not in ("up", "down", "bfly", "idx"):
            raise PtxBuildError(f"unknown shfl mode {mode!r}")
        d = self._dst(dst, self.infer(a) if isinstance(a, Reg) else TYPES["b32"])
        self.emit("shfl", ("sync", mode), (TYPES["b32"],), d,
                  (a, Imm(b, U32) if isinstance(b, int) else b,
                   Imm(c, U32) if isinstance(c, int) else c, Imm(mask, U32)))
        return d

    def vote(self, mode: str, p: Reg, mask=0xFFFFFFFF) -> Reg:
        """vote.sync.{all,any,uni}.pred or vote.sync.ballot.b32."""
        t = TYPES["b32"] if mode == "ballot" else PRED
        d = self.reg(t)
        self.emit("vote", ("sync", mode), (t,), d, (p, Imm(mask, U32)))
        return d

    def activemask(self) -> Reg:
        d = self.reg(TYPES["b32"])
        self.emit("activemask", (), (TYPES["b32"],), d)
        return d

    def mma_bf16(self, a, b, c, dst=None) -> tuple:
        """``mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32``: the warp's 16x8 f32 tile
        D = A x B + C from each lane's fragments (``a``: four b32 registers of bf16 pairs,
        ``b``: two, ``c``: four f32; layouts: ``harness.ptx.ops.mma_*_coords``). Every lane
        of the warp must execute it. Returns the lane's four f32 registers of D (``dst``, e.g.
        ``c`` itself for an accumulator carried through a loop, or four new ones)."""
        if (len(a), len(b), len(c)) != (4, 2, 4) or (dst is not None and len(dst) != 4):
            raise PtxBuildError("mma.m16n8k16 takes 4 A, 2 B and 4 C registers per lane")
        d = tuple(dst) if dst is not None else tuple(self.reg(TYPES["f32"]) for _ in range(4))
        self.emit("mma", ("sync", "aligned", "m16n8k16", "row", "col"),
                  (TYPES["f32"], TYPES["bf16"], TYPES["bf16"], TYPES["f32"]), Vec(d),
                  (Vec(tuple(a)), Vec(tuple(b)), Vec(tuple(c))))
        return d

    def ldmatrix(self, addr, count: int = 4) -> tuple:
        """``ldmatrix.sync.aligned.m8n8.x{count}.shared.b16``: ``count`` 8x8 b16 matrices from
        shared memory, lanes 8j..8j+7 giving matrix j's row addresses; returns ``count`` b32
        registers per lane, in the mma fragment layout. Every lane of the warp executes it."""
        if count not in (1, 2, 4):
            raise PtxBuildError("ldmatrix loads 1, 2 or 4 matrices")
        d = tuple(self.reg(TYPES["b32"]) for _ in range(count))
        self.emit("ldmatrix", ("sync", "aligned", "m8n8", f"x{count}", "shared"),
                  (TYPES["b16"],), Vec(d), (self._addr(addr),))
        return d

    def nanosleep(self, ns) -> None:
        self.emit("nanosleep", (), (U32,), None, (ns,))

    def mbarrier_init(self, addr, count) -> None:
        self.emit("mbarrier", ("init", "shared"), (TYPES["b64"],), None,
                  (self._addr(addr), Imm(count, U32) if isinstance(count, int) else count))

    def mbarrier_inval(self, addr) -> None:
        """``mbarrier.inval``: end the mbarrier object at ``addr``, so the location may be
        initialised again (``mbarrier.init`` on a valid object is undefined)."""
        self.emit("mbarrier", ("inval", "shared"), (TYPES["b64"],), None, (self._addr(addr),))

    def mbarrier_arrive(self, addr) -> Reg:
        """Returns the arrival's state token (opaque on hardware)."""
        d = self.reg(TYPES["b64"])
        self.emit("mbarrier", ("arrive", "shared"), (TYPES["b64"],), d, (self._addr(addr),))
        return d

    def mbarrier_arrive_expect_tx(self, addr, tx_bytes) -> Reg:
        """``mbarrier.arrive.expect_tx``: expect ``tx_bytes`` more transaction bytes (bulk
        copies completing on this barrier), then arrive; returns the state token."""
        d = self.reg(TYPES["b64"])
        self.emit("mbarrier", ("arrive", "expect_tx", "shared"), (TYPES["b64"],), d,
                  (self._addr(addr), Imm(tx_bytes, U32) if isinstance(tx_bytes, int) else tx_bytes))
        return d

    def cp_async_bulk(self, dst, src, size, mbar) -> None:
        """``cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes``: the TMA's
        1-D copy of ``size`` bytes (a multiple of 16, 16-byte aligned) from global to shared
        memory, completing ``size`` transaction bytes on the mbarrier ``mbar`` (sm_90)."""
        if isinstance(size, int) and size % 16:
            raise PtxBuildError(f"cp.async.bulk copies multiples of 16 bytes, not {size}")
        self.emit("cp.async.bulk", ("shared::cluster", "global", "mbarrier::complete_tx::bytes"),
                  (), None, (self._addr(dst), self._addr(src),
                             Imm(size, U32) if isinstance(size, int) else size, self._addr(mbar)))

    def mbarrier_wait(self, addr, state, kind: str = "test_wait", parity: bool = False) -> Reg:
        """mbarrier.test_wait / try_wait{.parity}: has the phase of ``state`` completed?"""
        if kind not in ("test_wait", "try_wait"):
            raise PtxBuildError(f"unknown mbarrier wait {kind!r}")
        d = self.reg(PRED)
        self.emit("mbarrier", (kind, "parity" if parity else None, "shared"), (TYPES["b64"],),
                  d, (self._addr(addr), state))
        return d

    def cp_async_bulk_tensor(self, dst, tmap, coords, mbar) -> None:
        """``cp.async.bulk.tensor.{n}d.shared::cluster.global.mbarrier::complete_tx::bytes``:
        the TMA copies the box of the tensor map at ``tmap`` (a generic address: a 128-byte
        ``CUtensorMap`` in global memory, written before the launch) whose first element is
        at ``coords`` (innermost first, s32 elements) into shared memory at ``dst``, laid
        out as the map says (swizzled), completing its bytes on the mbarrier ``mbar``."""
        if not 1 <= len(coords) <= 5:
            raise PtxBuildError("a tensor copy takes 1 to 5 coordinates")
        self.emit("cp.async.bulk.tensor", (f"{len(coords)}d", "shared::cluster", "global",
                                           "mbarrier::complete_tx::bytes"), (), None,
                  (self._addr(dst), tmap, *coords, self._addr(mbar)))

    def fence_proxy_async(self) -> None:
        """``fence.proxy.async.shared::cta``: this thread's plain stores to shared memory are
        ordered before later async-proxy reads of it (wgmma, bulk copies); a barrier after
        the fence then orders them for the block."""
        self.emit("fence.proxy", ("async", "shared::cta"))

    def wgmma_fence(self) -> None:
        """``wgmma.fence.sync.aligned``: registers written before it (accumulators) are
        ordered before the warpgroup's next wgmma reads them."""
        self.emit("wgmma.fence", ("sync", "aligned"))

    def wgmma_commit(self) -> None:
        """``wgmma.commit_group.sync.aligned``: close the group of wgmmas issued since the last."""
        self.emit("wgmma.commit_group", ("sync", "aligned"))

    def wgmma_wait(self, pending: int = 0) -> None:
        """``wgmma.wait_group.sync.aligned N``: all but the newest ``pending`` groups have
        completed (their accumulators may be read, their shared memory reused)."""
        self.emit("wgmma.wait_group", ("sync", "aligned"), (), None, (Imm(pending, U32),))

    # the matrix descriptor's constant fields for a K-major operand in the 128-byte swizzle:
    # leading byte offset 16 (unused when a k16 slice lies inside one swizzled line),
    # stride byte offset 1024 (8 rows of 128 bytes), layout type 1 (128B swizzle)
    _DESC_128B = (16 >> 4) << 16 | (1024 >> 4) << 32 | 1 << 62

    def wgmma_desc(self, addr) -> Reg:
        """The 64-bit wgmma matrix descriptor of a K-major operand at shared address
        ``addr`` (u32) laid out in the 128-byte swizzle (as a tensor copy with
        CU_TENSOR_MAP_SWIZZLE_128B writes it: 128-byte rows, 8-row groups 1024 bytes apart,
        the group 1024-byte aligned; a k16 slice at +32 bytes a slice)."""
        start = self.cvt(self.shr(self.and_(addr, 0x3FFFF, type=U32), 4, type=U32), U64)
        return self.or_(start, self._DESC_128B, type=U64)

    def wgmma_bf16(self, acc, desc_a, desc_b, scale_d: Reg) -> None:
        """``wgmma.mma_async.sync.aligned.m64n{N}k16.f32.bf16.bf16`` (sm_90a): the warpgroup's
        D (64 x N, f32, ``acc``: N/2 registers a thread, updated in place) = A (64 x 16) x
        B (16 x N) + (``scale_d`` ? D : 0), A and B read from shared memory through the
        64-bit matrix descriptors, both K-major (no transpose). Asynchronous: the
        accumulators are not to be touched until a ``wgmma_wait`` covers the group."""
        n = 2 * len(acc)
        if n % 8 or not 8 <= n <= 256:
            raise PtxBuildError(f"wgmma m64nNk16 has N in 8..256 by 8; {len(acc)} "
                                f"accumulators make N = {n}")
        self.emit("wgmma.mma_async", ("sync", "aligned", f"m64n{n}k16"),
                  (TYPES["f32"], TYPES["bf16"], TYPES["bf16"]), Vec(tuple(acc)),
                  (desc_a, desc_b, scale_d, Imm(1, S32), Imm(1, S32), Imm(0, S32), Imm(0, S32)))

    def cp_async(self, dst, src, size: int = 16, cache: str = "ca") -> None:
        """cp.async.{ca,cg}.shared.global [dst], [src], size (4, 8 or 16 bytes)."""
        if size not in (4, 8, 16) or (cache == "cg" and size != 16):
            raise PtxBuildError(f"cp.async.{cache} cannot copy {size} bytes")
        self.emit("cp.async", (cache, "shared", "global"), (), None,
                  (self._addr(dst), self._addr(src), Imm(size, U32)))

    def cp_async_mbarrier_arrive(self, mbar) -> None:
        """``cp.async.mbarrier.arrive.noinc.shared.b64``: arrive on the mbarrier ``mbar`` once
        this thread's earlier cp.asyncs have landed (sm_80); ``.noinc``: the barrier's init
        count includes this arrival. A wait on ``mbar`` then stands for the copies."""
        self.emit("cp.async.mbarrier.arrive", ("noinc", "shared"), (TYPES["b64"],), None,
                  (self._addr(mbar),))

    def cp_async_commit(self) -> None:
        self.emit("cp.async.commit_group")

    def cp_async_wait(self, n: int = 0) -> None:
        self.emit("cp.async.wait_group", (), (), None, (Imm(n, U32),))

    # ---------------------------------------------------------------- control flow

    def bra(self, label: Label, uni: bool = False, pred=None) -> None:
        self.emit("bra", ("uni",) if uni else (), (), None, (label,), pred)

    def brx_idx(self, index: Reg, targets: list) -> None:
        """Indirect branch: jump to ``targets[index]``."""
        self.emit("brx.idx", (), (), None, (index,), targets=list(targets),
                  table=f"$T_{self.next_id()}")

    def ret(self, value=None) -> None:
        """Return (storing ``value`` into the function's return parameter first)."""
        if value is not None:
            if self.fn.ret is None:
                raise PtxBuildError(f"{self.fn.name} returns nothing")
            self.st("param", Sym(self.fn.ret.name), value, type=self.fn.ret.type)
        self.emit("ret")

    def exit(self) -> None:
        self.emit("exit")

    def trap(self) -> None:
        self.emit("trap")

    def call(self, target, args=(), proto: Function | None = None, uni: bool = True,
             pred=None):
        """Call a ``.func`` directly (by Function or name) or indirectly (a register holding
        its address, with ``proto`` giving the signature). Returns the result register."""
        if isinstance(target, Reg):
            if proto is None:
                raise PtxBuildError("an indirect call needs a prototype")
            sig = proto
            pname = f"proto_{len(self.fn.prototypes)}"
            for name, existing in self.fn.prototypes.items():
                if existing.signature("_") == proto.signature("_"):
                    pname = name
            self.fn.prototypes[pname] = proto
            extra = {"sig": sig, "proto": pname}
            tgt = target
            uni = False
        else:
            name = target.name if isinstance(target, Function) else target
            if name not in self.module.functions:
                raise PtxBuildError(f"call to undefined function {name!r}")
            sig = self.module.functions[name]
            extra = {"sig": sig}
            tgt = Sym(name)
        if len(args) != len(sig.params):
            raise PtxBuildError(f"{sig.name} takes {len(sig.params)} arguments, got {len(args)}")
        # immediates take their parameter's type
        args = [Imm(a, p.type) if isinstance(a, (int, float)) and not isinstance(a, bool) else a
                for a, p in zip(args, sig.params)]
        d = self.reg(sig.ret.type) if sig.ret is not None else None
        self.emit("call", ("uni",) if uni else (), (), d, (tgt, *args), pred, **extra)
        return d

    # ------------------------------------------------------------------- structure

    @contextlib.contextmanager
    def when(self, p: Reg, negate: bool = False):
        """Guard every instruction emitted inside with ``@p`` (or ``@!p``)."""
        saved, self._guard = self._guard, (p, negate)
        try:
            yield
        finally:
            self._guard = saved

    @contextlib.contextmanager
    def if_(self, p: Reg, negate: bool = False):
        """``if (p) { ... }``: a branch around the body."""
        end = self.new_label("endif")
        self.bra(end, pred=(p, not negate))
        yield
        self.place(end)

    @contextlib.contextmanager
    def loop(self):
        """``loop { ... }``: the body repeats until ``break_if``; falls back to the top."""
        lp = Loop(self, self.new_label("loop"), self.new_label("endloop"))
        self.place(lp.start)
        yield lp
        self.bra(lp.start)
        self.place(lp.end)

    def global_index(self, dim: str = "x") -> Reg:
        """ctaid * ntid + tid, as u32."""
        return self.mad(self.special(f"ctaid.{dim}"), self.special(f"ntid.{dim}"),
                        self.special(f"tid.{dim}"))

    def element_addr(self, base: Reg, index: Reg, elem_bytes: int) -> Reg:
        """base + index * elem_bytes as a u64 address (mul.wide then add)."""
        off = self.mul(index, elem_bytes, mode="wide", type=U32 if index.type.bits == 32 else index.type)
        return self.add(base, off, type=U64)


__all__ = ["Builder", "Loop", "SPECIAL_REGS", "Module", "S32", "U32", "U64"]
