"""Case records and the results document (schema v1; see results/README.md)."""

from __future__ import annotations

import dataclasses
import math

SCHEMA_VERSION = 1
STATUSES = ("pass", "fail", "timeout", "error", "skip")
SPEC_KEYS = ("executor", "workload", "dispatch", "granularity", "ntasks", "block", "seed")


def plain(obj):
    """``obj`` as plain JSON data: numpy scalars and arrays to Python numbers and lists,
    tuples to lists, dataclasses and objects with ``to_dict()`` to dicts, NaN and
    infinities to None (JSON has no NaN)."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if hasattr(obj, "to_dict"):
        return plain(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return plain(dataclasses.asdict(obj))
    if hasattr(obj, "tolist"):  # numpy scalar or array
        return plain(obj.tolist())
    raise TypeError(f"{type(obj).__name__} is not JSON data")


def one_line(text) -> str:
    """The first non-empty line of ``text`` (a message for ``message``)."""
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()
    return ""


def spec_dict(spec) -> dict:
    """A ``CaseSpec`` (or a dict) as the record's ``spec``."""
    d = dataclasses.asdict(spec) if dataclasses.is_dataclass(spec) else dict(spec)
    return plain(d)


def _timing(stats) -> dict | None:
    """A timing object from a ``harness.measure`` Stats (anything with ``to_dict()``) or a
    dict; None stays None."""
    if stats is None:
        return None
    d = plain(stats)
    for k in ("min_ms", "max_ms", "rel_stddev", "rejected"):
        d.setdefault(k, None)
    return d


def _legacy_timing(median_ms, samples) -> dict | None:
    """The run loop of harness/cases.py keeps only a median and a sample count."""
    if median_ms is None:
        return None
    return {"median_ms": float(median_ms), "min_ms": None, "max_ms": None, "rel_stddev": None,
            "samples": int(samples or 0), "rejected": None}


def _counters(c) -> dict | None:
    if c is None:
        return None
    d = plain(c)
    for k in ("bookkeeping_share", "polls_per_task", "achieved_occupancy"):
        d.setdefault(k, None)
    return d


def _nvml(n) -> dict | None:
    if n is None:
        return None
    d = plain(n)
    for k in ("sm_clock_mhz", "mem_clock_mhz", "power_w", "energy_j", "energy_per_task_j",
              "gpm_sm_occupancy_pct"):
        d.setdefault(k, None)
    return d


def base_record(spec, status: str, message: str | None = None, wall_s: float | None = None,
                extra: dict | None = None) -> dict:
    """A record with nothing measured: what a timeout, an error or a skip leaves."""
    if status not in STATUSES:
        raise ValueError(f"status {status!r} is not one of {STATUSES}")
    msg = one_line(message) if message is not None else None
    if status != "pass" and not msg:
        msg = status
    return {
        "spec": spec_dict(spec),
        "status": status,
        "message": msg if status != "pass" else None,
        "wall_s": None if wall_s is None else round(float(wall_s), 3),
        "check": None,
        "timing": None,
        "baseline_timing": None,
        "overhead": None,
        "resources": None,
        "counters": None,
        "nvml": None,
        "emulator": None,
        "metrics": {},
        "extra": plain(extra or {}),
    }


# CaseResult.extra keys that have a place of their own in the record
_PLACED = {"counters", "nvml", "metrics", "theoretical_occupancy", "occupancy_limiter",
           "registers_driver"}


def case_record(result, wall_s: float | None = None) -> dict:
    """The record of a ``harness.cases.CaseResult``.

    Measurements slot in from attributes when present, else from ``result.extra``:
    ``timing`` / ``baseline_timing`` (a harness.measure Stats, i.e. anything with
    ``to_dict()``, or a dict; without them the median-only ``time_ms`` / ``baseline_ms``),
    ``counters`` (harness.counters.summarise), ``nvml`` (the NVML sampler's summary).
    """
    extra = dict(getattr(result, "extra", None) or {})
    ok = bool(result.ok)
    message = None if ok else result.failure
    rec = base_record(result.spec, "pass" if ok else "fail", message, wall_s,
                      {k: v for k, v in extra.items() if k not in _PLACED})
    rec["check"] = {"executor": one_line(result.check),
                    "baseline": None if result.baseline_check is None
                    else one_line(result.baseline_check)}

    timing = getattr(result, "timing", None)
    base_timing = getattr(result, "baseline_timing", None)
    rec["timing"] = (_timing(timing) if timing is not None
                     else _legacy_timing(result.time_ms, result.samples))
    rec["baseline_timing"] = (_timing(base_timing) if base_timing is not None
                              else _legacy_timing(result.baseline_ms, result.samples))
    t, b = rec["timing"], rec["baseline_timing"]
    if t and b and b["median_ms"] > 0:
        rec["overhead"] = t["median_ms"] / b["median_ms"] - 1.0

    rec["resources"] = plain({
        "registers": result.registers,
        "registers_driver": extra.get("registers_driver"),
        "baseline_registers": result.baseline_registers,
        "spill_stores_bytes": result.spills,
        "stack_frame_bytes": result.stack_frame,
        "frame_bytes": result.frame_bytes,
        "theoretical_occupancy": extra.get("theoretical_occupancy"),
        "occupancy_limiter": extra.get("occupancy_limiter"),
    })
    rec["counters"] = _counters(getattr(result, "counters", None) or extra.get("counters"))
    rec["nvml"] = _nvml(getattr(result, "nvml", None) or extra.get("nvml"))
    if result.instructions_per_task is not None or result.baseline_instructions_per_task is not None:
        rec["emulator"] = plain({
            "instructions_per_task": result.instructions_per_task,
            "baseline_instructions_per_task": result.baseline_instructions_per_task,
        })
    rec["metrics"] = plain(extra.get("metrics") or {})
    return rec


def document(environment: dict, argv: list, config: dict, cases: list) -> dict:
    """A whole results document."""
    return {
        "schema_version": SCHEMA_VERSION,
        "environment": plain(environment),
        "run": {"argv": [str(a) for a in argv], "config": plain(config)},
        "cases": [plain(c) for c in cases],
    }


def spec_key(spec: dict) -> str:
    """What matches a case across documents: its whole spec, canonically."""
    import json

    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


def spec_label(spec: dict) -> str:
    return "/".join(str(spec.get(k, "?")) for k in ("executor", "workload", "dispatch",
                                                      "granularity"))
