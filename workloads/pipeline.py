"""``pipeline_k<K>``: stream an array through load -> K dependent FMAs -> store, as tasks.

Task i owns elements ``i + e * ntasks`` for e < ``elems`` (neighbouring tasks read
neighbouring floats: a warp's loads and stores coalesce), applies ``x = x * A + B`` K times
to each and stores it; it yields after every ``chunk`` elements, so executors interleave
tasks as a pipeline of memory and compute. ``elems`` and ``chunk`` follow the task count
(``sizes``) and travel in the args table: at the GPU's default 2^20 tasks, 256 elements a
task is 1 GiB in and 1 GiB out; the emulator's 64 tasks take 8 each. A thread works on
``GROUP`` elements at once (their loads in flight together, their FMA chains interleaved),
in the task and in the baseline alike.

Beside the plain baseline (the same loop per thread, no executor) every GPU case times
``references``: the hand-written warp-specialized TMA kernel (``workloads/stream_tma.py``,
every block that fits at once), the driver's device copy of the same bytes and the FP32
FMA peak (``workloads/roofline.py``): the roofline of the same run. Figures: GB/s (bytes
read and written) and FLOP/s (2 per FMA).

K runs from memory-bound to compute-bound (``PIPELINE_K``; an H200's ridge is near 14
FLOP/B, K ~ 56). With ``A = 0.5`` every element reaches the fixed point 0.5 after about
30 rounds, so at large K the check proves that every element was written but not how many
FMAs it got; K = 1 and 16 check the count exactly.
"""

from __future__ import annotations

import numpy as np

from harness.compile.arch import arch_number
from harness.futures import yield_now
from harness.futures.lib import AsyncFn
from harness.ptx import Module
from harness.ptx.types import F32, U32, U64
from workloads import roofline, stream_tma
from workloads.base import Reference, Work, Workload
from workloads.stream_tma import A, B, GROUP  # GROUP: elements a thread works on together

PIPELINE_K = (1, 16, 64, 256)
DISTINCT = 1 << 16  # inputs are random draws from this many random floats: numpy's answer
#                     is K rounds over those, then one gather (K rounds over 2^28 would take
#                     numpy seconds a round, in every case's process)


MAX_ELEMENTS = 1 << 30  # 4 GiB an array; element indices are u32 on the device


