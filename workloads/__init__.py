"""Workloads, registered by name (architecture §6)."""

from harness.errors import PollbenchError
from workloads.base import Workload
from workloads.fan_out import FanOutWorkload
from workloads.ping_pong import PingPongWorkload
from workloads.seed_demo import SeedDemoWorkload
from workloads.yield_storm import YieldStormWorkload

WORKLOADS: dict = {w.name: w for w in (SeedDemoWorkload(), YieldStormWorkload(), PingPongWorkload(),
                                         FanOutWorkload())}


def get_workload(name: str) -> Workload:
    """The workload called ``name``, or a one-line error listing the known ones."""
    try:
        return WORKLOADS[name]
    except KeyError:
        raise PollbenchError(f"unknown workload {name!r} (known: {', '.join(WORKLOADS)})") from None


__all__ = ["WORKLOADS", "Workload", "get_workload"]
