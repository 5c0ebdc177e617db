"""``fan_out``: each root spawns ``c_i`` children (1..``children``) and joins them.

Root ``i`` fills its join record (a countdown latch, ``harness.futures.latch``, plus the
child records), spawns child ``j`` with ``args`` pointing at record ``j``, awaits the latch,
then sums what its children wrote. Child ``j`` of root ``i`` yields ``y_ij`` times (0..2),
writes ``3 * x_ij + j`` (i32, wrapping) to output row ``j`` of its root, and counts the latch
down (the last one wakes the root). Outputs (SoA): rows ``0..children-1``: child ``j``'s
value (0 for ``j >= c_i``; -1 where the pool was full and the child never ran), row
``children``: the root's sum of its children's values, read after the join -- a join that
returned early reads poison.

``requires_spawn``: executors without a run queue (``block_on``) report it unsupported.
The join records live in a workload buffer, one per root, and are rewritten by their root
at the start of every run.
"""

from __future__ import annotations

import numpy as np

from harness.futures import SPAWN_FAILED, yield_now
from harness.futures.latch import count_down, wait
from harness.futures.lib import AsyncFn
from harness.ptx import Module
from harness.ptx.types import S32, U32, U64
from workloads.base import Workload

# join record of root i: [latch 8 B][root args u64][root task u32][pad] then per child
# [record base u64][j u32][pad]
JOIN_HEAD, CHILD_REC = 32, 16


