"""Results documents: schema v1, atomic writes, the environment block, compare, and the
CLI's exit codes for run and compare (no GPU)."""

import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import fake_cases
import numpy as np
import pytest

from harness import orchestrate
from harness.cli import main
from harness.results import (
    ResultsError,
    base_record,
    case_record,
    compare,
    document,
    environment,
    git_sha,
    load,
    machine_name,
    median_ci,
    plain,
    results_path,
    save,
    validate,
    write_atomic,
)

ROOT = Path(__file__).resolve().parents[1]
H100 = {"index": 0, "name": "NVIDIA H100 80GB HBM3", "arch": "sm_90", "compute_capability": "9.0",
        "sm_count": 132, "memory_bytes": 85520809984, "driver_version": "580.159.04",
        "cuda_version": "13.0", "uuid": "GPU-0", "pci_bus_id": "00000000:00:07.0",
        "clocks_mhz": {"sm_max": 1980, "mem_max": 2619}}


def _spec(**kw):
    spec = dict(executor="block_on", workload="seed_demo", dispatch="direct",
                granularity="thread", ntasks=1 << 20, block=128, seed=0)
    spec.update(kw)
    return spec


def _timing(median, lo=None, hi=None, samples=None, **kw):
    t = {"median_ms": median, "min_ms": lo, "max_ms": hi, "rel_stddev": 0.003,
         "samples": len(samples) if samples else 20, "rejected": 0, **kw}
    if samples:
        t["samples_ms"] = samples
    return t


def _rec(spec, timing=None, status="pass", **kw):
    r = base_record(spec, status, None if status == "pass" else f"{status} here", 1.0)
    r["timing"] = timing
    r.update(kw)
    return r


def _gpu_doc(cases):
    env = environment("emu")
    env.update(backend="gpu", gpu=dict(H100))
    return document(env, ["run"], {"backend": "gpu"}, cases)


# ---- schema ------------------------------------------------------------------------------

def test_schema_file_in_results_is_the_packaged_one():
    assert (ROOT / "results" / "schema-v1.json").read_bytes() == \
        (ROOT / "harness" / "results" / "schema-v1.json").read_bytes()


def test_every_status_validates_and_measure_objects_slot_in():
    full = _rec(_spec(), _timing(1.53, 1.52, 1.56, samples_ms=[1.53] * 5, cold=False,
                                 time_limit_hit=False),
                baseline_timing=_timing(0.045, 0.044, 0.046), overhead=33.0,
                counters={"bookkeeping_share": 0.4, "polls_per_task": 1.0,
                          "achieved_occupancy": 0.9, "wakes": 3},
                nvml={"sm_clock_mhz": {"min": 1755, "median": 1980, "max": 1980},
                      "mem_clock_mhz": 2619, "power_w": None, "energy_j": 1.2,
                      "energy_per_task_j": 1.1e-6, "gpm_sm_occupancy_pct": None,
                      "clock_event_reasons": ["sw_power_cap"], "samples": 12})
    sampler_summary = {  # harness.measure.NvmlSampler.summary()'s shape, plus energy per task
        "available": True, "reason": None, "samples": 40, "duration_s": 0.4,
        "device": {"index": 0, "pci_bus_id": "00000000:00:07.0", "name": "H100"},
        "sm_clock_mhz": {"mean": 1980.0, "min": 1980.0, "max": 1980.0}, "mem_clock_mhz": None,
        "power_w": {"mean": 300.0, "min": 100.0, "max": 400.0}, "temperature_c": None,
        "clock_event_reasons": {"any": 0, "names": [], "throttled_fraction": 0.0},
        "energy_j": 0.12, "energy_source": "counter", "gpm_sm_occupancy_pct": 99.0,
        "energy_per_task_j": 1e-7}
    sampled = _rec(_spec(block=256), _timing(1.0, 0.9, 1.1), nvml=sampler_summary)
    records = [full, sampled] + [base_record(_spec(dispatch=s), s, f"why {s}") for s in
                        ("fail", "timeout", "error", "skip")]
    validate(_gpu_doc(records))


