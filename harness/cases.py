"""One case = one executor x workload x dispatch x granularity, built, checked against
numpy, timed against the workload's baseline kernel, on one backend."""

from __future__ import annotations

from dataclasses import asdict, astuple, dataclass, field

import numpy as np

from executors import get_executor
from executors.base import LaunchArgs
from harness.backend import Backend
from harness.errors import PollbenchError
from harness.gpu.errors import GpuError
from harness.ptx import Module
from workloads import get_workload
from workloads.roofline import roofline_ms


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


def case_specs(executors, workloads, ntasks: int = 1 << 20, block: int = 128, seed: int = 0,
               dispatch=None, granularity=None) -> list:
    """Every case of ``executors`` x ``workloads`` (objects or names) in each executor's own
    dispatch modes and granularities, as far as ``dispatch`` / ``granularity`` (collections,
    None for all) keep them; cases an executor cannot run are kept (they are skips). A
    workload whose size is its own sets the task count (``Workload.tasks``), and a
    cooperative one the block (its group)."""
    exs = [get_executor(e) if isinstance(e, str) else e for e in executors]
    wls = [get_workload(w) if isinstance(w, str) else w for w in workloads]
    return [CaseSpec(ex.name, wl.name, d, g, wl.tasks(ntasks), wl.cooperative or block, seed)
            for ex in exs for wl in wls
            for d in ex.dispatch_modes if not dispatch or d in dispatch
            for g in ex.granularities if not granularity or g in granularity]


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

    reference_checks: dict = field(default_factory=dict)  # reference name -> its verdict

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def failure(self) -> str | None:
        """What went wrong first: the executor's check, the baseline's, a reference's; None."""
        if self.check != "pass":
            return self.check
        if self.baseline_check not in (None, "pass"):
            return f"baseline: {self.baseline_check}"
        for name, check in self.reference_checks.items():
            if check != "pass":
                return f"reference {name}: {check}"
        return None

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
    if wl.cooperative and not (ex.polls_block_together and spec.granularity == "block"):
        return (f"{wl.name}'s tasks are the {wl.cooperative} threads of a tile, polled "
                f"together: {ex.name} at {spec.granularity} granularity polls them one by one")
    if wl.cooperative and spec.block != wl.cooperative:
        return f"{wl.name} polls a tile's tasks as one block of {wl.cooperative}, not {spec.block}"
    return None


_PREBUILT: dict = {}  # (spec, arch, instrument) -> build_case's result, kept by prebuild


def prebuild(spec: CaseSpec, arch: str, instrument: bool = True):
    """``build_case`` ahead of the case's turn (its process warming up), kept so that the
    case's own ``build_case`` in this process takes it instead of building again."""
    built = build_case(spec, arch, instrument)
    _PREBUILT[(astuple(spec), arch, instrument)] = built
    return built


_PREPARED: dict = {}  # spec -> (inputs, numpy's answer), kept by prepare_inputs


def prepare_inputs(spec: CaseSpec) -> None:
    """``inputs_and_reference`` ahead of the case's turn (its process warming up while
    another case has the GPU: seconds of numpy for the big workloads), kept for the case."""
    _PREPARED[astuple(spec)] = inputs_and_reference(spec)


def inputs_and_reference(spec: CaseSpec) -> tuple:
    """The case's seeded random inputs and numpy's answer (those ``prepare_inputs`` made in
    this process, if it ran)."""
    ready = _PREPARED.pop(astuple(spec), None)
    if ready is not None:
        return ready
    wl = get_workload(spec.workload)
    inputs = wl.make_inputs(np.random.default_rng(spec.seed), spec.ntasks)
    return inputs, wl.reference(inputs, spec.ntasks)


def build_case(spec: CaseSpec, arch: str = "sm_90", instrument: bool = False):
    """The module for a case: the executor's kernel and the workload's baseline (and, with
    ``instrument``, the instrumented build of the executor's kernel, as ``kernel.instrumented``)."""
    reason = unsupported_reason(spec)
    if reason:
        raise Unsupported(reason)
    built = _PREBUILT.pop((astuple(spec), arch, instrument), None)
    if built is not None:
        return built
    ex, wl = get_executor(spec.executor), get_workload(spec.workload)
    m = Module(arch=arch)
    types = wl.task_types()
    ex.check(spec.dispatch, spec.granularity)
    build = ex.begin(m, types[0], tuple(types[1:]), wl.spawn_capacity(spec.ntasks))
    kernel = build.kernel(spec.dispatch, spec.granularity)
    kernel.instrumented = None
    if instrument:
        kernel.instrumented = build.kernel(spec.dispatch, spec.granularity, instrument=True)
    baseline = wl.build_baseline(m)
    wl.build_references(m)
    return m, kernel, baseline, wl


