"""Rich tables for the terminal (colour only on a terminal: rich decides; the width is
``make_console``'s) and what their columns mean (``COLUMNS_HELP``, ``explain``)."""

from __future__ import annotations

import os
import sys

from rich.console import Console, Group
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from harness.errors import PollbenchError
from harness.results.figures import figure
from harness.results.records import spec_label

# Piped output (CI logs, files) without COLUMNS: wide enough for the compact run table
# (~94 columns on real data). `run --wide` needs ~190 and `inspect` ~150: a console for
# those can ask for more (make_console(piped_width=200)), or the user sets COLUMNS.
PIPED_WIDTH = 100


def console_width(stream, environ=None, piped_width: int = PIPED_WIDTH) -> int | None:
    """The width for a console writing to ``stream``: ``COLUMNS`` when it is set (terminal
    or not), None (rich measures the terminal) on a terminal, else ``piped_width``."""
    columns = (os.environ if environ is None else environ).get("COLUMNS", "").strip()
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    isatty = getattr(stream, "isatty", None)
    try:
        tty = bool(isatty and isatty())
    except ValueError:  # a closed stream
        tty = False
    return None if tty else piped_width


def make_console(stderr: bool = False, piped_width: int = PIPED_WIDTH) -> Console:
    """A console on stdout (or stderr) sized by ``console_width``. Text printed on stderr
    (a line per finished case, the results path) is never wrapped by rich, so a path stays
    one line that copies whole; the terminal wraps it for display."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=console_width(stream, piped_width=piped_width),
                   soft_wrap=stderr)


console = make_console()
err_console = make_console(stderr=True)


# What every column of pollbench's run and compare tables means. Each meaning opens with a
# short gloss ending at " — ": the legend under a table shows the glosses of its columns,
# `pollbench explain COLUMN` the whole sentence.
_THEORETICAL_OCCUPANCY = (
    "theoretical occupancy at this block size — resident warps per SM over the SM's "
    "maximum, as the executor kernel's registers, shared memory (static and dynamic) and "
    "barriers allow at the case's block size (cuda_occupancy.h's rules applied to ptxas's "
    "resource report: computed, not measured; resources.occupancy_limiter in the results "
    "file names the limiting resource).")
COLUMNS_HELP = {
    "case": "executor/workload/dispatch/granularity — the executor, the workload, how the "
            "run loop calls a task's poll (inline, direct or indirect) and what one worker "
            "is (a thread, a warp or a block); in compare, spec parameters that differ "
            "between the cases (ntasks, block, seed) follow in brackets.",
    "status": "the case's outcome — pass: the executor's and the baseline's outputs equal "
              "the numpy reference; fail: a check failed (a wrong output, or an executor "
              "error such as a full task pool; the message says which); timeout: no answer "
              "within --case-timeout, its process was killed; error: it raised or its "
              "process died; skip: the executor cannot run this workload (the table may cut "
              "the message; the results file has it whole).",
    "median ms": "median time of a run — the median of the accepted timing samples, in "
                 "milliseconds per run of the executor over all the case's tasks "
                 "(architecture §7: warm-up, CUDA events, samples run under 75% of the max "
                 "SM clock rejected, runs under 50 µs timed in batches in a captured graph).",
    "baseline ms": "same, for the baseline kernel (no executor) — the median time of a run "
                   "of the workload's baseline kernel, which does the same work with no "
                   "executor (seed_demo: the arithmetic inline; yield_storm: the LCG in a "
                   "plain loop; ping_pong: the hand-off as spin loops; fan_out: the "
                   "children's work inline).",
    "ratio": "the case's figure / the baseline's — median ms / baseline ms on a GPU, "
             "instr/task / baseline instr/task on the emulator: 1.00x means the executor "
             "costs nothing, 3.43x that the case takes 3.43 times as long as the baseline.",
    "overhead": "ratio - 1 — median ms / baseline ms - 1 as a percentage: the executor's "
                "end-to-end cost (the record's overhead field).",
    "regs": "registers/thread — registers per thread of the executor's kernel: the "
            "driver's count (cuFuncGetAttribute) where the case ran on a GPU, else ptxas's "
            "from nvJitLink's resource report.",
    "baseline regs": "the baseline's registers per thread — ptxas's count for the "
                     "workload's baseline kernel.",
    "spills B": "spill-store bytes — bytes of spill stores per thread in the executor's "
                "kernel, from ptxas (0: no register spills to local memory).",
    "occ.": _THEORETICAL_OCCUPANCY,
    "occ. theor.": _THEORETICAL_OCCUPANCY,
    "occ. achieved": "achieved occupancy, instrumented run — per SM, the time warps were "
                     "resident (from each thread's start and end timestamps) over max warps "
                     "x the SM's busy span, averaged over the SMs that ran anything.",
    "bookkeeping": "share of cycles outside poll bodies, instrumented run — 1 - cycles "
                   "inside poll bodies / all cycles of the run loops: what the executor "
                   "spends dispatching, queueing, waking and idling rather than running the "
                   "tasks' own code.",
    "polls/task": "polls per task, instrumented run — all the polls the run loops made "
                  "(spawned tasks' included) over the case's tasks; 1.00 means each task "
                  "was Ready at its first poll.",
    "J/task": "energy per task — NVML's energy over ~0.5 s of back-to-back runs of the "
              "case (the energy counter, else integrated power) over the tasks those runs "
              "ran; the whole GPU's energy, idle power included.",
    "frame B": "task frame bytes — the bytes of a task's frame, what it keeps across "
               "awaits (resume index, arguments, live locals); 0: the frame is registers "
               "(inline dispatch).",
    "instr/task": "emulator instructions per task — the dynamic PTX instructions of one "
                  "run on the emulator, all threads together, over the case's tasks "
                  "(deterministic; not a GPU timing).",
    "baseline instr/task": "the baseline's instructions per task — the same count for the "
                           "workload's baseline kernel.",
    "metric": "what A and B are — ms (median time of a run) or instr/task (emulator "
              "instructions per task); when every row has the same, it heads A and B "
              "instead.",
    "A": "file A's figure — the case's median ms, or its instr/task in emulator documents.",
    "B": "file B's figure — the same, from file B.",
    "B/A": "B's figure over A's — under 1: B is faster (or runs fewer instructions).",
    "verdict": "faster, slower or same — faster or slower only where A's and B's intervals "
               "do not overlap, else same (within noise); emulator counts are exact, so any "
               "difference is fewer or more instructions; n/a when a side did not pass, "
               "recorded no spread, or they share no figure.",
    "interval": "what the verdict compared — ci95: the 95% distribution-free confidence "
                "interval of the median (order statistics of the samples, at least 6 on "
                "each side); range: min..max of the samples; exact: emulator counts.",
}


def _gloss(column: str) -> str:
    """The short gloss that opens ``COLUMNS_HELP[column]``."""
    return COLUMNS_HELP[column].split(" — ", 1)[0]


def legend(columns) -> str:
    """One ``column = gloss`` per column, ``; ``-separated: the line under a table."""
    return "; ".join(f"{c} = {_gloss(c)}" for c in columns)


def explain(column: str | None = None) -> str:
    """What ``column`` (a table header, any case) means; every column, one a line, for None.
    An unknown column raises PollbenchError naming the known ones."""
    if column is None:
        return "\n".join(f"{name}: {meaning}" for name, meaning in COLUMNS_HELP.items())
    wanted = " ".join(column.split()).lower()  # "Occ.  Theor." finds "occ. theor."
    for name, meaning in COLUMNS_HELP.items():
        if name.lower() == wanted:
            return f"{name}: {meaning}"
    raise PollbenchError(f"no column {column!r}; the columns are: {', '.join(COLUMNS_HELP)}")


def _fmt(v, spec: str = "") -> str:
    if v is None:
        return "-"
    return format(v, spec) if spec else str(v)


def _pct(v, spec: str = ".0%") -> str:
    return "-" if v is None else format(v, spec)


def _ms(v) -> str:
    """Milliseconds to four significant figures (0.006212, 1.698, 20.09; 12346 from
    1000 up): a fixed number of decimals would print a 6 µs baseline as 0.0062."""
    if v is None:
        return "-"
    return f"{v:.0f}" if abs(v) >= 1000 else format(v, "#.4g")


def _ratio(value, baseline) -> str:
    """``value / baseline`` as ``3.43x`` (three figures, never e-notation); "-" when
    either is missing or the baseline is 0."""
    if value is None or not baseline:
        return "-"
    r = value / baseline
    return f"{r:.2f}x" if r < 10 else f"{r:.1f}x" if r < 100 else f"{r:.0f}x"


_STATUS_STYLE = {"pass": "green", "fail": "red", "error": "red", "timeout": "yellow",
                 "skip": "dim"}

# The run table's columns: compact (what a person reads first) and --wide (everything).
_GPU_COMPACT = ("case", "status", "median ms", "baseline ms", "ratio", "regs", "occ.")
_GPU_WIDE = ("case", "status", "median ms", "baseline ms", "ratio", "overhead", "bookkeeping",
             "polls/task", "regs", "baseline regs", "spills B", "occ. theor.", "occ. achieved",
             "J/task", "frame B")
_EMU_COMPACT = ("case", "status", "instr/task", "baseline instr/task", "ratio", "regs", "occ.")
_EMU_WIDE = ("case", "status", "instr/task", "baseline instr/task", "ratio", "bookkeeping",
             "polls/task", "regs", "baseline regs", "spills B", "occ. theor.", "frame B")
# Headers on two lines where the one-line header would be the column's widest cell: the
# width goes to the case label instead (one line at 100 columns, two at 80).
_STACKED = {"median ms": "median\nms", "baseline ms": "baseline\nms",
            "baseline instr/task": "baseline\ninstr/task", "baseline regs": "baseline\nregs",
            "occ. achieved": "occ.\nachieved", "occ. theor.": "occ.\ntheor.",
            "spills B": "spills\nB", "frame B": "frame\nB"}


def run_columns(backend: str, wide: bool = False) -> tuple:
    """The headers of ``case_table``'s columns for ``backend`` ("gpu" or "emu")."""
    if backend == "gpu":
        return _GPU_WIDE if wide else _GPU_COMPACT
    return _EMU_WIDE if wide else _EMU_COMPACT


