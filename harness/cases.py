"""One case = one executor x workload x dispatch x granularity, built, checked against
numpy, timed against the workload's baseline kernel, on one backend."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from executors import get_executor
from executors.base import LaunchArgs
from harness.backend import Backend
from harness.errors import PollbenchError
from harness.gpu.errors import GpuError
from harness.ptx import Module
from workloads import get_workload


@dataclass
class CaseSpec:
    executor: str
    workload: str
    dispatch: str = "direct"
    granularity: str = "thread"
    ntasks: int = 1 << 20
    block: int = 128
    seed: int = 0

    @property
    def label(self) -> str:
        return f"{self.executor}/{self.workload}/{self.dispatch}/{self.granularity}"


@dataclass
class CaseResult:
    spec: CaseSpec
    backend: str
    check: str  # "pass" or why it failed
    baseline_check: str | None = None
    time_ms: float | None = None
    baseline_ms: float | None = None
    samples: int = 0
    registers: int | None = None
    baseline_registers: int | None = None
    spills: int | None = None
    stack_frame: int | None = None
    frame_bytes: int | None = None
    instructions_per_task: float | None = None
    baseline_instructions_per_task: float | None = None
    extra: dict = field(default_factory=dict)
    timing: object = None  # harness.measure.Stats of the executor's kernel (GPU)
    baseline_timing: object = None

    @property
    def ok(self) -> bool:
        return self.check == "pass" and self.baseline_check in (None, "pass")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["spec"] = asdict(self.spec)
        return d


class Unsupported(PollbenchError):
    """This executor cannot run this workload (a skip, not a failure)."""


def unsupported_reason(spec: CaseSpec) -> str | None:
    """Why the executor cannot run the workload (a skip), or None: known without building."""
    ex, wl = get_executor(spec.executor), get_workload(spec.workload)
    if wl.requires_spawn and not ex.supports_spawn:
        return f"{wl.name} spawns tasks and {ex.name} has no run queue to spawn onto"
    return None


def build_case(spec: CaseSpec, arch: str = "sm_90", instrument: bool = False):
    """The module for a case: the executor's kernel and the workload's baseline (and, with
    ``instrument``, the instrumented build of the executor's kernel, as ``kernel.instrumented``)."""
    reason = unsupported_reason(spec)
    if reason:
        raise Unsupported(reason)
    ex, wl = get_executor(spec.executor), get_workload(spec.workload)
    m = Module(arch=arch)
    types = wl.task_types()
    build = dict(tasks=tuple(types[1:]), spawn_capacity=wl.spawn_capacity(spec.ntasks))
    kernel = ex.build(m, types[0], spec.dispatch, spec.granularity, **build)
    kernel.instrumented = None
    if instrument:
        kernel.instrumented = ex.build(m, types[0], spec.dispatch, spec.granularity,
                                       instrument=True, **build)
    baseline = wl.build_baseline(m)
    return m, kernel, baseline, wl


def verdict(got: np.ndarray, want: np.ndarray) -> str:
    """"pass", or how many outputs differ from the reference and the first that does."""
    if got.shape != want.shape:
        return f"FAIL: {got.size} outputs, expected {want.size}"
    bad = np.flatnonzero(got != want)
    if bad.size == 0:
        return "pass"
    k = bad[0]
    return f"FAIL: {bad.size} of {got.size} outputs wrong (first at {k}: {got[k]} != {want[k]})"


def _time(backend, enqueue, config, graph_safe: bool):
    """Time ``enqueue`` with architecture §7's protocol (harness.measure): per-run Stats."""
    from dataclasses import replace

    from harness.measure import TimingConfig, measure

    config = config or TimingConfig()
    if not graph_safe:
        config = replace(config, batch=1)
    try:
        return measure(enqueue, backend.rt, config)
    except GpuError as e:
        if config.batch == 1 or backend.rt.capturing:
            raise
        # A run that cannot be captured (a driver refusing a memset node, say) is still
        # timed, one launch per sample, and says so.
        stats = measure(enqueue, backend.rt, replace(config, batch=1))
        stats.notes.append(f"not batched: the batch graph could not be captured ({e})")
        return stats


ENERGY_WINDOW_S = 0.5


def _energy_window(backend, enqueue, run_ms: float, ntasks: int) -> dict:
    """NVML over ``ENERGY_WINDOW_S`` of back-to-back runs: the timing protocol's own window
    is mostly the GPU waiting between samples, so its power and GPM occupancy describe an
    idle card. Here the card does nothing but this case: energy per task is the energy
    counter's delta over the runs and tasks it covered, and GPM's SM occupancy is the
    kernel's achieved occupancy."""
    import time

    from harness.measure import NvmlSampler

    per_sync = max(1, int(0.02 / max(run_ms * 1e-3, 1e-7)))  # ~20 ms of work per sync
    runs = 0
    with NvmlSampler.for_runtime(backend.rt) as sampler:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < ENERGY_WINDOW_S:
            for _ in range(per_sync):
                enqueue()
            backend.rt.synchronize()
            runs += per_sync
    summary = sampler.summary()
    summary["runs"] = runs
    if summary.get("energy_j"):
        summary["energy_per_task_j"] = summary["energy_j"] / (runs * ntasks)
    return summary


def run_case(spec: CaseSpec, backend: Backend, repeats: int | None = None,
             arch: str | None = None, instrument: bool = True, timing=None) -> CaseResult:
    """Build, run, check and (on a GPU) time one case; then, with ``instrument``, run the
    instrumented build once for the bookkeeping counters (timings never include them).

    ``timing`` is a ``harness.measure.TimingConfig`` (default: architecture §7's); ``repeats``, if
    given, fixes the sample count instead (min = max = repeats)."""
    from harness.compile import arch_limits, compile_ptx, theoretical_occupancy

    arch = arch or getattr(backend, "arch", "sm_90")
    m, kernel, baseline, wl = build_case(spec, arch, instrument=instrument)
    backend.load(m)
    n = spec.ntasks
    rng = np.random.default_rng(spec.seed)
    inputs = wl.make_inputs(rng, n)
    want = wl.reference(inputs, n)
    grid = -(-n // spec.block)

    args, out = wl.upload(backend, inputs, n)
    capacity = kernel.task_capacity(n)
    run = LaunchArgs.allocate(backend, kernel, n, args)
    frames = run.frames
    ex = get_executor(spec.executor)
    first = ex.launch(backend, kernel, grid, spec.block, run, checked=True)
    check = verdict(wl.read_output(backend, out, n), want)
    if kernel.error_offset is not None:
        code = int(backend.read(frames + kernel.error_offset, np.uint32, 1)[0])
        if code:
            from executors.base import ERRORS

            check = (f"FAIL: executor error {code}: {ERRORS.get(code, 'unknown')} "
                     f"(capacity {capacity} tasks)")
    res = CaseResult(spec, backend.name, check, frame_bytes=kernel.frame_bytes)
    if first.instructions is not None:
        res.instructions_per_task = first.instructions / n
    base_args = None
    if baseline:
        base_args, base_out = wl.upload(backend, inputs, n)
        b = backend.launch(baseline, grid, spec.block, [base_args, np.uint32(n)], checked=True)
        res.baseline_check = verdict(wl.read_output(backend, base_out, n), want)
        if b.instructions is not None:
            res.baseline_instructions_per_task = b.instructions / n
    if backend.name == "gpu" and res.ok:
        if repeats:
            from dataclasses import replace

            from harness.measure import TimingConfig

            timing = replace(timing or TimingConfig(), min_samples=repeats, max_samples=repeats)
        enqueue = lambda: ex.enqueue(backend, kernel, grid, spec.block, run)  # noqa: E731
        stats = _time(backend, enqueue, timing, ex.graph_safe(kernel))
        res.timing, res.time_ms, res.samples = stats, stats.median_ms, stats.samples
        res.extra["nvml"] = _energy_window(backend, enqueue, stats.median_ms, n)
        if baseline:
            bstats = _time(backend, lambda: backend.enqueue(baseline, grid, spec.block,
                                                            [base_args, np.uint32(n)]),
                           timing, True)
            res.baseline_timing, res.baseline_ms = bstats, bstats.median_ms
    res.extra["metrics"] = wl.metrics(backend, inputs, args, n, res.time_ms)
    if kernel.instrumented is not None and res.ok:
        from executors.base import COUNTER_FIELDS
        from harness.counters import summarise

        nthreads = grid * spec.block
        counters = backend.to_device(np.zeros(nthreads * len(COUNTER_FIELDS), np.uint64))
        ex.launch(backend, kernel.instrumented, grid, spec.block, run.with_counters(counters),
                  checked=True)
        raw = backend.read(counters, np.uint64, nthreads * len(COUNTER_FIELDS))
        res.extra["counters"] = summarise(raw, n, arch_limits(arch).max_warps_per_sm)
    try:
        compiled = getattr(backend, "compiled", None) or compile_ptx(m.to_ptx(), arch)
        r = compiled.resources.get(kernel.name)
        if r is not None:
            res.registers, res.spills, res.stack_frame = r.registers, r.spill_stores, r.stack_frame
            occ = theoretical_occupancy(r, spec.block, arch, kernel.dynamic_smem)
            res.extra["theoretical_occupancy"] = occ.fraction
            res.extra["occupancy_limiter"] = occ.limiter
        if baseline and baseline in compiled.resources:
            res.baseline_registers = compiled.resources[baseline].registers
    except PollbenchError as e:  # a report we cannot make is not a failed case
        res.extra["resources_error"] = str(e)
    regs = backend.kernel_registers(kernel.name)
    if regs is not None:
        res.extra["registers_driver"] = regs
    return res
