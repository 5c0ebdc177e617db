"""PTX emission, the numba-cuda way: build with the builder, FileCheck the text, and link
with nvJitLink (no GPU needed) where validity is the point."""

from __future__ import annotations

import pytest

from harness.compile import CompileError, compile_ptx
from harness.ptx.op_cases import all_cases
from harness.errors import PollbenchError
from harness.ptx import (
    B32, B64, BF16, F32, F64, PRED, S32, U32, U64, Builder, Imm, Label, Mem, Module,
    PtxBuildError, Sym,
)
from tests.filecheck import filecheck

R = "{{[0-9]+}}"  # any register number


def kernel(params=(("p", U64),), arch="sm_90", name="k"):
    m = Module(arch=arch)
    return m, Builder.entry(m, name, params)


def link(m: Module, arch: str | None = None):
    """nvJitLink the module: proof that ptxas accepts the text."""
    return compile_ptx(m.to_ptx(), arch or m.arch, cache=False)


def gptr(b):
    return b.cvta_to_global(b.param("p"))


# --------------------------------------------------------------------------- header


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_header(arch):
    m, b = kernel((), arch)
    b.ret()
    ptx = m.to_ptx()
    filecheck(ptx, f"""
        CHECK: .version 8.{{{{[0-9]}}}}
        CHECK-NEXT: .target {arch}
        CHECK-NEXT: .address_size 64
        CHECK: .visible .entry k()
        CHECK-NEXT: {{
        CHECK-NEXT: ret;
        CHECK-NEXT: }}
    """)
    # PTX ISA 8.x: what driver 13.0 accepts (architecture §2)
    assert m.to_ptx().count(".version ") == 1
    link(m)


def test_header_version_override_and_maxntid():
    m = Module(arch="sm_90", version="8.3")
    b = Builder.entry(m, "k", [("n", U32)], maxntid=256)
    b.ret()
    filecheck(m.to_ptx(), """
        CHECK: .version 8.3
        CHECK: .visible .entry k(.param .u32 n)
        CHECK-NEXT: .maxntid 256, 1, 1
        CHECK-NEXT: {
    """)
    link(m)


# ---------------------------------------------------------------- register declarations


def test_registers_are_declared_once_per_type_in_first_use_order():
    m, b = kernel(())
    a = b.reg(U32, "a")
    x = b.reg(F32, "x")
    c = b.reg(U32, "c")
    p = b.reg(PRED, "q")
    h = b.reg(BF16, "h")
    y = b.reg(F32, "y")
    w = b.reg("b16", "w")
    b.mov(1, dst=a)
    b.mov(2, dst=c)
    b.mov(1.0, dst=x)
    b.cvt(x, BF16, dst=h)
    b.cvt(h, F32, dst=y)
    b.setp("lt", a, c, dst=p)
    b.mov(h, type="b16", dst=w)
    b.ret()
    filecheck(m.to_ptx(), """
        CHECK: .visible .entry k()
        CHECK-NEXT: {
        CHECK-NEXT: .reg .u32 %a, %c;
        CHECK-NEXT: .reg .f32 %x, %y;
        CHECK-NEXT: .reg .pred %q;
        # PTX has no .bf16 registers: bf16 values live in .b16 ones, with the .b16s
        CHECK-NEXT: .reg .b16 %h, %w;
        CHECK-NEXT: mov.u32 %a, 1;
        CHECK-NOT: .reg
        CHECK-NOT: .bf16 %
        CHECK: cvt.rn.bf16.f32 %h, %x;
        CHECK-NEXT: cvt.f32.bf16 %y, %h;
        CHECK-NOT: .reg
        CHECK: ret;
    """)
    link(m)


def test_fresh_register_names_are_numbered_per_prefix():
    m, b = kernel(())
    r = [b.reg(U32) for _ in range(3)] + [b.reg(U64), b.reg(F64), b.reg(PRED)]
    assert [str(x) for x in r] == ["%r0", "%r1", "%r2", "%rd0", "%fd0", "%p0"]
    # a hint that names a special register is renamed, never shadowing %tid
    assert str(b.reg(U32, "tid")) == "%tid_"


# ------------------------------------------------------------------------ arithmetic


