"""Hand-written PTX kernels and the GPU runtime's self-test scenarios.

Shared by ``tests/test_gpu_runtime.py`` (pytest, GPU tests), ``tests/gpu_smoke.py``
(standalone bring-up script) and ``conformance/``.  Each ``scenario_*`` takes a
:class:`~harness.gpu.runtime.Runtime`, raises ``AssertionError`` (or a
``PollbenchError``) on failure and returns a one-line detail on success;
``timing_*`` return a measurement.

``python -m harness.gpu.selftest timeout-child`` is the child process of
:func:`scenario_kernel_timeout_subprocess`: it runs a kernel that ignores the
stop flag, expects ``KernelTimeout`` and exits with code 3.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.ptx.ir import ptx_isa_for  # the one .version table (re-exported)

if TYPE_CHECKING:  # pragma: no cover
    from harness.gpu.kernel import KernelHandle
    from harness.gpu.module import LoadedModule
    from harness.gpu.runtime import Runtime

__all__ = [
    "ptx_isa_for",
    "selftest_ptx",
    "conditional_ptx",
    "link_ptx",
    "load_selftest",
    "load_conditional",
    "scenario_vadd",
    "scenario_attributes",
    "scenario_watchdog_ok",
    "scenario_watchdog_stop",
    "scenario_capture_graph",
    "scenario_while_graph",
    "scenario_kernel_timeout_subprocess",
    "timing_empty_launch",
    "timing_graph_node",
    "timing_while_iteration",
    "TIMEOUT_CHILD_EXIT",
]

#: exit code of the timeout child when it saw KernelTimeout as expected
TIMEOUT_CHILD_EXIT = 3


def _header(arch: str) -> str:
    return f".version {ptx_isa_for(arch)}\n.target {arch}\n.address_size 64\n"


def selftest_ptx(arch: str = "sm_90") -> str:
    """PTX for the self-test kernels (no external calls; links with nvJitLink or the driver JIT).

    - ``vadd_u32(out, a, b, n: u32, k: u32)``: ``out[i] = a[i] * k + b[i]`` for ``i < n``
    - ``empty()``
    - ``inc_u32(counter)``: ``atomicAdd(counter, 1)`` per thread
    - ``spin_until_stop(flag, iters)``: one thread polls ``*flag`` (relaxed, system
      scope, 1 µs nanosleep between polls) until nonzero, then stores the poll count
      (u64) to ``*iters``
    - ``spin_forever(zero)``: polls ``*zero`` (a device word that stays 0): never
      returns, and ignores the stop flag
    """
    return _header(arch) + r"""
.visible .entry vadd_u32(.param .u64 p_out, .param .u64 p_a, .param .u64 p_b, .param .u32 p_n, .param .u32 p_k)
{
    .reg .pred %p<2>;
    .reg .b32 %r<10>;
    .reg .b64 %rd<8>;
    ld.param.u64 %rd1, [p_out];
    ld.param.u64 %rd2, [p_a];
    ld.param.u64 %rd3, [p_b];
    ld.param.u32 %r1, [p_n];
    ld.param.u32 %r2, [p_k];
    mov.u32 %r3, %ctaid.x;
    mov.u32 %r4, %ntid.x;
    mov.u32 %r5, %tid.x;
    mad.lo.u32 %r6, %r3, %r4, %r5;
    setp.ge.u32 %p1, %r6, %r1;
    @%p1 bra VADD_DONE;
    mul.wide.u32 %rd4, %r6, 4;
    add.u64 %rd5, %rd2, %rd4;
    add.u64 %rd6, %rd3, %rd4;
    add.u64 %rd7, %rd1, %rd4;
    ld.global.u32 %r7, [%rd5];
    ld.global.u32 %r8, [%rd6];
    mad.lo.u32 %r9, %r7, %r2, %r8;
    st.global.u32 [%rd7], %r9;
VADD_DONE:
    ret;
}

.visible .entry empty()
{
    ret;
}

.visible .entry inc_u32(.param .u64 p_counter)
{
    .reg .b64 %rd<2>;
    ld.param.u64 %rd1, [p_counter];
    red.global.add.u32 [%rd1], 1;
    ret;
}

.visible .entry spin_until_stop(.param .u64 p_flag, .param .u64 p_iters)
{
    .reg .pred %p<2>;
    .reg .b32 %r<2>;
    .reg .b64 %rd<4>;
    ld.param.u64 %rd1, [p_flag];
    ld.param.u64 %rd2, [p_iters];
    mov.u64 %rd3, 0;
SPIN_LOOP:
    add.u64 %rd3, %rd3, 1;
    ld.relaxed.sys.global.u32 %r1, [%rd1];
    setp.ne.u32 %p1, %r1, 0;
    @%p1 bra SPIN_DONE;
    nanosleep.u32 1000;
    bra.uni SPIN_LOOP;
SPIN_DONE:
    st.global.u64 [%rd2], %rd3;
    ret;
}