@pytest.mark.parametrize("path,value,where", [
    (("status",), "crashed", "$.cases[0].status"),
    (("message",), "two\nlines", "$.cases[0].message"),
    (("timing",), {"median_ms": 1.0}, "$.cases[0].timing"),
    (("timing",), _timing(-1.0), "$.cases[0].timing"),
    (("spec", "ntasks"), 0, "$.cases[0].spec"),
    (("counters",), {"bookkeeping_share": 1.5, "polls_per_task": 1, "achieved_occupancy": None},
     "$.cases[0].counters"),
    (("surprise",), 1, "$.cases[0]"),
])
def test_schema_rejects(path, value, where):
    rec = _rec(_spec(), _timing(1.0, 0.9, 1.1))
    target = rec
    for k in path[:-1]:
        target = target[k]
    target[path[-1]] = value
    with pytest.raises(ResultsError, match=r"does not match results schema v1 at \$\.cases\[0\]"):
        validate(_gpu_doc([rec]))


def test_a_failed_check_and_a_timeout_validate_from_the_real_case_path():
    from harness.backend import EmuBackend
    from harness.cases import CaseSpec, run_case

    with EmuBackend() as b:
        res = run_case(CaseSpec("block_on", "seed_demo", ntasks=32, block=32), b, repeats=1)
    res.check = "FAIL: 1 of 192 outputs wrong (first at 0: 1 != 2)\nmore"
    res.extra["weird"] = np.float64("nan")
    rec = case_record(res, 0.5)
    assert rec["status"] == "fail" and rec["message"].startswith("FAIL: 1 of 192")
    assert rec["extra"]["weird"] is None
    timeout = base_record(res.spec, "timeout", "no result within 1 s", 1.0)
    validate(document(environment("emu"), [], {}, [rec, timeout]))


def test_legacy_median_only_timing_fills_the_timing_slot():
    from harness.cases import CaseResult, CaseSpec

    res = CaseResult(CaseSpec("block_on", "seed_demo"), "gpu", "pass", "pass", time_ms=1.5,
                     baseline_ms=0.05, samples=20, registers=76)
    rec = case_record(res)
    assert rec["timing"] == {"median_ms": 1.5, "min_ms": None, "max_ms": None,
                             "rel_stddev": None, "samples": 20, "rejected": None}
    assert math.isclose(rec["overhead"], 29.0)
    validate(_gpu_doc([rec]))


def test_plain():
    assert plain({"a": np.int64(3), "b": (np.float32(0.5), float("inf")), 1: np.arange(2)}) == \
        {"a": 3, "b": [0.5, None], "1": [0, 1]}


# ---- environment -------------------------------------------------------------------------

def test_environment_on_the_emulator():
    env = environment("emu")
    assert env["gpu"] is None and env["backend"] == "emu"
    assert env["packages"]["numpy"] == np.__version__
    assert machine_name(env) == "emulator"
    if shutil.which("git") and (ROOT / ".git").exists():
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()
        assert env["pollbench"]["git_sha"] == head


def test_machine_name():
    assert machine_name({"backend": "gpu", "gpu": H100}) == "nvidia-h100-80gb-hbm3"
    assert machine_name({"backend": "gpu", "gpu": None}) == "unknown-gpu"


def test_git_sha_loose_packed_detached_worktree_and_none(tmp_path):
    sha1, sha2, sha3 = "a" * 40, "b" * 40, "c" * 40
    repo = tmp_path / "repo"
    (repo / ".git" / "refs" / "heads").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (repo / ".git" / "refs" / "heads" / "main").write_text(sha1 + "\n")
    assert git_sha(repo) == sha1
    (repo / ".git" / "refs" / "heads" / "main").unlink()
    (repo / ".git" / "packed-refs").write_text(f"# pack-refs\n{sha2} refs/heads/main\n")
    assert git_sha(repo) == sha2
    wt = tmp_path / "wt"
    (repo / ".git" / "worktrees" / "wt").mkdir(parents=True)
    (repo / ".git" / "worktrees" / "wt" / "HEAD").write_text("ref: refs/heads/main\n")
    (repo / ".git" / "worktrees" / "wt" / "commondir").write_text("../..\n")
    wt.mkdir()
    (wt / ".git").write_text(f"gitdir: {repo / '.git' / 'worktrees' / 'wt'}\n")
    assert git_sha(wt) == sha2
    (repo / ".git" / "HEAD").write_text(sha3 + "\n")
    assert git_sha(repo) == sha3
    assert git_sha(tmp_path / "nowhere") is None


# ---- writing -----------------------------------------------------------------------------

