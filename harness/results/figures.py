"""The figures a case record yields, by name, each with its unit: what asv tracks over
commits and what ``pollbench plot`` draws. One table, so both read a record the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


def _timing(record: dict, key: str = "timing") -> dict:
    return record.get(key) or {}


def _ratio(record: dict, stat: str = "median_ms") -> float | None:
    t, b = _timing(record).get(stat), _timing(record, "baseline_timing").get("median_ms")
    return t / b if t is not None and b else None


def _registers(record: dict):
    res = record.get("resources") or {}  # the driver's figure, else ptxas's
    driver = res.get("registers_driver")
    return driver if driver is not None else res.get("registers")


@dataclass(frozen=True)
class Figure:
    """One number of a case: ``get(record)`` (None where the record has none)."""

    name: str
    unit: str
    get: Callable[[dict], float | None]
    what: str


FIGURES = {f.name: f for f in (
    Figure("time_ms", "ms", lambda r: _timing(r).get("median_ms"),
           "median time of one run over all tasks"),
    Figure("baseline_ms", "ms", lambda r: _timing(r, "baseline_timing").get("median_ms"),
           "median time of the workload's baseline kernel (no executor)"),
    Figure("ratio", "x baseline", _ratio, "median time / the baseline's median time"),
    Figure("bookkeeping_share", "fraction of cycles",
           lambda r: (r.get("counters") or {}).get("bookkeeping_share"),
           "share of the run loop's cycles spent outside polls (instrumented build)"),
    Figure("registers", "registers/thread", _registers,
           "registers per thread of the executor's kernel (driver's figure)"),
    Figure("achieved_occupancy", "fraction of warps",
           lambda r: (r.get("counters") or {}).get("achieved_occupancy"),
           "resident warps / the SM's maximum, over the run (instrumented build)"),
    Figure("energy_per_task", "J/task",
           lambda r: (r.get("nvml") or {}).get("energy_per_task_j"),
           "board energy over the timed runs per task (NVML)"),
)}


def figure(record: dict, name: str) -> float | None:
    """The figure ``name`` (a key of ``FIGURES``) of one case record."""
    return FIGURES[name].get(record)


def ratio_spread(record: dict) -> tuple[float, float] | None:
    """The ratio to the baseline at the run's first and third quartile times (the baseline
    at its median): the spread of the measurement, for error bars."""
    q1, q3 = _ratio(record, "q1_ms"), _ratio(record, "q3_ms")
    return (q1, q3) if q1 is not None and q3 is not None else None
