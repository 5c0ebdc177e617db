"""The op table: every opcode the builder can emit, once, with its PTX spelling and its
emulator semantics side by side.

A row's ``sem(t, ins)`` runs one instruction for one emulated thread ``t`` (see
``harness.emu.machine.Thread``): it reads operands with ``t.val``/``t.bits``, writes with
``t.set``/``t.set_bits``, and reaches memory, control flow and the collectives through the
thread. It returns ``BLOCKED`` when the thread must wait (a barrier, a shuffle), else None.
A row's ``spell`` is only given where the generic ``opcode operands;`` form does not fit.
An opcode without a row cannot be built: the builder looks every instruction up here.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

import numpy as np

from harness.ptx.types import PRED, TYPES, PtxType, decode, encode

BLOCKED = object()  # returned by a sem when the thread waits at a collective

SPACES = ("global", "shared", "local", "param", "const")


@dataclass(frozen=True)
class OpDef:
    name: str
    sem: Callable
    spell: Callable | None
    doc: str


OPS: dict[str, OpDef] = {}


def op(*names: str, spell: Callable | None = None):
    """Register a row's semantics (and optional spelling) under one or more opcodes."""

    def register(fn):
        for name in names:
            OPS[name] = OpDef(name, fn, spell, (fn.__doc__ or "").strip())
        return fn

    return register


# ------------------------------------------------------------------------- float rounding


def _round_to_f32(exact: Fraction) -> np.float32:
    """Round an exact rational to f32 once (nearest even), avoiding f64 double rounding."""
    r64 = float(exact)
    f = np.float32(r64)
    if float(f) == r64 or not np.isfinite(f):
        return f
    lo, hi = (f, np.nextafter(f, np.float32(np.inf))) if float(f) < r64 else (
        np.nextafter(f, np.float32(-np.inf)), f)
    mid = (Fraction(float(lo)) + Fraction(float(hi))) / 2
    if exact < mid:
        return lo
    if exact > mid:
        return hi
    return lo if int(np.array([lo]).view(np.uint32)[0]) % 2 == 0 else hi


def _fused(a, b, c, t: PtxType):
    """a*b+c with one rounding, as fma.rn does."""
    if not (np.isfinite(a) and np.isfinite(b) and np.isfinite(c)):
        return t_float(t)(np.float64(a) * np.float64(b) + np.float64(c))
    exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    if t.name == "f64":
        return np.float64(float(exact)) if exact != 0 else np.float64(float(a) * float(b) + float(c))
    if exact == 0:  # keep IEEE's signed zero
        return np.float32(np.float64(a) * np.float64(b) + np.float64(c))
    return _round_to_f32(exact)


def t_float(t: PtxType):
    return {"f16": np.float16, "f32": np.float32, "f64": np.float64}[t.name]


def _int_div(a: int, b: int) -> int:
    if b == 0:
        return -1  # PTX leaves it undefined; hardware gives all ones for .u32
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _int_rem(a: int, b: int) -> int:
    if b == 0:
        return a
    return a - _int_div(a, b) * b


# ------------------------------------------------------------------------- arithmetic


_INT_BINARY = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b,
    "min": min, "max": max, "div": _int_div, "rem": _int_rem,
    "and": lambda a, b: a & b, "or": lambda a, b: a | b, "xor": lambda a, b: a ^ b,
}
_FLOAT_BINARY = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b, "min": np.fmin, "max": np.fmax,
}


@op("add", "sub", "min", "max", "div", "rem", "and", "or", "xor")
def _binary(t, ins):
    """Two-operand arithmetic and logic; ints wrap, floats round to nearest even (.rn)."""
    ty = ins.type
    a, b = (t.val(s, ty) for s in ins.srcs)
    if ty.kind == "p":
        r = {"and": a and b, "or": a or b, "xor": a != b}[ins.op]
    elif ty.is_float:
        r = _FLOAT_BINARY[ins.op](a, b)
    else:
        r = _INT_BINARY[ins.op](a, b)
    t.set(ins.dst, r, ty)


