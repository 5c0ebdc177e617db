"""``yield_storm``: N tasks, task i yielding K_i times (the seed's Embassy demo).

Each task carries a value through its yields: ``v = v * 1664525 + 1013904223 + i`` (u32,
wrapping) once per resume, so a lost, repeated or skipped poll changes the result. Outputs
(SoA): 0: the final value, 1: the polls the task saw (K_i + 1). K_i is drawn per task from
``[K/2, 3K/2]`` (``K = yields``, 8 by default), so tasks finish at different rounds.

Figures (``metrics``): polls/s over the whole grid and ns per poll (the inverse), from the
case's median time and the polls the inputs imply.
"""

from __future__ import annotations

import numpy as np

from harness.futures import yield_now
from harness.futures.lib import AsyncFn
from harness.ptx import Module
from harness.ptx.types import U32, U64
from workloads.base import Workload

A, C = 1664525, 1013904223


class YieldStormWorkload(Workload):
    name = "yield_storm"
    summary = "N tasks each yielding K times (~K/2..3K/2), carrying an LCG value: polls/s"
    input_names = ("yields", "seed")
    outputs_per_task = 2
    output_dtype = np.uint32

    def __init__(self, yields: int = 8):
        self.yields = yields

    def root(self) -> AsyncFn:
        w = self

        def body(f, task, args):
            f.local("i", U32)
            f.local("v", U32)
            f.local("k", U32)  # read once, as the baseline does (a local lives across yields)
            f.set("i", f.mov(0, type=U32))
            f.set("v", w.load_input(f, args, "seed", task, U32))
            f.set("k", w.load_input(f, args, "yields", task, U32))
            with f.loop() as lp:
                lp.break_if(f.setp("ge", f.get("i"), f.get("k")))
                f.await_(yield_now())
                v = f.get("v")
                f.set("v", f.add(f.mad(v, A, C, type=U32), f.arg("task")))
                f.set("i", f.add(f.get("i"), 1))
            w.store_output(f, f.arg("args"), f.arg("task"), 0, f.get("v"), U32)
            w.store_output(f, f.arg("args"), f.arg("task"), 1, f.add(f.get("i"), 1), U32)
            return None

        return AsyncFn("yield_storm_root", [("task", U32), ("args", U64)], None, body)

    def build_baseline(self, module: Module) -> str:
        """The same LCG steps in a plain loop per thread: no yields, no polls."""
        b, task, args, _ = self.baseline_entry(module)
        k = self.load_input(b, args, "yields", task, U32)
        v = self.load_input(b, args, "seed", task, U32)
        i = b.mov(0, type=U32)
        with b.loop() as lp:
            lp.break_if(b.setp("ge", i, k))
            b.add(b.mad(v, A, C, type=U32), task, dst=v)
            b.add(i, 1, dst=i)
        self.store_output(b, args, task, 0, v, U32)
        self.store_output(b, args, task, 1, b.add(i, 1), U32)  # the root's polls: K_i + 1
        b.ret()
        return b.fn.name

    def make_inputs(self, rng: np.random.Generator, n: int) -> dict:
        lo, hi = max(1, self.yields // 2), max(1, self.yields + self.yields // 2)
        ins = {"yields": rng.integers(lo, hi, n, dtype=np.uint32, endpoint=True),
               "seed": rng.integers(1, 2**32, n, dtype=np.uint32)}
        return ins

    def reference(self, inputs: dict, n: int) -> np.ndarray:
        k = inputs["yields"].astype(np.int64)
        v = inputs["seed"].astype(np.uint64)
        task = np.arange(n, dtype=np.uint64)
        for step in range(int(k.max()) if n else 0):
            nxt = (v * A + C + task) & 0xFFFFFFFF
            v = np.where(step < k, nxt, v)
        return np.concatenate([v.astype(np.uint32), (k + 1).astype(np.uint32)])

    def metrics(self, backend, inputs, args_ptr, n, time_ms) -> dict:
        polls = int(inputs["yields"].astype(np.int64).sum()) + n  # K_i yields + the last poll
        if not time_ms:
            return {"polls": polls}
        rate = polls / (time_ms * 1e-3)
        return {"polls": polls, "polls_per_s": rate, "ns_per_poll": 1e9 / rate}