def test_save_names_and_collisions(tmp_path):
    doc = _gpu_doc([_rec(_spec(), _timing(1.0, 0.9, 1.1))])
    doc["environment"]["time_utc"] = "2026-11-28T01:02:03Z"
    doc["environment"]["pollbench"]["git_sha"] = "0123456789abcdef" * 2 + "01234567"
    p1, p2 = save(doc, tmp_path), save(doc, tmp_path)
    assert p1 == tmp_path / "nvidia-h100-80gb-hbm3" / "20261128T010203Z-0123456789ab.json"
    assert p2.name == "20261128T010203Z-0123456789ab-2.json"
    assert load(p1) == doc
    assert oct(p1.stat().st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode
    doc["environment"]["pollbench"]["git_sha"] = None
    assert results_path(doc, tmp_path).name == "20261128T010203Z-nogit.json"


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    target.write_text("old")

    def broken(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk on fire"):
        write_atomic(target, "new")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["r.json"]


def test_a_process_killed_mid_write_leaves_no_partial_file(tmp_path):
    # the writer dies (SIGKILL) once the data is in the temporary file, before the rename
    script = textwrap.dedent(f"""
        import os, signal
        from harness.results import write_atomic
        os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)
        write_atomic({str(tmp_path / 'old.json')!r}, "x" * 100000)
        write_atomic({str(tmp_path / 'new.json')!r}, "y" * 100000)
    """)
    (tmp_path / "old.json").write_text('{"complete": true}')
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True)
    assert r.returncode == -9
    assert json.loads((tmp_path / "old.json").read_text()) == {"complete": True}
    assert not (tmp_path / "new.json").exists()
    left = sorted(os.listdir(tmp_path))
    assert [n for n in left if n.endswith(".json")] == ["old.json"]
    assert all(n.startswith(".pollbench-") and n.endswith(".tmp") for n in left if n != "old.json")


# ---- compare -----------------------------------------------------------------------------

def test_median_ci():
    assert median_ci([5, 1, 4, 2, 3]) is None  # n = 5 cannot give 95%
    assert median_ci(range(6)) == (0, 5)
    assert median_ci(range(1, 21)) == (6, 15)  # P(B <= 5) = 0.0207, P(B <= 6) = 0.0577


def test_compare_verdicts():
    a = _gpu_doc([
        _rec(_spec(granularity="thread"), _timing(1.0, 0.99, 1.01)),
        _rec(_spec(granularity="warp"), _timing(1.0, 0.99, 1.01)),
        _rec(_spec(granularity="block"), _timing(1.0, 0.99, 1.01)),
        _rec(_spec(dispatch="indirect"), _timing(1.0, 0.9, 1.1)),
        _rec(_spec(dispatch="indirect", granularity="warp"), _timing(1.0)),
        _rec(_spec(dispatch="indirect", granularity="block"), None, status="timeout"),
        _rec(_spec(workload="only_a"), _timing(1.0, 0.9, 1.1)),
    ])
    b = _gpu_doc([
        _rec(_spec(granularity="thread"), _timing(0.9, 0.89, 0.91)),
        _rec(_spec(granularity="warp"), _timing(1.1, 1.09, 1.11)),
        _rec(_spec(granularity="block"), _timing(1.005, 1.0, 1.02)),
        _rec(_spec(dispatch="indirect"), _timing(1.05, 1.0, 1.2)),
        _rec(_spec(dispatch="indirect", granularity="warp"), _timing(2.0)),
        _rec(_spec(dispatch="indirect", granularity="block"), _timing(1.0, 0.9, 1.1)),
        _rec(_spec(workload="only_b"), _timing(1.0, 0.9, 1.1)),
    ])
    cmp = compare(a, b)
    got = {r.label: (r.verdict, r.method) for r in cmp.rows}
    assert got == {
        "block_on/seed_demo/direct/thread": ("faster", "range"),
        "block_on/seed_demo/direct/warp": ("slower", "range"),
        "block_on/seed_demo/direct/block": ("same (within noise)", "range"),
        "block_on/seed_demo/indirect/thread": ("same (within noise)", "range"),
        "block_on/seed_demo/indirect/warp": ("n/a (no spread recorded)", None),
        "block_on/seed_demo/indirect/block": ("n/a (A timeout, B pass)", None),
    }
    ratios = {r.label: r.ratio for r in cmp.rows}
    assert math.isclose(ratios["block_on/seed_demo/direct/thread"], 0.9)
    assert math.isclose(ratios["block_on/seed_demo/indirect/warp"], 2.0)
    assert cmp.only_a == ["block_on/only_a/direct/thread"]
    assert cmp.only_b == ["block_on/only_b/direct/thread"]


def test_compare_uses_the_median_interval_when_samples_are_recorded():
    # one slow outlier makes A's range overlap B's; the medians' 95% intervals do not
    sa = [1.00 + 0.001 * i for i in range(19)] + [1.5]
    sb = [1.10 + 0.001 * i for i in range(20)]
    a = _gpu_doc([_rec(_spec(), _timing(1.01, min(sa), max(sa), sa))])
    b = _gpu_doc([_rec(_spec(), _timing(1.11, min(sb), max(sb), sb))])
    (row,) = compare(a, b).rows
    assert (row.verdict, row.method) == ("slower", "ci95")
    a["cases"][0]["timing"].pop("samples_ms")  # one side without samples: both use ranges
    (row,) = compare(a, b).rows
    assert (row.verdict, row.method) == ("same (within noise)", "range")


def test_compare_matches_by_the_whole_spec_and_labels_what_varies():
    a = _gpu_doc([_rec(_spec(ntasks=64), _timing(1.0, 0.9, 1.1))])
    b = _gpu_doc([_rec(_spec(ntasks=128), _timing(1.0, 0.9, 1.1))])
    cmp = compare(a, b)
    assert cmp.rows == []
    assert cmp.only_a == ["block_on/seed_demo/direct/thread [ntasks=64]"]
    assert cmp.only_b == ["block_on/seed_demo/direct/thread [ntasks=128]"]


def test_compare_emulator_instructions():
    def emu(instr):
        return _rec(_spec(ntasks=64), None, emulator={"instructions_per_task": instr,
                                                      "baseline_instructions_per_task": 100.0})

    for b_instr, verdict in ((650.0, "fewer instructions"), (700.0, "same instructions"),
                             (701.0, "more instructions")):
        env = environment("emu")
        (row,) = compare(document(env, [], {}, [emu(700.0)]),
                         document(env, [], {}, [emu(b_instr)])).rows
        assert (row.metric, row.verdict, row.method) == ("instr/task", verdict, "exact")


# ---- CLI ---------------------------------------------------------------------------------

def _cli(*argv, env=None):
    e = {k: v for k, v in os.environ.items()
         if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR")}
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "harness.cli", *argv], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, env=e)