@pytest.mark.parametrize("t,hexone", [(F32, "0f3F800000"), (F64, "0d3FF0000000000000")])
def test_float_add_sub_mul_div_round_to_nearest_so_ptxas_cannot_contract(t, hexone):
    m, b = kernel()
    p = gptr(b)
    x = b.ld("global", p, t)
    y = b.mul(x, x)
    z = b.add(y, 1.0)
    w = b.sub(z, x)
    v = b.div(w, x)
    f = b.fma(v, x, w)
    b.st("global", p, f)
    b.ret()
    n = t.name
    filecheck(m.to_ptx(), f"""
        CHECK: ld.global.{n} {x}, [%rd{R}];
        CHECK-NEXT: mul.rn.{n} {y}, {x}, {x};
        CHECK-NEXT: add.rn.{n} {z}, {y}, {hexone};
        CHECK-NEXT: sub.rn.{n} {w}, {z}, {x};
        CHECK-NEXT: div.rn.{n} {v}, {w}, {x};
        CHECK-NEXT: fma.rn.{n} {f}, {v}, {x}, {w};
        CHECK-NEXT: st.global.{n} [%rd{R}], {f};
    """)
    assert f"add.{n}" not in m.to_ptx() and f"mul.{n}" not in m.to_ptx()
    link(m)


def test_float_mad_is_fma_and_int_mad_is_mad_lo():
    m, b = kernel()
    x = b.ld("global", gptr(b), F32)
    i = b.special("tid.x")
    f = b.mad(x, x, x)
    j = b.mad(i, 3, i)
    w = b.mad(i, 4, b.cvt(i, U64), mode="wide")
    hi = b.mul(i, i, "hi")
    filecheck(m.to_ptx(), f"""
        CHECK: fma.rn.f32 {f}, {x}, {x}, {x};
        CHECK: mad.lo.u32 {j}, {i}, 3, {i};
        CHECK: mad.wide.u32 {w}, {i}, 4, %rd{R};
        CHECK: mul.hi.u32 {hi}, {i}, {i};
    """)
    assert w.type == U64
    b.ret()
    link(m)


def test_int_arithmetic_has_no_rounding_modifier():
    m, b = kernel()
    i = b.special("tid.x")
    s = b.add(i, 1)
    d = b.sub(i, 1, type=S32)
    b.ret()
    filecheck(m.to_ptx(), f"""
        CHECK: add.u32 {s}, {i}, 1;
        CHECK-NEXT: sub.s32 {d}, {i}, 1;
    """)
    assert ".rn.u32" not in m.to_ptx() and ".rn.s32" not in m.to_ptx()


def test_logic_and_shl_on_u32_become_b32_shr_keeps_signedness():
    m, b = kernel()
    i = b.special("tid.x")
    s = b.cvt(i, S32)
    a = b.and_(i, 7)
    o = b.or_(i, 8)
    x = b.xor(i, 1)
    sh = b.shl(i, 2)
    n = b.not_(i)
    c = b.popc(i)
    ur = b.shr(i, 1)
    sr = b.shr(s, 1)
    b.ret()
    filecheck(m.to_ptx(), f"""
        CHECK: and.b32 {a}, {i}, 7;
        CHECK-NEXT: or.b32 {o}, {i}, 8;
        CHECK-NEXT: xor.b32 {x}, {i}, 1;
        CHECK-NEXT: shl.b32 {sh}, {i}, 2;
        CHECK-NEXT: not.b32 {n}, {i};
        CHECK-NEXT: popc.b32 {c}, {i};
        CHECK-NEXT: shr.u32 {ur}, {i}, 1;
        CHECK-NEXT: shr.s32 {sr}, {s}, 1;
    """)
    assert a.type == B32 and c.type == U32  # popc writes a u32 whatever it counts
    link(m)


def test_arithmetic_on_bit_registers_uses_integer_types():
    """and/or/xor return .b32 registers; arithmetic, ordering compares, cvt and neg have
    no .bN forms, so the builder must not copy the register's type into the opcode."""
    m, b = kernel()
    p = gptr(b)
    x = b.xor(b.ld("global", p, U32), 1)
    mul = b.mul(x, 16)
    add = b.add(x, 3)
    mn = b.min(x, 5)
    lt = b.setp("lt", x, 5)
    eq = b.setp("eq", x, 5)
    wide = b.cvt(x, U64)
    ng = b.neg(x)
    b.st("global", p, b.selp(mul, add, lt), type=U32)
    b.st("global", p, b.selp(mn, ng, eq), type=U32)
    b.st("global", p, wide)
    b.ret()
    ptx = m.to_ptx()
    filecheck(ptx, f"""
        CHECK: xor.b32 {x}, %r{R}, 1;
        CHECK-NEXT: mul.lo.u32 {mul}, {x}, 16;
        CHECK-NEXT: add.u32 {add}, {x}, 3;
        CHECK-NEXT: min.u32 {mn}, {x}, 5;
        CHECK-NEXT: setp.lt.u32 {lt}, {x}, 5;
        CHECK-NEXT: setp.eq.{{{{[bu]}}}}32 {eq}, {x}, 5;
        CHECK-NEXT: cvt.u64.u32 {wide}, {x};
        CHECK-NEXT: neg.s32 {ng}, {x};
    """)
    link(m)