@op("mul")
def _mul(t, ins):
    """mul.lo / mul.hi / mul.wide for ints, mul.rn for floats."""
    ty = ins.type
    a, b = (t.val(s, ty) for s in ins.srcs)
    if ty.is_float:
        t.set(ins.dst, a * b, ty)
    elif "wide" in ins.mods:
        t.set(ins.dst, a * b, TYPES[f"{ty.kind}{ty.bits * 2}"])
    elif "hi" in ins.mods:
        t.set(ins.dst, (a * b) >> ty.bits, ty)
    else:
        t.set(ins.dst, a * b, ty)


@op("mad", "fma")
def _mad(t, ins):
    """mad.lo / mad.wide / mad.hi for ints; fma.rn (and mad.rn) with a single rounding."""
    ty = ins.type
    a, b, c = (t.val(s, ty) for s in ins.srcs)
    if ty.is_float:
        t.set(ins.dst, _fused(a, b, c, ty), ty)
    elif "wide" in ins.mods:
        wide = TYPES[f"{ty.kind}{ty.bits * 2}"]
        t.set(ins.dst, a * b + t.val(ins.srcs[2], wide), wide)
    elif "hi" in ins.mods:
        t.set(ins.dst, ((a * b) >> ty.bits) + c, ty)
    else:
        t.set(ins.dst, a * b + c, ty)


_UNARY = {
    "neg": lambda a, ty: -a,
    "abs": lambda a, ty: abs(a),
    "not": lambda a, ty: (not a) if ty.kind == "p" else ~a,
    "popc": lambda a, ty: bin(a & ty.mask).count("1"),
    "clz": lambda a, ty: ty.bits - (a & ty.mask).bit_length(),
    "brev": lambda a, ty: int(format(a & ty.mask, f"0{ty.bits}b")[::-1], 2),
    "sqrt": lambda a, ty: np.sqrt(a),
}


@op(*_UNARY)
def _unary(t, ins):
    """One-operand arithmetic; popc/clz write a u32 whatever the source width."""
    ty = ins.type
    r = _UNARY[ins.op](t.val(ins.srcs[0], ty), ty)
    t.set(ins.dst, r, TYPES["u32"] if ins.op in ("popc", "clz") else ty)


@op("shl", "shr")
def _shift(t, ins):
    """Shifts; the amount is clamped to the width as PTX specifies; shr.s is arithmetic."""
    ty = ins.type
    a = t.val(ins.srcs[0], ty)
    n = min(t.val(ins.srcs[1], TYPES["u32"]), ty.bits)
    t.set(ins.dst, a << n if ins.op == "shl" else a >> n, ty)


_CMP = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b, "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b,
    "lo": lambda a, b: a < b, "ls": lambda a, b: a <= b,
    "hi": lambda a, b: a > b, "hs": lambda a, b: a >= b,
}


@op("setp")
def _setp(t, ins):
    """setp.<cmp>.<type>: ordered comparisons (any NaN compares false)."""
    ty = ins.type
    a, b = (t.val(s, ty) for s in ins.srcs)
    if ty.is_float and (np.isnan(a) or np.isnan(b)):
        r = False
    else:
        r = _CMP[ins.mods[0]](a, b)
    t.set(ins.dst, bool(r), PRED)


@op("selp")
def _selp(t, ins):
    """selp.<type> d, a, b, p: d = p ? a : b."""
    a, b, p = ins.srcs
    t.set_bits(ins.dst, t.bits(a if t.val(p, PRED) else b))


@op("mov")
def _mov(t, ins):
    """mov: registers, immediates, special registers, and addresses of symbols."""
    t.set_bits(ins.dst, t.bits(ins.srcs[0], ins.type))


@op("cvta")
def _cvta(t, ins):
    """cvta.to.global / cvta.global: global addresses are generic ones in the emulator."""
    if "shared" in ins.mods or "local" in ins.mods:
        t.trap("the emulator has no generic addressing for shared/local memory")
    t.set_bits(ins.dst, t.bits(ins.srcs[0]))


