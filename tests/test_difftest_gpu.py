"""Every op-table row's differential test on hardware: the same fresh random inputs on the
emulator and on the GPU give identical bits (and numpy's answer where it has one)."""

import subprocess
import sys

import pytest

from harness.difftest import all_cases, check_case
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
