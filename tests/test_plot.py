"""``pollbench plot`` and ``compare --plot``: whole PNGs with the names the docs give, clear
one-line errors for what cannot be drawn or a missing matplotlib."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from harness.cli import main

pytest.importorskip("matplotlib")
ROOT = Path(__file__).resolve().parent.parent
H200 = sorted(p for p in (ROOT / "results" / "nvidia-h200").glob("*.json")
              if not p.name.startswith("conform-"))
PNG = b"\x89PNG\r\n\x1a\n"


def _labels(path: Path) -> set:
    doc = json.loads(path.read_text())
    return {tuple(sorted(c["spec"].items())) for c in doc["cases"] if c["status"] == "pass"}


def _runs():
    """The oldest H200 results file and the later one that shares the most passing cases
    with it (the newest of those: the big workloads' runs share none with the small ones',
    and a partial run shares few)."""
    if H200:
        first = _labels(H200[0])
        shared = [(len(first & _labels(later)), k) for k, later in enumerate(H200[1:], 1)]
        most, k = max(shared, default=(0, 0))
        if most:
            return H200[0], H200[k]
    pytest.skip("needs two GPU results files with a case in common under results/nvidia-h200")


def _png_size(path: Path) -> tuple:
    data = path.read_bytes()
    assert data[:8] == PNG
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_plot_writes_one_png_per_figure(tmp_path, capsys):
    _, run = _runs()
    assert main(["plot", str(run), "--out", str(tmp_path)]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(f"{run.stem}-{n}.png" for n in ("ratio", "overhead",
                                                           "registers-occupancy"))
    printed = capsys.readouterr().out.split()
    for n in names:
        w, h = _png_size(tmp_path / n)
        assert w > 400 and h > 300
        assert str(tmp_path / n) in printed


def test_compare_plot_draws_the_ratios(tmp_path, capsys):
    a, b = _runs()
    out = tmp_path / "sub" / "cmp.png"
    assert main(["compare", str(a), str(b), "--plot", str(out)]) == 0
    assert f"picture: {out}" in capsys.readouterr().out.splitlines()
    w, h = _png_size(out)
    assert h > w  # one row per case


def test_sweep_file_is_drawn_and_a_bad_one_is_one_line(tmp_path, capsys):
    rows = [{"executor": "embassy", "min_ns": None, "max_ns": None, "compute_share": 0.42,
             "latency_ns_beside": 3.0e4},
            {"executor": "backoff", "min_ns": 128, "max_ns": 4096, "compute_share": 0.97,
             "latency_ns_beside": 9.0e4}]
    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps(rows))
    assert main(["plot", "--sweep", str(sweep), "--out", str(tmp_path)]) == 0
    _png_size(tmp_path / "sweep-backoff.png")
    sweep.write_text("{")
    assert main(["plot", "--sweep", str(sweep), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a sweep file" in err and len(err.strip().splitlines()) == 1


def test_an_emulator_run_has_nothing_to_time_plot(tmp_path, capsys):
    doc = json.loads(_runs()[1].read_text())
    for r in doc["cases"]:
        r["timing"] = r["baseline_timing"] = None
    path = tmp_path / "emu.json"
    path.write_text(json.dumps(doc))
    assert main(["plot", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no timed case" in err and len(err.strip().splitlines()) == 1
    assert not list((tmp_path / "out").glob("*.png*"))  # nothing half-written


def test_without_matplotlib_plot_says_how_to_get_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails
    assert main(["plot", str(_runs()[1]), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("pollbench: error: plots need matplotlib: pip install 'pollbench[plot]' "
                   "(or pip install matplotlib)")


def test_plot_without_files_is_an_error(capsys):
    assert main(["plot"]) == 2
    assert "needs a results file" in capsys.readouterr().err
