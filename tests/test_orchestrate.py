"""pollbench run's case loop: each case in a spawned process; a failed check, an exception,
a crash or a hang is recorded and the run goes on (no GPU: the emulator backend)."""

import re
import time

import fake_cases
import pytest

from harness import orchestrate
from harness.results import document, environment, validate

EMU = {"backend": "emu", "device": 0, "repeats": 1}


def _spec(**kw):
    spec = dict(executor="block_on", workload="seed_demo", dispatch="direct",
                granularity="warp", ntasks=32, block=32, seed=0)
    spec.update(kw)
    return spec


def _valid(records):
    validate(document(environment("emu"), ["run"], EMU, records))


def test_pass_fail_timeout_error_in_one_run_which_goes_on():
    fns = [fake_cases.passing, fake_cases.failing, fake_cases.hanging, fake_cases.raising,
           fake_cases.passing]
    records = []
    t0 = time.monotonic()
    for fn in fns:  # one case function per case: run_one is what run_cases loops over
        records.append(orchestrate.run_one(_spec(), EMU, timeout_s=4.0, case_fn=fn))
    elapsed = time.monotonic() - t0
    assert [r["status"] for r in records] == ["pass", "fail", "timeout", "error", "pass"]
    ok, bad, hung, err, after = records
    assert ok["message"] is None and ok["emulator"]["instructions_per_task"] > 0
    assert ok["resources"]["registers"] > 0 and ok["check"] == {"executor": "pass", "baseline": "pass"}
    assert re.match(r"FAIL: (\d+) of \1 outputs wrong", bad["message"]), bad["message"]
    assert bad["check"]["executor"].startswith("FAIL")
    assert "no result within 4 s" in hung["message"] and 4.0 <= hung["wall_s"] < 8.0
    assert err["message"] == "RuntimeError: boom" and "Traceback" in err["extra"]["traceback"]
    assert after == {**ok, "wall_s": after["wall_s"]}  # the run went on, unharmed
    assert elapsed < 25, elapsed
    _valid(records)


def test_run_cases_calls_back_in_order():
    seen = []
    records = orchestrate.run_cases([_spec(), _spec(dispatch="indirect")], EMU, timeout_s=5,
                                    case_fn=fake_cases.raising,
                                    on_start=lambda s: seen.append(("start", s["dispatch"])),
                                    on_done=lambda r: seen.append(("done", r["status"])))
    assert seen == [("start", "direct"), ("done", "error"), ("start", "indirect"),
                    ("done", "error")]
    assert [r["spec"]["dispatch"] for r in records] == ["direct", "indirect"]


@pytest.mark.parametrize("fn,needle", [
    (fake_cases.dying, "exited with code 3 without a result"),
    (fake_cases.unpicklable, "could not be sent back"),
])
def test_a_child_that_dies_or_cannot_answer_is_an_error(fn, needle):
    rec = orchestrate.run_one(_spec(), EMU, timeout_s=10, case_fn=fn)
    assert rec["status"] == "error" and needle in rec["message"], rec
    _valid([rec])


def test_unsupported_pair_is_a_skip():
    rec = orchestrate.run_one(_spec(), EMU, timeout_s=10, case_fn=fake_cases.unsupported)
    assert rec["status"] == "skip" and "no run queue" in rec["message"], rec
    _valid([rec])


def test_the_next_case_warms_up_while_the_current_one_runs(tmp_path):
    """Case 2's process runs its warm-up during case 1 (before case 1 ends), and only
    runs the case itself after case 1 answered."""
    opts = {**EMU, "dir": str(tmp_path), "sleep": 1.5}
    records = orchestrate.run_cases([_spec(dispatch="direct"), _spec(dispatch="indirect")],
                                    opts, timeout_s=30, case_fn=fake_cases.stamped,
                                    warm_fn=fake_cases.stamp_warm)
    first, second = (r["extra"] for r in records)
    assert second["warm"] < first["end"]  # warmed up meanwhile
    assert second["start"] >= first["end"]  # but its turn came after
    assert [r["status"] for r in records] == ["pass", "pass"]


def test_an_unsupported_pair_is_skipped_without_a_process():
    records = orchestrate.run_cases([_spec(workload="fan_out")], EMU, timeout_s=5,
                                    case_fn=fake_cases.hanging)
    assert records[0]["status"] == "skip" and "no run queue" in records[0]["message"]
    assert records[0]["wall_s"] == 0.0  # a hanging case_fn was never called


def test_a_child_whose_parent_dies_exits_quietly(tmp_path):
    """A parent killed with SIGKILL mid-case: the case's process exits at once (it does
    not finish its case and print a BrokenPipe traceback later)."""
    import subprocess
    import sys

    code = ("import sys; sys.path[:0] = sys.argv[1:3]\n"
            "import fake_cases\nfrom harness import orchestrate\n"
            f"orchestrate.run_one({_spec()!r}, {{'dir': {str(tmp_path)!r}}}, timeout_s=30, "
            "case_fn=fake_cases.orphan_case)\n")
    here = __import__("os").path.dirname(__file__)
    root = __import__("os").path.dirname(here)
    p = subprocess.run([sys.executable, "-c", code, here, root], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == -9
    time.sleep(3.0)  # the orphan would have written its file and answered by now
    assert not (tmp_path / "still_running").exists()
    assert "Traceback" not in p.stderr


def test_a_warmed_up_case_is_built_once():
    """The warm-up's build is the case's own (taken once); a second build is fresh."""
    from harness.cases import CaseSpec, build_case, prebuild

    spec = CaseSpec("embassy", "seed_demo", "direct", "thread", ntasks=32, block=32)
    warm = prebuild(spec, "sm_90")
    assert build_case(spec, "sm_90", instrument=True) is warm
    again = build_case(spec, "sm_90", instrument=True)
    assert again is not warm and again[0].to_ptx() == warm[0].to_ptx()


def test_a_warmed_up_case_draws_its_inputs_once(monkeypatch):
    """warm_case draws the inputs and computes numpy's answer; the case takes them (the same
    arrays, no second draw) and still passes; a case not warmed draws its own."""
    from harness.backend import EmuBackend
    from harness.cases import CaseSpec, run_case
    from harness.orchestrate import warm_case
    from workloads import get_workload

    wl = get_workload("yield_storm")
    draws = []
    real = wl.make_inputs
    monkeypatch.setattr(wl, "make_inputs", lambda rng, n: draws.append(n) or real(rng, n))
    spec = CaseSpec("embassy", "yield_storm", "direct", "thread", ntasks=32, block=32, seed=3)
    warm_case(vars(spec), {})
    assert draws == [32]
    assert run_case(spec, EmuBackend(), repeats=1, instrument=False).check == "pass"
    assert draws == [32]  # taken from the warm-up
    assert run_case(spec, EmuBackend(), repeats=1, instrument=False).check == "pass"
    assert draws == [32, 32]  # the warm-up's were taken once
