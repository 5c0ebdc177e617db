"""``pollbench plot`` and ``pollbench compare --plot``: PNG pictures of results documents.

matplotlib is an optional extra (``pip install '.[plot]'``); without it every function here
raises one ``PollbenchError`` line saying so. Figures use matplotlib's object API (no pyplot
state) and are written under a temporary name, then renamed: a picture is whole or absent.

One figure per file, named for what it shows:
- ``<run>-ratio.png``: each case's median time relative to its workload's baseline (log
  scale), one panel per workload, error bars from the first to the third quartile;
- ``<run>-overhead.png``: time over the baseline (top) and the bookkeeping share of the run
  loop's cycles (bottom) against worker granularity, one line per executor and dispatch mode;
- ``<run>-registers-occupancy.png``: registers per thread against achieved occupancy, one
  point per case;
- ``<sweep>-backoff.png`` (from ``pollbench sweep --json``): wake-to-poll latency against the
  share of a co-resident compute kernel's throughput left, one point per sleep setting;
- ``compare --plot``: B/A per case with the interval the verdict used.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.errors import PollbenchError
from harness.results.figures import figure, ratio_spread

GRANULARITIES = ("thread", "warp", "block")
MARKERS = {"inline": "D", "direct": "o", "indirect": "^"}
VERDICT_COLORS = {"faster": "tab:green", "slower": "tab:red"}


def _figure(width: float, height: float):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise PollbenchError("plots need matplotlib: pip install 'pollbench[plot]' "
                             "(or pip install matplotlib)") from None
    return Figure(figsize=(width, height), layout="constrained")


def _save(fig, path: Path) -> Path:
    """Write ``fig`` as a PNG at ``path``, whole or not at all."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fig.savefig(tmp, format="png", dpi=120)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _colors(names) -> dict:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {n: cmap(i % 10) for i, n in enumerate(names)}


def _passed(doc: dict) -> list:
    return [r for r in doc["cases"] if r["status"] == "pass"]


def _title(doc: dict) -> str:
    env = doc.get("environment") or {}
    gpu = (env.get("gpu") or {}).get("name") or env.get("backend", "?")
    sha = ((env.get("pollbench") or {}).get("git_sha") or "")[:7]
    return f"{gpu}, pollbench {sha}".strip(", ")


def _timed(doc: dict, what: str) -> list:
    rows = [r for r in _passed(doc) if figure(r, "ratio") is not None]
    if not rows:
        raise PollbenchError(f"{what} has no timed case that passed (an emulator run has no "
                             f"GPU times to plot)")
    return rows


def ratio_figure(doc: dict, what: str = "the results"):
    """Each case's time / its baseline's, log scale, one panel per workload."""
    rows = _timed(doc, what)
    workloads = list(dict.fromkeys(r["spec"]["workload"] for r in rows))
    executors = list(dict.fromkeys(r["spec"]["executor"] for r in rows))
    colors = _colors(GRANULARITIES)
    fig = _figure(3.2 * len(workloads) + 1, 4.2)
    axes = fig.subplots(1, len(workloads), sharey=True, squeeze=False)[0]
    for ax, wl in zip(axes, workloads):
        for r in (r for r in rows if r["spec"]["workload"] == wl):
            s = r["spec"]
            x = executors.index(s["executor"]) + 0.12 * (GRANULARITIES.index(s["granularity"]) - 1) \
                + 0.04 * (list(MARKERS).index(s["dispatch"]) - 1)
            y = figure(r, "ratio")
            spread = ratio_spread(r)
            yerr = [[y - spread[0]], [spread[1] - y]] if spread else None
            ax.errorbar([x], [y], yerr=yerr, fmt=MARKERS[s["dispatch"]],
                        color=colors[s["granularity"]], ms=5, capsize=2)
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set_xticks(range(len(executors)), executors, rotation=30, ha="right")
        ax.set_title(wl)
    axes[0].set_ylabel("median time / baseline's (log scale)")
    _legend(fig, colors)
    fig.suptitle(f"Time relative to the workload's baseline kernel — {_title(doc)}")
    return fig


