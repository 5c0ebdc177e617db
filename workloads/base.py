"""The workload contract (architecture §6): root futures, random inputs, a numpy reference, and
optionally a baseline kernel that does the same work with no executor.

Every root future takes ``(task: u32, args: u64)``. ``args`` points at a table of u64s:
one device pointer per input array (in ``input_names`` order), then the output pointer,
then the task count, then the workload's ``table_extras`` (sizes read at run time). A baseline kernel takes ``(args: u64, ntasks: u32)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from harness.futures import FnBuilder, FutureDef
from harness.ptx import Builder, Module
from harness.ptx.types import U32, U64, PtxType

BASELINE_PARAMS = (("args", U64), ("ntasks", U32))


@dataclass(frozen=True)
class Work:
    """What one run over all tasks moves and computes: a roofline's two axes."""

    bytes: int
    flops: int


@dataclass
class Reference:
    """Another way to do a case's work, timed beside it with the same protocol (NVBench's
    reference measurements): a second baseline, or a roofline yardstick.

    It is a kernel of the case module (``kernel`` with ``grid``, ``block``, ``args``,
    ``shared``), the driver's device copy (``copy = (dst, src, nbytes)``) or a library
    call that queues its work on the backend's stream (``call``, e.g. cuBLAS through torch;
    ``graph_safe=False``: timed one run a sample, never captured). ``output``
    (pointer, element count) is checked against the case's own numpy answer after one run;
    ``roof`` marks a yardstick: ``"bandwidth"`` (its bytes per second bound memory-bound
    work) or ``"compute"`` (its FLOP/s bound the rest)."""

    name: str
    what: str
    work: Work
    kernel: str | None = None
    grid: int = 1
    block: int = 1
    args: tuple = ()
    shared: int = 0
    copy: tuple | None = None
    output: tuple | None = None
    roof: str | None = None
    call: Callable | None = None
    graph_safe: bool = True

    def launch(self, backend, checked: bool = False) -> None:
        """One run (``checked``: under the watchdog, waited for)."""
        if self.copy is not None or self.call is not None:
            self.enqueue(backend)
            if checked and backend.name == "gpu":
                backend.rt.sync_stream(f"the {self.name} reference")
        else:
            backend.launch(self.kernel, self.grid, self.block, list(self.args), checked=checked,
                           shared=self.shared)

    def enqueue(self, backend) -> None:
        """Queue one run (what the timing protocol times)."""
        if self.copy is not None:
            backend.copy(*self.copy)
        elif self.call is not None:
            self.call()
        else:
            backend.enqueue(self.kernel, self.grid, self.block, list(self.args), self.shared)


class Workload:
    """Base class; subclasses define the root future, inputs, reference and baseline."""

    name = "abstract"
    summary = ""
    input_names: tuple = ()
    outputs_per_task = 1
    output_dtype = np.int32
    requires_spawn = False  # its tasks spawn tasks: only executors with a run queue run it
    # > 0: a task is one thread of a group of this many that its block polls together
    # (matmul's tile): only an executor that polls a block's tasks in lockstep runs it
    cooperative = 0

    def tasks(self, n: int) -> int:
        """The task count of a case asked for ``n`` tasks (``n``, unless the workload's
        size is its own, as a matmul's shape is)."""
        return n

    def spawn_capacity(self, n: int) -> int:
        """Task slots the workload may spawn beyond its ``n`` roots."""
        return 0

    def task_types(self) -> list:
        """Every future type that runs as a task (the root first): sizes the task slots."""
        return [self.root()]

    def outputs(self, n: int) -> int:
        """Output elements of a run over ``n`` tasks."""
        return n * self.outputs_per_task

    def table_extras(self, n: int) -> list:
        """u64s the args table carries after the task count (sizes a workload reads at run time)."""
        return []

    def work(self, n: int) -> Work | None:
        """Bytes and FLOPs of one run over ``n`` tasks, where the workload has a roofline."""
        return None

    def build_references(self, module: Module) -> None:
        """Emit the kernels of ``references`` into the case module (none by default)."""

    def references(self, backend, inputs: dict, args_ptr: int, n: int) -> list:
        """``Reference`` runs timed beside the case (on a GPU): none by default."""
        return []

    def metrics(self, backend, inputs: dict, args_ptr: int, n: int,
                time_ms: float | None) -> dict:
        """Workload-specific figures (e.g. polls/s) of a case: its inputs, the device args
        table its runs used (``input_ptr`` finds a buffer in it), and its median time."""
        return {}

    def input_buffer(self, backend, args_ptr: int, name: str) -> int:
        """Device address of input ``name`` (read back from the args table)."""
        table = backend.read(args_ptr, np.uint64, len(self.input_names) + 2)
        return int(table[self.input_names.index(name)])

    def table_word(self, b: Builder, args, k: int):
        """The args table's u64 ``k`` after the task count (``table_extras``'s k-th), as u32."""
        return b.cvt(self.input_ptr(b, args, len(self.input_names) + 2 + k), U32)

    def root(self) -> FutureDef:
        raise NotImplementedError

    def make_inputs(self, rng: np.random.Generator, n: int) -> dict:
        raise NotImplementedError

    def reference(self, inputs: dict, n: int) -> np.ndarray:
        raise NotImplementedError

    def build_baseline(self, module: Module) -> str | None:
        return None

    def baseline_entry(self, module: Module):
        """The baseline kernel's prologue: ``<name>_baseline(args, ntasks)``, one thread per
        task, threads past ``ntasks`` exit. Returns (builder, task, args, ntasks)."""
        b = Builder.entry(module, f"{self.name}_baseline", BASELINE_PARAMS)
        task, n = b.global_index(), b.param("ntasks")
        with b.if_(b.setp("ge", task, n)):
            b.exit()
        return b, task, b.param("args"), n

    # ---------------------------------------------------------------- host side

    def upload(self, backend, inputs: dict, n: int) -> tuple:
        """Copy inputs, allocate the poisoned output, write the args table.
        Returns (args_ptr, out_ptr)."""
        ptrs = [backend.to_device(np.ascontiguousarray(inputs[k])) for k in self.input_names]
        out = backend.alloc(self.outputs(n) * np.dtype(self.output_dtype).itemsize)
        table = np.array(ptrs + [out, n, *self.table_extras(n)], dtype=np.uint64)
        return backend.to_device(table), out

    def read_output(self, backend, out_ptr: int, n: int) -> np.ndarray:
        return backend.read(out_ptr, self.output_dtype, self.outputs(n))

    # ------------------------------------------------------- device-side helpers

    def input_ptr(self, b: Builder, args, k: int):
        return b.ld("global", b.add(args, 8 * k, type=U64) if k else args, U64)

    def load_input(self, b: Builder, args, name: str, task, t: PtxType):
        base = self.input_ptr(b, args, self.input_names.index(name))
        return b.ld("global", b.element_addr(base, task, t.nbytes), t)

    def store_output(self, b: Builder, args, task, k: int, value, t: PtxType):
        """out[k * ntasks + task] = value (structure of arrays, coalesced)."""
        nin = len(self.input_names)
        out = self.input_ptr(b, args, nin)
        n = b.cvt(self.input_ptr(b, args, nin + 1), U32)
        idx = b.mad(b.mov(k, type=U32), n, task)
        b.st("global", b.element_addr(out, idx, t.nbytes), value, type=t)

    def root_args(self, f: FnBuilder):
        return f.arg("task"), f.arg("args")
