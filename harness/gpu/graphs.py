"""CUDA graphs by stream capture (cuda.core ``GraphBuilder``), including WHILE loops.

``capture_graph(rt, fn)``: every :meth:`Runtime.launch` made inside ``fn()`` is
recorded into a graph instead of running.  ``while_graph(rt, body_fn)``: the
launches made inside ``body_fn(handle)`` become the body of a WHILE conditional
node; a body kernel ends the loop with ``cudaGraphSetConditional(handle, 0)``
(declared in PTX as ``.extern .func cudaGraphSetConditional(.param .b64, .param .b32)``,
the handle passed as a plain u64 kernel argument).

With cuda.core 1.2 the sequence is::

    gb = stream.create_graph_builder().begin_building()
    cond = gb.create_condition(default_value=1)   # reset to 1 at every launch
    body = gb.while_loop(cond)                    # adds the node, returns a builder
    body.begin_building(); launch(body, ...); body.end_building()
    graph = gb.end_building().complete()

Captured launches reference device memory without owning it; an
:class:`ExecGraph` keeps the captured DeviceArrays and kernels alive.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.gpu.errors import CoreErrors, GpuError
from harness.gpu.kernel import KernelHandle

__all__ = ["ExecGraph", "capture_graph", "while_graph"]

# ``Runtime`` below is an annotation only (a string, by ``from __future__ import annotations``):
# this module sits below harness.gpu.runtime and does not import it.


class ExecGraph:
    """An executable (instantiated and uploaded) graph; launch it with ``rt.launch_graph(g)``."""

    def __init__(self, graph: Any, keepalive: list[Any], kind: str, nodes: int) -> None:
        #: the cuda.core ``Graph``
        self.graph = graph
        self.kind = kind
        #: kernel launches recorded (in the WHILE body, for a while graph)
        self.nodes = nodes
        self._keepalive = keepalive

    def __repr__(self) -> str:
        return f"ExecGraph({self.kind}, {self.nodes} launch(es))"

    def launch(self, stream: Any, rt: Runtime | None = None) -> None:
        """Launch on a cuda.core stream (prefer ``rt.launch_graph``)."""
        if self.graph is None:
            raise GpuError("launch of a closed graph")
        with CoreErrors(rt, f"launching a {self.kind} graph"):
            self.graph.launch(stream)

    def close(self) -> None:
        """Destroy the executable graph and drop what it kept alive."""
        g, self.graph = self.graph, None
        self._keepalive = []
        if g is not None:
            g.close()


def _abandon(*builders: Any) -> None:
    for b in builders:
        if b is None:
            continue
        try:
            b.close()  # ends a capture still in progress
        except Exception:
            pass


def _finish(rt: Runtime, gb: Any, keep: list[Any], kind: str, nodes: int) -> ExecGraph:
    with CoreErrors(rt, f"instantiating the {kind} graph"):
        gb.end_building()
        graph = gb.complete()
        graph.upload(rt.stream)
    _abandon(gb)
    eg = ExecGraph(graph, keep, kind, nodes)
    rt.track_graph(eg)
    return eg


def _count(keep: list[Any]) -> int:
    return sum(1 for k in keep if isinstance(k, KernelHandle))


def capture_graph(rt: Runtime, fn: Callable[[], Any]) -> ExecGraph:
    """Record the launches ``fn()`` makes through ``rt.launch`` into an executable graph."""
    rt.check_open()
    if rt.capturing:
        raise GpuError("graphs cannot be captured inside another capture")
    keep: list[Any] = []
    with CoreErrors(rt, "starting graph capture"):
        gb = rt.capture_stream().create_graph_builder()
        gb.begin_building()
    rt.push_capture(gb, keep)
    try:
        fn()
    except BaseException:
        rt.pop_capture()
        _abandon(gb)
        raise
    rt.pop_capture()
    nodes = _count(keep)
    if nodes == 0:
        _abandon(gb)
        raise GpuError("capture_graph: the function launched no kernel")
    return _finish(rt, gb, keep, "captured", nodes)


def while_graph(rt: Runtime, body_fn: Callable[[int], Any], *, default: int = 1) -> ExecGraph:
    """A graph holding one WHILE node whose body is what ``body_fn(handle)`` launches.

    ``handle`` is the conditional handle as an int (pass it to the kernel as a u64).
    """
    rt.check_open()
    if rt.capturing:
        raise GpuError("graphs cannot be captured inside another capture")
    keep: list[Any] = []
    body = None
    with CoreErrors(rt, "starting graph capture"):
        gb = rt.capture_stream().create_graph_builder()
        gb.begin_building()
    try:
        with CoreErrors(rt, "creating the WHILE conditional node (needs driver >= 12.3)"):
            cond = gb.create_condition(default_value=int(default))
            body = gb.while_loop(cond)
            body.begin_building()
            handle = int(cond.handle)
        keep.append(cond)
        rt.push_capture(body, keep)
        try:
            body_fn(handle)
        finally:
            rt.pop_capture()
        nodes = _count(keep)
        if nodes == 0:
            raise GpuError("while_graph: the body launched no kernel")
        with CoreErrors(rt, "ending the WHILE body capture"):
            body.end_building()
    except BaseException:
        _abandon(body, gb)
        raise
    eg = _finish(rt, gb, keep, "while", nodes)
    keep.append(body)  # the body builder's graph belongs to the parent; keep the view alive anyway
    return eg
