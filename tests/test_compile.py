"""harness.compile: nvJitLink in-process (no GPU), resource report, cache, occupancy."""

from __future__ import annotations

import dataclasses
import os
import re

import pytest

from harness.compile import (
    ArchError,
    CompileError,
    OccupancyError,
    Resources,
    compile_ptx,
    default_cache_dir,
    nvjitlink_version,
    parse_arch,
    parse_ptxas_log,
    theoretical_occupancy,
)
from harness.errors import PollbenchError

ARCHS = ["sm_80", "sm_90"]


def header(arch: str) -> str:
    return f".version 8.0\n.target {arch}\n.address_size 64\n"


# An entry with 1 KB of static shared memory, one barrier, calling a .func.
ENTRY_AND_FUNC = """
.func (.reg .b32 r) inc(.reg .b32 a)
{
  add.s32 r, a, 1;
  ret;
}
.visible .entry k(.param .u64 p)
{
  .reg .b32 %r<4>;
  .reg .b64 %rd<3>;
  .shared .align 4 .b8 buf[1024];
  mov.u32 %r1, %tid.x;
  call (%r2), inc, (%r1);
  st.shared.u32 [buf], %r2;
  bar.sync 0;
  ld.shared.u32 %r3, [buf+4];
  ld.param.u64 %rd1, [p];
  cvta.to.global.u64 %rd2, %rd1;
  st.global.u32 [%rd2], %r3;
  ret;
}
"""


def spilling_kernel(n: int = 64, maxnreg: int = 32) -> str:
    """n values kept live across volatile loads and stores, under a register cap."""
    lines = [f".visible .entry spill(.param .u64 p) .maxnreg {maxnreg}", "{",
             f"  .reg .f32 %f<{n + 2}>;", "  .reg .b64 %rd<4>;", "  .reg .b32 %r<3>;",
             "  ld.param.u64 %rd1, [p];", "  cvta.to.global.u64 %rd2, %rd1;",
             "  mov.u32 %r1, %tid.x;", "  mul.wide.u32 %rd3, %r1, 4;",
             "  add.u64 %rd2, %rd2, %rd3;"]
    lines += [f"  ld.global.volatile.f32 %f{i}, [%rd2+{4 * i}];" for i in range(n)]
    lines += [f"  st.global.volatile.f32 [%rd2+{4 * i + 4096}], %f{i};" for i in range(n)]
    lines += [f"  add.f32 %f{n}, %f{n}, %f{i};" for i in range(n)]
    lines += [f"  st.global.f32 [%rd2], %f{n};", "  ret;", "}"]
    return "\n".join(lines) + "\n"


LOCAL_ARRAY = """
.visible .entry loc(.param .u64 p)
{
  .reg .b32 %r<4>;
  .reg .b64 %rd<4>;
  .local .align 4 .b8 arr[4096];
  mov.u32 %r1, %tid.x;
  mov.u64 %rd3, arr;
  mul.wide.u32 %rd1, %r1, 4;
  add.u64 %rd3, %rd3, %rd1;
  st.local.u32 [%rd3], %r1;
  ld.local.u32 %r3, [arr+8];
  ld.param.u64 %rd1, [p];
  cvta.to.global.u64 %rd2, %rd1;
  st.global.u32 [%rd2], %r3;
  ret;
}
"""

EMPTY = ".visible .entry e()\n{\n  ret;\n}\n"


# ---------------------------------------------------------------- arch names

@pytest.mark.parametrize("text, want", [
    ("sm_90", "sm_90"), ("SM_90", "sm_90"), ("90", "sm_90"), ("9.0", "sm_90"),
    ("sm90", "sm_90"), ("sm_90a", "sm_90a"), ("90a", "sm_90a"), (" sm_80 ", "sm_80"),
    ("8.6", "sm_86"), ("sm_89", "sm_89"), ("sm_100f", "sm_100f"), ("compute_90", "sm_90"),
    ("sm_75", "sm_75"), ("sm_120a", "sm_120a"),
])
def test_parse_arch_normalises(text, want):
    assert parse_arch(text) == want


@pytest.mark.parametrize("text", [
    "sm_9x", "gfx90a", "sm_50", "sm_70", "sm_72", "sm_101", "sm_90f", "sm_80a", "", "sm_", "hopper",
])
def test_parse_arch_rejects_with_the_accepted_set(text):
    with pytest.raises(ArchError) as ei:
        parse_arch(text)
    msg = str(ei.value)
    assert isinstance(ei.value, PollbenchError)
    assert "\n" not in msg
    assert "sm_90" in msg and "sm_80" in msg  # says what is accepted


def test_parse_arch_rejects_non_string():
    with pytest.raises(ArchError):
        parse_arch(90)  # type: ignore[arg-type]