class WholeLabel:
    """A label that is never cut (two cut labels could look the same): in a column narrower
    than it, it breaks after a ``separator`` (``block_on/yield_storm/`` ``direct/thread``),
    so a name is split only when it alone is wider than the column."""

    def __init__(self, label: str, separator: str = "/"):
        self.label = label
        # "a/b/c d" -> ["a/", "b/", "c d"]: the places a line may break
        pieces = label.split(separator)
        self.parts = [p + separator for p in pieces[:-1]] + [pieces[-1]]

    def __rich_measure__(self, console, options) -> Measurement:
        widest_part = max(len(p) for p in self.parts)
        return Measurement(widest_part, len(self.label)).with_maximum(options.max_width)

    def __rich_console__(self, console, options):
        lines, line = [], ""
        for part in self.parts:
            if line and len(line) + len(part) > options.max_width:
                lines.append(line)
                line = ""
            line += part
        lines.append(line)
        yield Text("\n".join(lines), overflow="fold")  # a part wider than the column folds


def _case_cell(record: dict):
    """The case's label (whole, on more lines in a narrow column) and, for a case that did
    not pass, its message on a line of its own, cut to the column (the whole message is in
    the results file)."""
    label = WholeLabel(spec_label(record["spec"]))
    if record["status"] == "pass" or not record.get("message"):
        return label
    message = Text(record["message"], style="dim", no_wrap=True, overflow="ellipsis")
    return Group(label, message)