def test_float_immediates_are_exact_hex():
    m, b = kernel(())
    f = b.mov(1.0, type=F32)
    tenth = b.mov(0.1, type=F32)
    nz = b.mov(-0.0, type=F32)
    inf = b.mov(float("inf"), type=F32)
    d = b.mov(0.1, type=F64)
    s = b.add(f, 1.5)
    big = b.mov(0xFFFFFFFF, type=U32)
    b.ret()
    filecheck(m.to_ptx(), f"""
        CHECK: mov.f32 {f}, 0f3F800000;
        CHECK-NEXT: mov.f32 {tenth}, 0f3DCCCCCD;
        CHECK-NEXT: mov.f32 {nz}, 0f80000000;
        CHECK-NEXT: mov.f32 {inf}, 0f7F800000;
        CHECK-NEXT: mov.f64 {d}, 0d3FB999999999999A;
        CHECK-NEXT: add.rn.f32 {s}, {f}, 0f3FC00000;
        CHECK-NEXT: mov.u32 {big}, 4294967295;
    """)
    assert "0.1" not in m.to_ptx() and "1.5" not in m.to_ptx()
    link(m)


# ---------------------------------------------------------------------------- memory


def test_ld_st_semantics_scopes_and_vectors():
    m, b = kernel()
    p = gptr(b)
    a = b.ld("global", p, U32, sem="relaxed", scope="gpu")
    c = b.ld("global", p, U32, sem="acquire", scope="sys")
    v = b.ld("global", p, U32, sem="volatile")
    w = b.ld("global", Mem(p, 4), U32, sem="weak")
    b.st("global", p, a, sem="release", scope="gpu")
    b.st("global", Mem(p, -8), c, sem="relaxed", scope="cta")
    b.st("global", p, v, sem="volatile")
    q = b.ld("global", Mem(p, 16), U32, vec=4)
    b.st("global", p, tuple(reversed(q)))
    d = b.ld("global", p, U64, vec=2)
    b.st("global", Mem(p, 32), d)
    b.ret()
    vec = ", ".join(str(r) for r in q)
    rvec = ", ".join(str(r) for r in reversed(q))
    filecheck(m.to_ptx(), f"""
        CHECK: ld.param.u64 %rd{R}, [p];
        CHECK-NEXT: cvta.to.global.u64 {p}, %rd{R};
        CHECK-NEXT: ld.relaxed.gpu.global.u32 {a}, [{p}];
        CHECK-NEXT: ld.acquire.sys.global.u32 {c}, [{p}];
        CHECK-NEXT: ld.volatile.global.u32 {v}, [{p}];
        CHECK-NEXT: ld.global.u32 {w}, [{p}+4];
        CHECK-NEXT: st.release.gpu.global.u32 [{p}], {a};
        CHECK-NEXT: st.relaxed.cta.global.u32 [{p}+-8], {c};
        CHECK-NEXT: st.volatile.global.u32 [{p}], {v};
        CHECK-NEXT: ld.global.v4.u32 {{{vec}}}, [{p}+16];
        CHECK-NEXT: st.global.v4.u32 [{p}], {{{rvec}}};
        CHECK-NEXT: ld.global.v2.u64 {{{d[0]}, {d[1]}}}, [{p}];
        CHECK-NEXT: st.global.v2.u64 [{p}+32], {{{d[0]}, {d[1]}}};
    """)
    assert ".weak" not in m.to_ptx()
    link(m)


def test_shared_and_local_symbols_as_addresses():
    m, b = kernel()
    buf = Builder.shared(m, "buf", 256, align=16)
    loc = b.local("scratch", 16)
    i = b.special("tid.x")
    b.st("shared", Mem(buf, 4), i)
    x = b.ld("shared", Mem(buf, 4), U32)
    b.st("local", loc, x)
    off = b.mov(buf, type=U32)
    y = b.ld("shared", off, U32)
    b.st("global", gptr(b), y)
    b.ret()
    filecheck(m.to_ptx(), f"""
        CHECK: .shared .align 16 .b8 buf[256];
        CHECK: .visible .entry k(
        CHECK: .local .align 8 .b8 scratch[16];
        CHECK: st.shared.u32 [buf+4], {i};
        CHECK-NEXT: ld.shared.u32 {x}, [buf+4];
        CHECK-NEXT: st.local.u32 [scratch], {x};
        CHECK-NEXT: mov.u32 {off}, buf;
        CHECK-NEXT: ld.shared.u32 {y}, [{off}];
    """)
    link(m)


