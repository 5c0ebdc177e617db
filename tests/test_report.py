"""harness.report: the run and compare tables at 80, 100 and 120 columns keep every number
and every case label whole; the legend and ``explain`` say what each column means; the
console honours COLUMNS and is 100 wide when piped (no GPU: committed H200 results)."""

from __future__ import annotations

import copy
import io
import json
import re
import sys
from pathlib import Path

import pytest
from rich.console import Console, ConsoleDimensions

from harness import report
from harness.errors import PollbenchError
from harness.report import (
    COLUMNS_HELP,
    COMPARE_COLUMNS,
    case_table,
    compare_table,
    console_width,
    explain,
    make_console,
    run_columns,
)
from harness.results import compare, spec_label

RESULTS = Path(__file__).resolve().parents[1] / "results" / "nvidia-h200"
H200 = RESULTS / "20261202T140122Z-2157b79bb303.json"
H200_EARLIER = RESULTS / "20261202T115805Z-48475b8508f0.json"
WIDTHS = (80, 100, 120)


def _doc(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def gpu_records() -> list:
    return _doc(H200)["cases"]


@pytest.fixture(scope="module")
def emu_records(gpu_records) -> list:
    """The H200 records as the emulator would write them: instructions, no timings."""
    out = []
    for r in gpu_records:
        r = copy.deepcopy(r)
        if r["timing"]:
            r["emulator"] = {"instructions_per_task": r["timing"]["median_ms"] * 4000,
                             "baseline_instructions_per_task": r["baseline_timing"]["median_ms"] * 4000}
        r["timing"] = r["baseline_timing"] = r["overhead"] = r["nvml"] = None
        out.append(r)
    return out


def render(renderable, width: int) -> str:
    """What ``renderable`` prints on a ``width``-column console (plain text)."""
    con = Console(width=width, record=True, file=io.StringIO())
    con.print(renderable)
    return con.export_text()


def cells(line: str) -> list:
    """The stripped cells of one table body line, "" for a line that is not one."""
    return [c.strip() for c in line.split("│")[1:-1]]


def body_rows(text: str) -> list:
    return [cells(line) for line in text.splitlines() if line.startswith("│")]


def numbers(text: str) -> list:
    """Every decimal number in ``text`` (a cut one, "0.01…", reads as its digits only)."""
    return [float(m) for m in re.findall(r"\d+\.\d+|\d+", text)]


def shown(value: float, text: str, rel: float = 5.01e-4) -> bool:
    """Whether ``value`` is in ``text`` to four significant figures or better."""
    return any(abs(n - value) <= rel * abs(value) for n in numbers(text))


def squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text)


# ---- the run table ----------------------------------------------------------------------

@pytest.mark.parametrize("width", WIDTHS)
def test_compact_table_fits_and_cuts_no_number(gpu_records, width):
    text = render(case_table(gpu_records, "gpu"), width)
    assert all(len(line) <= width for line in text.splitlines())
    rows = body_rows(text)
    # only the case column (a skip's message) may be cut
    assert all("…" not in c for row in rows for c in row[1:]), text
    figures = " ".join(" ".join(row[2:]) for row in rows)
    for r in gpu_records:
        if r["status"] == "pass":
            assert shown(r["timing"]["median_ms"], figures), spec_label(r["spec"])
            assert shown(r["baseline_timing"]["median_ms"], figures), spec_label(r["spec"])
    # the labels, whole, in order (broken onto more lines at 80 columns)
    labels = "".join(row[0] for row in rows if row[0] and not row[0].startswith("fan_out spawns"))
    assert labels == "".join(spec_label(r["spec"]) for r in gpu_records)


def test_compact_table_at_100_columns_has_one_line_per_case(gpu_records):
    """At 100 columns every case is one line with its label whole, and its median, the
    baseline's, their ratio, registers and occupancy in that line."""
    rows = {row[0]: row for row in body_rows(render(case_table(gpu_records, "gpu"), 100))}
    for r in gpu_records:
        row = rows[spec_label(r["spec"])]
        assert row[1] == r["status"]
        if r["status"] != "pass":
            assert row[2:] == ["-"] * 5
            continue
        median, base = r["timing"]["median_ms"], r["baseline_timing"]["median_ms"]
        assert shown(median, row[2]) and shown(base, row[3]), row
        ratio = median / base
        assert row[4].endswith("x") and abs(float(row[4][:-1]) / ratio - 1) < 0.01, row
        assert row[5] == str(r["resources"]["registers_driver"])
        assert row[6] == f"{r['resources']['theoretical_occupancy']:.0%}"