def _cells(record: dict) -> dict:
    """Every run-table cell of one record, by column header."""
    res = record.get("resources") or {}
    counters = record.get("counters") or {}
    emu = record.get("emulator") or {}
    median, base_median = figure(record, "time_ms"), figure(record, "baseline_ms")
    instr, base_instr = emu.get("instructions_per_task"), emu.get("baseline_instructions_per_task")
    over = record.get("overhead")
    occupancy = _pct(res.get("theoretical_occupancy"))
    return {
        "case": _case_cell(record),
        "status": Text(record["status"], style=_STATUS_STYLE.get(record["status"], "red")),
        "median ms": _ms(median),
        "baseline ms": _ms(base_median),
        "instr/task": _fmt(instr, ".1f"),
        "baseline instr/task": _fmt(base_instr, ".1f"),
        "ratio": _ratio(median, base_median) if median is not None else _ratio(instr, base_instr),
        "overhead": "-" if over is None else f"{over:+.1%}",
        "bookkeeping": _pct(figure(record, "bookkeeping_share"), ".1%"),
        "polls/task": _fmt(counters.get("polls_per_task"), ".2f"),
        "regs": _fmt(figure(record, "registers")),
        "baseline regs": _fmt(res.get("baseline_registers")),
        "spills B": _fmt(res.get("spill_stores_bytes")),
        "occ.": occupancy,
        "occ. theor.": occupancy,
        "occ. achieved": _pct(figure(record, "achieved_occupancy")),
        "J/task": _fmt(figure(record, "energy_per_task"), ".3g"),
        "frame B": _fmt(res.get("frame_bytes")),
    }


