"""Device executors, registered by name (architecture §5)."""

from executors.base import DISPATCH_MODES, Executor, ExecutorKernel
from executors.backoff import Backoff
from executors.block_on import BlockOn
from executors.embassy import Embassy
from executors.graph import Graph
from executors.persistent import Persistent
from executors.smem_ready import SmemReady
from harness.errors import PollbenchError

EXECUTORS: dict = {e.name: e for e in (BlockOn(), Persistent(), Embassy(), Backoff(), SmemReady(),
                                        Graph())}


def get_executor(name: str) -> Executor:
    """The executor called ``name``, or a one-line error listing the known ones."""
    try:
        return EXECUTORS[name]
    except KeyError:
        raise PollbenchError(f"unknown executor {name!r} (known: {', '.join(EXECUTORS)})") from None


__all__ = ["EXECUTORS", "DISPATCH_MODES", "Executor", "ExecutorKernel", "get_executor"]