.visible .entry spin_forever(.param .u64 p_zero)
{
    .reg .pred %p<2>;
    .reg .b32 %r<2>;
    .reg .b64 %rd<2>;
    ld.param.u64 %rd1, [p_zero];
FOREVER_LOOP:
    ld.volatile.global.u32 %r1, [%rd1];
    setp.ne.u32 %p1, %r1, 0;
    @%p1 bra FOREVER_DONE;
    nanosleep.u32 1000;
    bra.uni FOREVER_LOOP;
FOREVER_DONE:
    ret;
}
"""


def conditional_ptx(arch: str = "sm_90") -> str:
    """PTX for ``while_body(counter, n: u32, handle: u64, flag)``, the WHILE-graph body.

    One thread: ``c = atomicAdd(counter, 1) + 1``; when ``c >= n`` or the stop flag is
    set it calls ``cudaGraphSetConditional(handle, 0)``, ending the loop after exactly
    ``n`` iterations.
    """
    return _header(arch) + r"""
.extern .func cudaGraphSetConditional(.param .b64 handle, .param .b32 value);

.visible .entry while_body(.param .u64 p_counter, .param .u32 p_n, .param .u64 p_handle, .param .u64 p_flag)
{
    .reg .pred %p<4>;
    .reg .b32 %r<5>;
    .reg .b64 %rd<4>;
    ld.param.u64 %rd1, [p_counter];
    ld.param.u32 %r1, [p_n];
    ld.param.u64 %rd2, [p_handle];
    ld.param.u64 %rd3, [p_flag];
    atom.global.add.u32 %r2, [%rd1], 1;
    add.u32 %r3, %r2, 1;
    ld.relaxed.sys.global.u32 %r4, [%rd3];
    setp.ge.u32 %p1, %r3, %r1;
    setp.ne.u32 %p2, %r4, 0;
    or.pred %p3, %p1, %p2;
    @!%p3 bra BODY_DONE;
    {
        .param .b64 param0;
        .param .b32 param1;
        st.param.b64 [param0], %rd2;
        st.param.b32 [param1], 0;
        call.uni cudaGraphSetConditional, (param0, param1);
    }
BODY_DONE:
    ret;
}
"""


def link_ptx(ptx: str, arch: str = "sm_90") -> bytes:
    """Compile PTX to a cubin with nvJitLink (cuda.core ``Linker``); works without a GPU."""
    from cuda.core import Linker, LinkerOptions, ObjectCode

    linker = Linker(ObjectCode.from_ptx(ptx.encode()), options=LinkerOptions(arch=arch, no_cache=True))
    try:
        return bytes(linker.link("cubin").code)
    finally:
        linker.close()


_SELFTEST_MODULES: "weakref.WeakKeyDictionary[Runtime, LoadedModule]" = weakref.WeakKeyDictionary()


def load_selftest(rt: Runtime) -> LoadedModule:
    """The self-test module, linked for ``rt.arch`` with nvJitLink and loaded as a cubin."""
    cached = _SELFTEST_MODULES.get(rt)
    if cached is None:
        cached = _SELFTEST_MODULES[rt] = rt.load(link_ptx(selftest_ptx(rt.arch), rt.arch),
                                                name="selftest")
    return cached


def load_conditional(rt: Runtime, via: str = "ptx") -> KernelHandle:
    """``while_body``, loaded through the driver JIT (``via="ptx"``) or an nvJitLink cubin (``"cubin"``)."""
    src = conditional_ptx(rt.arch)
    if via == "ptx":
        mod = rt.load_ptx(src, name="while_body.ptx")
    elif via == "cubin":
        mod = rt.load(link_ptx(src, rt.arch), name="while_body.cubin")
    else:
        raise ValueError(f"via must be 'ptx' or 'cubin', not {via!r}")
    return mod.kernel("while_body")


POISON = 0xAB


def scenario_vadd(rt: Runtime, n: int = 1000, seed: int = 1) -> str:
    """vadd_u32 on fresh random input with a poisoned output (and a guard tail) matches numpy."""
    from harness.gpu.runtime import grid_for

    k = load_selftest(rt).kernel("vadd_u32")
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 2**32, n, dtype=np.uint32)
    b = rng.integers(1, 2**32, n, dtype=np.uint32)
    mul = np.uint32(rng.integers(2, 2**32, dtype=np.uint32))
    guard = 64
    da, db = rt.to_device(a), rt.to_device(b)
    out = rt.alloc((n + guard) * 4)
    out.fill_bytes(POISON)
    block = 128
    rt.launch(k, grid_for(n, block), block, out, da, db, np.uint32(n), mul)
    got = out.to_host(np.uint32, (n + guard,))
    want = a * mul + b  # uint32 arithmetic wraps, as the kernel's
    bad = np.flatnonzero(got[:n] != want)
    assert bad.size == 0, f"{bad.size}/{n} wrong elements, first at {bad[0]}: got {got[bad[0]]:#x} want {want[bad[0]]:#x}"
    tail = got[n:]
    assert np.all(tail == np.uint32(0xABABABAB)), "kernel wrote past the end of its output"
    for arr in (da, db, out):
        arr.free()
    return f"{n} elements correct, guard intact"


def scenario_attributes(rt: Runtime) -> str:
    """Kernel attributes and occupancy are sane: num_regs > 0, >= 1 block/SM, no local memory."""
    k = load_selftest(rt).kernel("vadd_u32")
    regs = k.num_regs
    blocks = k.max_active_blocks_per_sm(128)
    assert regs > 0, f"num_regs = {regs}"
    assert blocks >= 1, f"max_active_blocks_per_sm(128) = {blocks}"
    assert k.max_threads_per_block >= 128, f"max_threads_per_block = {k.max_threads_per_block}"
    assert k.local_bytes == 0, f"local_bytes = {k.local_bytes}"
    assert k.shared_bytes == 0, f"shared_bytes = {k.shared_bytes}"
    assert k.param_sizes in (None, (8, 8, 8, 4, 4)), f"param_sizes = {k.param_sizes}"
    return (
        f"vadd_u32: {regs} regs, {blocks} blocks/SM at 128 threads, "
        f"max {k.max_threads_per_block} threads/block, params {k.param_sizes}"
    )


def scenario_watchdog_ok(rt: Runtime) -> str:
    """A kernel that finishes by itself comes back "ok" from the watchdog."""
    k = load_selftest(rt).kernel("inc_u32")
    counter = rt.alloc(4)
    counter.fill_bytes(0)
    outcome = rt.run_with_watchdog(k, 1, 32, counter, timeout_s=10.0, grace_s=2.0)
    assert outcome == "ok", f"outcome {outcome!r}"
    value = int(counter.to_host(np.uint32)[0])
    assert value == 32, f"counter = {value}, want 32"
    counter.free()
    return f"ok after {rt.last_wait_s * 1e3:.2f} ms"


def scenario_watchdog_stop(rt: Runtime, timeout_s: float = 0.5, grace_s: float = 5.0) -> str:
    """A kernel spinning on the stop flag returns "stopped" within timeout + grace."""
    k = load_selftest(rt).kernel("spin_until_stop")
    iters = rt.alloc(8)
    iters.fill_bytes(0)
    t0 = time.monotonic()
    outcome = rt.run_with_watchdog(k, 1, 1, rt.stop_flag, iters, timeout_s=timeout_s, grace_s=grace_s)
    elapsed = time.monotonic() - t0
    assert outcome == "stopped", f"outcome {outcome!r}"
    assert elapsed >= timeout_s * 0.9, f"returned after {elapsed:.3f} s, before the {timeout_s} s timeout"
    assert elapsed <= timeout_s + grace_s + 1.0, f"took {elapsed:.3f} s"
    polls = int(iters.to_host(np.uint64)[0])
    assert polls > 1, f"the kernel polled the flag {polls} times"
    assert rt.stop_flag.get() == 1
    iters.free()
    return f"stopped after {elapsed:.3f} s ({polls} polls of the flag)"


def scenario_capture_graph(rt: Runtime, launches: int = 10) -> str:
    """A captured graph of `launches` inc_u32 launches adds `launches` per graph launch."""
    k = load_selftest(rt).kernel("inc_u32")
    counter = rt.alloc(4)
    counter.fill_bytes(0)
    rt.synchronize()
    g = rt.capture_graph(lambda: [rt.launch(k, 1, 1, counter) for _ in range(launches)])
    assert int(counter.to_host(np.uint32)[0]) == 0, "capturing ran the kernels"
    rt.launch_graph(g)
    rt.launch_graph(g)
    value = int(counter.to_host(np.uint32)[0])
    assert value == 2 * launches, f"counter = {value}, want {2 * launches}"
    g.close()
    counter.free()
    return f"{g.nodes} nodes, 2 launches -> counter {value}"


def scenario_while_graph(rt: Runtime, n: int = 100, via: str = "ptx", timeout_s: float = 10.0) -> str:
    """A WHILE graph whose body counts to n and calls cudaGraphSetConditional runs exactly n times, twice."""
    k = load_conditional(rt, via)
    counter = rt.alloc(4)
    counter.fill_bytes(0)
    rt.synchronize()
    g = rt.while_graph(lambda handle: rt.launch(k, 1, 1, counter, np.uint32(n), handle, rt.stop_flag))
    results = []
    for _ in range(2):  # the second launch checks that the condition is reset to its default
        counter.fill_bytes(0)
        outcome = rt.run_graph_with_watchdog(g, timeout_s=timeout_s, grace_s=2.0)
        value = int(counter.to_host(np.uint32)[0])
        assert outcome == "ok", f"outcome {outcome!r} after {value} iterations (did cudaGraphSetConditional work?)"
        assert value == n, f"{value} iterations, want {n}"
        results.append(value)
    g.close()
    counter.free()
    return f"via {via}: {results[0]} and {results[1]} iterations"


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def scenario_kernel_timeout_subprocess(timeout_s: float = 1.0, grace_s: float = 1.0, limit_s: float = 120.0) -> str:
    """In a child process, a kernel that ignores the stop flag raises KernelTimeout; the child exits."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(_repo_root()) + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "harness.gpu.selftest", "timeout-child", str(timeout_s), str(grace_s)],
        capture_output=True,
        text=True,
        timeout=limit_s,
        env=env,
        cwd=str(_repo_root()),
    )
    elapsed = time.monotonic() - t0
    out = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == TIMEOUT_CHILD_EXIT, f"child exited {proc.returncode}: {out[-500:]}"
    assert "KernelTimeout" in out, out[-500:]
    return f"child saw KernelTimeout and exited in {elapsed:.1f} s: {out.splitlines()[-1][:160]}"