def _legend(fig, colors: dict) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, marker="s", ls="", label=g) for g, c in colors.items()]
    handles += [Line2D([], [], color="black", marker=m, ls="", label=d) for d, m in MARKERS.items()]
    fig.legend(handles=handles, loc="outside right upper", title="granularity / dispatch",
               fontsize="small")


def overhead_figure(doc: dict, what: str = "the results"):
    """Time over the baseline and bookkeeping share against worker granularity, one line per
    executor and dispatch mode, one column per workload."""
    rows = _timed(doc, what)
    workloads = list(dict.fromkeys(r["spec"]["workload"] for r in rows))
    executors = list(dict.fromkeys(r["spec"]["executor"] for r in rows))
    colors = _colors(executors)
    fig = _figure(3.2 * len(workloads) + 1.5, 6.5)
    axes = fig.subplots(2, len(workloads), sharex=True, squeeze=False)
    for col, wl in enumerate(workloads):
        top, bottom = axes[0][col], axes[1][col]
        lines = {}
        for r in (r for r in rows if r["spec"]["workload"] == wl):
            s = r["spec"]
            lines.setdefault((s["executor"], s["dispatch"]), []).append(r)
        for (ex, dispatch), rs in lines.items():
            rs.sort(key=lambda r: GRANULARITIES.index(r["spec"]["granularity"]))
            xs = [GRANULARITIES.index(r["spec"]["granularity"]) for r in rs]
            style = dict(color=colors[ex], marker=MARKERS[dispatch], ms=4,
                         label=f"{ex} {dispatch}")
            top.plot(xs, [figure(r, "ratio") for r in rs], **style)
            shares = [figure(r, "bookkeeping_share") for r in rs]
            if any(v is not None for v in shares):
                bottom.plot(xs, [float("nan") if v is None else v for v in shares], **style)
        top.set_yscale("log")
        top.axhline(1.0, color="grey", lw=0.8, ls="--")
        top.set_title(wl)
        bottom.set_ylim(0, 1)
        bottom.set_xticks(range(len(GRANULARITIES)), GRANULARITIES)
        bottom.set_xlabel("worker granularity")
    axes[0][0].set_ylabel("median time / baseline's (log)")
    axes[1][0].set_ylabel("bookkeeping share of loop cycles")
    handles, labels = [], []
    for ax in axes.flat:
        for h, lbl in zip(*ax.get_legend_handles_labels()):
            if lbl not in labels:
                handles.append(h)
                labels.append(lbl)
    fig.legend(handles, labels, loc="outside right upper", title="executor, dispatch",
               fontsize="small")
    fig.suptitle(f"Overhead against granularity and dispatch mode — {_title(doc)}")
    return fig


def registers_figure(doc: dict, what: str = "the results"):
    """Registers per thread against achieved occupancy, one point per case."""
    rows = [r for r in _passed(doc) if figure(r, "registers") is not None
            and figure(r, "achieved_occupancy") is not None]
    if not rows:
        raise PollbenchError(f"{what} has no case with both registers and achieved occupancy")
    executors = list(dict.fromkeys(r["spec"]["executor"] for r in rows))
    colors = _colors(executors)
    fig = _figure(7.5, 5)
    ax = fig.subplots()
    for ex in executors:
        rs = [r for r in rows if r["spec"]["executor"] == ex]
        ax.scatter([figure(r, "registers") for r in rs],
                   [100 * figure(r, "achieved_occupancy") for r in rs],
                   color=colors[ex], label=ex, s=22, alpha=0.8)
    ax.set_xlabel("registers per thread (executor's kernel)")
    ax.set_ylabel("achieved occupancy (% of the SM's warps)")
    ax.set_ylim(0, 105)
    ax.legend(title="executor", fontsize="small")
    ax.set_title(f"Registers against achieved occupancy, one point per case\n{_title(doc)}")
    return fig