def case_table(records: list, backend: str, wide: bool = False) -> Table:
    """One row per case record (``harness.results``), with a legend as its caption.

    Compact (default, ~94 columns): case, status, on a GPU the median time, the baseline's
    and their ratio, on the emulator instructions per task likewise; registers and
    theoretical occupancy. ``wide`` adds the overhead, bookkeeping share and polls per task
    (instrumented run), baseline registers, spills, on a GPU achieved occupancy and energy
    per task, and the frame size (~190 columns). Numbers never wrap; the case label folds
    and a message is cut instead when the console is narrow."""
    gpu = backend == "gpu"
    columns = run_columns("gpu" if gpu else "emu", wide)
    title = "pollbench run" + ("" if gpu else
                               " — EMULATOR: not GPU timings; instructions are per task, all threads")
    t = Table(title=title, caption=escape(legend(columns)), caption_justify="left")
    t.add_column("case")  # the one column that gives way in a narrow console
    t.add_column("status", no_wrap=True)
    for col in columns[2:]:  # numbers: never wrapped, so never cut while the label can give
        t.add_column(_STACKED.get(col, col), justify="right", no_wrap=True)
    for r in records:
        cells = _cells(r)
        t.add_row(*(cells[col] for col in columns))
    return t


def _per_s(v, unit: float) -> str:
    return "-" if v is None else f"{v / unit:.3g}"


def throughput_table(records: list) -> Table | None:
    """The timed cases whose workload counts its work (``metrics.gb_per_s``): throughput
    of the case, its baseline and its references, and each as a fraction of the roofline
    measured in the same run (the copy and FMA references); None when no case has such
    figures (the emulator times nothing)."""
    rows = [r for r in records if (r.get("metrics") or {}).get("gb_per_s") is not None]
    if not rows:
        return None
    t = Table(title="throughput against the roofline of the same run",
              caption="GB/s: bytes read and written per second; TFLOP/s: 2 per FMA; % roof: "
                      "the least time the copy (bandwidth) and FMA-peak (compute) references "
                      "allow, over the time; tma: the hand-written warp-specialized kernel; "
                      "vs tma: its time over the case's (1.00x = as fast)",
              caption_justify="left")
    t.add_column("case")
    for col in ("GB/s", "TFLOP/s", "% roof", "baseline\n% roof", "tma\n% roof", "vs tma",
                "copy\nGB/s", "FMA peak\nTFLOP/s"):
        t.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        m = r["metrics"]
        refs = m.get("references") or {}
        tma, copy, fma = refs.get("tma") or {}, refs.get("copy") or {}, refs.get("fma_peak") or {}
        time_ms = figure(r, "time_ms")
        t.add_row(_case_cell(r), _per_s(m.get("gb_per_s"), 1), _per_s(m.get("gflop_per_s"), 1e3),
                  _pct(m.get("of_roofline")), _pct(m.get("baseline_of_roofline")),
                  _pct(tma.get("of_roofline")), _ratio(tma.get("ms"), time_ms),
                  _per_s(copy.get("gb_per_s"), 1), _per_s(fma.get("gflop_per_s"), 1e3))
    return t