def _timeout_child(timeout_s: float, grace_s: float) -> int:
    from harness.gpu import KernelTimeout, Runtime

    rt = Runtime()
    k = load_selftest(rt).kernel("spin_forever")
    zero = rt.alloc(4)
    zero.fill_bytes(0)
    rt.synchronize()
    try:
        outcome = rt.run_with_watchdog(k, 1, 1, zero, timeout_s=timeout_s, grace_s=grace_s)
    except KernelTimeout as exc:
        print(f"KernelTimeout: {exc}", flush=True)
        assert rt.wedged
        os._exit(TIMEOUT_CHILD_EXIT)  # the kernel still runs: never tear the context down politely
    print(f"no timeout: outcome {outcome!r}", flush=True)
    os._exit(1)


def timing_empty_launch(rt: Runtime, repeat: int = 2000) -> float:
    """Microseconds per launch of an empty kernel from Python (events around `repeat` launches)."""
    k = load_selftest(rt).kernel("empty")
    rt.time_launch(k, 1, 1, repeat=50)  # warm-up
    return rt.time_launch(k, 1, 1, repeat=repeat) * 1e3


def timing_graph_node(rt: Runtime, nodes: int = 200, repeat: int = 20) -> float:
    """Microseconds per kernel node of a captured graph of `nodes` empty launches."""
    k = load_selftest(rt).kernel("empty")
    g = rt.capture_graph(lambda: [rt.launch(k, 1, 1) for _ in range(nodes)])
    rt.time_graph(g, repeat=2)  # warm-up
    us = rt.time_graph(g, repeat=repeat) * 1e3 / nodes
    g.close()
    return us


