"""Differential self-tests of the op table: each case of ``harness.ptx.op_cases`` (fresh
random inputs) run on the emulator and on a GPU, outputs compared bit for bit and with
numpy's answer where the case has one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.backend import Backend
from harness.ptx import Module
from harness.ptx.op_cases import DiffCase, all_cases  # noqa: F401 (all_cases re-exported)


# ------------------------------------------------------------------------- running


@dataclass
class CaseRun:
    name: str
    inputs: list
    outputs: list  # np arrays, one per Output
    instructions: int | None = None
    time_ms: float | None = None
    error: str | None = None


def skip_reason(case: DiffCase, backend: Backend) -> str | None:
    """Why ``backend`` cannot run ``case`` (an sm_90-only instruction the emulator does not
    model, or a GPU of another architecture), or None."""
    if "sm90" not in case.tags:
        return None
    if backend.name != "gpu":
        return f"{case.name}: GPU-only (the emulator does not model it)"
    if backend.arch != "sm_90":
        return f"{case.name}: an sm_90 instruction; this GPU is {backend.arch}"
    return None


def run_diff(case: DiffCase, backend: Backend, seed: int) -> CaseRun:
    """Build, load and launch one case on ``backend`` with inputs drawn from ``seed``."""
    from harness.errors import PollbenchError

    rng = np.random.default_rng(seed)
    m = Module()
    kernel = case.build(m)
    inputs = case.inputs(rng)
    try:
        backend.load(m)
        ptrs = [backend.to_device(x) for x in inputs]
        outs = []
        for o in case.outputs:
            if "zero_out0" in case.tags and o.name == "out0":
                outs.append(backend.to_device(np.zeros(o.count, o.dtype)))
            else:
                outs.append(backend.alloc(np.dtype(o.dtype).itemsize * o.count))
        maps = [backend.tensor_map(ptrs[k], rows, cols, box_rows, box_cols)
                for k, rows, cols, box_rows, box_cols in case.tensor_maps]
        launch = backend.launch(kernel, case.grid, case.block, ptrs + outs + maps)
        results = [backend.read(p, o.dtype, o.count) for p, o in zip(outs, case.outputs)]
    except PollbenchError as e:
        return CaseRun(case.name, inputs, [], error=str(e))
    return CaseRun(case.name, inputs, results, launch.instructions, launch.time_ms)


def expected(case: DiffCase, run: CaseRun) -> list | None:
    """numpy's answer for a case, where it has one (None entries: not checked by value)."""
    if "zero_out0" in case.tags:
        return [np.array([run.inputs[0].sum(dtype=np.uint64) & 0xFFFFFFFF], np.uint32)]
    if case.reference is None:
        return None
    with np.errstate(all="ignore"):
        r = case.reference(*run.inputs)
    return list(r) if isinstance(r, (list, tuple)) else [r]


def diff_outputs(case: DiffCase, got: list, want: list) -> str | None:
    """None when ``got`` matches ``want`` bit for bit (or passes its property), else why."""
    for o, g, w in zip(case.outputs, got, want):
        if o.check is not None:
            if not o.check(g):
                return f"{o.name}: property check failed (e.g. {g[:4]})"
            continue
        if w is None:
            continue
        w = np.asarray(w).astype(o.dtype)
        bad = np.flatnonzero(g.view(f"u{g.itemsize}") != w.view(f"u{w.itemsize}"))
        if bad.size:
            k = bad[0]
            return f"{o.name}[{k}]: got {g[k]!r}, expected {w[k]!r} ({bad.size} of {g.size} differ)"
    return None


def check_case(case: DiffCase, backend: Backend, seed: int, against_emulator: bool) -> tuple:
    """Run one case; returns (verdict, CaseRun). The verdict is "pass" or why not.
    On a GPU, ``against_emulator`` also runs the emulator on the same inputs and demands
    identical bits for every output that is compared by value."""
    from harness.backend import EmuBackend

    run = run_diff(case, backend, seed)
    if "traps" in case.tags:
        if run.error and "trap" in run.error.lower() or (run.error and backend.name == "gpu"):
            return "pass", run
        return f"expected the launch to fail with a trap, got {run.error or 'success'}", run
    if run.error:
        return run.error, run
    want = expected(case, run)
    if want is not None:
        why = diff_outputs(case, run.outputs, want)
        if why:
            return f"vs numpy: {why}", run
    if against_emulator and "sm90" not in case.tags:  # else GPU-only: numpy alone judges
        emu = run_diff(case, EmuBackend(), seed)
        if emu.error:
            return f"emulator: {emu.error}", run
        mask = [None if o.check else e for o, e in zip(case.outputs, emu.outputs)]
        why = diff_outputs(case, run.outputs, mask)
        if why:
            return f"vs emulator: {why}", run
    else:
        why = diff_outputs(case, run.outputs, [None] * len(case.outputs))
        if why:
            return why, run
    return "pass", run
