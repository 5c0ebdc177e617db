"""``irregular``: tasks whose work is heavy-tailed and whose branches diverge, against a
static partition of the same work.

Task i runs ``units_i`` work units on a u32 value and stores it. ``units_i`` is drawn from
a Pareto distribution (alpha = 1.5, at least ``MIN_UNITS``, at most ``MAX_UNITS``: a few
tasks do a hundred times the median's work), and each task has one of three unit kinds
(drawn per task, so a warp's lanes take different branches). A unit is an LCG step and then
the task's kind: ``x ^= x >> 16``, ``x = x * x + 7`` or ``x += rotl(x, 5)`` (wrapping u32:
exact against numpy). The task yields every ``YIELD_EVERY`` units, so an executor can run
other tasks between.

Two kernels without an executor: the baseline gives each task its own thread (the grid's
blocks are scheduled by the hardware as SMs free up); the ``static`` reference is the
static grid partition — every resident thread takes tasks t, t + T, t + 2T, ... (T resident
threads), so a thread that draws a heavy task finishes late and nothing takes its others.
Dynamic scheduling on the device would have to beat the static partition; whether an
executor does shows as the case's time against ``static``'s. The run-queue executors home
each root on its worker (one per thread at one task a thread): they cannot move work
between workers; ``persistent``'s workers claim their next roots as they free up.
The ``dynamic`` reference is what dynamic scheduling can win: the same resident threads,
each claiming its next task from an atomic counter (an injector queue of task ids).
"""

from __future__ import annotations

import numpy as np

from harness.futures import yield_now
from harness.futures.lib import AsyncFn
from harness.ptx import Builder, Module
from harness.ptx.types import U32, U64
from workloads.base import BASELINE_PARAMS, Reference, Work, Workload

ALPHA = 1.5
MIN_UNITS, MAX_UNITS = 8, 4096
YIELD_EVERY = 16
A, C = 1664525, 1013904223
STATIC_BLOCK = 128
MASK = 0xFFFFFFFF


def unit_numpy(x: np.ndarray, kind: np.ndarray) -> np.ndarray:
    """One work unit on uint64 arrays holding u32 values (numpy's side of ``_unit``)."""
    x = (x * A + C) & MASK
    k0, k1 = kind == 0, kind == 1
    return np.where(k0, x ^ (x >> 16),
                    np.where(k1, (x * x + 7) & MASK, (x + (((x << 5) | (x >> 27)) & MASK)) & MASK))