def timing_while_iteration(rt: Runtime, n: int = 1000, via: str = "ptx") -> float:
    """Microseconds per iteration of a WHILE node whose 1-thread body counts to n.

    The body polls a device word that stays 0 instead of the host-mapped stop flag
    (a PCIe read per iteration would inflate the figure); the warm-up still runs
    under the watchdog, so a loop that never ends is a KernelTimeout, not a hang.
    """
    k = load_conditional(rt, via)
    counter = rt.alloc(4)
    zero = rt.alloc(4)
    counter.fill_bytes(0)
    zero.fill_bytes(0)
    rt.synchronize()
    g = rt.while_graph(lambda handle: rt.launch(k, 1, 1, counter, np.uint32(n), handle, zero))
    assert rt.run_graph_with_watchdog(g, timeout_s=30.0) == "ok"  # warm-up, and a guard against a hang
    counter.fill_bytes(0)
    with rt.timer() as t:
        rt.launch_graph(g)
    us = t.elapsed_ms() * 1e3 / n
    value = int(counter.to_host(np.uint32)[0])
    assert value == n, f"{value} iterations, want {n}"
    g.close()
    counter.free()
    zero.free()
    return us


if __name__ == "__main__":  # pragma: no cover - the timeout child
    if len(sys.argv) >= 2 and sys.argv[1] == "timeout-child":
        t = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
        gr = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
        sys.exit(_timeout_child(t, gr))
    print("usage: python -m harness.gpu.selftest timeout-child [timeout_s grace_s]", file=sys.stderr)
    sys.exit(2)