def sizes(n: int) -> tuple[int, int]:
    """(elements per task, elements per chunk) for ``n`` tasks: 256 and 32 from 2^20 tasks,
    down to 8 and 8 (powers of two: a whole number of chunks, of ``GROUP``s a chunk), and
    fewer from 2^22 tasks on, so that no array passes ``MAX_ELEMENTS``."""
    n = max(1, n)
    elems = 1 << max(3, min(8, (n >> 12).bit_length() - 1, (MAX_ELEMENTS // n).bit_length() - 1))
    return elems, max(GROUP, min(32, elems // 2))


def fma_rounds(x: np.ndarray, k: int) -> np.ndarray:
    """numpy's answer: k rounds of ``x * A + B`` in float32, stopping early at a fixed point
    (with ``A`` a power of two the product is exact, so one f32 add is the fma's rounding)."""
    x = np.asarray(x, np.float32).copy()
    a, b = np.float32(A), np.float32(B)
    for _ in range(k):
        y = x * a + b
        if np.array_equal(y, x):
            break
        x = y
    return x


class PipelineWorkload(Workload):
    input_names = ("x",)
    output_dtype = np.float32

    def __init__(self, k: int = 16):
        self.k = k
        self.name = f"pipeline_k{k}"
        self.summary = (f"stream elements through load -> {k} FMAs -> store, yielding every "
                        f"chunk: GB/s, FLOP/s against TMA, copy and FMA roofs")

    @property
    def tma_kernel(self) -> str:
        return f"{self.name}_tma"

    def outputs(self, n: int) -> int:
        return n * sizes(n)[0]

    def table_extras(self, n: int) -> list:
        return list(sizes(n))

    def work(self, n: int) -> Work:
        elements = self.outputs(n)
        return Work(8 * elements, 2 * self.k * elements)

    def _group(self, b, args, task, e, n):
        """Elements e .. e + GROUP - 1 of the task: GROUP loads, then k rounds of GROUP
        independent FMAs, then GROUP stores (``b`` a Builder or an FnBuilder). The loads are
        all in flight before the first is used and the FMA chains interleave: memory- and
        instruction-level parallelism within one thread, as a fast kernel is written."""
        src, out = self.input_ptr(b, args, 0), self.input_ptr(b, args, 1)
        idx = [b.mad(b.add(e, g, type=U32), n, task, type=U32) for g in range(GROUP)]
        xs = [b.ld("global", b.element_addr(src, i, 4), F32) for i in idx]
        j = b.mov(0, type=U32)
        with b.loop() as lp:
            lp.break_if(b.setp("ge", j, self.k, type=U32))
            for x in xs:
                b.fma(x, A, B, type=F32, dst=x)
            b.add(j, 1, dst=j)
        for i, x in zip(idx, xs):
            b.st("global", b.element_addr(out, i, 4), x, type=F32)

    def root(self) -> AsyncFn:
        w = self

        def body(f, task, args):
            f.local("e", U32)
            f.set("e", f.mov(0, type=U32))
            with f.loop() as chunks:
                elems = w.table_word(f, f.arg("args"), 0)
                chunks.break_if(f.setp("ge", f.get("e"), elems, type=U32))
                n = f.cvt(w.input_ptr(f, f.arg("args"), 2), U32)
                end = f.add(f.get("e"), w.table_word(f, f.arg("args"), 1), type=U32)
                e = f.get("e")
                with f.loop() as inner:
                    inner.break_if(f.setp("ge", e, end, type=U32))
                    w._group(f, f.arg("args"), f.arg("task"), e, n)
                    f.add(e, GROUP, dst=e)
                f.set("e", e)
                f.await_(yield_now())  # a chunk done: let the executor run another task
            return None

        return AsyncFn(f"{self.name}_root", [("task", U32), ("args", U64)], None, body)

    def build_baseline(self, module: Module) -> str:
        """The same elements, FMAs and stores in a plain loop per thread."""
        b, task, args, n = self.baseline_entry(module)
        elems = self.table_word(b, args, 0)
        e = b.mov(0, type=U32)
        with b.loop() as lp:
            lp.break_if(b.setp("ge", e, elems, type=U32))
            self._group(b, args, task, e, n)
            b.add(e, GROUP, dst=e)
        b.ret()
        return b.fn.name

    def build_references(self, module: Module) -> None:
        if arch_number(module.arch) >= 90:  # cp.async.bulk and mbarrier tx counts: sm_90
            stream_tma.build(module, self.tma_kernel, k=self.k)
        roofline.build_fma_peak(module)

    def references(self, backend, inputs: dict, args_ptr: int, n: int) -> list:
        if backend.name != "gpu":  # nothing to time; the TMA kernel's own tests cover it
            return []
        x = self.input_buffer(backend, args_ptr, "x")
        elements = self.outputs(n)
        refs = [roofline.copy_reference(backend, x, 4 * elements), roofline.fma_peak_reference(backend)]
        if arch_number(backend.arch) >= 90 and elements % stream_tma.TILE == 0:
            out = backend.alloc(4 * elements)
            grid = max(1, backend.resident_blocks(self.tma_kernel, stream_tma.THREADS))
            refs.insert(0, Reference(
                "tma", f"warp-specialized TMA kernel ({grid} blocks: 1 producer lane, "
                f"{stream_tma.CONSUMERS} consumer warps, {stream_tma.STAGES} stages of "
                f"{stream_tma.TILE * 4 // 1024} KiB)", self.work(n), kernel=self.tma_kernel,
                grid=grid, block=stream_tma.THREADS,
                args=(x, out, np.uint32(elements // stream_tma.TILE), np.uint32(self.k)),
                output=(out, elements)))
        return refs

    def make_inputs(self, rng: np.random.Generator, n: int) -> dict:
        values = rng.standard_normal(DISTINCT, dtype=np.float32)
        index = rng.integers(0, DISTINCT, self.outputs(n), dtype=np.uint16)
        return {"x": values[index], "values": values, "index": index}

    def reference(self, inputs: dict, n: int) -> np.ndarray:
        return fma_rounds(inputs["values"], self.k)[inputs["index"]]
