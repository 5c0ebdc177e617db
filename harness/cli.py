"""``pollbench list | ptx | inspect | run | compare``.

Every user error (unknown name, bad arch, no driver, an unreadable results file) is one
line on stderr and exit code 2; a case that fails its check, times out or raises makes
``run`` exit 1.
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
    from harness.compile import compile_ptx, theoretical_occupancy
    from harness.cases import CaseSpec, Unsupported, build_case
    from harness.report import console, resources_table

    arch = _arch(args)
    exs, wls = _executors_workloads(args)
    for ex, wl in itertools.product(exs, wls):
        rows = []
        for dispatch, gran in itertools.product(ex.dispatch_modes, ex.granularities):
            try:
                m, kernel, baseline, _ = build_case(CaseSpec(ex.name, wl.name, dispatch, gran), arch)
            except Unsupported as e:
                console.print(f"{ex.name} x {wl.name}: not applicable ({e})")
                break
            compiled = compile_ptx(m.to_ptx(), arch)
            for name in (kernel.name, baseline) if not rows else (kernel.name,):
                if name and name in compiled.resources:
                    res = compiled.resources[name]
                    dynamic = kernel.dynamic_smem if name == kernel.name else 0
                    occ = theoretical_occupancy(res, args.block, arch, dynamic)
                    rows.append((name, res, args.block, occ, dynamic))
        if rows:
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


def _backend_name(name: str | None, device: int) -> str:
    """``gpu`` or ``emu``; a GPU asked for and missing is a usage error (exit 2) here, in
    the parent, before any case starts."""
    from harness.gpu import gpu_available
    from harness.gpu.driver import require_device

    if name is None:
        name = "gpu" if gpu_available() else "emu"
    if name == "gpu":
        require_device(device)
    return name


def _timing_options(args) -> dict:
    """The timing protocol's options as plain values (they travel to each case's process)."""
    from harness.measure import TimingConfig

    opts = {"max_noise": args.max_noise / 100.0, "min_samples": args.min_samples,
            "timeout_s": args.timeout, "cold": args.cold}
    TimingConfig(**opts)  # a bad value is a one-line error here, before any case starts
    return opts


def _backoff_sweep(args, backend) -> int:
    """``run --backoff-sweep``: wake-to-poll latency against the issue slots left to
    co-resident compute, for embassy (spinning) and backoff at each min/max sleep."""
    from rich.table import Table

    from executors.backoff import sweep
    from harness.report import console

    rows = sweep(backend, seed=args.seed)
    t = Table(title="backoff sweep: ping_pong beside a co-resident FMA kernel")
    cols = ("executor", "min_ns", "max_ns", "latency_ns_alone", "latency_ns_beside",
            "compute_share", "overlap", "check")
    for c in cols:
        t.add_column(c, justify="left" if c in ("executor", "check") else "right")
    for r in rows:
        t.add_row(*(f"{r.get(c):.3g}" if isinstance(r.get(c), float) else str(r.get(c, "-"))
                    for c in cols))
    console.print(t)
    return 0 if all(r.get("check") == "pass" for r in rows) else 1


def cmd_run(args) -> int:
    """Run every (or the chosen) executor x workload x dispatch x granularity, each case in
    its own process; write the results document; exit 1 if any case did not pass."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn,
                               TextColumn, TimeElapsedColumn)

    from harness.cases import CaseSpec
    from harness.orchestrate import run_cases
    from harness.report import case_table, console, err_console
    from harness.results import document, environment, save, spec_label

    if args.selftest or args.backoff_sweep:
        from harness.backend import make_backend

        with make_backend(args.backend, args.device) as backend:
            return (_selftest if args.selftest else _backoff_sweep)(args, backend)
    if args.case_timeout <= 0:
        raise PollbenchError(f"--case-timeout must be positive, not {args.case_timeout:g}")
    timing = _timing_options(args)
    backend = _backend_name(args.backend, args.device)
    exs, wls = _executors_workloads(args)
    ntasks = args.ntasks or (1 << 20 if backend == "gpu" else 64)
    # --dispatch and --granularity pick among each executor's own modes and granularities
    specs = [CaseSpec(ex.name, wl.name, d, g, ntasks, args.block, args.seed)
             for ex, wl in itertools.product(exs, wls)
             for d in ex.dispatch_modes if not args.dispatch or d in args.dispatch
             for g in ex.granularities if not args.granularity or g in args.granularity]
    if not specs:
        raise PollbenchError("no executor chosen has the --dispatch/--granularity asked for")
    env = environment(backend, args.device)
    options = {"backend": backend, "device": args.device, "repeats": args.repeats,
               "timing": timing}
    config = {**options, "timeout_s": args.case_timeout, "ntasks": ntasks, "block": args.block,
              "seed": args.seed, "executors": [e.name for e in exs],
              "workloads": [w.name for w in wls], "dispatch": args.dispatch,
              "granularity": args.granularity}

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=err_console,
                  transient=True, disable=not err_console.is_terminal) as progress:
        bar = progress.add_task("cases", total=len(specs))

        def start(spec):
            progress.update(bar, description=spec_label(spec))

        finished = []

        def done(rec):
            finished.append(rec)
            if rec["status"] not in ("pass", "skip"):
                progress.console.print(f"{rec['status']}: {spec_label(rec['spec'])}: "
                                       f"{rec['message']}", markup=False, highlight=False)
            progress.advance(bar)

        try:
            records = run_cases(specs, options, timeout_s=args.case_timeout, on_start=start,
                                on_done=done)
        except KeyboardInterrupt:
            # Ctrl-C keeps what finished: the cases done so far are saved, marked interrupted.
            config["interrupted_after"] = len(finished)
            if not args.no_save and finished:
                path = save(document(env, args.argv, config, finished), args.out)
                err_console.print(f"interrupted after {len(finished)} of {len(specs)} cases; "
                                  f"results so far: {path}", markup=False, highlight=False)
            raise

    console.print(case_table(records, backend))
    counts = {s: sum(r["status"] == s for r in records)
              for s in ("pass", "fail", "timeout", "error", "skip")}
    bad = counts["fail"] + counts["timeout"] + counts["error"]
    detail = ", ".join(f"{counts[s]} {w}" for s, w in (("timeout", "timed out"),
                                                       ("error", "errors"),
                                                       ("skip", "skipped")) if counts[s])
    console.print(f"{counts['pass']} passed, {bad} failed" + (f" ({detail})" if detail else ""))
    if not args.no_save:
        path = save(document(env, args.argv, config, records), args.out)
        console.print(f"results: {path}", markup=False, highlight=False)
    return 1 if bad else 0


