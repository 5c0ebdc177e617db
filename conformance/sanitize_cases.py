"""Every executor x workload x dispatch x granularity, built, run once and checked, in one
process -- the driver to run under compute-sanitizer (a process per case, as ``pollbench
run`` does, would need ``--target-processes all`` and a sanitizer start per case):

    export PYTHONPATH=$PWD
    compute-sanitizer --tool memcheck  python3 conformance/sanitize_cases.py
    compute-sanitizer --tool racecheck python3 conformance/sanitize_cases.py --executor smem_ready
    python3 conformance/sanitize_cases.py --backend emu --ntasks 64      # no GPU

Prints one line per case and ``N of M cases failed`` last; exit code 1 if any failed, 2 on
bad input (no GPU, an unknown name). No timing: one checked launch per case.
"""

from __future__ import annotations

import argparse
import sys


def run(executors, workloads, backend_name: str, ntasks: int, block: int) -> int:
    """Run every case once; returns the number that failed."""
    import numpy as np

    from executors import get_executor
    from executors.base import LaunchArgs
    from harness.backend import EmuBackend, GpuBackend
    from harness.cases import CaseSpec, Unsupported, build_case, verdict

    be = GpuBackend() if backend_name == "gpu" else EmuBackend()
    failed = total = 0
    with be:
        for e in executors:
            ex = get_executor(e)
            for w in workloads:
                for d in ex.dispatch_modes:
                    for g in ex.granularities:
                        spec = CaseSpec(e, w, d, g, ntasks=ntasks, block=block)
                        try:
                            m, kernel, _, wl = build_case(spec, getattr(be, "arch", "sm_90"))
                        except Unsupported:
                            continue
                        total += 1
                        try:
                            be.load(m)
                            inputs = wl.make_inputs(np.random.default_rng(1), ntasks)
                            args, out = wl.upload(be, inputs, ntasks)
                            ex.launch(be, kernel, -(-ntasks // block), block,
                                      LaunchArgs.allocate(be, kernel, ntasks, args),
                                      checked=True)
                            outcome = verdict(wl.read_output(be, out, ntasks),
                                              wl.reference(inputs, ntasks))
                        except Exception as exc:  # a case's failure is reported, not fatal
                            outcome = f"ERROR: {exc}"
                        print(f"{spec.label}: {outcome}", flush=True)
                        failed += outcome != "pass"
    print(f"{failed} of {total} cases failed")
    return failed


def main(argv=None) -> int:
    from executors import EXECUTORS
    from harness.errors import PollbenchError
    from workloads import WORKLOADS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--executor", action="append", help="default: every executor")
    p.add_argument("--workload", action="append", help="default: every workload")
    p.add_argument("--backend", choices=("gpu", "emu"), default="gpu")
    p.add_argument("--ntasks", type=int, default=1024)
    p.add_argument("--block", type=int, default=128)
    a = p.parse_args(argv)
    if a.ntasks < 1 or a.block < 1 or a.block > 1024:
        print("sanitize_cases: --ntasks must be >= 1 and --block 1..1024", file=sys.stderr)
        return 2
    try:
        for name in a.executor or ():
            if name not in EXECUTORS:
                raise PollbenchError(f"unknown executor {name!r} (known: {', '.join(EXECUTORS)})")
        for name in a.workload or ():
            if name not in WORKLOADS:
                raise PollbenchError(f"unknown workload {name!r} (known: {', '.join(WORKLOADS)})")
        failed = run(a.executor or list(EXECUTORS), a.workload or list(WORKLOADS), a.backend,
                     a.ntasks, a.block)
    except PollbenchError as e:
        print(f"sanitize_cases: {e}", file=sys.stderr)
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