_F2I = {"rzi": np.trunc, "rni": np.rint, "rmi": np.floor, "rpi": np.ceil}


@op("cvt")
def _cvt(t, ins):
    """cvt.<rnd>.dtype.atype: ints extend/truncate, float->int rounds and saturates
    (NaN -> 0), int->float and narrowing float conversions round to nearest even."""
    dty, sty = ins.types
    v = t.val(ins.srcs[0], sty)
    if dty.is_int and sty.is_int:
        r = v
    elif dty.is_int:
        if np.isnan(v):
            r = 0
        else:
            rounded = _F2I[next(m for m in ins.mods if m in _F2I)](np.float64(v))
            lo = -(1 << (dty.bits - 1)) if dty.kind == "s" else 0
            hi = (1 << (dty.bits - 1)) - 1 if dty.kind == "s" else (1 << dty.bits) - 1
            r = int(min(max(rounded, lo), hi))
    elif sty.is_int:
        r = np.float64(float(Fraction(v))) if dty.name == "f64" else _round_to_f32(Fraction(v))
    elif dty.name == "bf16":
        r = v  # encode() rounds f32 -> bf16 to nearest even
    else:
        r = t_float(dty)(v)
    t.set(ins.dst, r, dty)


# ---------------------------------------------------------------------------- memory


def space_of(ins) -> str:
    for m in ins.mods:
        if m.split("::")[0] in SPACES:
            return m.split("::")[0]
    return "generic"


def _vec_width(ins) -> int:
    return 4 if "v4" in ins.mods else 2 if "v2" in ins.mods else 1


@op("ld")
def _ld(t, ins):
    """ld{.sem.scope}.space{.v2|.v4}.type; sub-word loads extend into wider registers."""
    ty = ins.type
    space, base = space_of(ins), t.addr(ins.srcs[0])
    dsts = ins.dst.regs if _vec_width(ins) > 1 else (ins.dst,)
    for i, reg in enumerate(dsts):
        bits = t.load(space, base + i * ty.nbytes, ty.nbytes)
        t.set(reg, decode(bits, ty), reg.type if reg.type.is_int and ty.is_int else ty)


@op("st")
def _st(t, ins):
    """st{.sem.scope}.space{.v2|.v4}.type [addr], value."""
    ty = ins.type
    space, base = space_of(ins), t.addr(ins.srcs[0])
    vals = ins.srcs[1].regs if _vec_width(ins) > 1 else (ins.srcs[1],)
    for i, v in enumerate(vals):
        t.store(space, base + i * ty.nbytes, ty.nbytes, t.bits(v, ty) & ty.mask)


_ATOMIC = {
    "add": lambda old, b, c: old + b, "exch": lambda old, b, c: b,
    "cas": lambda old, b, c: c if old == b else old,
    "and": lambda old, b, c: old & b, "or": lambda old, b, c: old | b,
    "xor": lambda old, b, c: old ^ b, "min": lambda old, b, c: min(old, b),
    "max": lambda old, b, c: max(old, b),
    "inc": lambda old, b, c: 0 if old >= b else old + 1,
    "dec": lambda old, b, c: b if old == 0 or old > b else old - 1,
}
ATOMIC_OPS = tuple(_ATOMIC)


@op("atom", "red")
def _atom(t, ins):
    """atom/red{.sem}{.scope}.space.<op>.type: one indivisible read-modify-write;
    atom returns the old value (cas compares with b and stores c)."""
    ty = ins.type
    kind = next(m for m in ins.mods if m in _ATOMIC)
    mem, *rest = ins.srcs
    space, addr = space_of(ins), t.addr(mem)
    b = t.val(rest[0], ty)
    c = t.val(rest[1], ty) if len(rest) > 1 else None
    old = decode(t.load(space, addr, ty.nbytes), ty)
    t.store(space, addr, ty.nbytes, encode(_ATOMIC[kind](old, b, c), ty))
    if ins.op == "atom":
        t.set(ins.dst, old, ty)