def cmd_compare(args) -> int:
    """Per-case B/A ratios of two results files, with a verdict only where the intervals
    do not overlap."""
    from harness.report import compare_table, console
    from harness.results import compare, load

    a, b = load(args.a), load(args.b)
    cmp = compare(a, b)
    console.print(compare_table(cmp, a["environment"], b["environment"]))
    if a["environment"].get("backend") != b["environment"].get("backend"):
        console.print("note: A and B ran on different backends", highlight=False)
    for side, labels in (("A", cmp.only_a), ("B", cmp.only_b)):
        if labels:
            console.print(f"only in {side} ({len(labels)}): " + ", ".join(labels),
                          markup=False, highlight=False)
    console.print("intervals: ci95 = 95% distribution-free interval of the median (order "
                  "statistics of the samples); range = min..max of the samples; a verdict "
                  "only where A's and B's intervals do not overlap", highlight=False)
    return 0


def parser() -> argparse.ArgumentParser:
    from executors.base import DISPATCH_MODES
    from harness.orchestrate import DEFAULT_TIMEOUT_S

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
    sp.add_argument("--dispatch", action="append", choices=list(DISPATCH_MODES),
                    help="default: every mode the executor has")
    sp.add_argument("--granularity", action="append", choices=["thread", "warp", "block"])
    sp.add_argument("--backend", choices=["gpu", "emu"], help="default: gpu when present")
    sp.add_argument("--ntasks", type=int, help="tasks per case (default 2^20 GPU, 64 emulator: every case then runs in a few seconds of CPU)")
    sp.add_argument("--block", type=int, default=128)
    sp.add_argument("--repeats", type=int,
                    help="a fixed number of timed samples per kernel (default: the protocol "
                         "decides, from --max-noise/--min-samples/--timeout)")
    sp.add_argument("--max-noise", type=float, default=0.5, metavar="PERCENT",
                    help="stop sampling once the relative std-dev is under this (default 0.5)")
    sp.add_argument("--min-samples", type=int, default=10, help="samples before stopping (default 10)")
    sp.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                    help="time limit of one kernel's sampling (default 10)")
    sp.add_argument("--cold", action="store_true",
                    help="flush L2 before every sample (no graph batching)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--backoff-sweep", action="store_true",
                    help="GPU only: backoff's min/max sleep against latency and co-resident compute")
    sp.add_argument("--selftest", action="store_true",
                    help="run the op table's differential self-tests instead")
    sp.add_argument("--case-timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                    help="wall-clock limit per case, its process's start-up included; the "
                         f"case is then killed and recorded as timeout (default {DEFAULT_TIMEOUT_S:g})")
    sp.add_argument("--out", default="results", metavar="DIR",
                    help="results folder: writes DIR/<machine>/<UTC time>-<git sha>.json "
                         "(default results/)")
    sp.add_argument("--no-save", action="store_true", help="write no results file")
    common(sp, arch=False)
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("compare", help="per-case B/A ratios of two results files")
    sp.add_argument("a", metavar="A", help="results file (the reference)")
    sp.add_argument("b", metavar="B", help="results file (compared against A)")
    sp.set_defaults(func=cmd_compare)
    return p


def main(argv=None) -> int:
    """Entry point of the ``pollbench`` command."""
    args = parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
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