def test_ratio_is_median_over_baseline_not_the_overhead(gpu_records):
    r = next(r for r in gpu_records if r["status"] == "pass" and r["overhead"] > 1)
    row = next(row for row in body_rows(render(case_table([r], "gpu"), 100)) if row[1])
    assert float(row[4][:-1]) == pytest.approx(r["overhead"] + 1, rel=0.01)


def test_a_failed_case_shows_its_message_cut_in_the_case_column(gpu_records):
    r = copy.deepcopy(gpu_records[0])
    r.update(status="fail", message="FAIL: 12 of 1048576 outputs wrong (first at 7: 3 != 4) "
             + "and a long tail " * 5, timing=None, baseline_timing=None, overhead=None)
    text = render(case_table([r], "gpu"), 80)
    rows = body_rows(text)
    assert rows[0][1] == "fail" and rows[0][2:5] == ["-"] * 3  # not timed
    case_column = "".join(row[0] for row in rows)
    assert case_column.startswith(spec_label(r["spec"]) + "FAIL: 12 of 1048576")
    assert case_column.endswith("…")  # the message, cut to the column
    assert all("…" not in c for row in rows for c in row[1:])
    assert all(len(line) <= 80 for line in text.splitlines())


@pytest.mark.parametrize("width", WIDTHS)
def test_emulator_compact_table(emu_records, width):
    text = render(case_table(emu_records, "emu"), width)
    assert "EMULATOR" in text and all(len(line) <= width for line in text.splitlines())
    rows = body_rows(text)
    assert all("…" not in c for row in rows for c in row[1:])
    figures = " ".join(" ".join(row[2:]) for row in rows)
    for r in emu_records:
        if r["emulator"]:
            assert shown(round(r["emulator"]["instructions_per_task"], 1), figures)
            assert shown(round(r["emulator"]["baseline_instructions_per_task"], 1), figures)


def test_wide_table_keeps_every_column(gpu_records):
    compact = [" ".join(str(c.header).split()) for c in case_table(gpu_records, "gpu").columns]
    wide = [" ".join(str(c.header).split())
            for c in case_table(gpu_records, "gpu", wide=True).columns]
    extra = ("overhead", "bookkeeping", "polls/task", "baseline regs", "spills B",
             "occ. theor.", "occ. achieved", "J/task", "frame B")
    assert all(col in wide and col not in compact for col in extra)
    assert set(compact) <= set(wide) | {"occ."}
    r = gpu_records[0]
    row = next(row for row in body_rows(render(case_table([r], "gpu", wide=True), 220)) if row[1])
    assert row[0] == spec_label(r["spec"])
    values = dict(zip(wide, row))
    assert values["overhead"] == f"{r['overhead']:+.1%}"
    assert values["bookkeeping"] == f"{r['counters']['bookkeeping_share']:.1%}"
    assert values["occ. achieved"] == f"{r['counters']['achieved_occupancy']:.0%}"
    assert values["J/task"] == f"{r['nvml']['energy_per_task_j']:.3g}"
    assert values["baseline regs"] == str(r["resources"]["baseline_registers"])


# ---- the legend and explain -------------------------------------------------------------

@pytest.mark.parametrize("backend,wide", [("gpu", False), ("gpu", True), ("emu", False),
                                          ("emu", True)])
def test_legend_names_each_shown_column_and_no_other(gpu_records, backend, wide):
    table = case_table(gpu_records, backend, wide=wide)
    headers = [" ".join(str(c.header).split()) for c in table.columns]
    assert headers == list(run_columns(backend, wide))
    caption = str(table.caption)
    named = [part.split(" = ", 1)[0] for part in " ".join(caption.split()).split("; ")]
    assert named == headers
    text = squeezed(render(table, 100))
    assert squeezed(caption) in text  # printed under the table


