"""``seed_demo``: the seed post's async fns, one root future per thread.

Six outputs per task, on fresh random i32 inputs and flags, with wrapping arithmetic:
  0 async_double(x) = 2x
  1 async_add_then_double(a, b) = double(a + b)
  2 async_conditional(x, flag) = flag ? double(x) : x
  3 async_multi_step(x) = double(double(x))
  4 async { double(val) + double(chained) }, chained = add_then_double(val, double(val))
  5 ready(val).then(|v| ready(v * 2 + 100))
"""

from __future__ import annotations

import numpy as np

from harness.futures import async_fn, ready, then
from harness.futures.lib import AsyncFn
from harness.ptx import Module
from harness.ptx.types import S32, U32, U64
from workloads.base import Workload


@async_fn(params=[("x", S32)], output=S32)
def async_double(f, x):
    return f.mul(x, 2)


@async_fn(params=[("a", S32), ("b", S32)], output=S32)
def async_add_then_double(f, a, b):
    return f.await_(async_double(f.add(a, b)))


@async_fn(params=[("x", S32), ("flag", U32)], output=S32)
def async_conditional(f, x, flag):
    f.local("r", S32)
    f.set("r", x)
    with f.if_(f.setp("ne", flag, 0)):
        f.set("r", f.await_(async_double(x)))
    return f.get("r")


@async_fn(params=[("x", S32)], output=S32)
def async_multi_step(f, x):
    once = f.await_(async_double(x))
    return f.await_(async_double(once))


@async_fn(params=[("val", S32)], output=S32)
def async_block(f, val):
    f.local("chained", S32)
    f.local("left", S32)
    doubled = f.await_(async_double(val))
    f.set("chained", f.await_(async_add_then_double(f.arg("val"), doubled)))
    f.set("left", f.await_(async_double(f.arg("val"))))
    right = f.await_(async_double(f.get("chained")))
    return f.add(f.get("left"), right)


ready_then = then(ready(0).fut, lambda f, v: ready(f.add(f.mul(v, 2), 100)), S32, "ready_then")




class SeedDemoWorkload(Workload):
    name = "seed_demo"
    summary = "the seed post's async fns (double, add-then-double, conditional, ...), one root per thread"
    input_names = ("x", "a", "b", "flag", "val")
    outputs_per_task = 6
    output_dtype = np.int32

    def root(self) -> AsyncFn:
        w = self

        def body(f, task, args):
            def inp(name, t=S32):
                return w.load_input(f, f.arg("args"), name, f.arg("task"), t)

            def out(k, v):
                w.store_output(f, f.arg("args"), f.arg("task"), k, v, S32)

            out(0, f.await_(async_double(inp("x"))))
            out(1, f.await_(async_add_then_double(inp("a"), inp("b"))))
            out(2, f.await_(async_conditional(inp("x"), inp("flag", U32))))
            out(3, f.await_(async_multi_step(inp("x"))))
            out(4, f.await_(async_block(inp("val"))))
            out(5, f.await_(ready_then(inp("val"))))
            return None

        return AsyncFn("seed_demo_root", [("task", U32), ("args", U64)], None, body)

    def make_inputs(self, rng: np.random.Generator, n: int) -> dict:
        full = np.iinfo(np.int32)
        ints = {k: rng.integers(full.min, full.max, n, dtype=np.int32, endpoint=True)
                for k in ("x", "a", "b", "val")}
        ints["flag"] = rng.integers(0, 2, n, dtype=np.uint32)
        return ints

    def reference(self, inputs: dict, n: int) -> np.ndarray:
        x, a, b, val = (inputs[k].astype(np.int64) for k in ("x", "a", "b", "val"))
        flag = inputs["flag"]

        def w(v):  # wrap to i32
            return ((v + 2**31) % 2**32 - 2**31).astype(np.int64)

        def double(v):
            return w(2 * v)

        chained = double(w(val + double(val)))
        outs = [double(x), double(w(a + b)), np.where(flag != 0, double(x), x),
                double(double(x)), w(double(val) + double(chained)), w(val * 2 + 100)]
        return np.concatenate(outs).astype(np.int32)

    def build_baseline(self, module: Module) -> str:
        """The same six results computed inline by each thread: no frames, no polls."""
        b, task, args, _ = self.baseline_entry(module)
        x, a, bb, val = (self.load_input(b, args, k, task, S32) for k in ("x", "a", "b", "val"))
        flag = self.load_input(b, args, "flag", task, U32)
        dx = b.mul(x, 2)
        self.store_output(b, args, task, 0, dx, S32)
        self.store_output(b, args, task, 1, b.mul(b.add(a, bb), 2), S32)
        self.store_output(b, args, task, 2, b.selp(dx, x, b.setp("ne", flag, 0)), S32)
        self.store_output(b, args, task, 3, b.mul(dx, 2), S32)
        dv = b.mul(val, 2)
        chained = b.mul(b.add(val, dv), 2)
        self.store_output(b, args, task, 4, b.add(dv, b.mul(chained, 2)), S32)
        self.store_output(b, args, task, 5, b.add(dv, 100), S32)
        b.ret()
        return b.fn.name