def test_compile_rejects_bad_arch_before_linking(tmp_path):
    with pytest.raises(ArchError):
        compile_ptx(header("sm_90") + EMPTY, "sm_50", cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- resources

@pytest.mark.parametrize("arch", ARCHS)
def test_entry_and_func_resources(arch):
    m = compile_ptx(header(arch) + ENTRY_AND_FUNC, arch, cache=False)
    assert m.arch == arch and not m.from_cache
    assert m.cubin[:4] == b"\x7fELF"
    assert set(m.resources) == {"k", "inc"}
    k, inc = m.resources["k"], m.resources["inc"]
    assert k.kind == "entry" and inc.kind == "func"
    assert k.registers is not None and k.registers > 0
    assert k.shared_static == 1024
    assert k.barriers == 1
    assert (k.spill_stores, k.spill_loads, k.stack_frame) == (0, 0, 0)
    assert k.const0 is not None and k.const0 > 0
    # ptxas gives a .func's frame and spills but no register count.
    assert inc.registers is None and inc.barriers is None
    assert inc.spill_stores == 0


@pytest.mark.parametrize("arch", ARCHS)
def test_forced_spills_are_reported(arch):
    m = compile_ptx(header(arch) + spilling_kernel(), arch, cache=False)
    r = m.resources["spill"]
    assert r.kind == "entry"
    assert 0 < r.registers <= 32
    assert r.spill_stores > 0 and r.spill_loads > 0
    assert r.stack_frame >= r.spill_stores  # spills live in the stack frame


@pytest.mark.parametrize("arch", ARCHS)
def test_local_array_is_stack_not_spill(arch):
    r = compile_ptx(header(arch) + LOCAL_ARRAY, arch, cache=False).resources["loc"]
    assert r.stack_frame >= 4096
    assert r.spill_stores == 0 and r.spill_loads == 0


def test_maxnreg_below_arch_minimum_is_a_warning():
    m = compile_ptx(header("sm_90") + spilling_kernel(maxnreg=16), "sm_90", cache=False)
    assert any("maxnreg" in w or "register count" in w for w in m.warnings)
    assert "\x00" not in m.log


def test_parse_ptxas_log_canned():
    # ptxas's lines win; nvJitLink's summary fills cmem[0]/lmem only. Its barrier count
    # (9 here) is noise and must not be used. The legacy "Compiling function" form too.
    log = (
        "ptxas info    : 0 bytes gmem\n"
        "ptxas info    : Compiling function 'helper' for 'sm_90'\n"
        "ptxas info    : Function properties for helper\n"
        "ptxas         .     16 bytes stack frame, 12 bytes spill stores, 8 bytes spill loads\n"
        "ptxas info    : Used 30 registers\n"
        "ptxas info    : Compile time = 1.0 ms\n"
        "ptxas info    : Function properties for plain_func\n"
        "ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
        "ptxas info    : Compile time = 1.0 ms\n"
        "ptxas info    : Compiling entry function '_Z4kernPf' for 'sm_90'\n"
        "ptxas info    : Function properties for _Z4kernPf\n"
        "ptxas         .     40 bytes stack frame, 36 bytes spill stores, 44 bytes spill loads\n"
        "ptxas info    : Used 40 registers, used 2 barriers, 16 bytes smem\n"
        "ptxas info    : Compile time = 2.0 ms\n"
        "info    : 0 bytes gmem\n"
        "info    : Function properties for '_Z4kernPf':\n"
        "info    : used 40 registers, used 9 barriers, 40 stack, 1040 bytes smem, "
        "536 bytes cmem[0], 0 bytes lmem\n"
        "\x00"
    )
    res = parse_ptxas_log(log)
    assert list(res) == ["helper", "plain_func", "_Z4kernPf"]
    assert res["helper"] == Resources("helper", "func", 30, 12, 8, 16, 0, None)
    assert res["plain_func"] == Resources("plain_func", "func", None, 0, 0, 0, 0, None)
    assert res["_Z4kernPf"] == Resources("_Z4kernPf", "entry", 40, 36, 44, 40, 16, 2,
                                         const0=536, local=0, own_registers=40)


def test_parse_ptxas_log_empty():
    assert parse_ptxas_log("") == {}


# ---------------------------------------------------------------- cache

def test_cache_hit_returns_same_cubin_and_resources(tmp_path):
    ptx = header("sm_90") + ENTRY_AND_FUNC
    first = compile_ptx(ptx, "sm_90", cache_dir=tmp_path)
    second = compile_ptx(ptx, "sm_90", cache_dir=tmp_path)
    assert not first.from_cache and second.from_cache
    assert second.cubin == first.cubin
    assert second.resources == first.resources
    assert second.log == first.log and second.ptx == ptx
    entries = [p for p in tmp_path.iterdir()]
    assert len(entries) == 1 and not entries[0].name.startswith(".tmp")


def test_cache_key_separates_arch_and_text(tmp_path):
    compile_ptx(header("sm_80") + EMPTY, "sm_80", cache_dir=tmp_path)
    compile_ptx(header("sm_80") + EMPTY, "sm_90", cache_dir=tmp_path)
    compile_ptx(header("sm_80") + EMPTY + "\n", "sm_90", cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 3
    assert compile_ptx(header("sm_80") + EMPTY, "90", cache_dir=tmp_path).from_cache


def test_cache_off_writes_nothing(tmp_path):
    m = compile_ptx(header("sm_90") + EMPTY, "sm_90", cache=False, cache_dir=tmp_path)
    assert not m.from_cache
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_corrupt_cache_entry_is_rebuilt(tmp_path, damage):
    ptx = header("sm_90") + ENTRY_AND_FUNC
    good = compile_ptx(ptx, "sm_90", cache_dir=tmp_path)
    (entry,) = tmp_path.iterdir()
    blob = entry.read_bytes()
    damaged = {
        "truncate": blob[: len(blob) - 100],
        "flip": blob[:-10] + bytes([blob[-10] ^ 0xFF]) + blob[-9:],  # inside the cubin
        "garbage": os.urandom(len(blob)),
        "empty": b"",
    }[damage]
    entry.write_bytes(damaged)
    rebuilt = compile_ptx(ptx, "sm_90", cache_dir=tmp_path)
    assert not rebuilt.from_cache
    assert rebuilt.cubin == good.cubin and rebuilt.resources == good.resources
    assert entry.read_bytes() != damaged  # rewritten (the log's compile times may differ)
    assert compile_ptx(ptx, "sm_90", cache_dir=tmp_path).from_cache


def test_default_cache_dir_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("POLLBENCH_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    compile_ptx(header("sm_90") + EMPTY, "sm_90")
    assert len(list((tmp_path / "c").iterdir())) == 1
    monkeypatch.delenv("POLLBENCH_CACHE")
    assert default_cache_dir().parts[-3:] == (".cache", "pollbench", "cubin")


def test_unwritable_cache_warns_but_compiles(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.warns(RuntimeWarning, match="cache"):
        m = compile_ptx(header("sm_90") + EMPTY, "sm_90", cache_dir=blocker / "sub")
    assert m.cubin and "e" in m.resources


# ---------------------------------------------------------------- errors

BAD = """.visible .entry k()
{
  .reg .b32 %r<3>;
  mov.u33 %r1, %tid.x;
  ret;
}
"""


@pytest.mark.parametrize("arch", ARCHS)
def test_compile_error_names_line_and_text(arch):
    ptx = header(arch) + BAD
    lineno = ptx.splitlines().index("  mov.u33 %r1, %tid.x;") + 1
    with pytest.raises(CompileError) as ei:
        compile_ptx(ptx, arch, cache=False)
    err = ei.value
    msg = str(err)
    assert isinstance(err, PollbenchError)
    assert "\n" not in msg
    assert msg.startswith(f"ptxas: line {lineno}: Unknown modifier '.u33'")
    assert "in: mov.u33 %r1, %tid.x;" in msg
    assert err.line == lineno and err.source == "mov.u33 %r1, %tid.x;"
    assert "Unexpected instruction types" in err.log  # the rest of the log is kept
    assert "\x00" not in err.log


def test_compile_error_is_not_cached(tmp_path):
    with pytest.raises(CompileError):
        compile_ptx(header("sm_90") + BAD, "sm_90", cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_undefined_reference_error():
    ptx = header("sm_90") + (".extern .func foo();\n"
                             ".visible .entry k()\n{\n  call foo, ();\n  ret;\n}\n")
    with pytest.raises(CompileError, match="Undefined reference to 'foo'") as ei:
        compile_ptx(ptx, "sm_90", cache=False)
    assert ei.value.line is None and "\n" not in str(ei.value)


def test_target_above_arch_error():
    with pytest.raises(CompileError, match=r"^ptxas: SM version specified by \.target"):
        compile_ptx(header("sm_90") + EMPTY, "sm_80", cache=False)


def test_nvjitlink_version():
    v = nvjitlink_version()
    assert re.fullmatch(r"\d+\.\d+", v)
    assert int(v.split(".")[0]) >= 13


# ---------------------------------------------------------------- occupancy

def kernel(registers: int, smem: int = 0, barriers: int = 0) -> Resources:
    return Resources("k", "entry", registers, 0, 0, 0, smem, barriers)


@pytest.mark.parametrize("arch, regs, block, smem, dyn, blocks, warps, fraction, limiter", [
    # full SM: warps and registers both allow 8; the tie reads "warps"
    ("sm_90", 32, 256, 0, 0, 8, 64, 1.0, "warps"),
    ("sm_90", 128, 256, 0, 0, 2, 16, 0.25, "registers"),
    ("sm_90", 64, 1024, 0, 0, 1, 32, 0.5, "registers"),
    # 33 regs -> 1056 per warp, allocated as 1280: 12 warps per sub-partition, 6 blocks (not 7)
    ("sm_90", 33, 256, 0, 0, 6, 48, 0.75, "registers"),
    # 255 regs x 32 warps does not fit the 64K register file at all
    ("sm_90", 255, 1024, 0, 0, 0, 0, 0.0, "registers"),
    ("sm_90", 16, 32, 0, 0, 32, 32, 0.5, "blocks"),
    # 48 KB static + 1 KB reserved = 50176 B per block; 228 KB per SM -> 4
    ("sm_90", 32, 128, 48 * 1024, 0, 4, 16, 0.25, "shared memory"),
    # 100000 dynamic + 1 KB reserved, rounded to 128 B -> 101120; 2 per SM
    ("sm_90", 32, 128, 0, 100_000, 2, 8, 0.125, "shared memory"),
    # over the 227 KB opt-in per-block ceiling: nothing launches
    ("sm_90", 32, 128, 0, 228 * 1024, 0, 0, 0.0, "shared memory"),
    ("sm_80", 32, 256, 0, 0, 8, 64, 1.0, "warps"),
    ("sm_80", 32, 128, 48 * 1024, 0, 3, 12, 0.1875, "shared memory"),
    ("sm_86", 32, 256, 0, 0, 6, 48, 1.0, "warps"),
    ("sm_86", 16, 64, 0, 0, 16, 32, 2 / 3, "blocks"),
    ("sm_89", 16, 32, 0, 0, 24, 24, 0.5, "blocks"),
    ("sm_89", 32, 128, 0, 50_000, 2, 8, 1 / 6, "shared memory"),
    ("sm_90a", 32, 256, 0, 0, 8, 64, 1.0, "warps"),
])
def test_occupancy_known_cases(arch, regs, block, smem, dyn, blocks, warps, fraction, limiter):
    occ = theoretical_occupancy(kernel(regs, smem), block, arch, dyn)
    assert occ.blocks_per_sm == blocks
    assert occ.active_warps_per_sm == warps
    assert occ.fraction == pytest.approx(fraction)
    assert occ.limiter == limiter
    assert 0.0 <= occ.fraction <= 1.0


def test_occupancy_barrier_limit_on_sm90_only():
    # 16 named barriers: 64 per SM on sm_90 -> 4 blocks (the H100 driver agrees).
    occ = theoretical_occupancy(kernel(16, barriers=16), 32, "sm_90")
    assert (occ.blocks_per_sm, occ.limiter) == (4, "barriers")
    assert theoretical_occupancy(kernel(16, barriers=16), 32, "sm_80").blocks_per_sm == 32
    assert theoretical_occupancy(kernel(16, barriers=1), 32, "sm_90").blocks_per_sm == 32


def test_occupancy_max_warps_per_arch():
    assert theoretical_occupancy(kernel(32), 256, "sm_90").max_warps_per_sm == 64
    assert theoretical_occupancy(kernel(32), 256, "sm_89").max_warps_per_sm == 48
    assert theoretical_occupancy(kernel(32), 256, "sm_75").max_warps_per_sm == 32


def test_occupancy_from_compiled_kernel():
    m = compile_ptx(header("sm_90") + ENTRY_AND_FUNC, "sm_90", cache=False)
    k = m.resources["k"]
    occ = theoretical_occupancy(k, 256, "sm_90")
    assert occ.blocks_per_sm == min(occ.limits.values())
    assert occ.limits["shared memory"] == (228 * 1024) // 2048  # 1024 static + 1024 reserved
    with pytest.raises(OccupancyError, match="func"):
        theoretical_occupancy(m.resources["inc"], 256, "sm_90")


@pytest.mark.parametrize("block", [0, -32, 1025])
def test_occupancy_rejects_bad_block_size(block):
    with pytest.raises(OccupancyError):
        theoretical_occupancy(kernel(32), block, "sm_90")


def test_occupancy_unknown_limits_raise_arch_error():
    with pytest.raises(ArchError, match="no occupancy limits"):
        theoretical_occupancy(kernel(32), 256, "sm_121")
    with pytest.raises(ArchError):
        theoretical_occupancy(kernel(32), 256, "gfx90a")


def test_dataclasses_are_what_the_brief_says():
    assert dataclasses.is_dataclass(Resources)
    with pytest.raises(dataclasses.FrozenInstanceError):
        kernel(1).registers = 2  # type: ignore[misc]
