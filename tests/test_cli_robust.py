"""The CLI as a careless user and a hostile environment meet it (no GPU: the emulator):
every bad option refused up front (one line, exit 2, nothing written), Ctrl-C and SIGTERM
in the middle of a run save the finished cases, progress when piped, --json, --version."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from harness import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["run", "--backend", "emu", "--ntasks", "64", "--executor", "block_on"]


def _run(*argv, **kw):
    return subprocess.run([sys.executable, "-m", "harness.cli", *argv], capture_output=True,
                          text=True, timeout=300, cwd=ROOT, **kw)


@pytest.mark.parametrize("argv,needle", [
    (["--ntasks", "0"], "--ntasks: a task count from 1 to 67108864, not 0"),
    (["--ntasks", "-5"], "--ntasks: a task count from 1"),
    (["--ntasks", str(10**12)], "--ntasks: a task count from 1 to 67108864"),
    (["--ntasks", "many"], "--ntasks: 'many' is not a task count"),
    (["--block", "0"], "--block: a block size from 1 to 1024, not 0"),
    (["--block", "-32"], "--block: a block size from 1 to 1024, not -32"),
    (["--block", "2048"], "--block: a block size from 1 to 1024, not 2048"),
    (["--max-noise", "-1"], "--max-noise: must be between 0 and 100 percent, not -1"),
    (["--max-noise", "0"], "--max-noise: must be between 0 and 100 percent"),
    (["--min-samples", "0"], "--min-samples: a sample count at least 1, not 0"),
    (["--repeats", "0"], "--repeats: a sample count at least 1"),
    (["--timeout", "0"], "--timeout: must be greater than 0 seconds"),
    (["--case-timeout", "-1"], "--case-timeout: must be greater than 0 seconds"),
    (["--seed", "-1"], "--seed: a seed from 0"),
    (["--device", "-1"], "--device: a device ordinal at least 0"),
    (["--dispatch", "sideways"], "--dispatch: invalid choice: 'sideways'"),
    (["--workload", "nope"], "--workload: invalid choice: 'nope' (choose from"),
])
def test_a_bad_option_is_refused_before_anything_runs(argv, needle, tmp_path):
    r = _run(*SMALL, "--out", str(tmp_path / "out"), *argv)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith("pollbench: error: argument ") and needle in lines[0], lines[0]
    assert not (tmp_path / "out").exists() and r.stdout == ""


def test_an_output_folder_that_cannot_be_written_is_refused_first(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for out, needle in ((a_file, "Not a directory"), ("/proc/pollbench", "No such file")):
        t0 = time.monotonic()
        r = _run(*SMALL, "--out", str(out))
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1, r.stderr
        assert f"cannot write results under {out}" in lines[0] and needle in lines[0]
        assert time.monotonic() - t0 < 30  # refused before the cases, not after


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_is_refused_first(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    r = _run(*SMALL, "--out", str(ro))
    assert r.returncode == 2 and "Permission denied" in r.stderr


def test_version():
    r = _run("--version")
    assert r.returncode == 0 and r.stdout.startswith("pollbench ") and "(git " in r.stdout


def test_help_lists_the_choices_and_has_no_markup():
    r = _run("run", "--help")
    assert "block_on, persistent, embassy, backoff, smem_ready, graph" in " ".join(r.stdout.split())
    assert "seed_demo" in r.stdout and "``" not in _run("--help").stdout


def _wait_for(proc_err_path, needle, timeout=120):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if needle in proc_err_path.read_text():
            return
        time.sleep(0.2)
    raise AssertionError(f"{needle!r} never appeared in stderr: {proc_err_path.read_text()}")


@pytest.mark.parametrize("sig,code,word", [(signal.SIGINT, 130, "interrupted"),
                                           (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_a_signal_mid_run_saves_the_finished_cases(sig, code, word, tmp_path):
    """Stopped after its first case, a run exits 128+signal, says so, and leaves a valid
    results file holding the finished cases (and no temporary files)."""
    from harness.results import load

    err = tmp_path / "stderr"
    with open(err, "w") as fh:
        p = subprocess.Popen([sys.executable, "-m", "harness.cli", *SMALL, "--workload",
                              "seed_demo", "--workload", "yield_storm", "--out",
                              str(tmp_path / "out")], stdout=subprocess.DEVNULL, stderr=fh,
                             cwd=ROOT)
        try:
            _wait_for(err, "[1/")  # one case finished (piped: one line per case)
            p.send_signal(sig)
            rc = p.wait(timeout=60)
        finally:
            p.kill()
    text = err.read_text()
    assert rc == code, text
    assert f"pollbench: {word} after " in text and "the finished ones are saved" in text
    files = list((tmp_path / "out").rglob("*.json"))
    assert len(files) == 1, text
    doc = load(files[0])
    assert 1 <= len(doc["cases"]) < 6 and doc["run"]["config"]["interrupted_after"] == len(doc["cases"])
    assert all(c["status"] == "pass" for c in doc["cases"])
    assert not [f for f in (tmp_path / "out").rglob("*") if f.name.endswith(".tmp")]


def test_an_interrupt_after_the_last_case_still_saves(monkeypatch, tmp_path, capsys):
    """Ctrl-C between the case loop and the table: everything finished is saved."""
    real = cli._report

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_report", interrupted)
    rc = cli.main([*SMALL, "--workload", "seed_demo", "--dispatch", "inline",
                   "--granularity", "thread", "--out", str(tmp_path)])
    assert rc == 130 and real is not interrupted
    files = list(tmp_path.rglob("*.json"))
    assert len(files) == 1 and len(json.loads(files[0].read_text())["cases"]) == 1


def test_piped_progress_and_json_output(tmp_path):
    r = _run(*SMALL, "--workload", "seed_demo", "--granularity", "thread", "--json",
             "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    records = json.loads(r.stdout)  # stdout is the JSON, nothing else
    assert [c["status"] for c in records] == ["pass"] * 3
    for i in (1, 2, 3):
        assert f"[{i}/3] pass: block_on/seed_demo/" in r.stderr
    assert "results: " in r.stderr


def test_no_gpu_says_the_emulator_is_used(tmp_path):
    from harness.gpu import gpu_available

    if gpu_available():
        pytest.skip("a GPU is present")
    r = _run("run", "--ntasks", "32", "--executor", "block_on", "--workload", "seed_demo",
             "--dispatch", "inline", "--granularity", "thread", "--out", str(tmp_path))
    first = r.stderr.splitlines()[0]
    assert r.returncode == 0 and first.startswith("pollbench: no GPU (") and "emulator" in first


def test_selftest_and_sweep_are_subcommands(capsys):
    assert cli.main(["selftest", "--backend", "emu"]) == 0
    assert " passed, 0 failed" in capsys.readouterr().out
    from harness.gpu import gpu_available

    if not gpu_available():  # the sweep measures co-resident kernels: a GPU or a clear no
        r = _run("sweep")
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    r = _run("run", "--selftest")
    assert r.returncode == 2 and "unrecognized arguments: --selftest" in r.stderr
