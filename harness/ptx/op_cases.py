"""The op table's differential cases, beside the table (``harness.ptx.ops.OPS``): one kernel
per opcode (or family), its random inputs, and numpy's answer where numpy has one.

Every row of ``OPS`` must be covered by at least one case (a test checks it). Where numpy can
say what the answer is, the case carries a reference, so the emulator's semantics are tested
in CI without a GPU. Outputs the hardware decides (``%smid``, clocks) are checked by a
property instead of equality. ``harness.difftest`` runs them on a backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from harness.ptx.builder import Builder
from harness.ptx.ir import Mem, Module, Sym
from harness.ptx.types import (
    B32, B64, BF16, F32, F64, PRED, S8, S16, S32, S64, U8, U16, U32, U64,
)

N = 256  # threads per case: 2 blocks of 128, enough for warps, blocks and lanes


@dataclass
class Output:
    name: str
    dtype: str
    count: int = N
    check: Callable | None = None  # property check (array -> bool) instead of equality


@dataclass
class DiffCase:
    """One self-test kernel: ``build`` emits the kernel ``name`` with params
    (in0..inK pointers, out0..outM pointers); ``inputs`` draws the random inputs."""

    name: str
    covers: tuple
    build: Callable
    inputs: Callable
    outputs: list
    reference: Callable | None = None
    grid: int = 2
    block: int = 128
    gpu_only_property: bool = False
    notes: str = ""
    tags: tuple = field(default_factory=tuple)  # "sm90": GPU-only (the emulator cannot
    #                                              model it), compute capability 9.0 only
    tensor_maps: tuple = ()  # (input index, rows, cols, box rows, box cols): a 128B-swizzled
    #                          bf16 tensor map of that input, passed after the outputs


# ----------------------------------------------------------------- input generation


def rand_values(rng: np.random.Generator, t, n: int = N) -> np.ndarray:
    """Random values of a PTX type spread over its range (never all zeros, no NaN)."""
    if t.is_float:
        mant = rng.standard_normal(n)
        exp = rng.integers(-20, 20, n)
        return (mant * np.exp2(exp)).astype(np.float64 if t.bits == 64 else np.float32)
    info = np.iinfo(_np_int(t))
    return rng.integers(info.min, info.max, n, dtype=_np_int(t), endpoint=True)


def _np_int(t):
    kind = "int" if t.kind == "s" else "uint"
    return np.dtype(f"{kind}{t.bits}")


def _np(t) -> np.dtype:
    return np.dtype({"f32": np.float32, "f64": np.float64, "bf16": np.uint16}.get(t.name)) \
        if t.is_float else _np_int(t)


# ----------------------------------------------------------------------- kernel shape


def _kernel(m: Module, name: str, n_in: int, n_out: int) -> tuple:
    """A kernel with in0.. and out0.. pointer params; returns (builder, index, ins, outs)."""
    params = [(f"in{i}", U64) for i in range(n_in)] + [(f"out{i}", U64) for i in range(n_out)]
    b = Builder.entry(m, name, params)
    i = b.global_index()
    ins = [b.cvta_to_global(b.param(f"in{k}")) for k in range(n_in)]
    outs = [b.cvta_to_global(b.param(f"out{k}")) for k in range(n_out)]
    return b, i, ins, outs


def _load(b, base, i, t):
    return b.ld("global", b.element_addr(base, i, t.nbytes), t)


def _store(b, base, i, v, t):
    b.st("global", b.element_addr(base, i, t.nbytes), v, type=t)


# -------------------------------------------------------------------- ALU case tables

def _ref_int(fn, t):
    def ref(*xs):
        vals = [np.asarray(x).astype(object) for x in xs]
        r = np.array([fn(*row) for row in zip(*vals)], dtype=object)
        mask = (1 << t.bits) - 1
        r = np.array([int(v) & mask for v in r], dtype=np.uint64 if t.bits == 64 else np.int64)
        return r.astype(_np_int(t).newbyteorder("=").str.replace("i", "u")).view(_np_int(t))
    return ref


def _cdiv(a, b):
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


INT_BINARY = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b,
    "min": min, "max": max, "div": _cdiv, "rem": lambda a, b: a - _cdiv(a, b) * b,
    "and_": lambda a, b: a & b, "or_": lambda a, b: a | b, "xor": lambda a, b: a ^ b,
}
FLOAT_BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
    "min": np.fmin, "max": np.fmax,
}
CMPS = ("eq", "ne", "lt", "le", "gt", "ge")


def _alu_case(op: str, t, arity: int, emit: Callable, ref: Callable | None,
              inputs: Callable | None = None, out_t=None) -> DiffCase:
    out_t = out_t or t

    def build(m):
        b, i, ins, outs = _kernel(m, f"t_{op}_{t.name}", arity, 1)
        xs = [_load(b, p, i, t) for p in ins]
        _store(b, outs[0], i, emit(b, *xs), out_t)
        b.ret()
        return f"t_{op}_{t.name}"

    def gen(rng):
        xs = inputs(rng) if inputs else [rand_values(rng, t) for _ in range(arity)]
        return [x.astype(_np(t)) for x in xs]

    return DiffCase(f"{op}.{t.name}", (op.rstrip("_"),), build, gen,
                    [Output("out0", _np(out_t).str)], ref)


def _nonzero(rng, t):
    v = rand_values(rng, t)
    v[v == 0] = 1
    return v


def alu_cases() -> list:
    cases = []
    for t in (S32, U32, S64, U64):
        for op, fn in INT_BINARY.items():
            gen = None
            if op in ("div", "rem"):
                gen = (lambda tt: lambda rng: [rand_values(rng, tt), _nonzero(rng, tt)])(t)
            cases.append(_alu_case(op, t, 2, (lambda o: lambda b, x, y: getattr(b, o)(x, y))(op),
                                   _ref_int(fn, t), gen))
        cases.append(_alu_case("mul", t, 2, lambda b, x, y: b.mul(x, y), _ref_int(lambda a, c: a * c, t)))
        cases.append(_alu_case("mulhi", t, 2, lambda b, x, y: b.mul(x, y, "hi"),
                               _ref_int((lambda tt: lambda a, c: (a * c) >> tt.bits)(t), t)))
        cases.append(_alu_case("mad", t, 3, lambda b, x, y, z: b.mad(x, y, z),
                               _ref_int(lambda a, c, d: a * c + d, t)))
        cases.append(_alu_case("brev", t, 1, lambda b, x: b.brev(x),
                               _ref_int((lambda tt: lambda a: int(format(a & ((1 << tt.bits) - 1), f"0{tt.bits}b")[::-1], 2))(t), t)))
        cases.append(_alu_case("not_", t, 1, lambda b, x: b.not_(x), _ref_int(lambda a: ~a, t)))
        cases.append(_alu_case("popc", t, 1, lambda b, x: b.popc(x),
                               _ref_int((lambda tt: lambda a: bin(a & ((1 << tt.bits) - 1)).count("1"))(t), U32),
                               out_t=U32))
        cases.append(_alu_case("clz", t, 1, lambda b, x: b.clz(x),
                               _ref_int((lambda tt: lambda a: tt.bits - (a & ((1 << tt.bits) - 1)).bit_length())(t), U32),
                               out_t=U32))
        shift_gen = (lambda tt: lambda rng: [rand_values(rng, tt),
                                             rng.integers(0, tt.bits + 8, N).astype(_np(tt))])(t)
        cases.append(_alu_case("shl", t, 2, lambda b, x, y: b.shl(x, b.cvt(y, U32)),
                               _ref_int((lambda tt: lambda a, n: a << min(n, tt.bits))(t), t), shift_gen))
        cases.append(_alu_case("shr", t, 2, lambda b, x, y: b.shr(x, b.cvt(y, U32)),
                               _ref_int((lambda tt: lambda a, n: a >> min(n, tt.bits))(t), t), shift_gen))
        for cmp in CMPS:
            ops = {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
                   "gt": np.greater, "ge": np.greater_equal}
            cases.append(_alu_case(
                f"setp_{cmp}", t, 2,
                (lambda c: lambda b, x, y: b.selp(1, 0, b.setp(c, x, y), type=U32))(cmp),
                (lambda f: lambda x, y: f(x, y).astype(np.uint32))(ops[cmp]),
                (lambda tt: lambda rng: [rand_values(rng, tt), np.where(
                    rng.random(N) < 0.3, 0, rand_values(rng, tt))])(t), out_t=U32))
    for t in (S32, S64):
        cases.append(_alu_case("neg", t, 1, lambda b, x: b.neg(x), _ref_int(lambda a: -a, t)))
        cases.append(_alu_case("abs", t, 1, lambda b, x: b.abs(x), _ref_int(abs, t)))
    for t in (F32, F64):
        for op, fn in FLOAT_BINARY.items():
            cases.append(_alu_case(op, t, 2, (lambda o: lambda b, x, y: getattr(b, o)(x, y))(op),
                                   (lambda f, tt: lambda x, y: f(x, y).astype(_np(tt)))(fn, t)))
        cases.append(_alu_case("fma", t, 3, lambda b, x, y, z: b.fma(x, y, z), None))
        cases.append(_alu_case("neg", t, 1, lambda b, x: b.neg(x), lambda x: -x))
        cases.append(_alu_case("abs", t, 1, lambda b, x: b.abs(x), np.abs))
        cases.append(_alu_case("sqrt", t, 1, lambda b, x: b.sqrt(b.abs(x)),
                               lambda x: np.sqrt(np.abs(x))))
        cases.append(_alu_case(
            "setp_lt", t, 2, lambda b, x, y: b.selp(1, 0, b.setp("lt", x, y), type=U32),
            lambda x, y: (x < y).astype(np.uint32), out_t=U32))
    # cvt: widening, narrowing, float<->int (saturating), f32<->f64, f32->bf16
    conv = [(S64, S32), (U64, U32), (U32, U64), (S32, S64), (S32, S8), (U32, U16),
            (F32, S32), (F64, S64), (F32, U32), (S32, F32), (U32, F32), (S64, F64),
            (F64, F32), (F32, F64), (BF16, F32)]
    for to, frm in conv:
        def gen(rng, frm=frm):
            v = rand_values(rng, frm)
            if frm.is_float:  # include values beyond the int range to test saturation
                v = (rng.standard_normal(N) * np.exp2(rng.integers(0, 70, N))).astype(_np(frm))
            return [v]
        ref = None
        if to.is_int and frm.is_int:
            ref = (lambda tt: lambda x: x.astype(_np(tt)))(to)
        elif to.is_float and frm.is_float and to.name != "bf16":
            ref = (lambda tt: lambda x: x.astype(_np(tt)))(to)
        cases.append(_alu_case(f"cvt_{to.name}", frm, 1,
                               (lambda tt: lambda b, x: b.cvt(x, tt))(to), ref, gen, out_t=to))
    for c in cases:
        c.covers = ("cvt",) if c.name.startswith("cvt") else \
            ("setp", "selp") if c.name.startswith("setp") else \
            ("mul",) if c.name.startswith("mulhi") else c.covers
    return cases


# ------------------------------------------------------------------ special cases


def case_memory() -> list:
    """ld/st in every space, with semantics, scopes, vectors and sub-word widths."""
    out = []

    def build_vec(m):
        b, i, ins, outs = _kernel(m, "t_ld_st_vec", 1, 2)
        a = b.element_addr(ins[0], i, 16)
        v = b.ld("global", a, U32, vec=4)
        b.st("global", b.element_addr(outs[0], i, 16), tuple(reversed(v)))
        v2 = b.ld("global", a, U64, vec=2)
        b.st("global", b.element_addr(outs[1], i, 16), (v2[1], v2[0]))
        b.ret()
        return "t_ld_st_vec"

    def ref_vec(x):
        w = x.view(np.uint32).reshape(N, 4)[:, ::-1].reshape(-1)
        d = x.view(np.uint64).reshape(N, 2)[:, ::-1].reshape(-1)
        return [w, d]

    out.append(DiffCase("ld_st.v4.v2", ("ld", "st", "cvta"), build_vec,
                        lambda rng: [rand_values(rng, U32, 4 * N)],
                        [Output("out0", "u4", 4 * N), Output("out1", "u8", 2 * N)], ref_vec))

    def build_sem(m):
        b, i, ins, outs = _kernel(m, "t_ld_st_sem", 1, 3)
        a = b.element_addr(ins[0], i, 4)
        x = b.ld("global", a, U32, sem="relaxed", scope="gpu")
        y = b.ld("global", a, U32, sem="acquire", scope="sys")
        z = b.ld("global", a, U32, sem="volatile")
        b.st("global", b.element_addr(outs[0], i, 4), x, sem="release", scope="gpu")
        b.st("global", b.element_addr(outs[1], i, 4), y, sem="relaxed", scope="cta")
        b.fence("acq_rel", "gpu")
        b.fence("sc", "cta")
        b.st("global", b.element_addr(outs[2], i, 4), b.add(z, 1))
        b.ret()
        return "t_ld_st_sem"

    out.append(DiffCase("ld_st.sem.scope+fence", ("ld", "st", "fence"), build_sem,
                        lambda rng: [rand_values(rng, U32)],
                        [Output("out0", "u4"), Output("out1", "u4"), Output("out2", "u4")],
                        lambda x: [x, x, x + np.uint32(1)]))

    def build_sub(m):
        b, i, ins, outs = _kernel(m, "t_ld_subword", 1, 4)
        a8 = b.element_addr(ins[0], i, 1)
        u8 = b.ld("global", a8, U8, dst=b.reg(U32))
        s8 = b.ld("global", a8, S8, dst=b.reg(S32))
        a16 = b.element_addr(ins[0], i, 2)
        u16 = b.ld("global", a16, U16, dst=b.reg(U32))
        s16 = b.ld("global", a16, S16, dst=b.reg(S32))
        for k, v in enumerate((u8, s8, u16, s16)):
            _store(b, outs[k], i, v, U32 if k % 2 == 0 else S32)
        b.ret()
        return "t_ld_subword"

    def ref_sub(x):
        return [x.view(np.uint8)[:N].astype(np.uint32), x.view(np.int8)[:N].astype(np.int32),
                x.view(np.uint16)[:N].astype(np.uint32), x.view(np.int16)[:N].astype(np.int32)]

    out.append(DiffCase("ld.u8.s8.u16.s16", ("ld",), build_sub,
                        lambda rng: [rand_values(rng, U32)],
                        [Output(f"out{k}", "u4" if k % 2 == 0 else "i4") for k in range(4)], ref_sub))

    def build_shared_local(m):
        b, i, ins, outs = _kernel(m, "t_shared_local", 1, 2)
        sm = Builder.shared(m, "t_sl_buf", 128 * 4)
        loc = b.local("scratch", 16)
        tid = b.special("tid.x")
        x = _load(b, ins[0], i, U32)
        saddr = b.add(b.mov(sm, type=U32), b.mul(tid, 4))
        b.st("shared", saddr, x)
        b.bar_sync(0)
        rev = b.sub(127, tid, type=U32)
        y = b.ld("shared", b.add(b.mov(sm, type=U32), b.mul(rev, 4)), U32)
        _store(b, outs[0], i, y, U32)
        b.st("local", Mem(loc, 4), x)
        b.st("local", Mem(loc, 8), y)
        z = b.add(b.ld("local", Mem(loc, 4), U32), b.ld("local", Mem(loc, 8), U32))
        _store(b, outs[1], i, z, U32)
        b.ret()
        return "t_shared_local"

    def ref_sl(x):
        rev = x.reshape(2, 128)[:, ::-1].reshape(-1)
        return [rev, x + rev]

    out.append(DiffCase("ld_st.shared.local+bar.sync", ("ld", "st", "bar", "mov"),
                        build_shared_local, lambda rng: [rand_values(rng, U32)],
                        [Output("out0", "u4"), Output("out1", "u4")], ref_sl))
    return out


ATOM_REF = {
    "add": lambda o, b, c: o + b, "exch": lambda o, b, c: b,
    "cas": lambda o, b, c: np.where(o == b, c, o),
    "and": lambda o, b, c: o & b, "or": lambda o, b, c: o | b, "xor": lambda o, b, c: o ^ b,
    "min": lambda o, b, c: np.minimum(o, b), "max": lambda o, b, c: np.maximum(o, b),
    "inc": lambda o, b, c: np.where(o >= b, 0, o + 1),
    "dec": lambda o, b, c: np.where((o == 0) | (o > b), b, o - 1),
}


def case_atomics() -> list:
    """Every atom/red op on private slots (old value and final value are deterministic),
    plus a contended add whose final sum is."""
    out = []
    for space in ("global", "shared"):
        for op, ref in ATOM_REF.items():
            types = (U32, S32, U64) if op in ("add", "min", "max") else \
                (U32,) if op in ("inc", "dec") else (B32, B64)
            if space == "shared":
                types = types[:1]
            for t in types:
                name = f"t_atom_{space}_{op}_{t.name}"

                def build(m, op=op, t=t, name=name, space=space):
                    b, i, ins, outs = _kernel(m, name, 3, 2)
                    init, bv, cv = (_load(b, p, i, t) for p in ins)
                    if space == "global":
                        slot = b.element_addr(outs[1], i, t.nbytes)
                        b.st("global", slot, init)
                    else:
                        sm = Builder.shared(m, f"{name}_s", 128 * 8)
                        slot = b.add(b.mov(sm, type=U32), b.mul(b.special("tid.x"), t.nbytes))
                        b.st("shared", slot, init)
                    old = b.atom(space, op, slot, bv, cv if op == "cas" else None, type=t,
                                 sem="relaxed" if op == "add" else None,
                                 scope="gpu" if op == "add" else None)
                    if op not in ("cas", "exch"):
                        b.red(space, op, slot, bv, type=t)
                    _store(b, outs[0], i, old, t)
                    if space == "shared":
                        _store(b, outs[1], i, b.ld("shared", slot, t), t)
                    b.ret()
                    return name

                def gen(rng, op=op, t=t):
                    init, bv = rand_values(rng, t), rand_values(rng, t)
                    cv = rand_values(rng, t)
                    if op == "cas":  # half the slots match the compare value
                        bv = np.where(rng.random(N) < 0.5, init, bv)
                    if op in ("inc", "dec"):
                        init = rng.integers(0, 1000, N).astype(_np(t))
                        bv = rng.integers(0, 1000, N).astype(_np(t))
                    return [init.astype(_np(t)), bv.astype(_np(t)), cv.astype(_np(t))]

                def reference(init, bv, cv, ref=ref, op=op):
                    with np.errstate(over="ignore"):
                        once = ref(init, bv, cv).astype(init.dtype)
                        final = once if op in ("cas", "exch") else ref(once, bv, cv).astype(init.dtype)
                    return [init, final]

                out.append(DiffCase(f"atom.{space}.{op}.{t.name}", ("atom", "red"), build, gen,
                                    [Output("out0", _np(t).str), Output("out1", _np(t).str)],
                                    reference))

    def build_contended(m):
        b, i, ins, outs = _kernel(m, "t_red_contended", 1, 1)
        x = _load(b, ins[0], i, U32)
        b.red("global", "add", outs[0], x, sem="relaxed", scope="gpu")
        b.ret()
        return "t_red_contended"

    out.append(DiffCase("red.global.add contended", ("red",), build_contended,
                        lambda rng: [rng.integers(0, 1 << 20, N).astype(np.uint32)],
                        [Output("out0", "u4", 1)], None, notes="out0 pre-zeroed by the runner",
                        tags=("zero_out0",)))
    return out


def case_collectives() -> list:
    out = []
    modes = {"up": 0, "down": 0x1F, "bfly": 0x1F, "idx": 0x1F}
    for mode, c in modes.items():
        for width in (32, 8):
            cval = ((32 - width) << 8) | (c if mode == "up" else (width - 1))
            name = f"t_shfl_{mode}_{width}"

            def build(m, mode=mode, cval=cval, name=name):
                b, i, ins, outs = _kernel(m, name, 2, 1)
                x = _load(b, ins[0], i, B32)
                lane_b = b.and_(_load(b, ins[1], i, U32), 31)
                _store(b, outs[0], i, b.shfl(mode, x, lane_b, cval), B32)
                b.ret()
                return name

            out.append(DiffCase(f"shfl.sync.{mode}.w{width}", ("shfl",), build,
                                lambda rng: [rand_values(rng, U32), rng.integers(0, 32, N).astype(np.uint32)],
                                [Output("out0", "u4")], _shfl_ref(mode, cval)))
    for mode in ("all", "any", "uni", "ballot"):
        name = f"t_vote_{mode}"

        def build(m, mode=mode, name=name):
            b, i, ins, outs = _kernel(m, name, 1, 1)
            x = _load(b, ins[0], i, U32)
            p = b.setp("ne", x, 0)
            r = b.vote(mode, p)
            _store(b, outs[0], i, r if mode == "ballot" else b.selp(1, 0, r, type=U32), U32)
            b.ret()
            return name

        def gen(rng, mode=mode):
            # per warp, a mix of all-true, all-false and random predicates
            kind = np.repeat(rng.integers(0, 3, N // 32), 32)
            bits = np.where(kind == 0, 1, np.where(kind == 1, 0, rng.integers(0, 2, N)))
            return [bits.astype(np.uint32) * rng.integers(1, 1 << 31, N).astype(np.uint32)]

        out.append(DiffCase(f"vote.sync.{mode}", ("vote",), build, gen, [Output("out0", "u4")],
                            _vote_ref(mode)))

    def build_misc(m):
        b, i, ins, outs = _kernel(m, "t_warp_misc", 0, 4)
        _store(b, outs[0], i, b.activemask(), B32)
        b.bar_warp_sync()
        tid = b.special("tid.x")
        # named barriers: warp 0 publishes through shared memory, warp 1 waits on barrier 1
        sm = Builder.shared(m, "t_nb_buf", 128 * 4)
        w0 = b.setp("lt", tid, 32)
        w01 = b.setp("lt", tid, 64)
        with b.if_(w01):
            with b.if_(w0):
                b.st("shared", b.add(b.mov(sm, type=U32), b.mul(tid, 4)), b.mul(tid, 3))
                b.bar_arrive(1, 64)
            with b.if_(w0, negate=True):
                b.bar_sync(1, 64)
                src = b.sub(tid, 32)
                v = b.ld("shared", b.add(b.mov(sm, type=U32), b.mul(src, 4)), U32)
                _store(b, outs[1], i, v, U32)
        # bar.red over the whole block: popc and and/or of a per-thread predicate
        x3 = b.setp("eq", b.rem(tid, 3), 0)
        cnt = b.bar_red("popc", x3)
        anded = b.bar_red("and", x3)
        ored = b.bar_red("or", x3)
        b.add(cnt, b.add(b.selp(1000, 0, anded, type=U32), b.selp(2000, 0, ored, type=U32)),
              dst=cnt)
        # barrier.red (not .aligned) reached by a warp's lanes apart: a divergent loop first
        k = b.mov(0, type=U32)
        with b.loop() as lp:
            lp.break_if(b.setp("ge", k, b.rem(tid, 5)))
            b.add(k, 1, dst=k)
        apart = b.bar_red("and", b.setp("lt", k, 5), aligned=False)
        b.add(cnt, b.selp(4000, 0, apart, type=U32), dst=cnt)
        with b.loop() as lp:  # and barrier.sync after another divergent loop
            lp.break_if(b.setp("ge", k, b.add(b.rem(tid, 7), 5)))
            b.add(k, 1, dst=k)
        b.bar_sync(0, aligned=False)
        _store(b, outs[3], i, cnt, U32)
        lanemask = b.special("lanemask_lt")
        _store(b, outs[2], i, b.popc(lanemask), U32)
        b.ret()
        return "t_warp_misc"

    def ref_misc():
        tid = np.tile(np.arange(128), 2)
        named = np.where((tid >= 32) & (tid < 64), (tid - 32) * 3, 0xCDCDCDCD).astype(np.uint32)
        red = np.full(N, 43 + 2000 + 4000, np.uint32)  # 43 of 0..127 are multiples of 3
        return [np.full(N, 0xFFFFFFFF, np.uint32), named, (tid % 32).astype(np.uint32), red]

    out.append(DiffCase("activemask+bar.warp.sync+bar.arrive/sync named+bar.red+barrier.red/sync",
                        ("activemask", "bar", "bar.red", "barrier.red", "barrier"), build_misc,
                        lambda rng: [],
                        [Output(f"out{k}", "u4") for k in range(4)],
                        lambda: ref_misc()))
    return out


def _shfl_ref(mode, cval):
    from harness.ptx.ops import shfl_source_lane

    def ref(x, bsel):
        out = np.empty_like(x)
        for k in range(N):
            lane = k % 32
            src, _ = shfl_source_lane(mode, lane, int(bsel[k]) & 31, cval)
            out[k] = x[k - lane + src]
        return out
    return ref


def _vote_ref(mode):
    def ref(x):
        p = (x != 0).reshape(-1, 32)
        if mode == "ballot":
            r = (p * (1 << np.arange(32, dtype=np.uint64))).sum(axis=1).astype(np.uint32)
        else:
            r = {"all": p.all(1), "any": p.any(1), "uni": p.all(1) | ~p.any(1)}[mode].astype(np.uint32)
        return np.repeat(r, 32)
    return ref


def case_special_regs() -> list:
    regs = ("tid.x", "ntid.x", "ctaid.x", "nctaid.x", "laneid", "warpid")

    def build(m):
        b, i, ins, outs = _kernel(m, "t_sreg", 0, len(regs) + 3)
        for k, r in enumerate(regs):
            _store(b, outs[k], i, b.special(r), U32)
        c0 = b.special("clock64")
        g0 = b.special("globaltimer")
        b.nanosleep(1000)
        g1 = b.special("globaltimer")
        c1 = b.special("clock64")
        _store(b, outs[len(regs)], i, b.sub(c1, c0), U64)
        _store(b, outs[len(regs) + 1], i, b.sub(g1, g0), U64)
        sm = b.special("smid")
        ok = b.setp("lt", sm, b.special("nsmid"))
        _store(b, outs[len(regs) + 2], i, b.selp(1, 0, ok, type=U32), U32)
        b.ret()
        return "t_sreg"

    def ref():
        tid = np.tile(np.arange(128), 2).astype(np.uint32)
        return [tid, np.full(N, 128, np.uint32), np.repeat(np.arange(2), 128).astype(np.uint32),
                np.full(N, 2, np.uint32), tid % 32, tid // 32]

    outs = [Output(f"out{k}", "u4") for k in range(len(regs))]
    outs[5].check = lambda w: bool((w < 64).all())  # %warpid is volatile: only a range
    outs += [Output(f"out{len(regs)}", "u8", check=lambda d: bool((d > 0).all()) and bool((d < 1 << 40).all())),
             Output(f"out{len(regs) + 1}", "u8", check=lambda d: bool((d > 0).all()) and bool((d < 1 << 40).all())),
             Output(f"out{len(regs) + 2}", "u4", check=lambda o: bool((o == 1).all()))]

    def ref_full():
        r = ref()
        return r[:5] + [None, None, None, None]

    return [DiffCase("special registers+nanosleep", ("mov", "nanosleep"), build, lambda rng: [],
                     outs, ref_full)]


def case_mbarrier_cp_async() -> list:
    def build_mbar(m):
        b, i, ins, outs = _kernel(m, "t_mbarrier", 0, 1)
        bar1 = Builder.shared(m, "t_mb1", 8, align=8)
        bar2 = Builder.shared(m, "t_mb2", 8, align=8)
        tid = b.special("tid.x")
        first = b.setp("eq", tid, 0)
        with b.if_(first):
            b.mbarrier_init(bar1, 1)
            b.mbarrier_init(bar2, 2)
        b.bar_sync(0)
        code = b.mov(0, type=U32)
        with b.if_(first):
            s1 = b.mbarrier_arrive(bar1)           # completes phase 0 of bar1
            s2 = b.mbarrier_arrive(bar2)           # 1 of 2 arrivals: phase 0 still open
            p = [b.mbarrier_wait(bar1, s1), b.mbarrier_wait(bar2, s2),
                 b.mbarrier_wait(bar1, s1, "try_wait"),
                 b.mbarrier_wait(bar1, b.mov(0, type=U32), parity=True),
                 b.mbarrier_wait(bar1, b.mov(1, type=U32), parity=True)]
            b.mbarrier_inval(bar1)                 # then a fresh object at phase 0
            b.mbarrier_init(bar1, 1)
            p.append(b.mbarrier_wait(bar1, b.mov(0, type=U32), parity=True))  # open again
            b.mbarrier_arrive(bar1)
            p.append(b.mbarrier_wait(bar1, b.mov(0, type=U32), parity=True))  # done
            for k, pk in enumerate(p):
                b.or_(code, b.selp(1 << k, 0, pk, type=U32), type=U32, dst=code)
        _store(b, outs[0], i, code, U32)
        b.ret()
        return "t_mbarrier"

    def ref_mbar():
        r = np.zeros(N, np.uint32)
        # bar1 done, bar2 open, try_wait done, parity0 done, parity1 open; re-initialised
        # bar1: phase 0 open, then done after its arrival
        r[0] = r[128] = 0b1001101
        return [r]

    def build_cp(m):
        b, i, ins, outs = _kernel(m, "t_cp_async", 1, 1)
        sm = Builder.shared(m, "t_cp_buf", 128 * 16)
        tid = b.special("tid.x")
        dst = b.add(b.mov(sm, type=U32), b.mul(tid, 16))
        b.cp_async(dst, b.element_addr(ins[0], i, 16), 16, cache="cg")
        b.cp_async(b.add(dst, 0), b.element_addr(ins[0], i, 16), 4)
        b.cp_async_commit()
        b.cp_async_wait(0)
        b.bar_sync(0)
        other = b.xor(tid, 1)
        v = b.ld("shared", b.add(b.mov(sm, type=U32), b.mul(other, 16)), U32, vec=4)
        b.st("global", b.element_addr(outs[0], i, 16), v)
        b.ret()
        return "t_cp_async"

    def ref_cp(x):
        r = x.reshape(N, 4)
        idx = np.arange(N) ^ 1
        return [r[idx].reshape(-1)]

    def build_bulk(m):
        """Thread 0 expects the block's 2 KiB, issues two bulk copies (the TMA), every thread
        waits for phase 0 and reads its neighbour's 16 bytes."""
        b, i, ins, outs = _kernel(m, "t_cp_async_bulk", 1, 1)
        sm = b.mov(Builder.shared(m, "t_bulk_buf", 128 * 16, 128), type=U32)
        bar = Builder.shared(m, "t_bulk_bar", 8, align=8)
        tid = b.special("tid.x")
        first = b.setp("eq", tid, 0)
        with b.if_(first):
            b.mbarrier_init(bar, 1)
        b.bar_sync(0)
        block_src = b.element_addr(ins[0], b.mul(b.special("ctaid.x"), 128), 16)
        with b.if_(first):
            b.mbarrier_arrive_expect_tx(bar, 128 * 16)
            b.cp_async_bulk(sm, block_src, 64 * 16, bar)
            b.cp_async_bulk(b.add(sm, 64 * 16), b.add(block_src, 64 * 16, type=U64), 64 * 16,
                            bar)
        with b.loop() as lp:
            lp.break_if(b.mbarrier_wait(bar, b.mov(0, type=U32), "try_wait", parity=True))
        v = b.ld("shared", b.mad(b.xor(tid, 1), 16, sm, type=U32), U32, vec=4)
        b.st("global", b.element_addr(outs[0], i, 16), v)
        b.ret()
        return "t_cp_async_bulk"

    def build_cp_arrive(m):
        """Every thread cp.asyncs its 16 bytes and arrives (noinc) on a barrier that expects
        the whole block; each waits for phase 0 and reads its neighbour's bytes."""
        b, i, ins, outs = _kernel(m, "t_cp_async_arrive", 1, 1)
        sm = b.mov(Builder.shared(m, "t_cpa_buf", 128 * 16, 128), type=U32)
        bar = Builder.shared(m, "t_cpa_bar", 8, align=8)
        tid = b.special("tid.x")
        with b.if_(b.setp("eq", tid, 0)):
            b.mbarrier_init(bar, b.special("ntid.x"))
        b.bar_sync(0)
        b.cp_async(b.mad(tid, 16, sm, type=U32), b.element_addr(ins[0], i, 16), 16, cache="cg")
        b.cp_async_mbarrier_arrive(bar)
        with b.loop() as lp:
            lp.break_if(b.mbarrier_wait(bar, b.mov(0, type=U32), parity=True))  # sm_80
        v = b.ld("shared", b.mad(b.xor(tid, 1), 16, sm, type=U32), U32, vec=4)
        b.st("global", b.element_addr(outs[0], i, 16), v)
        b.ret()
        return "t_cp_async_arrive"

    return [DiffCase("cp.async.bulk + mbarrier expect_tx/complete_tx", ("cp.async.bulk",),
                     build_bulk, lambda rng: [rand_values(rng, U32, 4 * N)],
                     [Output("out0", "u4", 4 * N)], ref_cp),
            DiffCase("mbarrier init/arrive/test_wait/try_wait/parity", ("mbarrier",), build_mbar,
                     lambda rng: [], [Output("out0", "u4")], ref_mbar),
            DiffCase("cp.async + commit/wait_group", ("cp.async", "cp.async.commit_group",
                                                     "cp.async.wait_group"), build_cp,
                     lambda rng: [rand_values(rng, U32, 4 * N)], [Output("out0", "u4", 4 * N)], ref_cp),
            DiffCase("cp.async + mbarrier.arrive.noinc", ("cp.async.mbarrier.arrive",),
                     build_cp_arrive, lambda rng: [rand_values(rng, U32, 4 * N)],
                     [Output("out0", "u4", 4 * N)], ref_cp)]