def references_table(records: list) -> Table | None:
    """The timed cases' other references (those the throughput table does not show: no
    work counted, e.g. ``irregular``'s static partition): each reference's median time and
    the case's speed over it; None when there are none."""
    rows = []
    for r in records:
        m = r.get("metrics") or {}
        if m.get("gb_per_s") is not None:
            continue
        for name, ref in (m.get("references") or {}).items():
            if ref.get("ms") is not None:
                rows.append((r, name, ref))
    if not rows:
        return None
    t = Table(title="beside each case: its references",
              caption="speedup = the reference's median time / the case's (above 1.00x: the "
                      "case is faster); baseline: the workload's own baseline kernel likewise",
              caption_justify="left")
    t.add_column("case")
    for col in ("median ms", "reference", "its ms", "speedup", "baseline\nspeedup"):
        t.add_column(col, justify="right", no_wrap=True)
    for r, name, ref in rows:
        time_ms = figure(r, "time_ms")
        t.add_row(_case_cell(r), _ms(time_ms), name, _ms(ref["ms"]), _ratio(ref["ms"], time_ms),
                  _ratio(ref["ms"], figure(r, "baseline_ms")))
    return t


def _env_line(env: dict) -> str:
    gpu = env.get("gpu")
    where = (f"{gpu['name']} (driver {gpu.get('driver_version') or '?'})" if gpu
             else "emulator")
    sha = (env.get("pollbench") or {}).get("git_sha")
    return f"{where}, {env.get('time_utc')}, {env.get('hostname')}, git {sha[:12] if sha else '?'}"


_VERDICT_STYLE = {"faster": "bold green", "slower": "bold red", "fewer instructions": "green",
                  "more instructions": "red"}
COMPARE_COLUMNS = ("case", "metric", "A", "B", "B/A", "verdict", "interval")


def _common_metric(rows) -> str | None:
    """The metric ("ms" or "instr/task") of every row that has one, or None when they
    differ (or no row has one)."""
    metrics = {row.metric for row in rows if row.metric}
    return metrics.pop() if len(metrics) == 1 else None


def _compare_number(v, metric: str) -> str:
    return _ms(v) if metric == "ms" else _fmt(v, ".1f")


def compare_table(cmp, env_a: dict, env_b: dict) -> Table:
    """``pollbench compare``: per case A, B, B/A, the verdict and the interval it used; the
    caption says which file is A and which B, and what the columns mean. When every row
    has the same metric it heads A and B ("A ms") instead of filling a column of its own.
    Numbers never wrap; in a narrow console the case label breaks onto more lines (never
    cut: two cut labels could look the same) and the verdict wraps."""
    unit = _common_metric(cmp.rows)
    columns = [c for c in COMPARE_COLUMNS if not (unit and c == "metric")]
    caption = (f"A: {escape(_env_line(env_a))}\nB: {escape(_env_line(env_b))}\n"
               + escape(legend(columns)))
    t = Table(title="pollbench compare (B / A)", caption=caption, caption_justify="left")
    t.add_column("case")
    if not unit:
        t.add_column("metric", no_wrap=True)
    for col in ("A", "B"):
        t.add_column(f"{col} {unit}" if unit else col, justify="right", no_wrap=True)
    t.add_column("B/A", justify="right", no_wrap=True)
    t.add_column("verdict")
    t.add_column("interval", no_wrap=True)
    for row in cmp.rows:
        style = _VERDICT_STYLE.get(row.verdict)
        verdict = f"[{style}]{row.verdict}[/]" if style else escape(row.verdict)
        ratio = "-" if row.ratio is None else f"{row.ratio:.3f}"
        if style:
            ratio = f"[{style}]{ratio}[/]"
        cells = [WholeLabel(row.label)] + ([] if unit else [row.metric or "-"])
        t.add_row(*cells, _compare_number(row.a, row.metric), _compare_number(row.b, row.metric),
                  ratio, verdict, row.method or "-")
    return t


def executors_table(executors) -> Table:
    """``pollbench list``'s executors: name, worker granularities, what each is."""
    t = Table(title="executors")
    for col in ("name", "granularities", "what it is"):
        t.add_column(col)
    for e in executors:
        t.add_row(e.name, ", ".join(e.granularities), e.summary)
    return t