def test_half_precision_values_move_as_b16_and_keep_their_type():
    m, b = kernel()
    p = gptr(b)
    h = b.ld("global", p, BF16)
    f = b.cvt(h, F32)
    g = b.cvt(b.add(f, 1.0), BF16)
    b.st("global", p, g)
    b.ret()
    filecheck(m.to_ptx(), f"""
        CHECK: ld.global.b16 {h}, [{p}];
        CHECK-NEXT: cvt.f32.bf16 {f}, {h};
        CHECK: cvt.rn.bf16.f32 {g}, %f{R};
        CHECK-NEXT: st.global.b16 [{p}], {g};
    """)
    assert h.type == BF16  # the register still says what the bits mean
    assert "ld.global.bf16" not in m.to_ptx() and "st.global.bf16" not in m.to_ptx()
    link(m)


def test_atom_and_red_spelling():
    m, b = kernel()
    p = gptr(b)
    i = b.special("tid.x")
    a = b.atom("global", "add", p, i, sem="relaxed", scope="gpu")
    cmp, new = b.mov(0, type=B32), b.mov(1, type=B32)
    c = b.atom("global", "cas", p, cmp, new, type=B32)
    e = b.atom("shared", "exch", Sym("s"), b.cvt(i, U64), type=B64)
    b.red("global", "add", p, a)
    b.red("global", "max", p, b.cvt(i, S32), sem="relaxed", scope="sys")
    inc = b.atom("global", "inc", p, 100, type=U32)
    b.ret()
    filecheck(m.to_ptx(), f"""
        CHECK: atom.relaxed.gpu.global.add.u32 {a}, [{p}], {i};
        CHECK: atom.global.cas.b32 {c}, [{p}], {cmp}, {new};
        CHECK: atom.shared.exch.b64 {e}, [s], %rd{R};
        CHECK-NEXT: red.global.add.u32 [{p}], {a};
        CHECK: red.relaxed.sys.global.max.s32 [{p}], %rs{R};
        CHECK-NEXT: atom.global.inc.u32 {inc}, [{p}], 100;
    """)
    Builder.shared(m, "s", 8, align=8)
    link(m)


def test_mma_spelling_and_operand_counts():
    m, b = kernel()
    a = [b.mov(0, type=B32) for _ in range(4)]
    bb = [b.mov(0, type=B32) for _ in range(2)]
    c = [b.cvt(b.special("tid.x"), F32) for _ in range(4)]
    d = b.mma_bf16(a, bb, c)
    b.ret()
    filecheck(m.to_ptx(), f"""
        CHECK: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {{{d[0]}, {d[1]}, {d[2]}, {d[3]}}}, {{{a[0]}, {a[1]}, {a[2]}, {a[3]}}}, {{{bb[0]}, {bb[1]}}}, {{{c[0]}, {c[1]}, {c[2]}, {c[3]}}};
    """)
    link(m)
    with pytest.raises(PtxBuildError, match="4 A, 2 B and 4 C"):
        b.mma_bf16(a[:2], bb, c)
    with pytest.raises(PtxBuildError, match="1, 2 or 4 matrices"):
        b.ldmatrix(b.mov(0, type=U32), 3)


def test_bitwise_exchange_and_cas_atomics_take_b_types():
    """ptxas rejects atom.exch.u32 (and .cas/.and/.or/.xor on .u/.s): the builder says so."""
    m, b = kernel()
    p = gptr(b)
    for op in ("exch", "cas", "and", "or", "xor"):
        with pytest.raises(PtxBuildError, match=f".{op} takes a .b32/.b64 type"):
            b.atom("global", op, p, b.mov(1, type=U32), type=U32)
    with pytest.raises(PtxBuildError, match=".or takes"):
        b.red("global", "or", p, b.mov(1, type=U32), type=U32)


def test_fence_spelling():
    m, b = kernel(())
    b.fence()
    b.fence("sc", "cta")
    b.fence("acq_rel", "sys")
    b.ret()
    filecheck(m.to_ptx(), """
        CHECK: fence.acq_rel.gpu;
        CHECK-NEXT: fence.sc.cta;
        CHECK-NEXT: fence.acq_rel.sys;
    """)
    link(m)


# ----------------------------------------------------------------------- collectives


def test_bar_spelling_has_no_type_suffix():
    m, b = kernel(())
    i = b.special("tid.x")
    b.bar_sync()
    b.bar_sync(1, 64)
    b.bar_arrive(2, 64)
    b.bar_warp_sync()
    n = b.bar_red("popc", b.setp("eq", i, 0))
    q = b.bar_red("and", b.setp("ne", i, 0), bar_id=3)
    b.ret()
    filecheck(m.to_ptx(), f"""
        CHECK: bar.sync 0;
        CHECK-NEXT: bar.sync 1, 64;
        CHECK-NEXT: bar.arrive 2, 64;
        CHECK-NEXT: bar.warp.sync 4294967295;
        CHECK: bar.red.popc.u32 {n}, 0, %p{R};
        CHECK: bar.red.and.pred {q}, 3, %p{R};
    """)
    assert "bar.sync.u32" not in m.to_ptx() and "bar.arrive.u32" not in m.to_ptx()
    link(m)