def test_compact_legend_says_what_the_columns_mean(gpu_records):
    caption = " ".join(str(case_table(gpu_records, "gpu").caption).split())
    assert "occ. = theoretical occupancy at this block size" in caption
    assert "case = executor/workload/dispatch/granularity" in caption
    assert "ratio = the case's figure / the baseline's" in caption


def test_every_column_of_every_table_has_a_meaning():
    for backend in ("gpu", "emu"):
        for wide in (False, True):
            assert set(run_columns(backend, wide)) <= set(COLUMNS_HELP)
    assert set(COMPARE_COLUMNS) <= set(COLUMNS_HELP)
    for col, meaning in COLUMNS_HELP.items():
        gloss, _, rest = meaning.partition(" — ")
        assert gloss and rest.endswith("."), col  # a gloss for the legend, then the detail


def test_explain_one_column_any_case():
    assert explain("occ.").startswith("occ.: theoretical occupancy at this block size — ")
    assert explain("OCC.  Theor.").startswith("occ. theor.: theoretical occupancy")
    assert "1 - cycles inside poll bodies / all cycles of the run loops" in explain("Bookkeeping")
    assert "median ms / baseline ms" in explain("ratio")
    assert "frame" in explain("frame B") and "registers" in explain("frame b")
    assert "order statistics" in explain("interval")


def test_explain_all_columns():
    lines = explain(None).splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == list(COLUMNS_HELP)
    assert explain() == explain(None)


def test_explain_unknown_column_lists_the_known_ones():
    with pytest.raises(PollbenchError) as e:
        explain("latency")
    msg = str(e.value)
    assert "'latency'" in msg and "\n" not in msg
    assert all(col in msg for col in ("median ms", "occ. achieved", "B/A", "verdict"))


# ---- the compare table ------------------------------------------------------------------

def _few_samples(doc: dict) -> dict:
    """``doc`` with at most 20 samples per timing: compare's confidence interval of the
    median takes minutes over these files' thousands of samples."""
    for case in doc["cases"]:
        for timing in (case["timing"], case["baseline_timing"]):
            if timing and timing.get("samples_ms"):
                timing["samples_ms"] = timing["samples_ms"][:20]
    return doc


@pytest.fixture(scope="module")
def h200_comparison():
    a, b = _few_samples(_doc(H200_EARLIER)), _few_samples(_doc(H200))
    return compare(a, b), a["environment"], b["environment"]


@pytest.mark.parametrize("width", WIDTHS)
def test_compare_table_shows_every_label_whole_and_every_number(h200_comparison, width):
    cmp, env_a, env_b = h200_comparison
    text = render(compare_table(cmp, env_a, env_b), width)
    assert all(len(line) <= width for line in text.splitlines())
    rows = body_rows(text)
    # the case column read down the table is every label, whole and in order
    assert "".join(row[0] for row in rows) == "".join(r.label for r in cmp.rows)
    assert all("…" not in c for row in rows for c in row)
    figures = " ".join(" ".join(row[1:]) for row in rows)
    for r in cmp.rows:
        if r.metric == "ms":
            assert shown(r.a, figures) and shown(r.b, figures), r.label


def test_compare_labels_that_differ_only_at_the_end_stay_apart():
    """Labels with a bracketed parameter (block differs) break at spaces or "/", never cut."""
    from harness.results.compare import Comparison, Row

    labels = [f"smem_ready/yield_storm/indirect/thread [block={b} ntasks=1048576]"
              for b in (64, 128, 256)]
    cmp = Comparison(rows=[Row(label, "ms", 1.0, 1.25, 1.25, "slower", "ci95")
                           for label in labels])
    env = {"gpu": None, "time_utc": "2026-12-02T00:00:00Z", "hostname": "h", "pollbench": {}}
    text = render(compare_table(cmp, env, env), 80)
    rows = body_rows(text)
    assert squeezed("".join(row[0] for row in rows)) == squeezed("".join(labels))
    starts = [i for i, row in enumerate(rows) if row[1]]  # a case's first line has its numbers
    assert len(starts) == 3
    bounds = starts + [len(rows)]
    per_case = [squeezed("".join(rows[k][0] for k in range(i, j)))
                for i, j in zip(bounds, bounds[1:])]
    assert per_case == [squeezed(label) for label in labels]