@op("fence")
def _fence(t, ins):
    """fence.{acq_rel,sc}.{cta,gpu,sys}: the emulator is sequentially consistent."""


# ------------------------------------------------------------------- control flow


@op("bra")
def _bra(t, ins):
    """bra{.uni} label."""
    t.jump(ins.srcs[0])


def _spell_brx(ins, guard):
    table = ins.extra["table"]
    targets = ", ".join(lbl.name for lbl in ins.extra["targets"])
    return f"{table}: .branchtargets {targets};\n\t{guard}{ins.opcode()} {ins.srcs[0]}, {table};"


@op("brx.idx", spell=_spell_brx)
def _brx(t, ins):
    """brx.idx index, table: an indirect branch through a list of labels."""
    targets = ins.extra["targets"]
    i = t.val(ins.srcs[0], TYPES["u32"])
    if i >= len(targets):
        t.trap(f"brx.idx index {i} out of range ({len(targets)} targets)")
    t.jump(targets[i])


def _spell_call(ins, guard):
    sig = ins.extra["sig"]
    lines = ["{"]
    names = []
    for i, (p, arg) in enumerate(zip(sig.params, ins.srcs[1:])):
        name = f"param{i}"
        names.append(name)
        lines.append(f"\t.param .{p.type.name} {name};")
        lines.append(f"\tst.param.{p.type.name} [{name}], {arg};")
    ret = ""
    if sig.ret is not None:
        lines.append(f"\t.param .{sig.ret.type.name} retval0;")
        ret = "(retval0), "
    target = ins.srcs[0]
    proto = f", {ins.extra['proto']}" if "proto" in ins.extra else ""
    uni = ".uni" if "uni" in ins.mods else ""
    lines.append(f"\t{guard}call{uni} {ret}{target}, ({', '.join(names)}){proto};")
    if sig.ret is not None and ins.dst is not None:
        lines.append(f"\tld.param.{sig.ret.type.name} {ins.dst}, [retval0];")
    lines.append("\t}")
    return "\n\t".join(lines)


@op("call", spell=_spell_call)
def _call(t, ins):
    """call{.uni} (ret), target, (args){, proto}: direct (a function symbol) or indirect
    (a register holding a function address, with a .callprototype)."""
    sig = ins.extra["sig"]
    args = [t.bits(a, p.type) & p.type.mask for a, p in zip(ins.srcs[1:], sig.params)]
    t.call(ins.srcs[0], args, ins.dst)


@op("ret")
def _ret(t, ins):
    """ret: return from a .func (or end the thread in an .entry)."""
    t.ret()


@op("exit")
def _exit(t, ins):
    """exit: end this thread."""
    t.exit()


@op("trap")
def _trap(t, ins):
    """trap: abort the kernel with an error."""
    t.trap("trap instruction executed")


@op("nanosleep")
def _nanosleep(t, ins):
    """nanosleep.u32 t: the emulated thread sleeps ``t`` ns of emulated time."""
    t.sleep(t.val(ins.srcs[0], TYPES["u32"]))


# -------------------------------------------------------------------- collectives


def _spell_untyped(ins, guard):
    # bar takes integer operands but its spelling carries no type suffix
    return f"{guard}{'.'.join([ins.op, *ins.mods])} {', '.join(str(s) for s in ins.srcs)};"


@op("bar", spell=_spell_untyped)
def _bar(t, ins):
    """bar.sync id{, count} / bar.arrive id, count (named barriers), and bar.warp.sync mask."""
    if ins.mods[:2] == ("warp", "sync"):
        mask = t.val(ins.srcs[0], TYPES["u32"])
        return t.wait_warp(("bar.warp", mask), mask, None, None, None)
    bar_id = t.val(ins.srcs[0], TYPES["u32"])
    count = t.val(ins.srcs[1], TYPES["u32"]) if len(ins.srcs) > 1 else None
    return t.wait_block(bar_id, count, arrive_only="arrive" in ins.mods)