def test_shfl_vote_activemask_spelling():
    m, b = kernel(())
    i = b.special("tid.x")
    s = b.shfl("bfly", i, 1)
    t = b.shfl("idx", i, i, 0x1F, mask=0x0000FFFF)
    u = b.shfl("up", i, 1, 0)
    p = b.setp("ne", i, 0)
    al = b.vote("all", p)
    bal = b.vote("ballot", p)
    am = b.activemask()
    b.ret()
    filecheck(m.to_ptx(), f"""
        CHECK: shfl.sync.bfly.b32 {s}, {i}, 1, 31, 4294967295;
        CHECK-NEXT: shfl.sync.idx.b32 {t}, {i}, {i}, 31, 65535;
        CHECK-NEXT: shfl.sync.up.b32 {u}, {i}, 1, 0, 4294967295;
        CHECK: vote.sync.all.pred {al}, {p}, 4294967295;
        CHECK-NEXT: vote.sync.ballot.b32 {bal}, {p}, 4294967295;
        CHECK-NEXT: activemask.b32 {am};
    """)
    link(m)


def test_mbarrier_spelling_including_parity():
    m, b = kernel(())
    bar = Builder.shared(m, "mb", 8, align=8)
    b.mbarrier_init(bar, 2)
    tok = b.mbarrier_arrive(bar)
    t1 = b.mbarrier_wait(bar, tok)
    t2 = b.mbarrier_wait(bar, tok, "try_wait")
    ph = b.mov(0, type=U32)
    t3 = b.mbarrier_wait(bar, ph, parity=True)
    t4 = b.mbarrier_wait(Mem(bar), ph, "try_wait", parity=True)
    b.ret()
    filecheck(m.to_ptx(), f"""
        CHECK: .shared .align 8 .b8 mb[8];
        CHECK: mbarrier.init.shared.b64 [mb], 2;
        CHECK-NEXT: mbarrier.arrive.shared.b64 {tok}, [mb];
        CHECK-NEXT: mbarrier.test_wait.shared.b64 {t1}, [mb], {tok};
        CHECK-NEXT: mbarrier.try_wait.shared.b64 {t2}, [mb], {tok};
        CHECK-NEXT: mov.u32 {ph}, 0;
        CHECK-NEXT: mbarrier.test_wait.parity.shared.b64 {t3}, [mb], {ph};
        CHECK-NEXT: mbarrier.try_wait.parity.shared.b64 {t4}, [mb], {ph};
    """)
    assert tok.type == B64 and t1.type == PRED
    link(m)


def test_cp_async_spelling():
    m, b = kernel()
    buf = Builder.shared(m, "cbuf", 64)
    src = gptr(b)
    b.cp_async(buf, src, 16, cache="cg")
    b.cp_async(Mem(buf, 16), Mem(src, 16), 4)
    b.cp_async_commit()
    b.cp_async_wait(1)
    b.cp_async_wait()
    b.ret()
    filecheck(m.to_ptx(), f"""
        CHECK: cp.async.cg.shared.global [cbuf], [{src}], 16;
        CHECK-NEXT: cp.async.ca.shared.global [cbuf+16], [{src}+16], 4;
        CHECK-NEXT: cp.async.commit_group;
        CHECK-NEXT: cp.async.wait_group 1;
        CHECK-NEXT: cp.async.wait_group 0;
    """)
    link(m)


# ---------------------------------------------------------------------- control flow


def _callee(m):
    f = Builder.func(m, "f", [("x", U32), ("y", U64)], ret=U32)
    f.ret(f.add(f.param("x"), f.cvt(f.param("y"), U32)))
    return f