def workloads_table(workloads, default=None) -> Table:
    """``pollbench list``'s workloads: name, what each is, and (given ``default``, the names
    a run without ``--workload`` runs) whether a plain run includes it."""
    t = Table(title="workloads")
    cols = ("name", "what it is") + (("runs",) if default is not None else ())
    for col in cols:
        t.add_column(col)
    for w in workloads:
        row = (w.name, w.summary)
        if default is not None:
            row += ("by default" if w.name in default else "when named",)
        t.add_row(*row)
    return t


def difftest_table(rows: list, backend: str) -> Table:
    """One row per differential case: name, opcodes covered, verdict."""
    t = Table(title=f"op-table differential self-tests on {backend}"
              + ("" if backend == "gpu" else " (against numpy; not GPU timings)"))
    t.add_column("case", overflow="fold")
    t.add_column("covers")
    t.add_column("verdict")
    t.add_column("ms" if backend == "gpu" else "instructions", justify="right", no_wrap=True)
    for case, verdict, run in rows:
        v = "[green]pass[/]" if verdict == "pass" else f"[red]{verdict}[/]"
        figure = run.time_ms if backend == "gpu" else run.instructions
        t.add_row(case.name, " ".join(case.covers), v, _fmt(figure, ".4f" if backend == "gpu" else ""))
    return t


def resources_table(title: str, rows: list) -> Table:
    """inspect: registers, spills, stack, static and dynamic shared memory, theoretical
    occupancy; ``rows`` are (kernel, Resources, block, Occupancy, dynamic smem B). Needs
    ~150 columns; narrower, kernel names break after a "_" and numbers stay whole."""
    t = Table(title=title)
    t.add_column("kernel")
    for col in ("regs", "spill\nst/ld B", "stack\nB", "smem\nB", "dyn\nsmem B", "block",
                "blocks\n/SM", "occupancy"):
        t.add_column(col, justify="right", no_wrap=True)
    t.add_column("limiter")
    for name, res, block, occ, dynamic in rows:
        t.add_row(WholeLabel(name, "_"), _fmt(res.registers),
                  f"{res.spill_stores}/{res.spill_loads}", _fmt(res.stack_frame),
                  _fmt(res.shared_static), _fmt(dynamic), str(block),
                  _fmt(occ.blocks_per_sm if occ else None),
                  f"{occ.fraction:.0%}" if occ else "-", occ.limiter if occ else "-")
    return t


def sweep_table(rows: list) -> Table:
    """``pollbench sweep``: one row per executor setting (``experiments.backoff_sweep``)."""
    workload = (rows[0].get("workload") if rows else None) or "ping_pong"
    t = Table(title=f"backoff sweep: {workload} beside a co-resident FMA kernel")
    cols = ("executor", "min_ns", "max_ns", "latency_ns_alone", "latency_ns_beside",
            "compute_share", "overlap", "check")
    for c in cols:
        t.add_column(c, justify="left" if c in ("executor", "check") else "right",
                     no_wrap=c != "check")
    for r in rows:
        t.add_row(*(f"{r.get(c):.3g}" if isinstance(r.get(c), float) else str(r.get(c, "-"))
                    for c in cols))
    return t


# ------------------------------------------------------------------- pollbench conform

_LITMUS_COLUMNS = [(s, p) for s in ("cta", "gpu") for p in ("warp", "cta", "grid")]


def _litmus_cell(row: dict) -> Text:
    weak = row["weak"]
    if row["forbidden"]:
        return Text(f"{weak} ✗" if weak else "0 ✓", style="bold red" if weak else "green")
    return Text(f"{weak}", style="yellow" if weak else "dim")