@pytest.fixture
def two_files(tmp_path):
    a = _gpu_doc([_rec(_spec(), _timing(1.0, 0.99, 1.01)),
                  _rec(_spec(granularity="warp"), _timing(1.0, 0.99, 1.01))])
    b = _gpu_doc([_rec(_spec(), _timing(1.2, 1.19, 1.21)),
                  _rec(_spec(granularity="block"), _timing(1.0, 0.99, 1.01))])
    return save(a, tmp_path / "a"), save(b, tmp_path / "b")


def test_compare_piped_is_plain_text(two_files):
    r = _cli("compare", *map(str, two_files))
    assert r.returncode == 0, r.stderr
    assert "\x1b[" not in r.stdout
    assert "slower" in r.stdout and "1.200" in r.stdout
    assert "only in A (1): block_on/seed_demo/direct/warp" in r.stdout
    assert "only in B (1): block_on/seed_demo/direct/block" in r.stdout


def test_compare_in_colour_when_the_terminal_allows(two_files):
    r = _cli("compare", *map(str, two_files), env={"FORCE_COLOR": "1"})
    assert r.returncode == 0 and "\x1b[" in r.stdout


def test_compare_errors_are_one_line_and_exit_2(tmp_path, two_files):
    good = two_files[0]
    doc = json.loads(good.read_text())
    (tmp_path / "text.json").write_text("not json {")
    (tmp_path / "other.json").write_text('{"hello": 1}')
    (tmp_path / "v2.json").write_text(json.dumps({**doc, "schema_version": 2}))
    doc["cases"][0]["status"] = "bogus"
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    for name, needle in (("missing.json", "no such file"),
                         ("text.json", "not a pollbench results file (not JSON)"),
                         ("other.json", "not a pollbench results file (no schema_version)"),
                         ("v2.json", "results schema version 2; this pollbench reads version 1"),
                         ("bad.json", "does not match results schema v1 at $.cases[0].status")):
        r = _cli("compare", str(good), str(tmp_path / name))
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1, r.stderr
        assert name in lines[0] and needle in lines[0], lines[0]


def _run_args(tmp_path, *extra):
    return ["run", "--backend", "emu", "--executor", "block_on", "--workload", "seed_demo",
            "--ntasks", "32", "--block", "32", "--granularity", "warp", "--dispatch", "direct",
            "--out", str(tmp_path), *extra]


