"""asv benchmarks: every executor x workload, in each executor's dispatch modes and worker
granularities, tracked over the project's history (README: "History with asv").

One class per executor (``Embassy.track_ratio(workload, dispatch, granularity)``); every
class tracks the same figures (``harness.results.figures.FIGURES``: median time, ratio to
the workload's baseline, bookkeeping share, registers, achieved occupancy, energy per task).

Every class takes its records from one ``setup_cache`` function, so asv runs it once per
``asv run`` (its cache key is the function's place in this file): all cases, each in its own
process as ``pollbench run`` runs them (the next case builds and links while one runs; the
compile cache shares cubins across commits whose PTX is the same). A ``track_*`` reads a
record; nothing is measured twice. Without a GPU, ``setup_cache`` returns None and every
``setup`` raises ``NotImplementedError``, so asv skips cleanly.

Environment variables narrow a run (for trying the recipe): ``POLLBENCH_ASV_BACKEND``
(``emu`` runs the CPU emulator: not GPU figures), ``POLLBENCH_ASV_EXECUTORS`` and
``POLLBENCH_ASV_WORKLOADS`` (comma-separated names), ``POLLBENCH_ASV_NTASKS``. The history
covers the default (small) workloads: the big ones' cases take seconds each.
"""

from __future__ import annotations

import math
import os

from executors import EXECUTORS
from harness.results.figures import FIGURES
from workloads import DEFAULT_WORKLOADS

NTASKS = 1 << 20
CASE_TIMEOUT_S = 300.0


def _names(var: str, known) -> list:
    chosen = [n for n in os.environ.get(var, "").split(",") if n]
    return chosen or list(known)


def all_cases():
    """Every case's record by label (``executor/workload/dispatch/granularity``), or None
    when there is nothing to run them on."""
    from harness.cases import case_specs
    from harness.gpu import gpu_available
    from harness.orchestrate import run_cases, warm_case
    from harness.results import spec_label

    backend = os.environ.get("POLLBENCH_ASV_BACKEND", "gpu")
    if backend == "gpu" and not gpu_available():
        return None
    ntasks = int(os.environ.get("POLLBENCH_ASV_NTASKS", NTASKS if backend == "gpu" else 64))
    specs = case_specs(_names("POLLBENCH_ASV_EXECUTORS", EXECUTORS),
                       _names("POLLBENCH_ASV_WORKLOADS", DEFAULT_WORKLOADS), ntasks)
    options = {"backend": backend, "device": 0, "repeats": None, "timing": None}
    records = run_cases(specs, options, timeout_s=CASE_TIMEOUT_S, warm_fn=warm_case)
    return {spec_label(r["spec"]): r for r in records}


all_cases.timeout = 1800  # every case of a commit: ~4 minutes on an H200


def _track(name: str):
    fig = FIGURES[name]

    def track(self, cache, workload, dispatch, granularity):
        value = fig.get(self.record)
        return math.nan if value is None else float(value)

    track.__name__ = f"track_{name}"
    track.__doc__ = fig.what
    track.unit = fig.unit
    return track


class _ExecutorCases:
    """The figures of one executor's cases (subclasses name the executor)."""

    executor = "abstract"
    param_names = ["workload", "dispatch", "granularity"]
    timeout = 60  # a track_* only reads a record
    setup_cache = staticmethod(all_cases)

    def setup(self, cache, workload, dispatch, granularity):
        if cache is None:
            raise NotImplementedError("no GPU: pollbench's figures are device measurements")
        label = f"{self.executor}/{workload}/{dispatch}/{granularity}"
        record = cache.get(label)
        if record is None:
            raise NotImplementedError(f"{label} was not run (POLLBENCH_ASV_* narrowed the run)")
        if record["status"] == "skip":
            raise NotImplementedError(record.get("message") or "skipped")
        if record["status"] != "pass":
            raise RuntimeError(f"{label}: {record['status']}: {record.get('message')}")
        self.record = record


for _name in FIGURES:
    setattr(_ExecutorCases, f"track_{_name}", _track(_name))


def _executor_class(ex):
    return type("".join(p.capitalize() for p in ex.name.split("_")), (_ExecutorCases,), {
        "__doc__": f"{ex.name}: {ex.summary}",
        "executor": ex.name,
        "params": (list(DEFAULT_WORKLOADS), list(ex.dispatch_modes), list(ex.granularities)),
        "__module__": __name__,
    })


for _ex in EXECUTORS.values():
    _cls = _executor_class(_ex)
    globals()[_cls.__name__] = _cls