def litmus_table(section: dict) -> Table:
    """Weak outcomes per test and variant (rows) at each scope and placement (columns):
    green where the model forbids it and none was seen, red where a forbidden one was."""
    rows = section.get("rows") or []
    iters = {r["iterations"] for r in rows}
    caption = (f"weak outcomes seen in {min(iters) if iters else 0:,}+ iterations per cell; "
               "✓/✗: the model forbids the weak outcome there (✗: seen, a failure); "
               "plain counts: allowed (unordered, or a scope that does not hold every "
               "thread), reported only. Columns: scope / where the threads are.")
    t = Table(title="litmus tests", caption=caption, caption_justify="left")
    t.add_column("test")
    t.add_column("ordering")
    for s, p in _LITMUS_COLUMNS:
        t.add_column(f".{s}\n{p}", justify="right", no_wrap=True)
    by = {(r["test"], r["variant"], r["scope"], r["placement"]): r for r in rows}
    for test, variant in dict.fromkeys((r["test"], r["variant"]) for r in rows):
        t.add_row(test, variant, *(_litmus_cell(by[(test, variant, s, p)])
                                   if (test, variant, s, p) in by else "-"
                                   for s, p in _LITMUS_COLUMNS))
    return t


def progress_table(section: dict) -> Table:
    """Forward-progress checks: verdict and what each found."""
    t = Table(title="forward progress")
    for col in ("check", "verdict", "found"):
        t.add_column(col)
    for r in section.get("rows") or []:
        found = ", ".join(f"{k} {v}" for k, v in r.items() if k not in ("name", "verdict"))
        style = "green" if r["verdict"] == "pass" else "red" if "FAIL" in r["verdict"] else "yellow"
        t.add_row(r["name"], Text(r["verdict"], style=style), found)
    return t


def probes_table(section: dict) -> Table:
    """Probes beside the H100 figures the executors' defaults were derived from."""
    t = Table(title="probes (beside the H100's, architecture §11)")
    for col, just in (("probe", "left"), ("this GPU", "right"), ("H100", "right"),
                      ("unit", "left"), ("a default derived from it", "left")):
        t.add_column(col, justify=just)
    for r in section.get("rows") or []:
        t.add_row(r["name"], _fmt(r["value"], ".4g"), _fmt(r["h100"], ".4g"), r["unit"],
                  r.get("derived") or "")
    return t


def sanitizers_table(rows: list) -> Table:
    """compute-sanitizer's verdict per executor (rows) and tool (columns)."""
    tools = list(dict.fromkeys(r["tool"] for r in rows))
    t = Table(title="compute-sanitizer (every workload, dispatch and granularity)")
    t.add_column("executor")
    for tool in tools:
        t.add_column(tool)
    by = {(r["executor"], r["tool"]): r for r in rows}
    for ex in dict.fromkeys(r["executor"] for r in rows):
        cells = []
        for tool in tools:
            v = by[(ex, tool)]["verdict"] if (ex, tool) in by else "-"
            cells.append(Text(v, style="green" if v == "clean" else "yellow"
                              if "ordered by" in v else "red"))
        t.add_row(ex, *cells)
    return t


def conform_report(doc: dict) -> list:
    """``pollbench conform``'s tables and lines, in order."""
    env = doc.get("environment") or {}
    out = [Text(f"pollbench conform — {_env_line(env)}", style="bold")]
    if env.get("backend") != "gpu":
        out.append(Text("EMULATOR: the plumbing only; its memory is sequentially consistent and "
                        "its times are emulated, so nothing here describes a GPU",
                        style="bold yellow"))
    for name, table in (("litmus", litmus_table), ("progress", progress_table),
                        ("probes", probes_table)):
        section = doc.get(name) or {}
        if section.get("error"):
            out.append(Text(f"{name}: ERROR: {section['error']}", style="red"))
        else:
            out.append(table(section))
    suite = doc.get("suite")
    if suite is not None:
        if suite.get("error"):
            out.append(Text(f"executor suite: ERROR: {suite['error']}", style="red"))
        else:
            line = (f"executor conformance suite (pytest -m gpu conformance): {suite['passed']} "
                    f"passed, {suite['failed']} failed, {suite['skipped']} skipped")
            out.append(Text(line, style="green" if not suite["failed"] else "red"))
            out.extend(Text(f"  failed: {f}", style="red") for f in suite.get("failures") or [])
    if doc.get("sanitizers"):
        out.append(sanitizers_table(doc["sanitizers"]))
    ok = doc.get("ok")
    out.append(Text("every promise checked holds" if ok else "NOT every promise holds "
                    "(see the red cells)", style="bold green" if ok else "bold red"))
    return out
