"""CLI: each user error is one line on stderr and exit code 2; the emulator path works."""

import subprocess
import sys

import pytest

from harness.cli import main


def _run(*argv):
    return subprocess.run([sys.executable, "-m", "harness.cli", *argv], capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("argv,needle", [
    (["run", "--executor", "nope"], "argument --executor: invalid choice: 'nope'"),
    (["run", "--workload", "nope", "--backend", "emu"], "argument --workload: invalid choice"),
    (["inspect", "--arch", "sm_9x"], "unknown architecture 'sm_9x'"),
    (["ptx", "block_on", "seed_demo", "--arch", "gfx90a"], "unknown architecture"),
    (["ptx", "nope", "seed_demo", "--arch", "sm_90"], "unknown executor"),
])
def test_bad_input_is_one_line_and_exit_2(argv, needle):
    r = _run(*argv)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr


def test_no_driver_is_one_line_and_exit_2():
    from harness.gpu import gpu_available

    if gpu_available():
        pytest.skip("a GPU is present")
    r = _run("run", "--backend", "gpu")
    assert r.returncode == 2 and "no CUDA driver" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_ptx_prints_a_module(capsys):
    assert main(["ptx", "block_on", "seed_demo", "--arch", "sm_80"]) == 0
    out = capsys.readouterr().out
    assert ".target sm_80" in out and ".entry block_on_thread_direct_seed_demo_root" in out


def test_inspect_without_gpu(capsys):
    assert main(["inspect", "--arch", "sm_90"]) == 0
    out = capsys.readouterr().out
    assert "block_on_thread_direct_seed_demo_root" in out and "seed_demo_baseline" in out


def test_run_on_emulator(capsys, tmp_path):
    assert main(["run", "--backend", "emu", "--ntasks", "64", "--granularity", "warp",
                 "--executor", "block_on", "--workload", "seed_demo", "--out", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "EMULATOR" in out and "3 passed, 0 failed" in out  # inline, direct, indirect
    written = list(tmp_path.glob("emulator/*.json"))
    assert len(written) == 1 and f"results: {written[0]}" in err


def test_list(capsys):
    assert main(["list"]) == 0
    assert "block_on" in capsys.readouterr().out


def test_inspect_shows_a_tile_workloads_block_workers_and_its_kernels(capsys):
    """matmul's tasks run only on block workers, as blocks of a tile's 256 threads; the
    sm_90 module also holds the wgmma kernel (one 384-thread block an SM)."""
    assert main(["inspect", "--arch", "sm_90", "--executor", "embassy", "--executor", "graph",
                 "--workload", "matmul_1024"]) == 0
    out = capsys.readouterr().out
    assert "embassy_block_direct_matmul_1024_root" in out and "gemm_wgmma" in out
    assert "embassy_thread" not in out
    assert "graph x matmul_1024: not applicable" in out