@op("barrier", spell=_spell_untyped)
def _barrier(t, ins):
    """barrier.sync id{, count}: bar.sync without ``.aligned`` (a warp's threads may arrive
    apart, e.g. from a run queue's divergent loop)."""
    return _bar(t, ins)


def _spell_bar_red(ins, guard):
    d, bar_id, p = ins.dst, ins.srcs[0], ins.srcs[1]
    return f"{guard}{ins.opcode()} {d}, {bar_id}, {p};"


@op("bar.red", spell=_spell_bar_red)
def _bar_red(t, ins):
    """bar.red.{popc.u32,and.pred,or.pred} d, id, p: a block barrier that also reduces p."""
    kind = ins.mods[0]
    bar_id = t.val(ins.srcs[0], TYPES["u32"])

    def finish(th, votes):
        r = {"popc": sum(votes), "and": all(votes), "or": any(votes)}[kind]
        th.set(ins.dst, r, ins.dst.type)

    return t.wait_block(bar_id, None, vote=(t.val(ins.srcs[1], PRED), finish))


@op("barrier.red", spell=_spell_bar_red)
def _barrier_red(t, ins):
    """barrier.red: bar.red without ``.aligned`` (threads of a warp may arrive apart)."""
    return _bar_red(t, ins)


def shfl_source_lane(mode: str, lane: int, b: int, c: int) -> tuple[int, bool]:
    """The PTX ISA's shfl.sync lane arithmetic: (source lane, in-range predicate)."""
    bval, cval, segmask = b & 0x1F, c & 0x1F, (c >> 8) & 0x1F
    max_lane = (lane & segmask) | (cval & ~segmask & 0x1F)
    min_lane = lane & segmask
    if mode == "up":
        j = lane - bval
        ok = j >= max_lane
    elif mode == "down":
        j = lane + bval
        ok = j <= max_lane
    elif mode == "bfly":
        j = lane ^ bval
        ok = j <= max_lane
    else:  # idx
        j = min_lane | (bval & ~segmask & 0x1F)
        ok = j <= max_lane
    return (j if ok else lane), ok


@op("shfl")
def _shfl(t, ins):
    """shfl.sync.{up,down,bfly,idx}.b32 d, a, b, c, membermask."""
    mode = ins.mods[1]
    a, b, c, m = ins.srcs
    mask = t.val(m, TYPES["u32"])
    mine = (t.bits(a), t.val(b, TYPES["u32"]), t.val(c, TYPES["u32"]))

    def combine(contrib):
        out = {}
        for lane, (_, bv, cv) in contrib.items():
            src, _ok = shfl_source_lane(mode, lane, bv, cv)
            out[lane] = contrib[src][0] if src in contrib else 0
        return out

    return t.wait_warp(("shfl", mask), mask, mine, combine, lambda th, v: th.set_bits(ins.dst, v))


@op("vote")
def _vote(t, ins):
    """vote.sync.{all,any,uni}.pred d, p, mask and vote.sync.ballot.b32 d, p, mask."""
    mode = ins.mods[1]
    p, m = ins.srcs
    mask = t.val(m, TYPES["u32"])

    def combine(contrib):
        votes = [bool(v) for v in contrib.values()]
        ballot = sum(1 << lane for lane, v in contrib.items() if v)
        r = {"all": all(votes), "any": any(votes), "uni": len(set(votes)) == 1,
             "ballot": ballot}[mode]
        return {lane: r for lane in contrib}

    def finish(th, r):
        th.set(ins.dst, r, ins.dst.type if mode == "ballot" else PRED)

    return t.wait_warp(("vote", mask), mask, t.val(p, PRED), combine, finish)


@op("activemask")
def _activemask(t, ins):
    """activemask.b32 d: the emulator reports the warp's threads that have not exited."""
    t.set_bits(ins.dst, t.warp_alive_mask())


# ---------------------------------------------------------------- tensor-core mma