def test_compare_metric_heads_a_and_b_when_every_row_shares_it():
    from harness.results.compare import Comparison, Row

    env = {"gpu": None, "time_utc": "t", "hostname": "h", "pollbench": {}}
    same = Comparison(rows=[Row("a/b/c/d", "ms", 1.0, 2.0, 2.0, "slower", "range"),
                            Row("a/b/c/e", "", verdict="n/a (A pass, B skip)")])
    mixed = Comparison(rows=[Row("a/b/c/d", "ms", 1.0, 2.0, 2.0, "slower", "range"),
                             Row("a/b/c/e", "instr/task", 10.0, 5.0, 0.5,
                                 "fewer instructions", "exact")])
    headers = [str(c.header) for c in compare_table(same, env, env).columns]
    assert headers == ["case", "A ms", "B ms", "B/A", "verdict", "interval"]
    headers = [str(c.header) for c in compare_table(mixed, env, env).columns]
    assert headers == list(COMPARE_COLUMNS)
    assert "metric = " in str(compare_table(mixed, env, env).caption)
    assert "metric = " not in str(compare_table(same, env, env).caption)


# ---- the console width ------------------------------------------------------------------

class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_columns_is_honoured_piped_or_not(monkeypatch):
    monkeypatch.setenv("COLUMNS", "57")
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    monkeypatch.setattr(sys, "stderr", _Tty())
    assert make_console().width == 57
    assert make_console(stderr=True).width == 57
    assert console_width(_Tty(), {"COLUMNS": "132"}) == 132


def test_piped_without_columns_is_100_wide(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert make_console().width == report.PIPED_WIDTH == 100
    assert console_width(io.StringIO(), {"COLUMNS": "wide"}) == 100  # not a number: ignored
    assert console_width(io.StringIO(), {"COLUMNS": "0"}) == 100


def test_a_terminal_without_columns_is_measured_by_rich(monkeypatch):
    assert console_width(_Tty(), {}) is None
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr(sys, "stdout", _Tty())
    monkeypatch.setattr(Console, "size", property(lambda self: ConsoleDimensions(93, 40)))
    assert make_console().width == 93


def test_module_consoles_exist():
    assert isinstance(report.console, Console) and isinstance(report.err_console, Console)
    assert report.err_console.stderr and not report.console.stderr


def test_stderr_messages_are_not_wrapped(monkeypatch):
    """A line per case and the results path stay one line whatever the width."""
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    err = make_console(stderr=True)
    path = "/tmp/" + "a-long-folder/" * 10 + "20261202T140122Z-2157b79bb303.json"
    err.print(f"results: {path}", markup=False, highlight=False)
    assert sys.stderr.getvalue() == f"results: {path}\n"


def test_a_wider_console_for_piped_tables_that_need_it(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert make_console(piped_width=200).width == 200
    monkeypatch.setenv("COLUMNS", "90")
    assert make_console(piped_width=200).width == 90


# ---- inspect's table --------------------------------------------------------------------

def test_resources_table_keeps_kernel_names_and_numbers_whole():
    from harness.compile.occupancy import Occupancy
    from harness.compile.resources import Resources

    names = [f"smem_ready_{g}_indirect_yield_storm_root" for g in ("thread", "warp", "block")]
    rows = [(name, Resources(name, "entry", 51, 0, 0, 8, 1088, 1), 128,
             Occupancy(9, 36, 64, 36 / 64, "registers"), 232448) for name in names]
    table = report.resources_table("smem_ready x yield_storm on sm_90", rows)
    narrow = body_rows(render(table, 100))
    assert "".join(row[0] for row in narrow) == "".join(names)  # broken after "_", not cut
    assert all("…" not in c for row in narrow for c in row)
    assert [row[5] for row in narrow if row[1]] == ["232448"] * 3
    wide = body_rows(render(table, 160))
    assert [row[0] for row in wide] == names  # one line each when there is room
