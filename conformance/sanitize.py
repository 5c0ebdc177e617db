"""compute-sanitizer over every executor x workload: one process per executor and tool
(``conformance/sanitize_cases.py`` runs that executor's cases, each launched once under the
watchdog and checked), the tool's summary parsed into counts.

compute-sanitizer is a command-line tool with no library interface, so it runs as one.
``--report-api-errors no``: cuda-core probes ``cuKernelGetParamInfo`` when it loads a
kernel, and memcheck would count each failed probe as an error though no device access is
involved; device errors are still reported.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from harness.errors import PollbenchError

TOOLS = ("memcheck", "racecheck", "synccheck", "initcheck")
ROOT = Path(__file__).resolve().parent.parent
_ERRORS = re.compile(r"ERROR SUMMARY: (\d+) error")
_HAZARDS = re.compile(r"RACECHECK SUMMARY: (\d+) hazards? displayed \((\d+) errors?, (\d+) warnings?\)")
_CASES = re.compile(r"(\d+) of (\d+) cases failed")


def sanitizer() -> str:
    """The compute-sanitizer executable, or a one-line error."""
    exe = shutil.which("compute-sanitizer")
    if exe is None:
        raise PollbenchError("--sanitize needs compute-sanitizer (CUDA toolkit) on PATH")
    return exe


def parse(tool: str, text: str) -> dict:
    """Counts from one run's output: ``errors``; racecheck's ``hazards`` (and how many are
    errors and warnings); the driver's ``cases`` and ``failed``."""
    row: dict = {"errors": None, "hazards": None, "hazard_errors": None,
                 "hazard_warnings": None, "cases": None, "failed": None}
    m = _ERRORS.search(text)
    if m:
        row["errors"] = int(m.group(1))
    m = _HAZARDS.search(text)
    if m:
        row["hazards"], row["hazard_errors"], row["hazard_warnings"] = map(int, m.groups())
    elif tool == "racecheck" and row["errors"] == 0:
        row["hazards"] = row["hazard_errors"] = row["hazard_warnings"] = 0
    m = _CASES.search(text)
    if m:
        row["failed"], row["cases"] = int(m.group(1)), int(m.group(2))
    return row


def verdict(row: dict) -> str:
    """"clean", the counts, or "FAIL: ..." (a case wrong, a timeout, no summary)."""
    if row.get("timed_out"):
        return "FAIL: timed out"
    if row["cases"] is None:
        return "FAIL: the cases did not run (see the log)"
    if row["failed"]:
        return f"FAIL: {row['failed']} of {row['cases']} cases wrong under the tool"
    if row["errors"]:
        return f"{row['errors']} errors"
    if row["hazards"] and row.get("ordered_by"):
        return f"{row['hazards']} hazards, ordered by atomics (litmus {row['ordered_by']})"
    if row["hazards"]:
        return f"{row['hazards']} hazards ({row['hazard_errors']} errors)"
    return "clean"


def run(executor: str, tool: str, ntasks: int = 1024, timeout_s: float = 600.0,
        log_dir: Path | None = None) -> dict:
    """One executor's cases under one tool; the parsed row (with the log's path)."""
    cmd = [sanitizer(), "--tool", tool, "--report-api-errors", "no",
           sys.executable, "-m", "conformance.sanitize_cases", "--executor", executor,
           "--ntasks", str(ntasks)]
    try:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
        text, timed_out = p.stdout + p.stderr, False
    except subprocess.TimeoutExpired as e:
        text, timed_out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) \
            else (e.stdout or ""), True
    from executors import get_executor

    row = {"executor": executor, "tool": tool, **parse(tool, text), "timed_out": timed_out,
           "ordered_by": get_executor(executor).racecheck_ordered_by if tool == "racecheck"
           else None}
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        path = log_dir / f"sanitize-{executor}-{tool}.log"
        path.write_text(text)
        row["log"] = str(path)
    row["verdict"] = verdict(row)
    return row