# Fragment layouts of mma.m16n8k16 with .bf16 inputs and .f32 accumulators (PTX ISA, "Matrix
# Fragments for mma.m16n8k16 with floating point type"): lane = 4 * groupID + tig.
def mma_a_coords(lane: int) -> list:
    """(row, col) in A (16x16) of a lane's elements a0..a7 (a register holds a_2j, a_2j+1)."""
    g, tig = lane >> 2, lane & 3
    return [(g + (8 if i in (2, 3, 6, 7) else 0), tig * 2 + (i & 1) + (8 if i >= 4 else 0))
            for i in range(8)]


def mma_b_coords(lane: int) -> list:
    """(row, col) in B (16x8) of a lane's elements b0..b3."""
    g, tig = lane >> 2, lane & 3
    return [(tig * 2 + (i & 1) + (8 if i >= 2 else 0), g) for i in range(4)]


def mma_cd_coords(lane: int) -> list:
    """(row, col) in C and D (16x8) of a lane's elements c0..c3."""
    g, tig = lane >> 2, lane & 3
    return [(g + (8 if i >= 2 else 0), tig * 2 + (i & 1)) for i in range(4)]


def _bf16_value(bits16: int) -> float:
    return float(np.array([bits16 << 16], np.uint32).view(np.float32)[0])


@op("mma")
def _mma(t, ins):
    """mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {d0..d3}, {a0..a3}, {b0, b1},
    {c0..c3}: the warp's D (16x8) = A (16x16) x B (16x8) + C, every lane holding its
    fragments. The emulator rounds each element of D once from the exact sum; tensor cores
    need not (their accumulation order and rounding are not specified), so bit-exact
    comparisons draw inputs whose sums are exact."""
    a, b, c = ins.srcs
    f32 = TYPES["f32"]
    mine = ([t.bits(r) for r in a.regs], [t.bits(r) for r in b.regs],
            [t.val(r, f32) for r in c.regs])

    def combine(contrib):
        A = [[0.0] * 16 for _ in range(16)]
        B = [[0.0] * 8 for _ in range(16)]
        C = [[0.0] * 8 for _ in range(16)]
        for lane, (aw, bw, cv) in contrib.items():
            for (r, col), w in zip(mma_a_coords(lane), [w >> h & 0xFFFF for w in aw for h in (0, 16)]):
                A[r][col] = _bf16_value(w)
            for (r, col), w in zip(mma_b_coords(lane), [w >> h & 0xFFFF for w in bw for h in (0, 16)]):
                B[r][col] = _bf16_value(w)
            for (r, col), v in zip(mma_cd_coords(lane), cv):
                C[r][col] = float(v)

        def element(r, col):
            terms = [A[r][k] * B[k][col] for k in range(16)] + [C[r][col]]
            if not all(np.isfinite(x) for x in terms):
                return np.float32(sum(terms))
            return _round_to_f32(sum((Fraction(x) for x in terms), Fraction(0)))

        return {lane: [element(r, col) for r, col in mma_cd_coords(lane)] for lane in contrib}

    def finish(th, values):
        for reg, v in zip(ins.dst.regs, values):
            th.set(reg, v, f32)

    return t.wait_warp(("mma",), 0xFFFFFFFF, mine, combine, finish)