def case_control() -> list:
    def build(m):
        helper = Builder.func(m, "t_helper", [("x", U32), ("y", U32)], ret=U32)
        helper.ret(helper.add(helper.mul(helper.param("x"), 3), helper.param("y")))
        other = Builder.func(m, "t_other", [("x", U32), ("y", U32)], ret=U32)
        other.ret(other.xor(other.param("x"), other.param("y")))
        b, i, ins, outs = _kernel(m, "t_control", 1, 4)
        x = _load(b, ins[0], i, U32)
        # loop: sum of 0..(x & 15)
        n = b.and_(x, 15, type=U32)
        acc, k = b.mov(0, type=U32), b.mov(0, type=U32)
        with b.loop() as lp:
            lp.break_if(b.setp("gt", k, n))
            b.add(acc, k, dst=acc)
            b.add(k, 1, dst=k)
        _store(b, outs[0], i, acc, U32)
        # brx.idx over four targets
        sel = b.and_(b.shr(x, 4), 3, type=U32)
        res = b.reg(U32)
        labels = [b.new_label(f"case{c}") for c in range(4)]
        done = b.new_label("done")
        b.brx_idx(sel, labels)
        for c, lbl in enumerate(labels):
            b.place(lbl)
            b.mov(100 + c, type=U32, dst=res)
            b.bra(done)
        b.place(done)
        _store(b, outs[1], i, res, U32)
        # direct and indirect calls
        _store(b, outs[2], i, b.call("t_helper", [x, n]), U32)
        odd = b.setp("ne", b.and_(x, 1 << 8, type=U32), 0)
        fptr = b.selp(b.mov(Sym("t_helper")), b.mov(Sym("t_other")), odd, type=U64)
        _store(b, outs[3], i, b.call(fptr, [x, n], proto=m.functions["t_helper"]), U32)
        b.ret()
        return "t_control"

    def ref(x):
        n = x & 15
        sel = (x >> 4) & 3
        with np.errstate(over="ignore"):
            h = x * np.uint32(3) + n
        return [(n * (n + 1) // 2).astype(np.uint32), (100 + sel).astype(np.uint32), h,
                np.where(x & (1 << 8), h, x ^ n).astype(np.uint32)]

    def build_exit(m):
        b, i, ins, outs = _kernel(m, "t_exit", 1, 1)
        x = _load(b, ins[0], i, U32)
        odd = b.setp("ne", b.and_(x, 1, type=U32), 0)
        with b.if_(odd):
            b.exit()
        _store(b, outs[0], i, x, U32)
        b.ret()
        return "t_exit"

    return [DiffCase("bra loop, brx.idx, call direct+indirect, ret", ("bra", "brx.idx", "call", "ret"),
                     build, lambda rng: [rand_values(rng, U32)],
                     [Output(f"out{k}", "u4") for k in range(4)], ref),
            DiffCase("exit", ("exit",), build_exit, lambda rng: [rand_values(rng, U32)],
                     [Output("out0", "u4")],
                     lambda x: [np.where(x & 1, np.uint32(0xCDCDCDCD), x).astype(np.uint32)])]


def case_trap() -> DiffCase:
    """trap: the launch must fail. On a GPU the error is sticky, so the runner isolates it."""

    def build(m):
        b, i, ins, outs = _kernel(m, "t_trap", 0, 1)
        with b.if_(b.setp("eq", i, 77)):
            b.trap()
        _store(b, outs[0], i, i, U32)
        b.ret()
        return "t_trap"

    return DiffCase("trap", ("trap",), build, lambda rng: [], [Output("out0", "u4")], None,
                    tags=("traps",))


def case_mma() -> list:
    """``mma.m16n8k16`` bf16 x bf16 + f32 per warp, from per-lane fragments in memory. The
    inputs are small integers, so every sum is exact: the hardware's accumulation order and
    rounding cannot change a bit, and the emulator's layout and arithmetic are what is tested."""
    from harness.ptx.ops import mma_a_coords, mma_b_coords, mma_cd_coords

    def build(m):
        b, i, ins, outs = _kernel(m, "t_mma_bf16", 3, 1)

        def words(base, n):
            return [b.ld("global", b.element_addr(base, b.mad(i, n, k, type=U32), 4), B32)
                    for k in range(n)]

        a, bb = words(ins[0], 4), words(ins[1], 2)
        c = [b.ld("global", b.element_addr(ins[2], b.mad(i, 4, k, type=U32), 4), F32)
             for k in range(4)]
        for k, v in enumerate(b.mma_bf16(a, bb, c)):
            b.st("global", b.element_addr(outs[0], b.mad(i, 4, k, type=U32), 4), v, type=F32)
        b.ret()
        return "t_mma_bf16"

    def bf16_words(rng, count):
        vals = rng.integers(-4, 5, 2 * count).astype(np.float32)
        halves = vals.view(np.uint32) >> 16  # small integers are exact in bf16
        return (halves[0::2] | halves[1::2] << 16).astype(np.uint32)

    def inputs(rng):
        return [bf16_words(rng, 4 * N), bf16_words(rng, 2 * N),
                rng.integers(-64, 65, 4 * N).astype(np.float32)]

    def halves(words):
        h = np.stack([words & 0xFFFF, words >> 16], axis=-1).reshape(len(words), -1)
        return (h.astype(np.uint32) << 16).view(np.float32)

    def ref(aw, bw, cv):
        a, bv = halves(aw.reshape(N, 4)), halves(bw.reshape(N, 2))
        c, d = cv.reshape(N, 4), np.zeros((N, 4), np.float32)
        for w in range(N // 32):
            A, B, C = np.zeros((16, 16)), np.zeros((16, 8)), np.zeros((16, 8))
            for lane in range(32):
                t = 32 * w + lane
                for (r, col), v in zip(mma_a_coords(lane), a[t]):
                    A[r, col] = v
                for (r, col), v in zip(mma_b_coords(lane), bv[t]):
                    B[r, col] = v
                for (r, col), v in zip(mma_cd_coords(lane), c[t]):
                    C[r, col] = v
            D = A @ B + C
            for lane in range(32):
                d[32 * w + lane] = [D[r, col] for r, col in mma_cd_coords(lane)]
        return d.ravel()

    def build_ld(m):
        b, i, ins, outs = _kernel(m, "t_ldmatrix_x4", 1, 1)
        lane = b.and_(b.special("tid.x"), 31, type=U32)
        warp = b.div(b.special("tid.x"), 32, type=U32)  # a block's warps: 512 bytes each
        base = b.mad(warp, 512, b.mov(Builder.shared(m, "t_ldm_s", 4 * 512, 16), type=U32),
                     type=U32)
        for k in range(4):  # this lane's 16 bytes of the warp's four matrices
            w = b.ld("global", b.element_addr(ins[0], b.mad(i, 4, k, type=U32), 4), B32)
            b.st("shared", b.mad(lane, 16, b.add(base, 4 * k, type=U32), type=U32), w, type=B32)
        b.bar_warp_sync(0xFFFFFFFF)
        row = b.mad(b.div(lane, 8, type=U32), 128, b.mul(b.rem(lane, 8, type=U32), 16,
                                                          type=U32), type=U32)
        for k, v in enumerate(b.ldmatrix(b.add(base, row, type=U32), 4)):
            b.st("global", b.element_addr(outs[0], b.mad(i, 4, k, type=U32), 4), v, type=B32)
        b.ret()
        return "t_ldmatrix_x4"

    def ref_ld(words):
        h = np.stack([words & 0xFFFF, words >> 16], axis=-1).reshape(N // 32, 4, 8, 8)
        out = np.zeros((N, 4), np.uint32)
        for t in range(N):
            w, lane = divmod(t, 32)
            for j in range(4):
                lo, hi = h[w, j, lane // 4, 2 * (lane % 4):2 * (lane % 4) + 2]
                out[t, j] = int(lo) | int(hi) << 16
        return out.ravel()

    return [DiffCase("mma m16n8k16 bf16", ("mma",), build, inputs,
                     [Output("out0", "f4", 4 * N)], ref),
            DiffCase("ldmatrix x4", ("ldmatrix",), build_ld,
                     lambda rng: [rng.integers(0, 2**32, 4 * N, dtype=np.uint32)],
                     [Output("out0", "u4", 4 * N)], ref_ld)]


def _swizzled_offset(row: int, chunk: int) -> int:
    """Byte offset of 16-byte ``chunk`` of operand ``row`` in the 128-byte swizzle."""
    return row // 8 * 1024 + row % 8 * 128 + (chunk ^ row % 8) * 16


def case_hopper_async() -> list:
    """GPU-only (sm_90) rows: a bulk tensor copy of a 128B-swizzled box, checked against
    numpy's picture of the swizzle; a wgmma from operands stored in that layout, checked
    against numpy (small integers: every sum exact)."""
    from harness.gpu.tensormap import swizzle_128b

    rows, cols, box_rows, box_cols, y0, x0 = 32, 128, 16, 64, 16, 64

    def build_tensor(m):
        params = [("in0", U64), ("out0", U64), ("tmap0", U64)]
        b = Builder.entry(m, "t_bulk_tensor", params)
        out = b.cvta_to_global(b.param("out0"))
        box = b.mov(Builder.shared(m, "t_bt_box", box_rows * 128, 1024), type=U32)
        bar = b.mov(Builder.shared(m, "t_bt_bar", 8, 8), type=U32)
        tid = b.special("tid.x")
        first = b.setp("eq", tid, 0, type=U32)
        with b.if_(first):
            b.mbarrier_init(bar, 1)
        b.bar_sync(0)
        with b.if_(first):
            b.mbarrier_arrive_expect_tx(bar, box_rows * 128)
            b.cp_async_bulk_tensor(box, b.param("tmap0"),
                                   (b.mov(x0, type=S32), b.mov(y0, type=S32)), bar)
        with b.loop() as wait:
            wait.break_if(b.mbarrier_wait(bar, b.mov(0, type=U32), "try_wait", parity=True))
        v = b.ld("shared", b.mad(tid, 16, box, type=U32), U32, vec=4)  # 16 bytes a thread
        b.st("global", b.element_addr(out, tid, 16), v)
        b.ret()
        return "t_bulk_tensor"

    def ref_tensor(x):
        box = x.reshape(rows, cols)[y0:y0 + box_rows, x0:x0 + box_cols]
        return [swizzle_128b(np.ascontiguousarray(box).view(np.uint8)).view(np.uint32).ravel()]

    n_b = 16  # wgmma m64n16k16: 8 accumulators a thread

    def build_wgmma(m):
        b, i, ins, outs = _kernel(m, "t_wgmma", 3, 2)
        a_s = b.mov(Builder.shared(m, "t_wg_a", 64 * 128, 1024), type=U32)
        b_s = b.mov(Builder.shared(m, "t_wg_b", n_b * 128, 1024), type=U32)
        tid = b.special("tid.x")
        # A: 64 rows x 2 chunks (k 0-7, 8-15), a thread's chunk; Bt: 16 x 2, threads 0-31
        for src, dst, count in ((ins[0], a_s, 128), (ins[1], b_s, 2 * n_b)):
            with b.if_(b.setp("lt", tid, count, type=U32)):
                row, chunk = b.div(tid, 2, type=U32), b.rem(tid, 2, type=U32)
                v = b.ld("global", b.element_addr(src, tid, 16), U32, vec=4)
                off = b.mad(b.div(row, 8, type=U32), 1024,
                            b.mad(b.rem(row, 8, type=U32), 128,
                                  b.mul(b.xor(chunk, b.rem(row, 8, type=U32), type=U32), 16,
                                        type=U32), type=U32), type=U32)
                b.st("shared", b.add(dst, off, type=U32), v)
        b.fence_proxy_async()  # the plain stores before the tensor cores' reads
        b.bar_sync(0)
        c = [b.ld("global", b.element_addr(ins[2], b.mad(tid, 8, j, type=U32), 4), F32)
             for j in range(8)]
        d = [b.mov(0.0, type=F32) for _ in range(8)]
        on = b.setp("lt", tid, 128, type=U32)  # true: accumulate onto C
        off = b.setp("ge", tid, 128, type=U32)  # false: D = A x B
        b.wgmma_fence()
        b.wgmma_bf16(c, b.wgmma_desc(a_s), b.wgmma_desc(b_s), on)
        b.wgmma_bf16(d, b.wgmma_desc(a_s), b.wgmma_desc(b_s), off)
        b.wgmma_commit()
        b.wgmma_wait(0)
        for j in range(8):
            b.st("global", b.element_addr(outs[0], b.mad(tid, 8, j, type=U32), 4), c[j], type=F32)
            b.st("global", b.element_addr(outs[1], b.mad(tid, 8, j, type=U32), 4), d[j], type=F32)
        b.ret()
        return "t_wgmma"

    def bf16_ints(rng, count):
        vals = rng.integers(-4, 5, count).astype(np.float32)
        return (vals.view(np.uint32) >> 16).astype(np.uint16)  # small integers: exact

    def inputs_wgmma(rng):
        return [bf16_ints(rng, 64 * 16), bf16_ints(rng, n_b * 16),
                rng.integers(-64, 65, 128 * 8).astype(np.float32)]

    def d_fragment(D):
        """A warpgroup's D (64 x N) as its threads hold it: thread t's n8 block j gives
        (row, col), (row, col + 1), (row + 8, col), (row + 8, col + 1)."""
        out = np.zeros((128, D.shape[1] // 2), np.float32)
        for t in range(128):
            w, lane = divmod(t, 32)
            row, col = 16 * w + lane // 4, 2 * (lane % 4)
            for j in range(D.shape[1] // 8):
                out[t, 4 * j:4 * j + 4] = [D[row, 8 * j + col], D[row, 8 * j + col + 1],
                                           D[row + 8, 8 * j + col], D[row + 8, 8 * j + col + 1]]
        return out

    def ref_wgmma(a, bt, c):
        A = (a.astype(np.uint32) << 16).view(np.float32).reshape(64, 16).astype(np.float64)
        B = (bt.astype(np.uint32) << 16).view(np.float32).reshape(n_b, 16).astype(np.float64)
        D = A @ B.T
        return [(d_fragment(D) + c.reshape(128, 8)).ravel(), d_fragment(D).ravel()]

    return [
        DiffCase("cp.async.bulk.tensor", ("cp.async.bulk.tensor",), build_tensor,
                 lambda rng: [rng.integers(0, 1 << 16, rows * cols, dtype=np.uint16)],
                 [Output("out0", "u4", box_rows * 128 // 4)], ref_tensor, grid=1, block=box_rows * 8,
                 tags=("sm90",), tensor_maps=((0, rows, cols, box_rows, box_cols),)),
        DiffCase("wgmma.m64n16k16 bf16", ("wgmma.fence", "wgmma.mma_async", "wgmma.commit_group",
                                          "wgmma.wait_group", "fence.proxy"),
                 build_wgmma, inputs_wgmma,
                 [Output("out0", "f4", 128 * 8), Output("out1", "f4", 128 * 8)], ref_wgmma,
                 grid=1, block=128, tags=("sm90",)),
    ]


def all_cases() -> list:
    """Every differential case, in a stable order."""
    return (alu_cases() + case_memory() + case_atomics() + case_collectives()
            + case_special_regs() + case_mbarrier_cp_async() + case_control() + case_mma()
            + case_hopper_async() + [case_trap()])