class IrregularWorkload(Workload):
    name = "irregular"
    summary = ("Pareto-distributed work per task (alpha 1.5), divergent branches: against a "
               "static partition of the same work")
    input_names = ("units", "kind", "seed")
    output_dtype = np.uint32

    @staticmethod
    def _unit(b, x, kind):
        """One work unit on ``x`` (in place); ``b`` a Builder or an FnBuilder."""
        b.mad(x, A, C, type=U32, dst=x)
        with b.if_(b.setp("eq", kind, 0, type=U32)):
            b.xor(x, b.shr(x, 16, type=U32), type=U32, dst=x)
        with b.if_(b.setp("eq", kind, 1, type=U32)):
            b.mad(x, x, 7, type=U32, dst=x)
        with b.if_(b.setp("eq", kind, 2, type=U32)):
            rot = b.or_(b.shl(x, 5, type=U32), b.shr(x, 27, type=U32), type=U32)
            b.add(x, rot, type=U32, dst=x)

    def root(self) -> AsyncFn:
        w = self

        def body(f, task, args):
            f.local("x", U32)
            f.local("done", U32)
            f.local("units", U32)
            f.local("kind", U32)
            f.set("x", w.load_input(f, args, "seed", task, U32))
            f.set("units", w.load_input(f, args, "units", task, U32))
            f.set("kind", w.load_input(f, args, "kind", task, U32))
            f.set("done", f.mov(0, type=U32))
            with f.loop() as chunks:
                chunks.break_if(f.setp("ge", f.get("done"), f.get("units"), type=U32))
                end = f.min(f.add(f.get("done"), YIELD_EVERY, type=U32), f.get("units"), type=U32)
                x, kind, i = f.get("x"), f.get("kind"), f.get("done")
                with f.loop() as units:
                    units.break_if(f.setp("ge", i, end, type=U32))
                    w._unit(f, x, kind)
                    f.add(i, 1, dst=i)
                f.set("x", x)
                f.set("done", i)
                f.await_(yield_now())
            w.store_output(f, f.arg("args"), f.arg("task"), 0, f.get("x"), U32)
            return None

        return AsyncFn("irregular_root", [("task", U32), ("args", U64)], None, body)

    def _task(self, b: Builder, args, task) -> None:
        """One whole task in a plain loop (the baseline's and the static partition's body)."""
        x = self.load_input(b, args, "seed", task, U32)
        units = self.load_input(b, args, "units", task, U32)
        kind = self.load_input(b, args, "kind", task, U32)
        i = b.mov(0, type=U32)
        with b.loop() as lp:
            lp.break_if(b.setp("ge", i, units, type=U32))
            self._unit(b, x, kind)
            b.add(i, 1, dst=i)
        self.store_output(b, args, task, 0, x, U32)

    def build_baseline(self, module: Module) -> str:
        """A thread per task: the hardware schedules the blocks."""
        b, task, args, _ = self.baseline_entry(module)
        self._task(b, args, task)
        b.ret()
        return b.fn.name

    @property
    def static_kernel(self) -> str:
        return f"{self.name}_static"

    @property
    def dynamic_kernel(self) -> str:
        return f"{self.name}_dynamic"

    def build_references(self, module: Module) -> None:
        """The static partition: resident threads, each over tasks t, t + T, ...; and the
        dynamic one: resident threads, each claiming its next task from a counter."""
        b = Builder.entry(module, self.static_kernel, BASELINE_PARAMS, maxntid=STATIC_BLOCK)
        args, n = b.param("args"), b.param("ntasks")
        stride = b.mul(b.special("nctaid.x"), b.special("ntid.x"), type=U32)
        task = b.global_index()
        with b.loop() as lp:
            lp.break_if(b.setp("ge", task, n, type=U32))
            self._task(b, args, task)
            b.add(task, stride, dst=task)
        b.ret()
        self._build_dynamic(module)

    def _build_dynamic(self, module: Module) -> None:
        """``<name>_dynamic(args, ntasks, claims)``: ``claims`` is two u32s, the next task and
        the threads done. A thread claims tasks with ``atom.add`` until none is left; the
        last thread out zeroes both, so the next run (after the kernel boundary) starts at
        0 with no memset to time. Relaxed atomics: the counter hands out indices, no data."""
        b = Builder.entry(module, self.dynamic_kernel, BASELINE_PARAMS + (("claims", U64),),
                          maxntid=STATIC_BLOCK)
        args, n, claims = b.param("args"), b.param("ntasks"), b.param("claims")
        with b.loop() as lp:
            task = b.atom("global", "add", claims, 1, type=U32, sem="relaxed", scope="gpu")
            lp.break_if(b.setp("ge", task, n, type=U32))
            self._task(b, args, task)
        done = b.add(claims, 4, type=U64)
        out = b.atom("global", "add", done, 1, type=U32, sem="relaxed", scope="gpu")
        threads = b.mul(b.special("nctaid.x"), b.special("ntid.x"), type=U32)
        with b.if_(b.setp("eq", b.add(out, 1, type=U32), threads, type=U32)):
            b.st("global", claims, b.mov(0, type=U32), type=U32)
            b.st("global", done, b.mov(0, type=U32), type=U32)
        b.ret()

    def references(self, backend, inputs: dict, args_ptr: int, n: int) -> list:
        if backend.name != "gpu":
            return []
        args, out = self.upload(backend, inputs, n)  # its own output, checked like the case's
        grid = max(1, backend.resident_blocks(self.static_kernel, STATIC_BLOCK))
        dyn_args, dyn_out = self.upload(backend, inputs, n)
        dyn_grid = max(1, backend.resident_blocks(self.dynamic_kernel, STATIC_BLOCK))
        claims = backend.to_device(np.zeros(2, np.uint32))
        return [Reference("static", f"static partition: {grid} blocks x {STATIC_BLOCK} "
                          f"threads, each over every {grid * STATIC_BLOCK}th task",
                          Work(0, 0), kernel=self.static_kernel, grid=grid, block=STATIC_BLOCK,
                          args=(args, np.uint32(n)), output=(out, n)),
                Reference("dynamic", f"dynamic partition: {dyn_grid} blocks x {STATIC_BLOCK} "
                          "threads, each claiming its next task from an atomic counter",
                          Work(0, 0), kernel=self.dynamic_kernel, grid=dyn_grid,
                          block=STATIC_BLOCK, args=(dyn_args, np.uint32(n), claims),
                          output=(dyn_out, n))]

    def make_inputs(self, rng: np.random.Generator, n: int) -> dict:
        units = np.minimum(np.ceil(MIN_UNITS * (1 + rng.pareto(ALPHA, n))), MAX_UNITS)
        return {"units": units.astype(np.uint32),
                "kind": rng.integers(0, 3, n, dtype=np.uint32),
                "seed": rng.integers(1, 2**32, n, dtype=np.uint32)}

    def reference(self, inputs: dict, n: int) -> np.ndarray:
        units = inputs["units"].astype(np.int64)
        x = inputs["seed"].astype(np.uint64)
        kind = inputs["kind"]
        active = np.arange(n)
        for step in range(int(units.max()) if n else 0):
            active = active[units[active] > step]  # the tasks with a unit left: fewer each step
            x[active] = unit_numpy(x[active], kind[active])
        return x.astype(np.uint32)

    def metrics(self, backend, inputs, args_ptr, n, time_ms) -> dict:
        units = inputs["units"].astype(np.int64)
        out = {"units": int(units.sum()), "max_units": int(units.max()) if n else 0,
               "units_p50": float(np.median(units)) if n else 0.0}
        if time_ms:
            out["units_per_s"] = out["units"] / (time_ms * 1e-3)
        return out