@pytest.mark.parametrize("fn,status,extra", [
    (fake_cases.failing, "fail", ()),
    (fake_cases.hanging, "timeout", ("--case-timeout", "2")),
])
def test_run_exits_1_when_a_case_does_not_pass_and_writes_a_valid_file(
        tmp_path, capsys, monkeypatch, fn, status, extra):
    monkeypatch.setattr(orchestrate, "execute_case", fn)
    assert main(_run_args(tmp_path, *extra)) == 1
    out = capsys.readouterr().out
    assert "0 passed, 1 failed" in out
    (path,) = tmp_path.glob("emulator/*.json")
    doc = load(path)  # validates
    validate(doc)
    assert [c["status"] for c in doc["cases"]] == [status]
    assert doc["run"]["argv"] == _run_args(tmp_path, *extra)
    assert doc["run"]["config"]["timeout_s"] == (float(extra[1]) if extra else 300.0)


def test_run_no_save_and_usage_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(orchestrate, "execute_case", fake_cases.raising)
    assert main(_run_args(tmp_path, "--no-save")) == 1
    assert "error: block_on/seed_demo/direct/warp: RuntimeError: boom" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SystemExit) as stop:  # argparse refuses it, before anything runs
        main(_run_args(tmp_path, "--case-timeout", "0"))
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip() == ("pollbench: error: argument --case-timeout: "
                                               "must be greater than 0 seconds, not 0")


def test_ctrl_c_keeps_the_finished_cases(tmp_path, monkeypatch, capsys):
    """A run interrupted after its first case saves that case (marked interrupted), exits 130."""
    import harness.orchestrate as orchestrate
    from harness.cli import main
    from harness.results import load

    real = orchestrate.CaseProcess.result
    calls = []

    def one_then_interrupt(self, *a, **kw):
        calls.append(1)
        if len(calls) > 1:
            self.stop()
            raise KeyboardInterrupt
        return real(self, *a, **kw)

    monkeypatch.setattr(orchestrate.CaseProcess, "result", one_then_interrupt)
    rc = main(["run", "--backend", "emu", "--ntasks", "32", "--executor", "block_on",
               "--workload", "seed_demo", "--granularity", "thread", "--out", str(tmp_path)])
    assert rc == 130
    (path,) = tmp_path.glob("emulator/*.json")
    doc = load(path)
    assert len(doc["cases"]) == 1 and doc["run"]["config"]["interrupted_after"] == 1


def test_resume_runs_only_the_missing_cases_into_a_new_file(tmp_path, capsys):
    """An interrupted run's file, resumed with more cases asked for: the file's cases are
    kept as they were, only the missing one runs, a new file holds both, the old one is
    untouched; resuming again has nothing to run; other timing options are refused."""
    assert main(_run_args(tmp_path)) == 0
    (first,) = tmp_path.glob("emulator/*.json")
    before = first.read_text()
    old = load(first)["cases"][0]
    wider = [*_run_args(tmp_path), "--dispatch", "inline", "--resume", str(first)]
    assert main(wider) == 0
    assert first.read_text() == before
    (second,) = set(tmp_path.glob("emulator/*.json")) - {first}
    doc = load(second)
    assert [c["spec"]["dispatch"] for c in doc["cases"]] == ["direct", "inline"]
    assert doc["cases"][0] == old  # kept as it was, not run again
    assert doc["cases"][1]["status"] == "pass"
    assert doc["run"]["config"]["resumed_from"] == first.name
    capsys.readouterr()
    assert main([*_run_args(tmp_path), "--dispatch", "inline", "--resume", str(second)]) == 0
    assert "nothing to run" in capsys.readouterr().err
    assert len(list(tmp_path.glob("emulator/*.json"))) == 2
    assert main([*wider[:-2], "--min-samples", "5", "--resume", str(first)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "its timing was" in err[0]


def test_resume_refuses_another_commit_or_machine(tmp_path, capsys):
    assert main(_run_args(tmp_path)) == 0
    (first,) = tmp_path.glob("emulator/*.json")
    doc = json.loads(first.read_text())
    doc["environment"]["pollbench"]["git_sha"] = "0" * 40
    other = tmp_path / "other-commit.json"
    other.write_text(json.dumps(doc))
    gpu_file = next(Path(__file__).parent.parent.glob("results/nvidia-h100-80gb-hbm3/*.json"))
    for path, says in ((other, "made at commit 000000000000"),
                       (gpu_file, "made on nvidia-h100-80gb-hbm3, not on this machine (emulator)")):
        capsys.readouterr()
        assert main([*_run_args(tmp_path), "--resume", str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0], err
