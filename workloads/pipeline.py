"""``pipeline``: stream an array through load -> k dependent FMAs -> store, as tasks.

Task i owns elements ``i + e * ntasks`` for e < ``elems`` (neighbouring tasks read
neighbouring floats: a warp's loads and stores coalesce), applies ``x = x * A + B`` ``k``
times to each and stores it; it yields after every ``chunk`` elements, so executors
interleave tasks as a pipeline of memory and compute. At the defaults (2^20 tasks, 256
elements) that is 1 GiB in and 1 GiB out. The baseline does the same per thread with no
executor. Figures: GB/s (bytes read and written) and FLOP/s (2 per FMA).

Not registered yet (issue 9 in progress): at GPU size its emulator runs take ~20 s a case,
so its sizes must first follow the run (elements per task from the task count); the
warp-specialized TMA baseline of the plan, ``workloads/stream_tma.py``, is not yet wired in
as its second baseline. ``tests/test_pipeline.py`` runs it under every executor.
"""

from __future__ import annotations

import numpy as np

from harness.errors import PollbenchError
from harness.futures import yield_now
from harness.futures.lib import AsyncFn
from harness.ptx import Module
from harness.ptx.types import F32, U32, U64
from workloads.base import Workload
from workloads.stream_tma import A, B, reference as fma_rounds


class PipelineWorkload(Workload):
    name = "pipeline"
    summary = "stream elements through load -> k FMAs -> store, yielding every chunk: GB/s, FLOP/s"
    input_names = ("x",)
    output_dtype = np.float32

    def __init__(self, k: int = 16, elems: int = 256, chunk: int = 32):
        if elems % chunk:
            raise PollbenchError(f"pipeline: {elems} elements per task is not a whole number of "
                             f"{chunk}-element chunks")
        self.k, self.elems, self.chunk = k, elems, chunk
        self.outputs_per_task = elems

    def _element(self, b, args, task, e, n):
        """One element: load, k FMAs, store (``b`` a Builder or an FnBuilder)."""
        idx = b.mad(e, n, task, type=U32)
        x = b.ld("global", b.element_addr(self.input_ptr(b, args, 0), idx, 4), F32)
        j = b.mov(0, type=U32)
        with b.loop() as lp:
            lp.break_if(b.setp("ge", j, self.k, type=U32))
            b.fma(x, A, B, type=F32, dst=x)
            b.add(j, 1, dst=j)
        out = self.input_ptr(b, args, 1)
        b.st("global", b.element_addr(out, idx, 4), x, type=F32)

    def root(self) -> AsyncFn:
        w = self

        def body(f, task, args):
            f.local("e", U32)
            f.set("e", f.mov(0, type=U32))
            with f.loop() as chunks:
                chunks.break_if(f.setp("ge", f.get("e"), w.elems, type=U32))
                n = f.cvt(w.input_ptr(f, f.arg("args"), 2), U32)
                end = f.add(f.get("e"), w.chunk, type=U32)
                e = f.get("e")
                with f.loop() as elems:
                    elems.break_if(f.setp("ge", e, end, type=U32))
                    w._element(f, f.arg("args"), f.arg("task"), e, n)
                    f.add(e, 1, dst=e)
                f.set("e", e)
                f.await_(yield_now())  # a chunk done: let the executor run another task
            return None

        return AsyncFn("pipeline_root", [("task", U32), ("args", U64)], None, body)

    def build_baseline(self, module: Module) -> str:
        """The same elements, FMAs and stores in a plain loop per thread."""
        b, task, args, n = self.baseline_entry(module)
        e = b.mov(0, type=U32)
        with b.loop() as lp:
            lp.break_if(b.setp("ge", e, self.elems, type=U32))
            self._element(b, args, task, e, n)
            b.add(e, 1, dst=e)
        b.ret()
        return b.fn.name

    def make_inputs(self, rng: np.random.Generator, n: int) -> dict:
        return {"x": rng.standard_normal(n * self.elems, dtype=np.float32)}

    def reference(self, inputs: dict, n: int) -> np.ndarray:
        return fma_rounds(inputs["x"], self.k)

    def metrics(self, backend, inputs, args_ptr, n, time_ms) -> dict:
        elements = n * self.elems
        if not time_ms:
            return {"elements": elements}
        s = time_ms * 1e-3
        return {"elements": elements, "gb_per_s": 8 * elements / s / 1e9,
                "gflop_per_s": 2 * self.k * elements / s / 1e9}
