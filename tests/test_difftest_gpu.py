"""Every op-table row's differential test on hardware: the same fresh random inputs on the
emulator and on the GPU give identical bits (and numpy's answer where it has one)."""

import subprocess
import sys

import pytest

from harness.difftest import all_cases, check_case, skip_reason
from harness.gpu.testing import requires_gpu

CASES = all_cases()


@pytest.fixture(scope="module")
def gpu_backend():
    from harness.backend import GpuBackend

    with GpuBackend() as be:
        yield be


@requires_gpu
@pytest.mark.parametrize("case", [c for c in CASES if "traps" not in c.tags], ids=lambda c: c.name)
def test_op_on_gpu_matches_emulator(case, gpu_backend):
    why = skip_reason(case, gpu_backend)
    if why:
        pytest.skip(why)
    verdict, _ = check_case(case, gpu_backend, seed=1234, against_emulator=True)
    assert verdict == "pass", verdict


@requires_gpu
def test_trap_fails_the_launch_in_its_own_process():
    # A trap leaves the context unusable, so it runs in a child process.
    code = ("from harness.difftest import all_cases, check_case\n"
            "from harness.backend import GpuBackend\n"
            "case = [c for c in all_cases() if 'traps' in c.tags][0]\n"
            "be = GpuBackend()\n"
            "verdict, run = check_case(case, be, 1, False)\n"
            "print('ERROR:', run.error)\n"
            "import os; os._exit(0 if verdict == 'pass' and run.error else 1)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


@requires_gpu
def test_report_registers_equal_the_drivers(gpu_backend):
    """nvJitLink's resource report (what `pollbench inspect` shows without a GPU) must
    agree with cuFuncGetAttribute for every kernel we generate."""
    from executors import EXECUTORS
    from harness.cases import CaseSpec, build_case
    from harness.compile import compile_ptx
    from harness.ptx import Module

    modules = []
    m = Module(arch=gpu_backend.arch)
    for c in CASES:
        c.build(m)
    modules.append(m)
    for ex in EXECUTORS.values():
        for d in ("direct", "indirect"):
            for g in ex.granularities:
                modules.append(build_case(CaseSpec(ex.name, "seed_demo", d, g), gpu_backend.arch)[0])
    checked = 0
    for m in modules:
        compiled = compile_ptx(m.to_ptx(), gpu_backend.arch)
        mod = gpu_backend.rt.load(compiled.cubin)
        for name, res in compiled.resources.items():
            if res.kind != "entry":
                continue
            k = mod.kernel(name)
            assert res.registers == k.num_regs, f"{name}: report {res.registers}, driver {k.num_regs}"
            assert res.stack_frame == k.local_bytes, f"{name}: stack {res.stack_frame} vs {k.local_bytes}"
            assert res.shared_static == k.shared_bytes, \
                f"{name}: static smem {res.shared_static} vs {k.shared_bytes}"
            checked += 1
    assert checked > 150
