"""Workloads, registered by name (architecture §6).

The small workloads run by default; the big ones (``pipeline_k<K>``, one per FMA count in
``PIPELINE_K``; ``matmul_<shape>``, one per shape in ``SHAPES``; ``irregular`` and
``idle_wait``) when named, the pipelines and matmuls singly or by family (``--workload
pipeline``, ``--workload matmul``).
"""

from harness.errors import PollbenchError
from workloads.base import Workload
from workloads.fan_out import FanOutWorkload
from workloads.idle_wait import IdleWaitWorkload
from workloads.irregular import IrregularWorkload
from workloads.matmul import SHAPES, MatmulWorkload
from workloads.ping_pong import PingPongWorkload
from workloads.pipeline import PIPELINE_K, PipelineWorkload
from workloads.seed_demo import SeedDemoWorkload
from workloads.yield_storm import YieldStormWorkload

_SMALL = (SeedDemoWorkload(), YieldStormWorkload(), PingPongWorkload(), FanOutWorkload())
_PIPELINES = tuple(PipelineWorkload(k) for k in PIPELINE_K)
_MATMULS = tuple(MatmulWorkload(name) for name in SHAPES)
_BIG = (*_PIPELINES, *_MATMULS, IrregularWorkload(), IdleWaitWorkload())

WORKLOADS: dict = {w.name: w for w in (*_SMALL, *_BIG)}
DEFAULT_WORKLOADS = tuple(w.name for w in _SMALL)  # what a run without --workload runs
FAMILIES = {"pipeline": tuple(w.name for w in _PIPELINES),
            "matmul": tuple(w.name for w in _MATMULS)}


def get_workload(name: str) -> Workload:
    """The workload called ``name``, or a one-line error listing the known ones."""
    try:
        return WORKLOADS[name]
    except KeyError:
        raise PollbenchError(f"unknown workload {name!r} (known: {', '.join(WORKLOADS)})") from None


def workload_names(names=None) -> list:
    """``names`` with each family replaced by its members, in order, once each; the default
    set for None or empty; a one-line error for an unknown name."""
    if not names:
        return list(DEFAULT_WORKLOADS)
    out = []
    for name in names:
        for member in FAMILIES.get(name, (name,)):
            get_workload(member)
            if member not in out:
                out.append(member)
    return out


__all__ = ["DEFAULT_WORKLOADS", "FAMILIES", "WORKLOADS", "Workload", "get_workload", "workload_names"]
