"""conformance/sanitize_cases.py (the compute-sanitizer driver) on the emulator."""

from conformance.sanitize_cases import main


def test_every_case_of_an_executor_runs_and_passes(capsys):
    assert main(["--backend", "emu", "--ntasks", "40", "--block", "32",
                 "--executor", "smem_ready", "--workload", "yield_storm"]) == 0
    out = capsys.readouterr().out
    assert "smem_ready/yield_storm/direct/warp: pass" in out and "0 of 4 cases failed" in out


def test_bad_input_is_one_line_and_exit_2(capsys):
    assert main(["--executor", "nope"]) == 2
    assert "unknown executor 'nope'" in capsys.readouterr().err
    assert main(["--ntasks", "0"]) == 2
