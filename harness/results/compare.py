"""``pollbench compare A B``: cases matched by spec, B/A ratios, and a verdict only where
the two intervals do not overlap.

Intervals: where both records carry their samples (``timing.samples_ms``, at least 6 each)
the 95% distribution-free confidence interval of the median (order statistics of a
Binomial(n, 1/2)); otherwise the samples' range ``min_ms..max_ms``. Both sides always use
the same kind. Emulator documents (no timing) compare instructions per task, which are
deterministic: any difference is a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import exp, lgamma, log

from harness.results.records import spec_key, spec_label

SAME = "same (within noise)"


def median_ci(samples, confidence: float = 0.95):
    """``(lo, hi)``: a distribution-free ``confidence`` interval for the median of
    ``samples`` (order statistics x_(j), x_(n+1-j), the largest j with
    P(Binomial(n, 1/2) < j) <= (1 - confidence) / 2); None when n is too small (< 6 at 95%)."""
    xs = sorted(float(x) for x in samples)
    n = len(xs)
    tail, cdf, j = (1.0 - confidence) / 2, 0.0, 0
    # pmf in log space: comb(n, k) / 2**n in exact integers took seconds at n = 10^4
    log_norm = lgamma(n + 1) - n * log(2.0)
    for k in range(n + 1):
        cdf += exp(log_norm - lgamma(k + 1) - lgamma(n - k + 1))
        if cdf > tail:
            break
        j = k + 1  # P(B <= k) <= tail: x_(k+1) is still a valid lower bound
    if j < 1:
        return None
    return xs[j - 1], xs[n - j]


def interval(timing: dict, method: str):
    """``timing``'s interval by ``method`` (``"ci95"`` or ``"range"``), or None."""
    if method == "ci95":
        s = timing.get("samples_ms")
        return median_ci(s) if s and len(s) >= 6 else None
    lo, hi = timing.get("min_ms"), timing.get("max_ms")
    return (float(lo), float(hi)) if lo is not None and hi is not None else None


@dataclass
class Row:
    label: str
    metric: str  # "ms" | "instr/task" | ""
    a: float | None = None
    b: float | None = None
    ratio: float | None = None  # b / a
    verdict: str = ""
    method: str | None = None  # "ci95" | "range" | "exact" | None
    a_interval: tuple | None = None
    b_interval: tuple | None = None


@dataclass
class Comparison:
    rows: list = field(default_factory=list)
    only_a: list = field(default_factory=list)  # labels
    only_b: list = field(default_factory=list)


def _timed(a: dict, b: dict, row: Row) -> None:
    ta, tb = a["timing"], b["timing"]
    row.metric, row.a, row.b = "ms", ta["median_ms"], tb["median_ms"]
    row.ratio = row.b / row.a if row.a > 0 else None
    for method in ("ci95", "range"):
        ia, ib = interval(ta, method), interval(tb, method)
        if ia and ib:
            row.method, row.a_interval, row.b_interval = method, ia, ib
            break
    else:
        row.verdict = "n/a (no spread recorded)"
        return
    (alo, ahi), (blo, bhi) = row.a_interval, row.b_interval
    row.verdict = "faster" if bhi < alo else "slower" if blo > ahi else SAME


def _instructions(a: dict, b: dict, row: Row) -> None:
    row.metric, row.method = "instr/task", "exact"
    row.a = a["emulator"]["instructions_per_task"]
    row.b = b["emulator"]["instructions_per_task"]
    row.ratio = row.b / row.a if row.a else None
    if abs(row.b - row.a) <= 1e-9 * max(abs(row.a), 1.0):
        row.verdict = "same instructions"
    else:
        row.verdict = "fewer instructions" if row.b < row.a else "more instructions"


def _label(spec: dict, varying: set) -> str:
    extra = [f"{k}={spec[k]}" for k in sorted(varying) if k in spec]
    return spec_label(spec) + (f" [{' '.join(extra)}]" if extra else "")


def compare(doc_a: dict, doc_b: dict) -> Comparison:
    """Rows for the cases both documents have (in A's order), and those only one has."""
    a_cases = {spec_key(c["spec"]): c for c in doc_a["cases"]}
    b_cases = {spec_key(c["spec"]): c for c in doc_b["cases"]}
    specs = [c["spec"] for c in doc_a["cases"]] + [c["spec"] for c in doc_b["cases"]]
    keys = {k for s in specs for k in s if k not in ("executor", "workload", "dispatch",
                                                        "granularity")}
    varying = {k for k in keys if len({repr(s.get(k)) for s in specs}) > 1}
    out = Comparison()
    for key, a in a_cases.items():
        label = _label(a["spec"], varying)
        b = b_cases.get(key)
        if b is None:
            out.only_a.append(label)
            continue
        row = Row(label, "")
        if a["status"] != "pass" or b["status"] != "pass":
            row.verdict = f"n/a (A {a['status']}, B {b['status']})"
        elif a.get("timing") and b.get("timing"):
            _timed(a, b, row)
        elif (a.get("emulator") or {}).get("instructions_per_task") is not None and \
                (b.get("emulator") or {}).get("instructions_per_task") is not None:
            _instructions(a, b, row)
        else:
            row.verdict = "n/a (no common figure)"
        out.rows.append(row)
    out.only_b = [_label(c["spec"], varying) for k, c in b_cases.items() if k not in a_cases]
    return out