def sweep_figure(rows: list):
    """Backoff sweep: wake-to-poll latency beside a co-resident compute kernel against the
    share of that kernel's solo throughput left, one point per setting."""
    rows = [r for r in rows if r.get("latency_ns_beside") and r.get("compute_share") is not None]
    if not rows:
        raise PollbenchError("the sweep file has no row with a latency and a compute share")
    fig = _figure(7.5, 5)
    ax = fig.subplots()
    for r in rows:
        spin = r.get("min_ns") is None
        ax.scatter([100 * r["compute_share"]], [r["latency_ns_beside"] / 1e3],
                   color="tab:red" if spin else "tab:blue", marker="x" if spin else "o")
        label = r["executor"] if spin else f"{r['min_ns']}..{r['max_ns']} ns"
        ax.annotate(label, (100 * r["compute_share"], r["latency_ns_beside"] / 1e3),
                    fontsize="x-small", xytext=(3, 3), textcoords="offset points")
    ax.set_yscale("log")
    ax.set_xlabel("co-resident compute kernel's throughput left (% of its solo FMA/s)")
    ax.set_ylabel("wake-to-poll latency beside it (µs, log)")
    ax.set_title("backoff's sleep settings (o) and spinning embassy (x)")
    return fig


def compare_figure(cmp, label_a: str, label_b: str):
    """``pollbench compare --plot``: B/A per case, with the interval the verdict used
    (B's interval over A's), coloured by verdict."""
    rows = [r for r in cmp.rows if r.ratio is not None]
    if not rows:
        raise PollbenchError("no case has a ratio to plot (nothing in common, or no timings)")
    fig = _figure(8, 0.22 * len(rows) + 1.6)
    ax = fig.subplots()
    for i, r in enumerate(rows):
        color = VERDICT_COLORS.get(r.verdict, "grey")
        xerr = None
        if r.a_interval and r.b_interval and min(r.a_interval) > 0:
            lo = r.b_interval[0] / r.a_interval[1]
            hi = r.b_interval[1] / r.a_interval[0]
            xerr = [[max(r.ratio - lo, 0)], [max(hi - r.ratio, 0)]]
        ax.errorbar([r.ratio], [i], xerr=xerr, fmt="o", color=color, ms=3, capsize=2)
    ax.axvline(1.0, color="black", lw=0.8)
    ax.set_xscale("log")
    ax.set_yticks(range(len(rows)), [r.label for r in rows], fontsize="x-small")
    ax.invert_yaxis()
    ax.set_xlabel(f"B / A ({rows[0].metric or 'value'}; log; green faster, red slower, "
                  f"grey within noise)")
    ax.set_title(f"A: {label_a}\nB: {label_b}", fontsize="small")
    return fig


def plot_results(paths, out_dir, sweep=None) -> list:
    """Every picture of each results file in ``paths`` (and of a sweep file), written to
    ``out_dir``; the paths written."""
    import json

    from harness.results import load

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for p in paths:
        doc = load(p)
        stem = Path(p).stem
        for name, make in (("ratio", ratio_figure), ("overhead", overhead_figure),
                           ("registers-occupancy", registers_figure)):
            written.append(_save(make(doc, str(p)), out / f"{stem}-{name}.png"))
    if sweep:
        try:
            rows = json.loads(Path(sweep).read_text())
        except (OSError, ValueError) as e:
            raise PollbenchError(f"{sweep}: not a sweep file from pollbench sweep --json ({e})") \
                from None
        if not isinstance(rows, list):
            raise PollbenchError(f"{sweep}: not a sweep file from pollbench sweep --json")
        written.append(_save(sweep_figure(rows), out / f"{Path(sweep).stem}-backoff.png"))
    return written


def plot_compare(cmp, doc_a: dict, doc_b: dict, path) -> Path:
    """``compare --plot PATH``: the ratios picture."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _save(compare_figure(cmp, _title(doc_a), _title(doc_b)), path)


__all__ = ["plot_results", "plot_compare", "ratio_figure", "overhead_figure",
           "registers_figure", "sweep_figure", "compare_figure"]
