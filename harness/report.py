"""Rich tables for the terminal (plain text when piped: rich decides)."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

# Piped output (CI logs, files) is read whole: don't squeeze tables into 80 columns.
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True)


def _fmt(v, spec: str = "") -> str:
    if v is None:
        return "-"
    return format(v, spec) if spec else str(v)


def case_table(results: list, backend: str) -> Table:
    """executor, workload, dispatch, granularity, check, time vs baseline, registers, ..."""
    gpu = backend == "gpu"
    title = "pollbench run" + ("" if gpu else
                               " — EMULATOR: not GPU timings; instructions are per task, all threads")
    t = Table(title=title)
    for col in ("executor", "workload", "dispatch", "granularity", "check"):
        t.add_column(col)
    if gpu:
        t.add_column("median ms", justify="right")
        t.add_column("baseline ms", justify="right")
        t.add_column("overhead", justify="right")
    else:
        t.add_column("instr/task", justify="right")
        t.add_column("baseline instr/task", justify="right")
    for col in ("regs", "baseline regs", "spills", "frame B"):
        t.add_column(col, justify="right")
    for r in results:
        s = r.spec
        check = "[green]pass[/]" if r.ok else f"[red]{r.check if r.check != 'pass' else 'baseline: ' + str(r.baseline_check)}[/]"
        row = [s.executor, s.workload, s.dispatch, s.granularity, check]
        if gpu:
            over = (f"{r.time_ms / r.baseline_ms - 1:+.1%}" if r.time_ms and r.baseline_ms else None)
            row += [_fmt(r.time_ms, ".4f"), _fmt(r.baseline_ms, ".4f"), _fmt(over)]
        else:
            row += [_fmt(r.instructions_per_task, ".1f"), _fmt(r.baseline_instructions_per_task, ".1f")]
        row += [_fmt(r.extra.get("registers_driver", r.registers)), _fmt(r.baseline_registers),
                _fmt(r.spills), _fmt(r.frame_bytes)]
        t.add_row(*row)
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
    """inspect: registers, spills, stack, shared memory, theoretical occupancy."""
    t = Table(title=title)
    for col in ("kernel", "regs", "spill st/ld B", "stack B", "smem B", "block", "blocks/SM",
                "occupancy", "limiter"):
        t.add_column(col, justify="left" if col in ("kernel", "limiter") else "right")
    for name, res, block, occ in rows:
        t.add_row(name, _fmt(res.registers), f"{res.spill_stores}/{res.spill_loads}",
                  _fmt(res.stack_frame), _fmt(res.shared_static), str(block),
                  _fmt(occ.blocks_per_sm if occ else None),
                  f"{occ.fraction:.0%}" if occ else "-", occ.limiter if occ else "-")
    return t
