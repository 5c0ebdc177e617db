"""``idle_wait``: a few tasks per block wait long for a flag, woken from outside their worker:
what an idle executor does meanwhile (spin, or sleep with ``nanosleep``).

Tasks come in groups of ``GROUP`` (one block at the default block size): the group's first
task is the *setter*, the next ``WAITERS`` are *waiters*, the rest finish on their first poll.
A waiter awaits its flag (``released``: Ready once the flag is non-zero, taking and clearing
it; Pending *without* waking itself — nothing polls it again until it is woken). The setter
awaits ``sleep(delay)``, then for each waiter stamps the time, publishes the waiter's token
(release store) and calls ``wake``: the waker an interrupt handler would be. The waiters'
workers meanwhile have nothing to run: an executor that spins burns issue slots and power,
``backoff`` sleeps, and the wake-to-poll latency (``workloads/latency.py``) shows what the
sleep costs. Delays are drawn per setter: log-uniform over 10 µs .. 10 ms at GPU sizes
(4096 tasks or more), 200 .. 2000 emulated steps below.

The baseline: the same roles with no executor — waiters spin on their flag, the setter on
``%globaltimer`` (a group's threads are one block's: spinning on each other relies on
independent thread scheduling, sm_70+). Outputs: a waiter's token, the setter's count of
waiters released, 0 for the rest. Figures: wake-to-poll latency (mean, max) and, from the
case's NVML window, energy per run; the compute left to a co-resident kernel is
``pollbench sweep``'s to measure.
"""

from __future__ import annotations

import numpy as np

from harness.futures import sleep
from harness.futures.lib import AsyncFn, LeafFuture
from harness.ptx import Module
from harness.ptx.types import U32, U64
from workloads import latency
from workloads.base import Workload

GROUP = 128
WAITERS = 4
GPU_DELAYS_NS = (10_000, 10_000_000)
EMU_DELAYS = (200, 2000)
GPU_SIZES_FROM = 4096


def _released_body(f):
    f.new_state()
    v = f.ld("global", f.arg("addr"), U32, sem="acquire", scope="gpu")
    with f.if_(f.setp("ne", v, 0, type=U32)):
        f.st("global", f.arg("addr"), f.mov(0, type=U32), type=U32)  # the next run waits again
        f.ready(v)
    f.pending()  # no wake_self: the setter's wake brings it back


RELEASED = LeafFuture("released", [("addr", U64)], U32, _released_body)