def test_direct_call_param_block_and_result():
    m = Module()
    f = _callee(m)
    g = Builder.func(m, "g")
    g.ret()
    b = Builder.entry(m, "k", [("p", U64)])
    p = gptr(b)
    i = b.special("tid.x")
    r = b.call("f", [i, p])
    b.call(g.fn)
    r2 = b.call("f", [7, p], pred=(b.setp("eq", i, 0), True))
    b.st("global", p, b.add(r, r2))
    b.ret()
    ptx = m.to_ptx()
    filecheck(ptx, f"""
        # forward declaration, then the definition
        CHECK: .visible .func (.param .u32 ret) f(.param .u32 x, .param .u64 y);
        CHECK: .visible .func g();
        CHECK: .visible .func (.param .u32 ret) f(.param .u32 x, .param .u64 y)
        CHECK-NEXT: {{
        CHECK: ld.param.u32 %r{R}, [x];
        CHECK: ld.param.u64 %rd{R}, [y];
        CHECK: st.param.u32 [ret], %r{R};
        CHECK-NEXT: ret;
        CHECK: .visible .entry k(.param .u64 p)
        CHECK: mov.u32 {i}, %tid.x;
        CHECK-NEXT: {{
        CHECK-NEXT: .param .u32 param0;
        CHECK-NEXT: st.param.u32 [param0], {i};
        CHECK-NEXT: .param .u64 param1;
        CHECK-NEXT: st.param.u64 [param1], {p};
        CHECK-NEXT: .param .u32 retval0;
        CHECK-NEXT: call.uni (retval0), f, (param0, param1);
        CHECK-NEXT: ld.param.u32 {r}, [retval0];
        CHECK-NEXT: }}
        CHECK-NEXT: {{
        CHECK-NEXT: call.uni g, ();
        CHECK-NEXT: }}
        CHECK: st.param.u32 [param0], 7;
        CHECK: @!%p{R} call.uni (retval0), f, (param0, param1);
        CHECK-NEXT: ld.param.u32 {r2}, [retval0];
    """)
    link(m)


def test_indirect_call_uses_a_callprototype():
    m = Module()
    f = _callee(m)
    h = Builder.func(m, "h", [("x", U32)])
    h.ret()
    b = Builder.entry(m, "k", [("p", U64)])
    p = gptr(b)
    i = b.special("tid.x")
    fp = b.mov(Sym("f"))
    r = b.call(fp, [i, p], proto=f.fn)
    r2 = b.call(fp, [r, p], proto=f.fn)  # same signature: same prototype
    hp = b.mov(Sym("h"))
    b.call(hp, [r2], proto=h.fn)
    b.ret()
    ptx = m.to_ptx()
    filecheck(ptx, f"""
        CHECK: .visible .entry k(
        CHECK: proto_0: .callprototype (.param .u32 ret) _(.param .u32 x, .param .u64 y);
        CHECK-NEXT: proto_1: .callprototype _(.param .u32 x);
        CHECK: mov.u64 {fp}, f;
        CHECK: .param .u32 retval0;
        CHECK-NEXT: call (retval0), {fp}, (param0, param1), proto_0;
        CHECK-NEXT: ld.param.u32 {r}, [retval0];
        CHECK: call (retval0), {fp}, (param0, param1), proto_0;
        CHECK: mov.u64 {hp}, h;
        CHECK: call {hp}, (param0), proto_1;
    """)
    assert ptx.count(".callprototype") == 2
    assert f"call.uni (retval0), {fp}" not in ptx  # an indirect call is never .uni here
    link(m)


def test_brx_idx_with_branchtargets():
    m, b = kernel(())
    i = b.and_(b.special("tid.x"), 1)
    labels = [b.new_label("a"), b.new_label("b")]
    end = b.new_label("end")
    b.brx_idx(i, labels)
    for lbl in labels:
        b.place(lbl)
        b.bra(end)
    b.place(end)
    b.ret()
    la, lb = labels
    filecheck(m.to_ptx(), f"""
        CHECK: and.b32 {i}, %r{R}, 1;
        CHECK-NEXT: $T_{R}: .branchtargets {la}, {lb};
        CHECK-NEXT: brx.idx {i}, $T_{R};
        CHECK-NEXT: {la}:
        CHECK-NEXT: bra {end};
        CHECK-NEXT: {lb}:
        CHECK-NEXT: bra {end};
        CHECK-NEXT: {end}:
        CHECK-NEXT: ret;
    """)
    link(m)


def test_if_lowers_to_a_predicated_branch_around_the_body():
    m, b = kernel(())
    i = b.special("tid.x")
    p = b.setp("lt", i, 10)
    with b.if_(p):
        a = b.add(i, 1)
    with b.if_(p, negate=True):
        c = b.add(i, 2)
    b.ret()
    filecheck(m.to_ptx(), f"""
        CHECK: setp.lt.u32 {p}, {i}, 10;
        CHECK-NEXT: @!{p} bra $L_endif_1;
        CHECK-NEXT: add.u32 {a}, {i}, 1;
        CHECK-NEXT: $L_endif_1:
        CHECK-NEXT: @{p} bra $L_endif_2;
        CHECK-NEXT: add.u32 {c}, {i}, 2;
        CHECK-NEXT: $L_endif_2:
        CHECK-NEXT: ret;
    """)
    link(m)