@op("ldmatrix")
def _ldmatrix(t, ins):
    """ldmatrix.sync.aligned.m8n8.x{1,2,4}.shared.b16 {d..}, [p]: lanes 8j..8j+7 give the row
    addresses of 8x8 b16 matrix j (16 bytes each); every lane t receives, in d_j, row t/4,
    columns 2(t%4) and 2(t%4)+1 of matrix j (the mma fragment layout)."""
    count = int(ins.mods[3][1:])
    row = t.load("shared", t.addr(ins.srcs[0]), 16) if t.lane < 8 * count else None

    def combine(contrib):
        rows = {lane: r for lane, r in contrib.items() if r is not None}
        out = {}
        for lane in contrib:
            words = []
            for j in range(count):
                bits = rows[8 * j + lane // 4]
                words.append(bits >> (32 * (lane % 4)) & 0xFFFFFFFF)
            out[lane] = words
        return out

    def finish(th, words):
        for reg, w in zip(ins.dst.regs, words):
            th.set_bits(reg, w)

    return t.wait_warp(("ldmatrix",), 0xFFFFFFFF, row, combine, finish)


# mbarrier state in its 8 bytes of shared memory: pending arrivals (bits 0-19), expected
# arrivals (bits 20-39), the transaction count (bits 40-62, two's complement: complete_tx may
# come before expect_tx), phase parity (bit 63). The emulator's own encoding: PTX leaves the
# layout opaque, so only predicates are compared with hardware, never raw state.
_TX_BITS = 23


def _mbar_split(word: int):
    tx = (word >> 40) & ((1 << _TX_BITS) - 1)
    if tx >> (_TX_BITS - 1):
        tx -= 1 << _TX_BITS
    return word & 0xFFFFF, (word >> 20) & 0xFFFFF, tx, word >> 63


def _mbar_join(pending: int, expected: int, tx: int, phase: int) -> int:
    return (pending | (expected << 20) | ((tx & ((1 << _TX_BITS) - 1)) << 40)
            | (phase << 63))


def _mbar_update(t, addr: int, arrivals: int = 0, tx: int = 0) -> int:
    """Apply ``arrivals`` arrive-ons and a transaction-count change to the mbarrier at
    ``addr``; its phase completes when no arrival and no transaction byte is pending.
    Returns the phase before the update (an arrival's token)."""
    pending, expected, count, phase = _mbar_split(t.load("shared", addr, 8))
    before = phase
    pending -= arrivals
    count += tx
    if pending == 0 and count == 0:
        pending, phase = expected, phase ^ 1
    t.store("shared", addr, 8, _mbar_join(pending, expected, count, phase))
    return before


def _need_mbarrier(t, addr: int, what: str) -> None:
    """Trap unless shared ``addr`` holds a valid mbarrier object (initialised, not
    invalidated): ``what`` on any other location is undefined."""
    if addr not in t.block.mbarriers:
        t.trap(f"{what} at shared {addr:#x}: no valid mbarrier there (not initialised, "
               "or invalidated)")


@op("mbarrier")
def _mbarrier(t, ins):
    """mbarrier.{init,inval,arrive,arrive.expect_tx,test_wait,try_wait}{.parity}.shared.b64.
    The block keeps which locations hold a valid object: init of a valid one, and any other
    operation on a location without one, are undefined in PTX and trap here."""
    kind = ins.mods[0]
    valid = t.block.mbarriers
    addr = t.addr(ins.srcs[0])
    if kind == "init":
        if addr in valid:
            t.trap(f"mbarrier.init at shared {addr:#x}: it holds a valid mbarrier "
                   "(mbarrier.inval it first)")
        n = t.val(ins.srcs[1], TYPES["u32"])
        t.store("shared", addr, 8, _mbar_join(n, n, 0, 0))
        valid.add(addr)
        return
    _need_mbarrier(t, addr, f"mbarrier.{kind}")
    if kind == "inval":
        valid.discard(addr)
        return
    if kind == "arrive":
        tx = t.val(ins.srcs[1], TYPES["u32"]) if "expect_tx" in ins.mods else 0
        if tx:  # expect-tx first, then the arrive-on (one phase step at most)
            _mbar_update(t, addr, tx=tx)
        phase = _mbar_update(t, addr, arrivals=1)
        if ins.dst is not None:
            t.set_bits(ins.dst, phase << 63)
        return
    # test_wait / try_wait: the phase named by the token (or parity) has completed. Bulk
    # copies queued on this barrier land first (a valid schedule: they are in flight).
    state = ins.srcs[1]
    for _dst, _src, _n, tx in t.land_bulk_copies(addr):
        if tx:
            _mbar_update(t, addr, tx=-tx)
    _, _, _, phase = _mbar_split(t.load("shared", addr, 8))
    if "parity" in ins.mods:
        waited = t.val(state, TYPES["u32"]) & 1
    else:
        waited = t.bits(state) >> 63
    t.set(ins.dst, phase != waited, PRED)


@op("cp.async.bulk")
def _cp_async_bulk(t, ins):
    """cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [dst], [src], size,
    [mbar]: the TMA's 1-D copy; it lands (and completes ``size`` transaction bytes on
    ``mbar``) when a thread next waits on ``mbar``."""
    dst, src, size, mbar = ins.srcs
    n = t.val(size, TYPES["u32"])
    if n % 16 or t.addr(dst) % 16 or t.addr(src) % 16:
        t.trap(f"cp.async.bulk of {n} bytes: size and addresses must be multiples of 16")
    _need_mbarrier(t, t.addr(mbar), "cp.async.bulk's completion")
    t.cp_async_bulk(t.addr(dst), t.addr(src), n, t.addr(mbar))


@op("cp.async.mbarrier.arrive")
def _cp_async_arrive(t, ins):
    """cp.async.mbarrier.arrive.noinc.shared.b64 [mbar]: an arrive-on ``mbar`` that fires
    once the thread's earlier cp.asyncs have landed. ``.noinc``: the arrival counts against
    the barrier's expected count (its init counted it). The emulator arrives at once and
    lands the copies at the first wait on ``mbar`` (data read before waiting is old)."""
    addr = t.addr(ins.srcs[0])
    _need_mbarrier(t, addr, "cp.async.mbarrier.arrive")
    t.cp_async_arrive_on(addr)
    _mbar_update(t, addr, arrivals=1)


def _spell_cp_async(ins, guard):
    dst, src, size = ins.srcs
    return f"{guard}{ins.opcode()} {dst}, {src}, {size};"


@op("cp.async", spell=_spell_cp_async)
def _cp_async(t, ins):
    """cp.async.{ca,cg}.shared.global [dst], [src], size: queued until a wait_group."""
    dst, src, size = ins.srcs
    t.cp_async(t.addr(dst), t.addr(src), t.val(size, TYPES["u32"]))


@op("cp.async.commit_group")
def _cp_commit(t, ins):
    """cp.async.commit_group: close the thread's current group of async copies."""
    t.cp_async_commit()


@op("cp.async.wait_group")
def _cp_wait(t, ins):
    """cp.async.wait_group N: complete all but the newest N groups."""
    keep = t.val(ins.srcs[0], TYPES["u32"]) if ins.srcs else 0
    t.cp_async_wait(keep)


# ----------------------------------------------- Hopper's async proxy (GPU-only rows)
# wgmma reads shared memory through matrix descriptors, and the bulk tensor copy reads
# global memory through an opaque tensor map (cuTensorMapEncodeTiled's 128 bytes): the
# emulator models neither, so a thread that reaches one stops with an error saying so.
# Their op cases (tagged ``sm90``) run on a GPU of compute capability 9.0 only.


def _gpu_only(t, ins):
    """Not modeled by the emulator: GPU-only (sm_90; wgmma needs the sm_90a target)."""
    t.trap(f"{ins.opcode()} is not modeled by the emulator (GPU-only, sm_90)")


def _spell_bulk_tensor(ins, guard):
    dst, tmap, *coords, mbar = ins.srcs
    return (f"{guard}{ins.opcode()} {dst}, [{tmap}, {{{', '.join(str(c) for c in coords)}}}], "
            f"{mbar};")


op("wgmma.fence", "wgmma.commit_group", "wgmma.wait_group", "wgmma.mma_async")(_gpu_only)
op("cp.async.bulk.tensor", spell=_spell_bulk_tensor)(_gpu_only)


@op("fence.proxy")
def _fence_proxy(t, ins):
    """fence.proxy.async{.shared::cta}: orders this thread's generic-proxy accesses (plain
    stores) before later async-proxy ones (wgmma, bulk copies) of the same memory. The
    emulator has one proxy: nothing to order."""