class IdleWaitWorkload(Workload):
    name = "idle_wait"
    summary = ("a few tasks a block wait 10 µs-10 ms for a flag another task sets and wakes: "
               "idle executors spin or sleep; wake-to-poll latency, energy")
    input_names = ("token", "delay", "flags", "stats")
    output_dtype = np.uint32

    def _flag(self, f, task):
        return f.element_addr(self.input_ptr(f, f.arg("args"), self.input_names.index("flags")),
                              task, 4)

    def _n(self, f):
        return f.cvt(self.input_ptr(f, f.arg("args"), len(self.input_names) + 1), U32)

    def root(self) -> AsyncFn:
        w = self

        def body(f, task, args):
            f.local("out", U32)
            f.set("out", f.mov(0, type=U32))
            pos = f.rem(task, GROUP, type=U32)
            with f.if_(f.setp("eq", pos, 0, type=U32)):  # the setter
                f.await_(sleep(w.load_input(f, args, "delay", f.arg("task"), U32)))
                me, n = f.arg("task"), w._n(f)
                for k in range(1, WAITERS + 1):
                    waiter = f.add(me, k, type=U32)
                    with f.if_(f.setp("lt", waiter, n, type=U32)):
                        latency.stamp(w, f, waiter)
                        token = w.load_input(f, f.arg("args"), "token", waiter, U32)
                        f.st("global", w._flag(f, waiter), token, type=U32, sem="release",
                             scope="gpu")
                        f.call("wake", [waiter, f.exec])
                        f.set("out", f.add(f.get("out"), 1, type=U32))
            pos = f.rem(f.arg("task"), GROUP, type=U32)
            waiter = f.and_(f.setp("ge", pos, 1, type=U32), f.setp("le", pos, WAITERS, type=U32))
            with f.if_(waiter):
                f.set("out", f.await_(RELEASED(w._flag(f, f.arg("task")))))
                latency.record(w, f)
            w.store_output(f, f.arg("args"), f.arg("task"), 0, f.get("out"), U32)
            return None

        return AsyncFn("idle_wait_root", [("task", U32), ("args", U64)], None, body)

    def build_baseline(self, module: Module) -> str:
        """The same roles spinning, no executor."""
        b, task, args, n = self.baseline_entry(module)
        flags = self.input_ptr(b, args, self.input_names.index("flags"))
        out = b.mov(0, type=U32)
        pos = b.rem(task, GROUP, type=U32)
        with b.if_(b.setp("eq", pos, 0, type=U32)):
            t0 = b.special("globaltimer")
            delay = b.cvt(self.load_input(b, args, "delay", task, U32), U64)
            with b.loop() as lp:
                lp.break_if(b.setp("ge", b.sub(b.special("globaltimer"), t0, type=U64), delay,
                                   type=U64))
            for k in range(1, WAITERS + 1):
                waiter = b.add(task, k, type=U32)
                with b.if_(b.setp("lt", waiter, n, type=U32)):
                    token = self.load_input(b, args, "token", waiter, U32)
                    b.st("global", b.element_addr(flags, waiter, 4), token, type=U32,
                         sem="release", scope="gpu")
                    b.add(out, 1, dst=out)
        is_waiter = b.and_(b.setp("ge", pos, 1, type=U32), b.setp("le", pos, WAITERS, type=U32))
        with b.if_(is_waiter):
            flag = b.element_addr(flags, task, 4)
            with b.loop() as lp:
                b.ld("global", flag, U32, sem="acquire", scope="gpu", dst=out)
                lp.break_if(b.setp("ne", out, 0, type=U32))
            b.st("global", flag, b.mov(0, type=U32), type=U32)
        self.store_output(b, args, task, 0, out, U32)
        b.ret()
        return b.fn.name

    def make_inputs(self, rng: np.random.Generator, n: int) -> dict:
        if n >= GPU_SIZES_FROM:
            lo, hi = np.log(GPU_DELAYS_NS[0]), np.log(GPU_DELAYS_NS[1])
            delay = np.exp(rng.uniform(lo, hi, n)).astype(np.uint32)
        else:
            delay = rng.integers(EMU_DELAYS[0], EMU_DELAYS[1], n, dtype=np.uint32, endpoint=True)
        return {"token": rng.integers(1, 2**32, n, dtype=np.uint32), "delay": delay,
                "flags": np.zeros(n, np.uint32), "stats": latency.zeros(n)}

    def roles(self, n: int) -> tuple:
        """(setter mask, waiter mask, waiters each setter releases) for ``n`` tasks."""
        pos = np.arange(n) % GROUP
        setter, waiter = pos == 0, (pos >= 1) & (pos <= WAITERS)
        released = np.array([min(WAITERS, n - 1 - t) for t in range(0, n, GROUP)], np.uint32)
        return setter, waiter, released

    def reference(self, inputs: dict, n: int) -> np.ndarray:
        setter, waiter, released = self.roles(n)
        out = np.zeros(n, np.uint32)
        out[waiter] = inputs["token"][waiter]
        out[setter] = released
        return out

    def metrics(self, backend, inputs, args_ptr, n, time_ms) -> dict:
        _, waiter, _ = self.roles(n)
        delay = inputs["delay"][np.arange(0, n, GROUP)]
        return {"waiters": int(waiter.sum()), "delay_ns_max": int(delay.max()) if n else 0,
                **latency.summary(backend, self, args_ptr, n)}
