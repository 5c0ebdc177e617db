"""The workload contract (architecture §6): root futures, random inputs, a numpy reference, and
optionally a baseline kernel that does the same work with no executor.

Every root future takes ``(task: u32, args: u64)``. ``args`` points at a table of u64s:
one device pointer per input array (in ``input_names`` order), then the output pointer,
then the task count. A baseline kernel takes ``(args: u64, ntasks: u32)``.
"""

from __future__ import annotations

import numpy as np

from harness.futures import FnBuilder, FutureDef
from harness.ptx import Builder, Module
from harness.ptx.types import U32, U64, PtxType

BASELINE_PARAMS = (("args", U64), ("ntasks", U32))


class Workload:
    """Base class; subclasses define the root future, inputs, reference and baseline."""

    name = "abstract"
    summary = ""
    input_names: tuple = ()
    outputs_per_task = 1
    output_dtype = np.int32
    requires_spawn = False  # its tasks spawn tasks: only executors with a run queue run it

    def spawn_capacity(self, n: int) -> int:
        """Task slots the workload may spawn beyond its ``n`` roots."""
        return 0

    def task_types(self) -> list:
        """Every future type that runs as a task (the root first): sizes the task slots."""
        return [self.root()]

    def metrics(self, backend, inputs: dict, args_ptr: int, n: int,
                time_ms: float | None) -> dict:
        """Workload-specific figures (e.g. polls/s) of a case: its inputs, the device args
        table its runs used (``input_ptr`` finds a buffer in it), and its median time."""
        return {}

    def input_buffer(self, backend, args_ptr: int, name: str) -> int:
        """Device address of input ``name`` (read back from the args table)."""
        table = backend.read(args_ptr, np.uint64, len(self.input_names) + 2)
        return int(table[self.input_names.index(name)])

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
        out = backend.alloc(n * self.outputs_per_task * np.dtype(self.output_dtype).itemsize)
        table = np.array(ptrs + [out, n], dtype=np.uint64)
        return backend.to_device(table), out

    def read_output(self, backend, out_ptr: int, n: int) -> np.ndarray:
        return backend.read(out_ptr, self.output_dtype, n * self.outputs_per_task)

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