def test_loop_lowers_to_labels_and_branches():
    m, b = kernel(())
    n = b.special("tid.x")
    k = b.mov(0, type=U32)
    with b.loop() as lp:
        done = b.setp("ge", k, n)
        lp.break_if(done)
        b.add(k, 1, dst=k)
        odd = b.setp("ne", b.and_(k, 1), 0)
        lp.continue_if(odd)
        lp.break_if(odd, negate=True)
    b.ret()
    filecheck(m.to_ptx(), f"""
        CHECK: mov.u32 {k}, 0;
        CHECK-NEXT: $L_loop_1:
        CHECK-NEXT: setp.ge.u32 {done}, {k}, {n};
        CHECK-NEXT: @{done} bra $L_endloop_2;
        CHECK-NEXT: add.u32 {k}, {k}, 1;
        CHECK-NEXT: and.b32
        CHECK-NEXT: setp.ne.{{{{[bu]}}}}32 {odd},
        CHECK-NEXT: @{odd} bra $L_loop_1;
        CHECK-NEXT: @!{odd} bra $L_endloop_2;
        CHECK-NEXT: bra $L_loop_1;
        CHECK-NEXT: $L_endloop_2:
        CHECK-NEXT: ret;
    """)
    link(m)


def test_when_guards_every_instruction_inside_only():
    m, b = kernel(())
    i = b.special("tid.x")
    p = b.setp("eq", i, 0)
    with b.when(p):
        a = b.add(i, 1)
        b.bra(Label("$L_x"), uni=True)
    c = b.add(i, 2)
    b.place(Label("$L_x"))
    b.ret()
    filecheck(m.to_ptx(), f"""
        CHECK: @{p} add.u32 {a}, {i}, 1;
        CHECK-NEXT: @{p} bra.uni $L_x;
        CHECK-NEXT: add.u32 {c}, {i}, 2;
    """)
    link(m)


def test_extern_func_declaration_and_call():
    m = Module()
    ext = Builder.extern(m, "cudaGraphSetConditional", [("handle", U64), ("value", U32)])
    Builder.extern(m, "ext_ret", [("x", U32)], ret=U32)
    b = Builder.entry(m, "k", [("h", U64)])
    b.call(ext, [b.param("h"), Imm(1, U32)])
    r = b.call("ext_ret", [b.special("tid.x")])
    b.ret()
    ptx = m.to_ptx()
    filecheck(ptx, f"""
        CHECK: .address_size 64
        CHECK: .extern .func cudaGraphSetConditional(.param .u64 handle, .param .u32 value);
        CHECK-NEXT: .extern .func (.param .u32 ret) ext_ret(.param .u32 x);
        CHECK-NOT: .visible .func
        CHECK: .visible .entry k(.param .u64 h)
        CHECK: st.param.u32 [param1], 1;
        CHECK-NEXT: call.uni cudaGraphSetConditional, (param0, param1);
        CHECK: call.uni (retval0), ext_ret, (param0);
        CHECK-NEXT: ld.param.u32 {r}, [retval0];
    """)
    assert ptx.count("cudaGraphSetConditional(") == 1  # declared once, never defined


# --------------------------------------------------------------------- builder errors


def _err_unknown_opcode(m, b):
    b.emit("frobnicate", (), (U32,), b.reg(U32), (1,))


def _err_relaxed_without_scope(m, b):
    b.ld("global", gptr(b), U32, sem="relaxed")


def _err_acquire_without_scope(m, b):
    b.st("global", gptr(b), b.special("tid.x"), sem="release")


def _err_vector_relaxed(m, b):
    b.ld("global", gptr(b), U32, sem="relaxed", scope="gpu", vec=4)


def _err_vector_width(m, b):
    b.ld("global", gptr(b), U32, vec=3)


def _err_unknown_space(m, b):
    b.ld("texture", gptr(b), U32)


def _err_call_arg_count(m, b):
    _callee(m)
    b.call("f", [b.special("tid.x")])


def _err_call_undefined(m, b):
    b.call("nowhere", [])


def _err_indirect_without_proto(m, b):
    _callee(m)
    b.call(b.mov(Sym("f")), [1, 2])


def _err_immediates_only(m, b):
    b.add(1, 2)


def _err_python_bool(m, b):
    b.selp(1, 0, True, type=U32)


def _err_unknown_special(m, b):
    b.special("tid.w")


def _err_ret_value_from_void(m, b):
    b.ret(b.special("tid.x"))


def _err_duplicate_function(m, b):
    Builder.entry(m, "k")


def _err_atom_op(m, b):
    b.atom("global", "nand", gptr(b), 1, type=U32)


