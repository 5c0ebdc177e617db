"""``measure()``: the timing protocol of architecture §7 on a GPU (NVBench's cold measurement, in Python).

One sample, in stream order::

    [L2 flush: memset of an L2-sized buffer, then wait]      (cold only)
    blocking kernel  ── holds the stream until everything below is enqueued
    clock probe      ── %globaltimer / %clock64 on SM 0
    start event
    launch()  or  a captured graph of N launch()es          (N = graph_batch)
    stop event
    clock probe
    (host releases the blocking kernel, waits for the stop event)

The sample's time is stop - start (divided by N); its SM clock is SM 0's cycles over
the nanoseconds between the probes. Samples under 75% of the max clock are rejected;
sampling stops when the noise is under ``max_noise`` (see :mod:`harness.measure.protocol`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from harness.measure.blocker import Blocker
from harness.measure.clock import ClockProbe, max_sm_clock_mhz
from harness.measure.errors import MeasureError
from harness.measure.kernels import BLOCK_KERNEL, PROBE_KERNEL, build_module
from harness.measure.protocol import Sample, Stats, TimingConfig, choose_batch, run_protocol

if TYPE_CHECKING:  # pragma: no cover
    from harness.gpu import ExecGraph, KernelHandle, Runtime

__all__ = ["measure", "measure_kernel", "l2_cache_bytes"]

#: blocked samples timed (and not kept) to decide whether to batch
_ESTIMATE_SAMPLES = 3


def l2_cache_bytes(rt: Runtime) -> int:
    """The device's L2 size in bytes (``CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE``; 50 MiB on an H100)."""
    from harness.gpu import driver as drv

    attr = drv.driver_module().CUdevice_attribute.CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE
    return int(drv.call("cuDeviceGetAttribute", attr, rt.cu_device))


class _Rig:
    """The helper kernels and buffers of one :func:`measure` call."""

    def __init__(self, rt: Runtime, config: TimingConfig) -> None:
        from harness.compile import compile_ptx

        self.rt, self.config = rt, config
        self.notes: list[str] = []
        self.probe: ClockProbe | None = None
        self.blocker: Blocker | None = None
        self.l2: Any = None
        self.graph: ExecGraph | None = None
        self.timer = rt.timer()
        try:
            compiled = compile_ptx(build_module(rt.arch).to_ptx(), rt.arch)
            module = rt.load(compiled.cubin, name="pollbench_measure")
            self.probe = ClockProbe(rt, module.kernel(PROBE_KERNEL), config.probe_spin_ns)
            if config.blocking:
                self.blocker = Blocker(rt, module.kernel(BLOCK_KERNEL), config.block_timeout_s)
            if config.cold:
                nbytes = l2_cache_bytes(rt)
                if nbytes > 0:
                    self.l2 = rt.alloc(nbytes)
                else:
                    self.notes.append("the device reports no L2 cache: cold samples are not flushed")
            self._prime()
        except BaseException:
            self.close()
            raise

    def _prime(self) -> None:
        """Run each helper kernel once unblocked: lazy module loading must not happen behind the blocker."""
        if self.blocker is not None:
            self.blocker.block()
            self.blocker.unblock()
        assert self.probe is not None
        self.probe.before()
        self.probe.after()
        self.rt.synchronize()
        self.probe.read()

    def sample(self, run: Callable[[], None], batch: int) -> Sample:
        """Time ``run()`` once (the protocol's one sample); ms per launch and the SM clock."""
        rt, probe, blocker = self.rt, self.probe, self.blocker
        assert probe is not None
        if self.l2 is not None:
            self.l2.fill_bytes(0)
            rt.synchronize()
        if blocker is not None:
            blocker.block()
        try:
            probe.before()
            self.timer.start()
            run()
            self.timer.stop()
            probe.after()
        finally:
            if blocker is not None:
                blocker.unblock()
        ms = self.timer.elapsed_ms()
        mhz = probe.read()
        if blocker is not None:
            blocker.check()
        return Sample(ms / batch, mhz)

    def capture(self, launch: Callable[[], None], batch: int) -> ExecGraph:
        """A graph of ``batch`` calls of ``launch`` (its ``rt.launch`` calls), warmed up once."""

        def body() -> None:
            for _ in range(batch):
                launch()

        graph = self.rt.capture_graph(body)
        self.graph = graph
        self.rt.launch_graph(graph)
        self.rt.synchronize()
        return graph

    def close(self) -> None:
        """Wait for the stream, then free everything (nothing is waited for on a wedged runtime)."""
        rt = self.rt
        if rt.closed or rt.wedged:
            return
        try:
            rt.synchronize()
        except Exception:
            return
        for free in (
            self.timer.close,
            getattr(self.graph, "close", None),
            getattr(self.probe, "close", None),
            getattr(self.blocker, "free", None),
            getattr(self.l2, "free", None),
        ):
            if free is not None:
                try:
                    free()
                except Exception:
                    pass


def measure(launch: Callable[[], None], rt: Runtime, config: TimingConfig | None = None) -> Stats:
    """Time ``launch`` on ``rt`` with the protocol of architecture §7 and return per-launch :class:`Stats`.

    ``launch()`` must only *enqueue* work on ``rt.stream`` — through ``rt.launch`` — and not
    wait for it (with ``TimingConfig(blocking=True)``, the default, a launch that waits
    raises :class:`~harness.measure.errors.StreamBlockTimeout` after ``block_timeout_s``). Graph batching
    (automatic for launches under 50 µs, or ``batch=N``) captures what ``launch()`` does
    through ``rt.launch``; a launch function that also copies or sets memory must be timed
    with ``batch=1``. Warm-up launches run first and are waited for one by one.
    """
    config = config or TimingConfig()
    if rt.capturing:
        raise MeasureError("measure() cannot run while a graph is being captured")
    rig = _Rig(rt, config)
    try:
        notes = rig.notes
        max_mhz = config.max_clock_mhz
        if max_mhz is None:
            max_mhz, source = max_sm_clock_mhz(rt)
            if max_mhz is None:
                notes.append(source)
        for _ in range(max(1, config.warmup)):
            launch()
            rt.synchronize()
        batch = 1
        if config.batch is None and not config.cold:
            est = sorted(rig.sample(launch, 1).ms for _ in range(_ESTIMATE_SAMPLES))[_ESTIMATE_SAMPLES // 2]
            batch = choose_batch(est, config)
        elif config.batch is not None:
            batch = config.batch
        run: Callable[[], None] = launch
        if batch > 1:
            try:
                graph = rig.capture(launch, batch)
            except Exception as exc:  # GpuError: nothing captured, or capture unsupported
                if config.batch is not None:
                    raise MeasureError(f"cannot batch {batch} launches in a graph: {exc}") from exc
                notes.append(f"graph capture failed ({exc}); timed single launches")
                batch = 1
            else:
                run = lambda: rt.launch_graph(graph)  # noqa: E731
        stats = run_protocol(lambda: rig.sample(run, batch), config, max_clock_mhz=max_mhz,
                             graph_batch=batch, notes=notes)
        rt.check_stream("after timing")
        return stats
    finally:
        rig.close()


def measure_kernel(
    rt: Runtime,
    kernel: KernelHandle,
    grid: Any,
    block: Any,
    *args: Any,
    shared: int = 0,
    config: TimingConfig | None = None,
) -> Stats:
    """:func:`measure` of ``rt.launch(kernel, grid, block, *args, shared=shared)``."""
    return measure(lambda: rt.launch(kernel, grid, block, *args, shared=shared), rt, config)
