"""Rich tables for the terminal (plain text when piped: rich decides)."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.markup import escape
from rich.table import Table

# Piped output (CI logs, files) is read whole: don't squeeze tables into 80 columns.
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True)


def _fmt(v, spec: str = "") -> str:
    if v is None:
        return "-"
    return format(v, spec) if spec else str(v)


_STATUS_STYLE = {"pass": "green", "fail": "red", "error": "red", "timeout": "yellow",
                 "skip": "dim"}


def _pct(v, spec: str = ".0%") -> str:
    return "-" if v is None else format(v, spec)


def case_table(records: list, backend: str) -> Table:
    """One row per case record (``harness.results``): status; on a GPU the median time vs
    the baseline's, on the emulator instructions per task; bookkeeping share and polls per
    task (instrumented run), registers, spills, theoretical occupancy; on a GPU achieved
    occupancy and energy per task; frame size."""
    gpu = backend == "gpu"
    title = "pollbench run" + ("" if gpu else
                               " — EMULATOR: not GPU timings; instructions are per task, all threads")
    t = Table(title=title)
    for col in ("executor", "workload", "dispatch", "granularity", "status"):
        t.add_column(col)
    if gpu:
        for col in ("median ms", "baseline ms", "overhead"):
            t.add_column(col, justify="right")
    else:
        t.add_column("instr/task", justify="right")
        t.add_column("baseline instr/task", justify="right")
    for col in ("bookkeeping", "polls/task", "regs", "baseline regs", "spills B", "occ. theor."):
        t.add_column(col, justify="right")
    if gpu:
        t.add_column("occ. achieved", justify="right")
        t.add_column("J/task", justify="right")
    t.add_column("frame B", justify="right")
    for r in records:
        s = r["spec"]
        style = _STATUS_STYLE.get(r["status"], "red")
        status = r["status"] if r["status"] == "pass" else f"{r['status']}: {r['message']}"
        row = [s["executor"], s["workload"], s["dispatch"], s["granularity"],
               f"[{style}]{escape(status)}[/]"]
        res = r.get("resources") or {}
        counters = r.get("counters") or {}
        if gpu:
            timing, base = r.get("timing") or {}, r.get("baseline_timing") or {}
            over = r.get("overhead")
            row += [_fmt(timing.get("median_ms"), ".4f"), _fmt(base.get("median_ms"), ".4f"),
                    "-" if over is None else f"{over:+.1%}"]
        else:
            emu = r.get("emulator") or {}
            row += [_fmt(emu.get("instructions_per_task"), ".1f"),
                    _fmt(emu.get("baseline_instructions_per_task"), ".1f")]
        regs = res.get("registers_driver")
        row += [_pct(counters.get("bookkeeping_share"), ".1%"), _fmt(counters.get("polls_per_task"), ".2f"),
                _fmt(regs if regs is not None else res.get("registers")),
                _fmt(res.get("baseline_registers")), _fmt(res.get("spill_stores_bytes")),
                _pct(res.get("theoretical_occupancy"))]
        if gpu:
            row += [_pct(counters.get("achieved_occupancy")),
                    _fmt((r.get("nvml") or {}).get("energy_per_task_j"), ".3g")]
        row.append(_fmt(res.get("frame_bytes")))
        t.add_row(*row)
    return t


def _env_line(env: dict) -> str:
    gpu = env.get("gpu")
    where = (f"{gpu['name']} (driver {gpu.get('driver_version') or '?'})" if gpu
             else "emulator")
    sha = (env.get("pollbench") or {}).get("git_sha")
    return f"{where}, {env.get('time_utc')}, {env.get('hostname')}, git {sha[:12] if sha else '?'}"


_VERDICT_STYLE = {"faster": "bold green", "slower": "bold red", "fewer instructions": "green",
                  "more instructions": "red"}


def compare_table(cmp, env_a: dict, env_b: dict) -> Table:
    """``pollbench compare``: per case A, B, B/A and the verdict."""
    t = Table(title="pollbench compare (B / A)",
              caption=f"A: {escape(_env_line(env_a))}\nB: {escape(_env_line(env_b))}")
    t.add_column("case")
    t.add_column("metric")
    t.add_column("A", justify="right")
    t.add_column("B", justify="right")
    t.add_column("B/A", justify="right")
    t.add_column("verdict")
    t.add_column("interval")
    for row in cmp.rows:
        fmt = ".4f" if row.metric == "ms" else ".1f"
        style = _VERDICT_STYLE.get(row.verdict)
        verdict = f"[{style}]{row.verdict}[/]" if style else escape(row.verdict)
        ratio = "-" if row.ratio is None else f"{row.ratio:.3f}"
        if style:
            ratio = f"[{style}]{ratio}[/]"
        t.add_row(escape(row.label), row.metric or "-", _fmt(row.a, fmt), _fmt(row.b, fmt), ratio,
                  verdict, row.method or "-")
    return t


def difftest_table(rows: list, backend: str) -> Table:
    """One row per differential case: name, opcodes covered, verdict."""
    t = Table(title=f"op-table differential self-tests on {backend}"
              + ("" if backend == "gpu" else " (against numpy; not GPU timings)"))
    t.add_column("case")
    t.add_column("covers")
    t.add_column("verdict")
    t.add_column("ms" if backend == "gpu" else "instructions", justify="right")
    for case, verdict, run in rows:
        v = "[green]pass[/]" if verdict == "pass" else f"[red]{verdict}[/]"
        figure = run.time_ms if backend == "gpu" else run.instructions
        t.add_row(case.name, " ".join(case.covers), v, _fmt(figure, ".4f" if backend == "gpu" else ""))
    return t


def resources_table(title: str, rows: list) -> Table:
    """inspect: registers, spills, stack, static and dynamic shared memory, theoretical
    occupancy; ``rows`` are (kernel, Resources, block, Occupancy, dynamic smem B)."""
    t = Table(title=title)
    for col in ("kernel", "regs", "spill st/ld B", "stack B", "smem B", "dyn smem B", "block",
                "blocks/SM", "occupancy", "limiter"):
        t.add_column(col, justify="left" if col in ("kernel", "limiter") else "right")
    for name, res, block, occ, dynamic in rows:
        t.add_row(name, _fmt(res.registers), f"{res.spill_stores}/{res.spill_loads}",
                  _fmt(res.stack_frame), _fmt(res.shared_static), _fmt(dynamic), str(block),
                  _fmt(occ.blocks_per_sm if occ else None),
                  f"{occ.fraction:.0%}" if occ else "-", occ.limiter if occ else "-")
    return t
