#!/usr/bin/env python
"""GPU bring-up smoke test for harness.gpu: ``python tests/gpu_smoke.py``.

Runs the GPU tests' scenarios plus a few timings, one PASS/FAIL line per check
(with the exception on failure), and exits non-zero if any check failed.  Each
check runs in its own process by default, so a fault or hang in one (which
makes the CUDA context unusable) cannot take the others down; ``--in-process``
runs them all in this process instead (faster, less isolated).

    python tests/gpu_smoke.py                 # all checks, isolated
    python tests/gpu_smoke.py --in-process    # all checks, one process
    python tests/gpu_smoke.py vadd while_ptx  # some checks
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

_RT = None


def runtime():
    """The shared Runtime of this process (created on first use)."""
    global _RT
    if _RT is None:
        from harness.gpu import Runtime

        _RT = Runtime(0)
    return _RT


def check_environment() -> str:
    import importlib.metadata as md

    from harness import gpu

    versions = []
    for dist in ("cuda-core", "cuda-bindings", "nvidia-nvjitlink", "numpy"):
        try:
            versions.append(f"{dist} {md.version(dist)}")
        except md.PackageNotFoundError:
            versions.append(f"{dist} ?")
    if not gpu.gpu_available():
        raise RuntimeError(gpu.unavailable_reason())
    gpus = gpu.list_gpus()
    g = gpus[0]
    return (
        f"{len(gpus)} GPU(s); #0 {g['name']} {g['arch']} {g['sm_count']} SMs "
        f"{g['memory_bytes'] / 2**30:.1f} GiB, driver CUDA {g['driver_version']}; " + ", ".join(versions)
    )


def check_runtime() -> str:
    rt = runtime()
    return f"{rt!r}, stop flag device ptr 0x{rt.stop_flag.ptr:x}"


def check_vadd() -> str:
    from harness.gpu import selftest

    return selftest.scenario_vadd(runtime())


def check_attributes() -> str:
    from harness.gpu import selftest

    return selftest.scenario_attributes(runtime())


def check_roundtrip() -> str:
    import numpy as np

    rt = runtime()
    x = np.random.default_rng(3).random((7, 9), dtype=np.float32)
    d = rt.to_device(x)
    y = d.to_host(np.float32, x.shape)
    assert np.array_equal(x, y), "round trip changed the data"
    d.fill_bytes(0x5A)
    assert np.all(d.to_host(np.uint8) == 0x5A), "fill_bytes"
    d.free()
    return f"{x.nbytes} bytes round-tripped, fill ok"


def check_arg_widths() -> str:
    import numpy as np

    from harness.gpu import LaunchArgError, selftest

    rt = runtime()
    k = selftest.load_selftest(rt).kernel("vadd_u32")
    sizes = k.param_sizes
    assert sizes == (8, 8, 8, 4, 4), f"cuKernelGetParamInfo sizes {sizes}"
    out = rt.alloc(16)
    try:
        rt.launch(k, 1, 4, out, out, out, 4, np.uint32(1))
    except LaunchArgError as exc:
        return f"param sizes {sizes}; rejected: {exc}"
    raise AssertionError("a u64 passed for a u32 parameter was not rejected")


def check_watchdog_ok() -> str:
    from harness.gpu import selftest

    return selftest.scenario_watchdog_ok(runtime())


def check_watchdog_stop() -> str:
    from harness.gpu import selftest

    return selftest.scenario_watchdog_stop(runtime())


def check_capture_graph() -> str:
    from harness.gpu import selftest

    return selftest.scenario_capture_graph(runtime())


def check_while_ptx() -> str:
    from harness.gpu import selftest

    return selftest.scenario_while_graph(runtime(), n=100, via="ptx")


def check_while_cubin() -> str:
    from harness.gpu import selftest

    return selftest.scenario_while_graph(runtime(), n=100, via="cubin")


def check_timing_launch() -> str:
    from harness.gpu import selftest

    us = selftest.timing_empty_launch(runtime())
    return f"empty kernel launch {us:.2f} µs each (events around 2000 Python launches; architecture §11: ≈9 µs)"


def check_timing_graph_node() -> str:
    from harness.gpu import selftest

    us = selftest.timing_graph_node(runtime())
    return f"captured graph node {us:.3f} µs each (200 empty nodes; architecture §11: ≈0.78 µs)"


def check_timing_while() -> str:
    from harness.gpu import selftest

    us = selftest.timing_while_iteration(runtime(), n=1000, via="ptx")
    return f"WHILE node iteration {us:.2f} µs each (1000 iterations; architecture §11: ≈4.1 µs)"


def check_kernel_timeout() -> str:
    from harness.gpu import selftest

    return selftest.scenario_kernel_timeout_subprocess()


CHECKS: dict[str, Callable[[], str]] = {
    "environment": check_environment,
    "runtime": check_runtime,
    "vadd": check_vadd,
    "attributes": check_attributes,
    "roundtrip": check_roundtrip,
    "arg_widths": check_arg_widths,
    "watchdog_ok": check_watchdog_ok,
    "watchdog_stop": check_watchdog_stop,
    "capture_graph": check_capture_graph,
    "timing_launch": check_timing_launch,
    "timing_graph_node": check_timing_graph_node,
    "while_ptx": check_while_ptx,
    "while_cubin": check_while_cubin,
    "timing_while": check_timing_while,
    "kernel_timeout": check_kernel_timeout,
}


def run_one(name: str) -> tuple[bool, str, float]:
    """Run one check in this process: (passed, detail or error, seconds)."""
    t0 = time.monotonic()
    try:
        detail = CHECKS[name]()
        return True, detail, time.monotonic() - t0
    except BaseException as exc:  # noqa: BLE001 - report everything, including AssertionError
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" [{Path(tb[-1].filename).name}:{tb[-1].lineno}]" if tb else ""
        msg = " ".join(f"{type(exc).__name__}: {exc}".split())
        return False, msg + where, time.monotonic() - t0


def run_isolated(name: str, limit_s: float) -> tuple[bool, str, float]:
    """Run one check in a child process (so faults and hangs stay there)."""
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--child", name],
            capture_output=True,
            text=True,
            timeout=limit_s,
            cwd=str(REPO),
        )
    except subprocess.TimeoutExpired:
        return False, f"the check did not finish within {limit_s:.0f} s (hung?)", time.monotonic() - t0
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("@@RESULT "):
            r = json.loads(line[len("@@RESULT ") :])
            return bool(r["ok"]), str(r["detail"]), time.monotonic() - t0
    tail = " ".join((proc.stdout + proc.stderr).split())[-600:]
    return False, f"child exited {proc.returncode} without a result: {tail}", time.monotonic() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checks", nargs="*", help=f"checks to run (default: all): {', '.join(CHECKS)}")
    ap.add_argument("--in-process", action="store_true", help="run every check in this process")
    ap.add_argument("--limit", type=float, default=180.0, help="seconds allowed per isolated check")
    ap.add_argument("--child", metavar="CHECK", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        ok, detail, _ = run_one(args.child)
        print("@@RESULT " + json.dumps({"ok": ok, "detail": detail}), flush=True)
        os._exit(0)  # never tear down a context that may be faulted or busy

    names = args.checks or list(CHECKS)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        print(f"unknown check(s): {', '.join(unknown)}; choose from {', '.join(CHECKS)}", file=sys.stderr)
        return 2
    failed = 0
    t_all = time.monotonic()
    for name in names:
        ok, detail, secs = run_one(name) if args.in_process else run_isolated(name, args.limit)
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'} {name} ({secs:.1f} s): {detail}", flush=True)
    total = len(names)
    print(f"{total - failed}/{total} passed in {time.monotonic() - t_all:.1f} s", flush=True)
    if args.in_process:
        os._exit(1 if failed else 0)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