def _err_red_cas(m, b):
    b.red("global", "cas", gptr(b), 1, type=U32)


def _err_fence(m, b):
    b.fence("relaxed", "gpu")


def _err_cp_async_size(m, b):
    b.cp_async(Sym("s"), gptr(b), 4, cache="cg")


BUILD_ERRORS = {
    "unknown opcode": (_err_unknown_opcode, "no row in the op table"),
    "relaxed without scope": (_err_relaxed_without_scope, r"\.relaxed needs a scope"),
    "release without scope": (_err_acquire_without_scope, r"\.release needs a scope"),
    "vector with relaxed": (_err_vector_relaxed, "vector loads/stores are weak"),
    "vector width 3": (_err_vector_width, "vector width"),
    "unknown space": (_err_unknown_space, "unknown state space 'texture'"),
    "call arg count": (_err_call_arg_count, "f takes 2 arguments, got 1"),
    "call undefined": (_err_call_undefined, "undefined function 'nowhere'"),
    "indirect without prototype": (_err_indirect_without_proto, "needs a prototype"),
    "immediates only": (_err_immediates_only, "immediates alone; pass type="),
    "python bool": (_err_python_bool, "bool is not a PTX operand"),
    "unknown special register": (_err_unknown_special, "unknown special register %tid.w"),
    "ret value from void": (_err_ret_value_from_void, "returns nothing"),
    "duplicate function": (_err_duplicate_function, "defined twice"),
    "unknown atomic op": (_err_atom_op, "unknown atomic operation 'nand'"),
    "red cas": (_err_red_cas, "red has no operation 'cas'"),
    "fence relaxed": (_err_fence, "is not a fence"),
    "cp.async.cg 4 bytes": (_err_cp_async_size, "cannot copy 4 bytes"),
}


@pytest.mark.parametrize("what", list(BUILD_ERRORS))
def test_builder_errors(what):
    fn, message = BUILD_ERRORS[what]
    m, b = kernel()
    with pytest.raises(PtxBuildError, match=message) as e:
        fn(m, b)
    assert isinstance(e.value, PollbenchError)  # the CLI's one-line error type
    assert "\n" not in str(e.value)
    assert all(i.op != "frobnicate" for i in b.fn.instructions())


# ------------------------------------------------------- every difftest kernel links

# Cases that use an instruction sm_80 does not have. This is a capability fact, not a bug:
# mbarrier.try_wait (and try_wait.parity) is new in sm_90 (PTX ISA 7.8); sm_80 has only
# mbarrier.test_wait. ptxas says "Feature 'mbarrier.try_wait' requires .target sm_90".
SM90_ONLY = {"mbarrier init/arrive/test_wait/try_wait/parity": "mbarrier.try_wait",
             "cp.async.bulk + mbarrier expect_tx/complete_tx": "requires .target sm_90",
             "cp.async.bulk.tensor": "requires .target sm_90",
             "wgmma.m64n16k16 bf16": "requires .target sm_90"}


@pytest.fixture(scope="module")
def cases():
    return all_cases()


def _build_all(cases, arch):
    m = Module(arch=arch)
    kernels = [c.build(m) for c in cases]  # Module.add raises on a duplicate function
    return m, kernels


def test_difftest_cases_fit_one_module(cases):
    m, kernels = _build_all(cases, "sm_90")
    assert len(kernels) == len(set(kernels)) == len(cases)
    assert set(kernels) == {f.name for f in m.entries()}
    shared = [v.name for v in m.globals]
    assert len(shared) == len(set(shared)), "two cases declare the same .shared variable"
    assert {c.name for c in cases} >= set(SM90_ONLY)


@pytest.mark.parametrize("arch", ["sm_90", "sm_80"])
def test_difftest_cases_link(cases, arch):
    """One module with every case's kernel, linked by nvJitLink; for sm_80 every case but
    the sm_90-only ones (which the next test shows fail, each alone)."""
    keep = [c for c in cases if arch == "sm_90" or c.name not in SM90_ONLY]
    m, kernels = _build_all(keep, arch)
    compiled = link(m)
    assert set(kernels) <= set(compiled.resources)
    assert all(compiled.resources[k].kind == "entry" for k in kernels)
    assert all(compiled.resources[k].spill_stores == 0 for k in kernels)


@pytest.mark.parametrize("name", sorted(SM90_ONLY))
def test_sm90_only_cases_do_not_link_for_sm80(cases, name):
    case = next(c for c in cases if c.name == name)
    m = Module(arch="sm_80")
    case.build(m)
    with pytest.raises(CompileError) as e:
        link(m)
    assert SM90_ONLY[name] in str(e.value) and "sm_90" in str(e.value)
    m.arch = "sm_90"
    link(m)
