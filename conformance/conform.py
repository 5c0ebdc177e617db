"""``pollbench conform``: what this GPU promises an async executor, in one report.

Sections, each in a process of its own (a sticky CUDA error costs that section only):
litmus tests (``conformance.litmus``), forward progress (``conformance.progress``), probes
(``conformance.probes``), the executor conformance suite (``pytest -m gpu conformance``,
in a child: its own process and CUDA context), and with ``--sanitize`` compute-sanitizer
over every executor (``conformance.sanitize``). The document is saved as
``results/<machine>/conform-<UTC time>-<git sha>.json`` (``CONFORM_SCHEMA_VERSION``).
"""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from harness.errors import PollbenchError

CONFORM_SCHEMA_VERSION = 1
ROOT = Path(__file__).resolve().parent.parent


def _section(name: str, backend_name: str, device: int, options: dict) -> dict:
    """Run one section in this (child) process: ``{"rows": ...}``, or ``{"error": ...}``
    (an exception does not cross the process boundary: not every one pickles)."""
    try:
        return {"rows": _rows(name, backend_name, device, options)}
    except Exception as e:  # noqa: BLE001 - reported in the document, the others still run
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}


def _rows(name: str, backend_name: str, device: int, options: dict):
    from harness.backend import make_backend

    with make_backend(backend_name, device) as backend:
        if name == "litmus":
            from conformance import litmus

            def said(r):  # progress on stderr: a long run shows where it is
                print(f"  litmus {r.test} {r.variant} .{r.scope} {r.placement}: "
                      f"{r.weak} weak of {r.iterations}  {r.verdict}", file=sys.stderr, flush=True)

            return [r.to_dict() for r in litmus.run_all(backend, options["iterations"],
                                                        options["seed"], options.get("tests"),
                                                        on_result=said)]
        if name == "progress":
            from conformance import progress

            return [r.to_dict() for r in progress.run_all(backend)]
        if name == "probes":
            from conformance import probes

            return probes.run_all(backend)
    raise PollbenchError(f"no conform section {name!r}")


def run_section(name: str, backend_name: str, device: int, options: dict,
                timeout_s: float = 600.0) -> dict:
    """One section in a spawned process: ``{"rows": [...]}`` or ``{"error": "..."}``."""
    ctx = multiprocessing.get_context("spawn")
    t0 = time.time()
    with ctx.Pool(1) as pool:  # leaving the block terminates the worker, whatever it does
        job = pool.apply_async(_section, (name, backend_name, device, options))
        try:
            out = job.get(timeout=timeout_s)
        except multiprocessing.TimeoutError:
            out = {"error": f"timed out after {timeout_s:g} s"}
    out["wall_s"] = round(time.time() - t0, 1)
    return out


def run_suite(timeout_s: float = 900.0) -> dict:
    """The executor conformance suite under ``-m gpu`` in a child process; its counts."""
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "suite.xml"
        t0 = time.time()
        try:
            p = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p",
                                "no:cacheprovider", f"--junitxml={junit}", "conformance"],
                               cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout_s:g} s"}
        if not junit.exists():
            return {"error": (p.stdout + p.stderr).strip().splitlines()[-1:] or "no report"}
        suite = ET.parse(junit).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        n = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
        failed = [f"{c.get('classname')}::{c.get('name')}" for c in suite.iter("testcase")
                  if c.find("failure") is not None or c.find("error") is not None]
        return {"passed": n["tests"] - n["failures"] - n["errors"] - n["skipped"],
                "failed": n["failures"] + n["errors"], "skipped": n["skipped"],
                "failures": failed, "wall_s": round(time.time() - t0, 1)}


def run_sanitizers(executors, tools, log_dir: Path | None, on_row=None) -> list:
    """Every executor under every tool (a process each)."""
    from conformance import sanitize

    rows = []
    for ex in executors:
        for tool in tools:
            row = sanitize.run(ex, tool, log_dir=log_dir)
            rows.append(row)
            if on_row:
                on_row(row)
    return rows


def verdict(doc: dict) -> bool:
    """Whether the GPU kept every promise checked: no forbidden litmus outcome, every
    forward-progress check passed, the suite passed, no sanitizer failure, and every
    racecheck hazard ordered by atomics that the named litmus test checked on this card."""
    lit = (doc["litmus"] or {}).get("rows") or []
    ok = doc["litmus"] is not None and "error" not in doc["litmus"]
    ok &= not any(r["forbidden"] and r["weak"] for r in lit)
    prog = (doc["progress"] or {}).get("rows")
    ok &= prog is not None and all(not r["verdict"].startswith("FAIL") for r in prog)
    ok &= doc["probes"] is not None and "error" not in doc["probes"]
    suite = doc.get("suite")
    ok &= suite is None or (not suite.get("error") and suite.get("failed") == 0)
    for r in doc.get("sanitizers") or []:
        ok &= not r["verdict"].startswith("FAIL") and not r.get("errors")
        if r.get("hazards"):  # a hazard is a failure unless a litmus test here shows its order
            checked = [x for x in lit if x["test"] == r.get("ordered_by") and x["forbidden"]]
            ok &= bool(checked) and not any(x["weak"] for x in checked)
    return bool(ok)


def new_document(backend_name: str, device: int = 0, quick: bool = False,
                 sanitize: bool = False, seed: int = 0, iterations: int | None = None) -> dict:
    """An empty conform document (every section None until it has run)."""
    from conformance import litmus
    from harness.results import environment
    from harness.results.records import plain

    gpu = backend_name == "gpu"
    if iterations is None:  # the emulator: plumbing, not a GPU's memory model
        iterations = (litmus.DEFAULT_ITERATIONS if gpu and not quick else
                      litmus.QUICK_ITERATIONS if gpu else 32)
    return {"conform_schema_version": CONFORM_SCHEMA_VERSION,
            "environment": plain(environment(backend_name, device)),
            "run": {"quick": quick, "sanitize": sanitize, "iterations": iterations,
                    "seed": seed},
            "litmus": None, "progress": None, "probes": None, "suite": None,
            "sanitizers": None, "complete": False, "ok": False}


def conform(doc: dict, backend_name: str, device: int = 0, suite: bool = True, tests=None,
            executors=None, log_dir: Path | None = None, progress=None) -> dict:
    """Run every section into ``doc`` (``new_document``), in place: when a signal stops the
    run, ``doc`` holds the sections that finished (``complete`` stays False)."""
    from executors import EXECUTORS
    from harness.results.records import plain

    say = progress or (lambda msg: None)
    gpu = backend_name == "gpu"
    run = doc["run"]
    options = {"iterations": run["iterations"], "seed": run["seed"], "tests": tests}
    for name in ("litmus", "progress", "probes"):
        say(f"{name}...")
        doc[name] = plain(run_section(name, backend_name, device, options))
    if suite and gpu:
        say("executor conformance suite (pytest -m gpu conformance)...")
        doc["suite"] = run_suite()
    if run["sanitize"]:
        if not gpu:
            raise PollbenchError("--sanitize needs a GPU")
        say("compute-sanitizer...")
        doc["sanitizers"] = []
        run_sanitizers(executors or list(EXECUTORS), ("memcheck", "racecheck", "synccheck",
                                                      "initcheck"), log_dir,
                       on_row=lambda r: (doc["sanitizers"].append(plain(r)),
                                         say(f"  {r['executor']} {r['tool']}: {r['verdict']}")))
    doc["complete"] = True
    doc["ok"] = verdict(doc)
    return doc