class FanOutWorkload(Workload):
    name = "fan_out"
    summary = "a task spawns 1..C children and joins them (spawn + countdown-latch join)"
    input_names = ("nchild", "x", "yields", "joins")
    output_dtype = np.int32
    requires_spawn = True

    def __init__(self, children: int = 4):
        self.children = children
        self.outputs_per_task = children + 1
        self.join_bytes = JOIN_HEAD + CHILD_REC * children
        self._child = None

    def spawn_capacity(self, n: int) -> int:
        return n * self.children

    def task_types(self) -> list:
        return [self.root(), self.child()]

    # ------------------------------------------------------------ device side

    def child(self) -> AsyncFn:
        if self._child is not None:
            return self._child
        w = self

        # a child writes row j of its root (store_output's row is a build-time constant)
        def store_row(f, wargs, root, j, value):
            nin = len(w.input_names)
            out = w.input_ptr(f, wargs, nin)
            n = f.cvt(w.input_ptr(f, wargs, nin + 1), U32)
            f.st("global", f.element_addr(out, f.mad(j, n, root), 4), value, type=S32)

        def body(f, task, args):
            f.local("i", U32)
            f.set("i", f.mov(0, type=U32))
            with f.loop() as lp:
                rec, j, root, wargs = w._child_view(f)
                n = f.cvt(w.input_ptr(f, wargs, len(w.input_names) + 1), U32)
                ys = w.input_ptr(f, wargs, w.input_names.index("yields"))
                y = f.ld("global", f.element_addr(ys, f.mad(j, n, root), 4), U32)
                lp.break_if(f.setp("ge", f.get("i"), y))
                f.await_(yield_now())
                f.set("i", f.add(f.get("i"), 1))
            rec, j, root, wargs = w._child_view(f)
            n = f.cvt(w.input_ptr(f, wargs, len(w.input_names) + 1), U32)
            xs = w.input_ptr(f, wargs, w.input_names.index("x"))
            x = f.ld("global", f.element_addr(xs, f.mad(j, n, root), 4), S32)
            store_row(f, wargs, root, j, f.add(f.mul(x, 3), f.cvt(j, S32)))
            count_down(f, f.ld("global", rec, U64))
            return None

        self._child = AsyncFn("fan_out_child", [("task", U32), ("args", U64)], None, body)
        return self._child

    @staticmethod
    def _child_view(f):
        """(join record base, j, root task, workload args) from the child's ``args``."""
        rec = f.arg("args")
        join = f.ld("global", rec, U64)
        j = f.ld("global", f.add(rec, 8, type=U64), U32)
        root = f.ld("global", f.add(join, 16, type=U64), U32)
        wargs = f.ld("global", f.add(join, 8, type=U64), U64)
        return rec, j, root, wargs

    def _join(self, f):
        base = self.input_ptr(f, f.arg("args"), self.input_names.index("joins"))
        return f.element_addr(base, f.arg("task"), self.join_bytes)

    def root(self) -> AsyncFn:
        w = self

        def body(f, task, args):
            child = w.child()
            join = w._join(f)
            c = w.load_input(f, args, "nchild", task, U32)
            nin = len(w.input_names)
            out = w.input_ptr(f, args, nin)
            n = f.cvt(w.input_ptr(f, args, nin + 1), U32)
            f.st("global", join, c, type=U32)  # latch count: before any child can run
            f.st("global", f.add(join, 4, type=U64), f.mov(0, type=U32))  # no waiter yet
            f.st("global", f.add(join, 8, type=U64), args, type=U64)
            f.st("global", f.add(join, 16, type=U64), task, type=U32)
            j = f.mov(0, type=U32)
            with f.loop() as lp:
                lp.break_if(f.setp("ge", j, w.children))
                row = f.element_addr(out, f.mad(j, n, task), 4)
                with f.if_(f.setp("ge", j, c)):
                    f.st("global", row, f.mov(0, type=S32))  # no child j
                with f.if_(f.setp("lt", j, c)):
                    rec = f.add(f.add(join, JOIN_HEAD, type=U64),
                                f.mul(j, CHILD_REC, mode="wide"), type=U64)
                    f.st("global", rec, join, type=U64)
                    f.st("global", f.add(rec, 8, type=U64), j, type=U32)
                    tid = f.spawn(child, rec)
                    with f.if_(f.setp("eq", tid, SPAWN_FAILED, type=U32)):
                        f.st("global", row, f.mov(-1, type=S32))  # never ran: count it down
                        count_down(f, join)
                f.add(j, 1, dst=j)
            f.await_(wait(w._join(f)))
            out = w.input_ptr(f, f.arg("args"), nin)
            n = f.cvt(w.input_ptr(f, f.arg("args"), nin + 1), U32)
            total = f.mov(0, type=S32)
            for jj in range(w.children):
                row = f.element_addr(out, f.mad(f.mov(jj, type=U32), n, f.arg("task")), 4)
                f.add(total, f.ld("global", row, S32), dst=total)
            w.store_output(f, f.arg("args"), f.arg("task"), w.children, total, S32)
            return None

        return AsyncFn("fan_out_root", [("task", U32), ("args", U64)], None, body)

    def build_baseline(self, module: Module) -> str:
        """Each root computes its children's values inline: no spawn, no latch, no join
        records (``joins`` is left untouched)."""
        b, task, args, n = self.baseline_entry(module)
        c = self.load_input(b, args, "nchild", task, U32)
        xs = self.input_ptr(b, args, self.input_names.index("x"))
        total = b.mov(0, type=S32)
        for j in range(self.children):
            # x is children * n long, child j of root i at j * n + i (as the child reads it); the
            # load is in bounds even for j >= c_i, so a select replaces a branch
            x = b.ld("global", b.element_addr(xs, b.mad(n, j, task), 4), S32)
            val = b.selp(b.add(b.mul(x, 3), j), 0, b.setp("gt", c, j), type=S32)
            self.store_output(b, args, task, j, val, S32)
            b.add(total, val, dst=total)
        self.store_output(b, args, task, self.children, total, S32)
        b.ret()
        return b.fn.name

    # -------------------------------------------------------------- host side

    def make_inputs(self, rng: np.random.Generator, n: int) -> dict:
        c = self.children
        full = np.iinfo(np.int32)
        return {"nchild": rng.integers(1, c, n, dtype=np.uint32, endpoint=True),
                "x": rng.integers(full.min, full.max, c * n, dtype=np.int32, endpoint=True),
                "yields": rng.integers(0, 2, c * n, dtype=np.uint32, endpoint=True),
                "joins": np.zeros(n * self.join_bytes // 4, np.uint32)}

    def reference(self, inputs: dict, n: int) -> np.ndarray:
        c = self.children
        x = inputs["x"].astype(np.int64).reshape(c, n)
        j = np.arange(c, dtype=np.int64)[:, None]
        vals = 3 * x + j
        vals = np.where(j < inputs["nchild"][None, :].astype(np.int64), vals, 0)
        vals = (vals + 2**31) % 2**32 - 2**31
        total = (vals.sum(0) + 2**31) % 2**32 - 2**31
        return np.concatenate([vals.ravel(), total]).astype(np.int32)
