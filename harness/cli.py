"""``pollbench list | ptx | inspect | run``.

Every user error (unknown name, bad arch, no driver) is one line on stderr and exit code 2;
a case that fails its check makes ``run`` exit 1.
"""

from __future__ import annotations

import argparse
import itertools
import sys

from harness.errors import PollbenchError


def _executors_workloads(args) -> list:
    from executors import EXECUTORS, get_executor
    from workloads import WORKLOADS, get_workload

    exs = [get_executor(e) for e in (args.executor or list(EXECUTORS))]
    wls = [get_workload(w) for w in (args.workload or list(WORKLOADS))]
    return exs, wls


def cmd_list(args) -> int:
    """Executors, workloads and the GPUs this machine sees."""
    from rich.table import Table

    from executors import EXECUTORS
    from harness.gpu import list_gpus, unavailable_reason
    from harness.report import console
    from workloads import WORKLOADS

    t = Table(title="executors")
    t.add_column("name")
    t.add_column("granularities")
    t.add_column("what it is")
    for e in EXECUTORS.values():
        t.add_row(e.name, ", ".join(e.granularities), e.summary)
    console.print(t)
    t = Table(title="workloads")
    t.add_column("name")
    t.add_column("what it is")
    for w in WORKLOADS.values():
        t.add_row(w.name, w.summary)
    console.print(t)
    gpus = list_gpus()
    if not gpus:
        console.print(f"GPUs: none ({unavailable_reason()})")
    for g in gpus:
        console.print(f"GPU {g['index']}: {g['name']} ({g['arch']}, {g['sm_count']} SMs, "
                      f"{g['memory_bytes'] / 2**30:.0f} GiB, driver {g['driver_version']})")
    return 0


def _arch(args) -> str:
    from harness.compile import parse_arch

    if args.arch:
        return parse_arch(args.arch)
    from harness.gpu import gpu_available, list_gpus

    if gpu_available():
        return list_gpus()[args.device]["arch"]
    return "sm_90"


def cmd_ptx(args) -> int:
    """Print the PTX of one executor x workload."""
    from harness.cases import CaseSpec, build_case

    spec = CaseSpec(args.executor_name, args.workload_name, args.dispatch, args.granularity)
    m, _, _, _ = build_case(spec, _arch(args))
    sys.stdout.write(m.to_ptx())
    return 0


def cmd_inspect(args) -> int:
    """Resource report per kernel, from nvJitLink (no GPU needed)."""
    from executors import DISPATCH_MODES
    from harness.compile import compile_ptx, theoretical_occupancy
    from harness.cases import CaseSpec, build_case
    from harness.report import console, resources_table

    arch = _arch(args)
    exs, wls = _executors_workloads(args)
    for ex, wl in itertools.product(exs, wls):
        rows = []
        for dispatch, gran in itertools.product(DISPATCH_MODES, ex.granularities):
            m, kernel, baseline, _ = build_case(CaseSpec(ex.name, wl.name, dispatch, gran), arch)
            compiled = compile_ptx(m.to_ptx(), arch)
            for name in (kernel.name, baseline) if not rows else (kernel.name,):
                if name and name in compiled.resources:
                    res = compiled.resources[name]
                    occ = theoretical_occupancy(res, args.block, arch)
                    rows.append((name, res, args.block, occ))
        console.print(resources_table(f"{ex.name} x {wl.name} on {arch}", rows))
    return 0


def _selftest(args, backend) -> int:
    from harness.difftest import all_cases, check_case
    from harness.report import console, difftest_table

    rows = []
    cases = all_cases()
    with _progress(len(cases), "self-tests") as step:
        for case in cases:
            if "traps" in case.tags and backend.name == "gpu":
                continue  # a trap poisons the context: the gpu test suite isolates it
            verdict, run = check_case(case, backend, args.seed, backend.name == "gpu")
            rows.append((case, verdict, run))
            step()
    console.print(difftest_table(rows, backend.name))
    failed = sum(v != "pass" for _, v, _ in rows)
    console.print(f"{len(rows) - failed} passed, {failed} failed")
    return 1 if failed else 0


def _progress(total: int, what: str):
    import contextlib

    from rich.progress import Progress

    @contextlib.contextmanager
    def bar():
        with Progress(transient=True, console=__import__("harness.report").report.err_console) as p:
            task = p.add_task(what, total=total)
            yield lambda: p.advance(task)

    return bar()


def cmd_run(args) -> int:
    """Run every (or the chosen) executor x workload x dispatch x granularity."""
    from executors import DISPATCH_MODES
    from harness.backend import make_backend
    from harness.cases import CaseSpec, run_case
    from harness.report import case_table, console

    with make_backend(args.backend, args.device) as backend:
        if args.selftest:
            return _selftest(args, backend)
        exs, wls = _executors_workloads(args)
        ntasks = args.ntasks or (1 << 20 if backend.name == "gpu" else 256)
        specs = [CaseSpec(ex.name, wl.name, d, g, ntasks, args.block, args.seed)
                 for ex, wl in itertools.product(exs, wls)
                 for d in (args.dispatch or DISPATCH_MODES)
                 for g in (args.granularity or ex.granularities)]
        results = []
        with _progress(len(specs), "cases") as step:
            for spec in specs:
                results.append(run_case(spec, backend, repeats=args.repeats))
                step()
        console.print(case_table(results, backend.name))
        failed = [r for r in results if not r.ok]
        console.print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
        return 1 if failed else 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pollbench", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, arch=True):
        sp.add_argument("--device", type=int, default=0, help="CUDA device ordinal")
        if arch:
            sp.add_argument("--arch", help="target, e.g. sm_90 (default: the GPU's, else sm_90)")

    sp = sub.add_parser("list", help="executors, workloads, GPUs")
    sp.set_defaults(func=cmd_list)

    sp = sub.add_parser("ptx", help="print the generated PTX of EXECUTOR x WORKLOAD")
    sp.add_argument("executor_name", metavar="EXECUTOR")
    sp.add_argument("workload_name", metavar="WORKLOAD")
    sp.add_argument("--dispatch", default="direct")
    sp.add_argument("--granularity", default="thread")
    common(sp)
    sp.set_defaults(func=cmd_ptx)

    sp = sub.add_parser("inspect", help="registers, spills, stack, smem, occupancy per kernel")
    sp.add_argument("--executor", action="append")
    sp.add_argument("--workload", action="append")
    sp.add_argument("--block", type=int, default=128, help="block size for occupancy")
    common(sp)
    sp.set_defaults(func=cmd_inspect)

    sp = sub.add_parser("run", help="run, check and time cases (GPU if present, else emulator)")
    sp.add_argument("--executor", action="append")
    sp.add_argument("--workload", action="append")
    sp.add_argument("--dispatch", action="append", choices=["direct", "indirect"])
    sp.add_argument("--granularity", action="append", choices=["thread", "warp", "block"])
    sp.add_argument("--backend", choices=["gpu", "emu"], help="default: gpu when present")
    sp.add_argument("--ntasks", type=int, help="tasks per case (default 2^20 GPU, 256 emulator)")
    sp.add_argument("--block", type=int, default=128)
    sp.add_argument("--repeats", type=int, default=20, help="timed launches per kernel")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--selftest", action="store_true",
                    help="run the op table's differential self-tests instead")
    common(sp, arch=False)
    sp.set_defaults(func=cmd_run)
    return p


def main(argv=None) -> int:
    """Entry point of the ``pollbench`` command."""
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except PollbenchError as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"pollbench: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pollbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