def verdict(got: np.ndarray, want: np.ndarray) -> str:
    """"pass", or how many outputs differ from the reference and the first that does. A
    partial answer (``want`` with a ``verdict`` method: a matmul's sampled tiles) judges
    the output itself."""
    if hasattr(want, "verdict"):
        return want.verdict(got)
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
    case = _Case(spec, backend, arch or getattr(backend, "arch", "sm_90"), instrument)
    res = case.check()
    if backend.name == "gpu" and res.ok:
        case.time(res, timing, repeats)
    res.extra["metrics"] = {**case.wl.metrics(backend, case.inputs, case.args, spec.ntasks,
                                              res.time_ms), **case.figures(res)}
    if case.kernel.instrumented is not None and res.ok:
        case.count(res)
    case.resources(res)
    return res


class _Case:
    """One case's phases, in the order ``run_case`` calls them (NVBench's: check,
    initialise, warm up, trials, summarise): built, loaded and its inputs uploaded here."""

    def __init__(self, spec: CaseSpec, backend: Backend, arch: str, instrument: bool):
        self.spec, self.backend, self.arch = spec, backend, arch
        self.m, self.kernel, self.baseline, self.wl = build_case(spec, arch, instrument=instrument)
        backend.load(self.m)
        n = spec.ntasks
        self.inputs, self.want = inputs_and_reference(spec)
        self.ex = get_executor(spec.executor)
        self.grid = self.ex.grid(backend, self.kernel, n, spec.block)
        # the baseline's grid: a thread a task
        self.base_grid = -(-n // spec.block)
        self.args, self.out = self.wl.upload(backend, self.inputs, n)
        self.run = LaunchArgs.allocate(backend, self.kernel, n, self.args)
        self.base_args = None
        self.refs = []  # the workload's Reference runs, with what became of each

    def check(self) -> CaseResult:
        """One run of the executor and one of the baseline, each checked against numpy."""
        be, kernel, spec, n = self.backend, self.kernel, self.spec, self.spec.ntasks
        first = self.ex.launch(be, kernel, self.grid, spec.block, self.run, checked=True)
        check = verdict(self.wl.read_output(be, self.out, n), self.want)
        if kernel.error_offset is not None:
            code = int(be.read(self.run.frames + kernel.error_offset, np.uint32, 1)[0])
            if code:
                from executors.base import ERRORS

                check = (f"FAIL: executor error {code}: {ERRORS.get(code, 'unknown')} "
                         f"(capacity {kernel.task_capacity(n)} tasks)")
        res = CaseResult(spec, be.name, check, frame_bytes=kernel.frame_bytes)
        if first.instructions is not None:
            res.instructions_per_task = first.instructions / n
        if self.baseline:
            self.base_args, base_out = self.wl.upload(be, self.inputs, n)
            b = be.launch(self.baseline, self.base_grid, spec.block, self.baseline_params(),
                          checked=True)
            res.baseline_check = verdict(self.wl.read_output(be, base_out, n), self.want)
            if b.instructions is not None:
                res.baseline_instructions_per_task = b.instructions / n
        for ref in self.wl.references(be, self.inputs, self.args, n):
            ref.launch(be, checked=True)
            check = None
            if ref.output is not None:
                ptr, count = ref.output
                check = verdict(be.read(ptr, self.wl.output_dtype, count), self.want)
            self.refs.append((ref, {"what": ref.what, "check": check}))
            if check is not None:
                res.reference_checks[ref.name] = check
        return res

    def baseline_params(self) -> list:
        return [self.base_args, np.uint32(self.spec.ntasks)]

    def time(self, res: CaseResult, timing, repeats: int | None) -> None:
        """The timing protocol over the executor's runs, NVML over back-to-back runs, then
        the baseline's timing (GPU)."""
        be, spec = self.backend, self.spec
        if repeats:
            from dataclasses import replace

            from harness.measure import TimingConfig

            timing = replace(timing or TimingConfig(), min_samples=repeats, max_samples=repeats)
        enqueue = lambda: self.ex.enqueue(be, self.kernel, self.grid, spec.block, self.run)  # noqa: E731
        stats = _time(be, enqueue, timing, self.ex.graph_safe(self.kernel))
        res.timing, res.time_ms, res.samples = stats, stats.median_ms, stats.samples
        res.extra["nvml"] = _energy_window(be, enqueue, stats.median_ms, spec.ntasks)
        if self.baseline:
            bstats = _time(be, lambda: be.enqueue(self.baseline, self.base_grid, spec.block,
                                                   self.baseline_params()), timing, True)
            res.baseline_timing, res.baseline_ms = bstats, bstats.median_ms
        for ref, row in self.refs:
            if row["check"] in (None, "pass"):
                rstats = _time(be, lambda ref=ref: ref.enqueue(be), timing, ref.graph_safe)
                row.update(ms=rstats.median_ms, samples=rstats.samples,
                           noise=rstats.rel_stddev)

    def figures(self, res: CaseResult) -> dict:
        """Throughput of the case, its baseline and each reference where the workload
        counts its work (GB/s, GFLOP/s), and the roofline of the same run: the least time
        the copy and FMA references allow, and each time's fraction of it."""
        work = self.wl.work(self.spec.ntasks)
        refs = {ref.name: row for ref, row in self.refs}
        if work is None:
            return {"references": refs} if refs else {}

        def rates(w, ms):
            if not ms:
                return {}
            return {"gb_per_s": w.bytes / ms / 1e6, "gflop_per_s": w.flops / ms / 1e6}

        out = {"bytes": work.bytes, "flops": work.flops, **rates(work, res.time_ms)}
        out.update({f"baseline_{k}": v for k, v in rates(work, res.baseline_ms).items()})
        roofs = {}
        for ref, row in self.refs:
            row.update(rates(ref.work, row.get("ms")))
            if ref.roof and row.get("ms"):
                roofs[ref.roof] = (ref.work.bytes if ref.roof == "bandwidth" else ref.work.flops) / row["ms"]
        roof = roofline_ms(work, roofs.get("bandwidth"), roofs.get("compute"))
        if roof:
            out["roofline_ms"] = roof
            for key, ms in (("of_roofline", res.time_ms), ("baseline_of_roofline", res.baseline_ms)):
                if ms:
                    out[key] = roof / ms
            for ref, row in self.refs:
                if not ref.roof and row.get("ms"):
                    row["of_roofline"] = roof / row["ms"]
        if refs:
            out["references"] = refs
        return out

    def count(self, res: CaseResult) -> None:
        """One run of the instrumented build: the per-thread counters, summarised."""
        from executors.base import COUNTER_FIELDS
        from harness.compile import arch_limits
        from harness.counters import summarise

        be, spec = self.backend, self.spec
        grid = self.ex.grid(be, self.kernel.instrumented, spec.ntasks, spec.block)
        nthreads = grid * spec.block
        counters = be.to_device(np.zeros(nthreads * len(COUNTER_FIELDS), np.uint64))
        self.ex.launch(be, self.kernel.instrumented, grid, spec.block,
                       self.run.with_counters(counters), checked=True)
        raw = be.read(counters, np.uint64, nthreads * len(COUNTER_FIELDS))
        res.extra["counters"] = summarise(raw, spec.ntasks,
                                          arch_limits(self.arch).max_warps_per_sm)

    def resources(self, res: CaseResult) -> None:
        """Registers, spills, stack and theoretical occupancy from nvJitLink's report, and
        the driver's register count; a report that cannot be made is noted, not a failure."""
        from harness.compile import compile_ptx, theoretical_occupancy

        kernel, baseline = self.kernel, self.baseline
        try:
            compiled = (getattr(self.backend, "compiled", None)
                        or compile_ptx(self.m.to_ptx(), self.arch))
            r = compiled.resources.get(kernel.name)
            if r is not None:
                res.registers, res.spills, res.stack_frame = (r.registers, r.spill_stores,
                                                              r.stack_frame)
                occ = theoretical_occupancy(r, self.spec.block, self.arch, kernel.dynamic_smem)
                res.extra["theoretical_occupancy"] = occ.fraction
                res.extra["occupancy_limiter"] = occ.limiter
            if baseline and baseline in compiled.resources:
                res.baseline_registers = compiled.resources[baseline].registers
        except PollbenchError as e:
            res.extra["resources_error"] = str(e)
        regs = self.backend.kernel_registers(kernel.name)
        if regs is not None:
            res.extra["registers_driver"] = regs
