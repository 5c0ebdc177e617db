"""``pollbench conform``: litmus kernels and their verdicts, forward progress, probes, the
sanitizer summaries, the report and its document. The emulator runs the plumbing (its
memory is sequentially consistent: no weak outcome can appear there); ``-m gpu`` runs the
same code on a card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conformance import litmus, probes, progress, sanitize
from conformance.conform import CONFORM_SCHEMA_VERSION, verdict
from harness.backend import EmuBackend
from harness.cli import main
from harness.gpu.testing import requires_gpu

MP, SB, CORR, SHARED = (litmus.TESTS[n] for n in ("MP", "SB", "CoRR", "MP+atom.shared"))


def test_the_model_table_forbids_what_the_ptx_model_forbids():
    assert not litmus.forbidden(MP, "relaxed", "gpu", "grid")
    for v in ("acq_rel", "sc", "rel_acq"):
        assert litmus.forbidden(MP, v, "gpu", "grid")
        assert not litmus.forbidden(MP, v, "cta", "grid")  # the scope misses a thread
        assert litmus.forbidden(MP, v, "cta", "cta")
    assert [v for v in litmus.VARIANTS if litmus.forbidden(SB, v, "gpu", "grid")] == ["sc"]
    assert all(litmus.forbidden(CORR, v, "gpu", "warp") for v in litmus.VARIANTS)
    assert SHARED.placements == ("warp", "cta")  # one block's shared memory
    configs = litmus.all_configs()
    assert len(configs) == 6 * 4 * 2 * 3 + 2 * 2 * 2
    assert len({litmus.kernel_name(*c) for c in configs}) == len(configs)


def test_every_conform_kernel_links_with_nvjitlink():
    """ptxas accepts every kernel (no GPU needed): e.g. atom.exch wants .b32, not .u32."""
    from harness.compile import compile_ptx

    for m in (litmus.build_module("sm_90", litmus.all_configs()),
              progress.build_module("sm_90"), probes.build_module("sm_90")):
        assert compile_ptx(m.to_ptx(), "sm_90").cubin


def _ptx(test, variant, scope, placement) -> str:
    m = litmus.build_module("sm_90", [(test, variant, scope, placement)])
    return m.to_ptx()


def test_each_variant_emits_its_orderings():
    assert "st.release.gpu.global.u32" in _ptx(MP, "rel_acq", "gpu", "grid")
    assert "ld.acquire.gpu.global.u32" in _ptx(MP, "rel_acq", "gpu", "grid")
    sc = _ptx(SB, "sc", "cta", "cta")
    assert "fence.sc.cta" in sc and "ld.relaxed.cta.global.u32" in sc
    relaxed = _ptx(MP, "relaxed", "gpu", "warp")
    assert "fence" not in relaxed and "acquire" not in relaxed and "release" not in relaxed
    shared = _ptx(SHARED, "acq_rel", "cta", "cta")
    assert "atom.acq_rel.cta.shared.exch.b32" in shared
    assert "atom.acq_rel.cta.shared.or.b32" in shared
    assert "fence" not in shared  # the atomics are the ordering


@pytest.mark.parametrize("test,variant,scope,placement", [
    (MP, "rel_acq", "gpu", "grid"), (SHARED, "acq_rel", "cta", "cta"),
    (litmus.TESTS["2+2W"], "sc", "gpu", "warp"), (litmus.TESTS["IRIW"], "relaxed", "cta", "cta"),
])
def test_every_instance_gets_a_valid_outcome_on_the_emulator(test, variant, scope, placement):
    be = EmuBackend(max_steps=20_000_000)
    be.load(litmus.build_module("sm_90", [(test, variant, scope, placement)]))
    r = litmus.run_config(be, test, variant, scope, placement, 40, np.random.default_rng(3))
    assert r.iterations >= 40 and sum(r.outcomes.values()) == r.iterations
    for key in r.outcomes:
        assert len(key.split(",")) == test.outcome_size
    assert r.weak == 0 and not r.failed  # sequentially consistent: never weak


def test_a_forbidden_outcome_fails_and_an_allowed_one_is_reported():
    seen = litmus.LitmusResult("MP", "rel_acq", "gpu", "grid", 10, {"1,0": 1}, weak=1,
                               forbidden=True)
    assert seen.failed and seen.verdict.startswith("FAIL")
    allowed = litmus.LitmusResult("MP", "relaxed", "gpu", "grid", 10, {"1,0": 1}, weak=1)
    assert not allowed.failed and allowed.verdict == "weak seen (allowed)"


def test_progress_and_probes_run_on_the_emulator():
    rows = progress.run_all(EmuBackend(), timeout_ns=1_000_000)
    assert [r.name for r in rows] == ["coresident", "spin_barrier", "warp_spin_lock",
                                      "divergent_paths"]
    assert all(r.verdict == "pass" for r in rows), [r.to_dict() for r in rows]
    lock = rows[2].figures
    assert lock["count"] == lock["threads"]
    p = probes.run_all(EmuBackend())
    sleeps = [r for r in p if r["name"].startswith("nanosleep")]
    assert len(sleeps) == len(probes.SLEEPS_NS) and all(r["value"] > 0 for r in sleeps)


def test_sanitizer_summaries_parse():
    mem = "a\n========= ERROR SUMMARY: 0 errors\n0 of 20 cases failed\n"
    row = sanitize.parse("memcheck", mem)
    assert (row["errors"], row["cases"], row["failed"]) == (0, 20, 0)
    assert sanitize.verdict(row) == "clean"
    race = ("========= RACECHECK SUMMARY: 80 hazards displayed (0 errors, 80 warnings)\n"
            "2 of 16 cases failed\n")
    row = sanitize.parse("racecheck", race)
    assert (row["hazards"], row["hazard_warnings"], row["failed"]) == (80, 80, 2)
    assert sanitize.verdict(row).startswith("FAIL: 2 of 16")
    assert sanitize.verdict(sanitize.parse("memcheck", "crashed")).startswith("FAIL")
    row = sanitize.parse("racecheck", race.replace("2 of 16", "0 of 16"))
    assert sanitize.verdict(row) == "80 hazards (0 errors)"
    assert sanitize.verdict({**row, "ordered_by": "MP+atom.shared"}).endswith(
        "ordered by atomics (litmus MP+atom.shared)")


def test_conform_on_the_emulator_writes_its_document(tmp_path, capsys):
    code = main(["conform", "--backend", "emu", "--test", "MP", "--iterations", "8",
                 "--out", str(tmp_path)])
    assert code == 0
    (path,) = tmp_path.glob("emulator/conform-*.json")
    doc = json.loads(path.read_text())
    assert doc["conform_schema_version"] == CONFORM_SCHEMA_VERSION and doc["ok"] is True
    _validate(doc)
    assert len(doc["litmus"]["rows"]) == 4 * 2 * 3
    assert {r["name"] for r in doc["progress"]["rows"]} >= {"spin_barrier", "warp_spin_lock"}
    assert doc["suite"] is None and doc["sanitizers"] is None  # no GPU
    out = capsys.readouterr()
    assert "litmus tests" in out.out and "EMULATOR" in out.out
    assert f"conform report: {path}" in out.err.replace("\n", "")
    assert main(["plot", str(path), "--out", str(tmp_path / "p")]) == 2  # not a run's results
    assert "a pollbench conform report" in capsys.readouterr().err


def _validate(doc: dict) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(litmus.__file__).parent / "conform-schema-v1.json").read_text())
    jsonschema.validate(doc, schema)


@pytest.mark.parametrize("path", sorted(
    (Path(__file__).parent.parent / "results").glob("*/conform-*.json")), ids=lambda p: p.name)
def test_committed_conform_reports_validate(path):
    doc = json.loads(path.read_text())
    _validate(doc)
    assert doc["complete"] and doc["litmus"]["rows"]


def test_a_failed_promise_makes_the_document_not_ok():
    doc = {"litmus": {"rows": [{"test": "MP", "forbidden": True, "weak": 1}]},
           "progress": {"rows": []}, "probes": {"rows": []}, "suite": None, "sanitizers": None}
    assert not verdict(doc)
    doc["litmus"]["rows"][0]["weak"] = 0
    assert verdict(doc)
    doc["suite"] = {"passed": 3, "failed": 1}
    assert not verdict(doc)
    doc["suite"] = None
    hazards = {"verdict": "80 hazards", "errors": None, "hazards": 80,
               "ordered_by": "MP+atom.shared"}
    doc["sanitizers"] = [hazards]
    assert not verdict(doc)  # the ordering was not checked in this run
    doc["litmus"]["rows"].append({"test": "MP+atom.shared", "forbidden": True, "weak": 0})
    assert verdict(doc)
    doc["sanitizers"] = [dict(hazards, ordered_by=None)]
    assert not verdict(doc)  # a hazard nobody argued


@pytest.mark.parametrize("argv,says", [
    (["conform", "--backend", "emu", "--sanitize", "--no-save"], "needs a GPU"),
    (["conform", "--backend", "emu", "--test", "XYZ", "--no-save"], "unknown litmus test"),
])
def test_bad_conform_input_is_one_line(argv, says, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0]


# ------------------------------------------------------------------------- on a GPU


@requires_gpu
def test_litmus_ordered_variants_hold_on_this_gpu(gpu_backend):
    configs = [(MP, "rel_acq", "gpu", "grid"), (MP, "acq_rel", "cta", "cta"),
               (CORR, "relaxed", "gpu", "grid"), (SHARED, "acq_rel", "cta", "cta"),
               (MP, "relaxed", "cta", "grid")]
    gpu_backend.load(litmus.build_module(gpu_backend.arch, configs))
    rng = np.random.default_rng(7)
    for cfg in configs:
        r = litmus.run_config(gpu_backend, *cfg, 20_000, rng)
        assert sum(r.outcomes.values()) == r.iterations >= 20_000
        assert not r.failed, r.to_dict()


@requires_gpu
def test_forward_progress_holds_on_this_gpu(gpu_backend):
    rows = {r.name: r for r in progress.run_all(gpu_backend)}
    for name in ("spin_barrier", "warp_spin_lock", "divergent_paths"):
        assert rows[name].verdict == "pass", rows[name].to_dict()
    found = rows["coresident"].figures
    assert 0 < found["discovered"] <= found["occupancy_api"]


@requires_gpu
def test_probes_measure_this_gpu(gpu_backend):
    rows = {r["name"]: r for r in probes.run_all(gpu_backend)}
    assert rows["nanosleep(1000 ns)"]["value"] >= 500
    assert 10 < rows["dependent global atomic"]["value"] < 10_000
    assert rows["dependent shared atomic"]["value"] < rows["dependent global atomic"]["value"]
    assert rows["distinct atomic throughput"]["value"] > rows["contended atomic throughput"]["value"]
    assert rows["WHILE iteration"]["value"] > 0


def test_ctrl_c_saves_the_sections_that_finished(tmp_path, monkeypatch, capsys):
    import conformance.conform as cf

    calls = []

    def section(name, *a, **kw):
        calls.append(name)
        if name == "probes":
            raise KeyboardInterrupt
        return {"rows": [], "wall_s": 0.0}

    monkeypatch.setattr(cf, "run_section", section)
    assert main(["conform", "--backend", "emu", "--out", str(tmp_path)]) == 130
    (path,) = tmp_path.glob("emulator/conform-*.json")
    doc = json.loads(path.read_text())
    assert calls == ["litmus", "progress", "probes"]
    assert doc["complete"] is False and doc["ok"] is False
    _validate(doc)
    assert doc["litmus"] == {"rows": [], "wall_s": 0.0} and doc["probes"] is None
    assert "finished: litmus, progress" in capsys.readouterr().err
