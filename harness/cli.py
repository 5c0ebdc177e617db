"""pollbench: list | ptx | inspect | run | selftest | sweep | conform | compare | plot | explain.

Every user error (a bad option value, an unknown name, a bad arch, no driver, an unwritable
output folder, an unreadable results file) is one line on stderr and exit code 2, before
any case runs; a case that fails its check, times out or raises makes ``run`` exit 1;
Ctrl-C exits 130 and SIGTERM 143, both after saving the cases that finished.
"""

from __future__ import annotations

import argparse
import itertools
import json
import signal
import sys
from pathlib import Path

from harness.errors import PollbenchError

MAX_NTASKS = 1 << 26  # tasks per case: frames, inputs and outputs of 2^26 tasks fill GBs
MAX_BLOCK = 1024  # threads per block on every CUDA GPU


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors as one line (``pollbench: error: ...``), exit 2."""

    def error(self, message):
        self.exit(2, f"pollbench: error: {message}\n")


def _int_in(lo: int, hi: int | None = None, what: str = "an integer"):
    """An argparse type: an int in [lo, hi], said in the error when it is not."""
    def parse(text: str) -> int:
        try:
            v = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if v < lo or (hi is not None and v > hi):
            span = f"from {lo} to {hi}" if hi is not None else f"at least {lo}"
            raise argparse.ArgumentTypeError(f"{what} {span}, not {v}")
        return v
    return parse


def _positive(unit: str, below: float | None = None):
    """An argparse type: a float > 0 (and < ``below``), in ``unit``."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of {unit}") from None
        if not v > 0 or (below is not None and not v < below):
            limit = f"between 0 and {below:g}" if below is not None else "greater than 0"
            raise argparse.ArgumentTypeError(f"must be {limit} {unit}, not {text}")
        return v
    return parse


def _executors_workloads(args) -> list:
    from executors import EXECUTORS, get_executor
    from workloads import get_workload, workload_names

    exs = [get_executor(e) for e in (args.executor or list(EXECUTORS))]
    wls = [get_workload(w) for w in workload_names(args.workload)]
    return exs, wls


def cmd_list(args) -> int:
    """Executors, workloads and the GPUs this machine sees."""
    from executors import EXECUTORS
    from harness.gpu import list_gpus, unavailable_reason
    from harness.report import console, executors_table, workloads_table
    from workloads import DEFAULT_WORKLOADS, WORKLOADS

    console.print(executors_table(EXECUTORS.values()))
    console.print(workloads_table(WORKLOADS.values(), DEFAULT_WORKLOADS))
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
    from harness.report import make_console, resources_table

    console = make_console(piped_width=200)  # kernel names are long: ~150 columns
    arch = _arch(args)
    exs, wls = _executors_workloads(args)
    for ex, wl in itertools.product(exs, wls):
        rows, why = [], None
        for dispatch, gran in itertools.product(ex.dispatch_modes, ex.granularities):
            try:  # a cooperative workload's tasks run as blocks of their group, some workers only
                m, kernel, baseline, _ = build_case(CaseSpec(
                    ex.name, wl.name, dispatch, gran, block=wl.cooperative or args.block), arch)
            except Unsupported as e:
                why = why or str(e)
                continue
            compiled = compile_ptx(m.to_ptx(), arch)
            # the first build also lists the baseline and the workload's reference kernels
            # (at their own block size where they declare one)
            others = [baseline] + [f.name for f in m.functions.values() if f.kind == "entry"
                                   and f.name not in (kernel.name, baseline)]
            for name in [kernel.name] + (others if not rows else []):
                if name and name in compiled.resources:
                    res = compiled.resources[name]
                    dynamic = kernel.dynamic_smem if name == kernel.name else 0
                    block = (m.functions[name].maxntid if name != kernel.name else None) or \
                        wl.cooperative or args.block
                    occ = theoretical_occupancy(res, block, arch, dynamic)
                    rows.append((name, res, block, occ, dynamic))
        if rows:
            console.print(resources_table(f"{ex.name} x {wl.name} on {arch}", rows))
        else:
            console.print(f"{ex.name} x {wl.name}: not applicable ({why})")
    return 0


def cmd_selftest(args) -> int:
    """The op table's differential self-tests (on a GPU: against the emulator's bits)."""
    from harness.backend import make_backend
    from harness.difftest import all_cases, check_case, skip_reason
    from harness.report import console, difftest_table

    rows, skipped = [], []
    cases = all_cases()
    with make_backend(args.backend, args.device) as backend, \
            _progress(len(cases), "self-tests") as step:
        for case in cases:
            if "traps" in case.tags and backend.name == "gpu":
                continue  # a trap poisons the context: the gpu test suite isolates it
            why = skip_reason(case, backend)
            if why:
                skipped.append(why)
            else:
                verdict, run = check_case(case, backend, args.seed, backend.name == "gpu")
                rows.append((case, verdict, run))
            step()
        console.print(difftest_table(rows, backend.name))
    failed = sum(v != "pass" for _, v, _ in rows)
    console.print(f"{len(rows) - failed} passed, {failed} failed"
                  + (f", {len(skipped)} skipped ({'; '.join(skipped)})" if skipped else ""))
    return 1 if failed else 0


def _progress(total: int, what: str):
    import contextlib

    from rich.progress import Progress

    from harness.report import err_console

    @contextlib.contextmanager
    def bar():
        with Progress(transient=True, console=err_console) as p:
            task = p.add_task(what, total=total)
            yield lambda: p.advance(task)

    return bar()


def _backend_name(name: str | None, device: int) -> str:
    """``gpu`` or ``emu``; a GPU asked for and missing is a usage error (exit 2) here, in
    the parent, before any case starts. Falling back to the emulator is said on stderr."""
    from harness.gpu import gpu_available, unavailable_reason
    from harness.gpu.driver import require_device

    if name is None:
        name = "gpu" if gpu_available() else "emu"
        if name == "emu":
            print(f"pollbench: no GPU ({unavailable_reason()}): running on the CPU emulator "
                  "(instruction counts, not GPU timings); --backend gpu to require one",
                  file=sys.stderr)
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


def _probe_out(folder) -> None:
    """Create the results folder and write (and remove) a file there, so that an output
    that cannot be written is refused before any case runs, not after all of them."""
    import tempfile
    from pathlib import Path

    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=".pollbench-probe-"):
            pass
    except OSError as e:
        raise PollbenchError(f"cannot write results under {folder}: "
                             f"{e.strerror or e}") from None


class Terminated(BaseException):
    """SIGTERM, raised where the run is, so that it ends like Ctrl-C: finished cases saved."""


def _on_sigterm(signum, frame):
    raise Terminated()


class _SignalsHeld:
    """Hold SIGINT and SIGTERM while a results file is written (delivered on exit), so a
    signal can neither cut a save short nor make it happen twice."""

    def __enter__(self):
        self.old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})

    def __exit__(self, *exc):
        signal.pthread_sigmask(signal.SIG_SETMASK, self.old)


def cmd_sweep(args) -> int:
    """Wake-to-poll latency against the issue slots left to co-resident compute, for
    embassy (spinning) and backoff at each min/max sleep (GPU only)."""
    from experiments.backoff_sweep import sweep
    from harness.backend import make_backend
    from harness.report import console, sweep_table

    from harness.gpu import gpu_available, unavailable_reason

    if not gpu_available():
        raise PollbenchError("the sweep measures co-resident kernels: it needs a GPU "
                             f"({unavailable_reason().split(';')[0]})")
    _backend_name("gpu", args.device)
    with make_backend("gpu", args.device) as backend:
        rows = sweep(backend, seed=args.seed, workload=args.workload)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        console.print(sweep_table(rows))
    return 0 if all(r.get("check") == "pass" for r in rows) else 1


def _specs(args, backend: str) -> list:
    """The cases: executors x workloads x their own dispatch modes and granularities, as
    far as --dispatch and --granularity keep them."""
    from harness.cases import case_specs

    exs, wls = _executors_workloads(args)
    ntasks = args.ntasks or (1 << 20 if backend == "gpu" else 64)
    specs = case_specs(exs, wls, ntasks, args.block, args.seed, args.dispatch, args.granularity)
    if not specs:
        raise PollbenchError("no executor chosen has the --dispatch/--granularity asked for")
    return specs


def cmd_run(args) -> int:
    """Run every (or the chosen) executor x workload x dispatch x granularity, each case in
    its own process; write the results document; exit 1 if any case did not pass. Every
    option and the output folder are checked first; Ctrl-C and SIGTERM save what finished."""
    from harness.results import document, environment

    timing = _timing_options(args)
    backend = _backend_name(args.backend, args.device)
    specs = _specs(args, backend)
    env = environment(backend, args.device)
    if not args.no_save:
        from harness.results.environment import machine_name

        _probe_out(f"{args.out}/{machine_name(env)}")
    options = {"backend": backend, "device": args.device, "repeats": args.repeats,
               "timing": timing, "arch": (env.get("gpu") or {}).get("arch")}
    config = {k: v for k, v in options.items() if k != "arch"}
    config.update(timeout_s=args.case_timeout, ntasks=specs[0].ntasks, block=args.block,
                  seed=args.seed, executors=list(dict.fromkeys(s.executor for s in specs)),
                  workloads=list(dict.fromkeys(s.workload for s in specs)),
                  dispatch=args.dispatch, granularity=args.granularity)
    kept = []  # a resumed run's records, from the file it resumes
    if args.resume:
        kept, specs = _resume(args.resume, env, config, specs)
        config["resumed_from"] = Path(args.resume).name
    finished, saved = [], []

    def save_once(records) -> None:
        from harness.report import err_console
        from harness.results import save

        if args.no_save or saved or not records:
            return
        with _SignalsHeld():
            saved.append(save(document(env, args.argv, config, records), args.out))
        err_console.print(f"results: {saved[0]}", markup=False, highlight=False)

    if args.resume and not specs:
        print(f"pollbench: nothing to run: {args.resume} has every case asked for",
              file=sys.stderr)
        return _report(kept, backend, args)
    old_term = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        records = kept + _run_specs(specs, options, args, finished)
        save_once(records)
        return _report(records, backend, args)
    except (KeyboardInterrupt, Terminated) as e:
        config["interrupted_after"] = len(finished)
        save_once(kept + finished)
        why = "interrupted" if isinstance(e, KeyboardInterrupt) else "terminated (SIGTERM)"
        print(f"pollbench: {why} after {len(finished)} of {len(specs)} cases"
              + ("; the finished ones are saved" if saved else ""), file=sys.stderr)
        return 130 if isinstance(e, KeyboardInterrupt) else 128 + signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, old_term)


_RESUME_MUST_MATCH = ("backend", "repeats", "timing", "timeout_s")


def _resume(path: str, env: dict, config: dict, specs: list) -> tuple:
    """(the records of the results file ``path`` to keep, the cases still to run): a case
    is run again only where the file has no record of it. The file must come from this
    machine, this commit and the same timing options; it is read, never changed."""
    from dataclasses import asdict

    from harness.results import load, machine_name
    from harness.results.records import SPEC_KEYS

    doc = load(path)
    old_env, old_config = doc["environment"], doc["run"].get("config") or {}
    if machine_name(old_env) != machine_name(env):
        raise PollbenchError(f"--resume {path}: made on {machine_name(old_env)}, not on this "
                             f"machine ({machine_name(env)})")
    old_sha, sha = old_env["pollbench"].get("git_sha"), env["pollbench"].get("git_sha")
    if old_sha != sha:
        raise PollbenchError(f"--resume {path}: made at commit {str(old_sha)[:12]}, this is "
                             f"{str(sha)[:12]}: its figures and these would not compare")
    for key in _RESUME_MUST_MATCH:
        if old_config.get(key) != config.get(key):
            raise PollbenchError(f"--resume {path}: its {key} was {old_config.get(key)!r}, "
                                 f"this run's is {config.get(key)!r}")
    key = lambda spec: tuple(spec[k] for k in SPEC_KEYS)  # noqa: E731
    kept = doc["cases"]
    done = {key(r["spec"]) for r in kept}
    return kept, [s for s in specs if key(asdict(s)) not in done]


def _run_specs(specs, options, args, finished: list) -> list:
    """The case loop with progress on stderr: a bar on a terminal, else one line per case."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn,
                               TextColumn, TimeElapsedColumn)

    from harness.orchestrate import run_cases, warm_case
    from harness.report import err_console
    from harness.results import spec_label

    tty = err_console.is_terminal
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=err_console,
                  transient=True, disable=not tty) as progress:
        bar = progress.add_task("cases", total=len(specs))

        def start(spec):
            progress.update(bar, description=spec_label(spec))

        def done(rec):
            finished.append(rec)
            line = f"{rec['status']}: {spec_label(rec['spec'])}"
            if rec["status"] not in ("pass", "skip"):
                line += f": {rec['message']}"
            if not tty:
                line = f"[{len(finished)}/{len(specs)}] {line} ({rec.get('wall_s') or 0:.1f} s)"
            if not tty or rec["status"] not in ("pass", "skip"):
                progress.console.print(line, markup=False, highlight=False)
            progress.advance(bar)

        return run_cases(specs, options, timeout_s=args.case_timeout, on_start=start,
                         on_done=done, warm_fn=warm_case)


def _report(records, backend: str, args) -> int:
    """The table (or the JSON document) and the summary line; the exit code."""
    from harness.report import case_table, console, references_table, throughput_table

    counts = {s: sum(r["status"] == s for r in records)
              for s in ("pass", "fail", "timeout", "error", "skip")}
    bad = counts["fail"] + counts["timeout"] + counts["error"]
    if args.json:
        import json

        sys.stdout.write(json.dumps(records, indent=1, allow_nan=False) + "\n")
        return 1 if bad else 0
    if args.wide:  # ~190 columns: wider than the piped default
        from harness.report import make_console

        console = make_console(piped_width=200)
    console.print(case_table(records, backend, wide=args.wide))
    for extra in (throughput_table(records), references_table(records)):
        if extra is not None:
            console.print(extra)
    detail = ", ".join(f"{counts[s]} {w}" for s, w in (("timeout", "timed out"),
                                                       ("error", "errors"),
                                                       ("skip", "skipped")) if counts[s])
    console.print(f"{counts['pass']} passed, {bad} failed" + (f" ({detail})" if detail else ""))
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
    if args.plot:
        from harness.plot import plot_compare

        print(f"picture: {plot_compare(cmp, a, b, args.plot)}")  # a path: never wrapped
    return 0


def cmd_conform(args) -> int:
    """Litmus tests, forward progress, probes, the executor suite and (``--sanitize``)
    compute-sanitizer on this GPU; one report, one JSON document; exit 1 unless every
    promise checked holds. Ctrl-C and SIGTERM save the sections that finished."""
    from conformance.conform import conform, new_document
    from conformance.litmus import TESTS
    from harness.report import conform_report, console, err_console

    backend = _backend_name(args.backend, args.device)
    for t in args.test or ():
        if t not in TESTS:
            raise PollbenchError(f"unknown litmus test {t!r} (known: {', '.join(TESTS)})")
    if args.sanitize:
        if backend != "gpu":
            raise PollbenchError("--sanitize runs compute-sanitizer: it needs a GPU")
        from conformance.sanitize import sanitizer

        sanitizer()  # a missing tool is one error line, before anything runs
    doc = new_document(backend, args.device, quick=args.quick, sanitize=args.sanitize,
                       seed=args.seed, iterations=args.iterations)
    doc["run"]["argv"] = args.argv
    folder = None
    if not args.no_save:
        from harness.results.environment import machine_name

        folder = Path(args.out) / machine_name(doc["environment"])
        _probe_out(folder)

    def say(msg):
        err_console.print(msg, markup=False, highlight=False)

    def save() -> None:
        if args.no_save:
            return
        from harness.results import save as save_doc

        with _SignalsHeld():
            path = save_doc(doc, args.out, prefix="conform-")
        say(f"conform report: {path}")

    old_term = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        conform(doc, backend, args.device, tests=args.test,
                log_dir=folder / "sanitize-logs" if folder else None, progress=say)
    except (KeyboardInterrupt, Terminated):
        done = [k for k in ("litmus", "progress", "probes", "suite") if doc[k] is not None]
        save()
        say(f"pollbench: stopped; finished: {', '.join(done) or 'nothing'}")
        raise
    finally:
        signal.signal(signal.SIGTERM, old_term)
    for part in conform_report(doc):
        console.print(part)
    save()
    return 0 if doc["ok"] else 1


def cmd_plot(args) -> int:
    """PNG pictures of results files (and of a ``sweep --json`` file) in ``--out``."""
    from harness.plot import plot_results

    if not args.results and not args.sweep:
        raise PollbenchError("plot needs a results file (or --sweep FILE)")
    for path in plot_results(args.results, args.out, sweep=args.sweep):
        print(path)  # one path per line, never wrapped
    return 0


def cmd_explain(args) -> int:
    """What a column of pollbench's tables means."""
    from harness.report import explain

    print(explain(args.column))
    return 0


def _version() -> str:
    from harness.results.environment import version_string

    return version_string()


def parser() -> argparse.ArgumentParser:
    from executors import EXECUTORS
    from executors.base import DISPATCH_MODES
    from harness.orchestrate import DEFAULT_TIMEOUT_S
    from workloads import DEFAULT_WORKLOADS, FAMILIES, WORKLOADS

    executors, workloads = list(EXECUTORS), list(WORKLOADS)
    p = _Parser(prog="pollbench", description="What async/await costs on a GPU: device "
                "executors x workloads, checked against numpy and timed against kernels "
                "with no executor.")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def common(sp, arch=True):
        sp.add_argument("--device", type=_int_in(0, what="a device ordinal"), default=0,
                        help="CUDA device ordinal (default 0)")
        if arch:
            sp.add_argument("--arch", help="target, e.g. sm_90 (default: the GPU's, else sm_90)")

    def seed(sp):
        sp.add_argument("--seed", type=_int_in(0, 2**32 - 1, "a seed"), default=0,
                        help="seed of the random inputs (default 0)")

    def backend(sp):
        sp.add_argument("--backend", choices=["gpu", "emu"],
                        help="gpu (default when present) or emu (the CPU emulator)")

    def pick(sp):
        sp.add_argument("--executor", action="append", choices=executors, metavar="EXECUTOR",
                        help=f"one of {', '.join(executors)}; repeat for several (default: all)")
        sp.add_argument("--workload", action="append", choices=workloads + list(FAMILIES),
                        metavar="WORKLOAD",
                        help=f"one of {', '.join(workloads)}, or a family ({', '.join(FAMILIES)}: "
                             f"all its members); repeat for several (default: "
                             f"{', '.join(DEFAULT_WORKLOADS)})")

    sp = sub.add_parser("list", help="executors, workloads, GPUs")
    sp.set_defaults(func=cmd_list)

    sp = sub.add_parser("ptx", help="print the generated PTX of EXECUTOR x WORKLOAD")
    sp.add_argument("executor_name", metavar="EXECUTOR", help=", ".join(executors))
    sp.add_argument("workload_name", metavar="WORKLOAD", help=", ".join(workloads))
    sp.add_argument("--dispatch", default="direct", choices=list(DISPATCH_MODES))
    sp.add_argument("--granularity", default="thread", choices=["thread", "warp", "block"])
    common(sp)
    sp.set_defaults(func=cmd_ptx)

    sp = sub.add_parser("inspect", help="registers, spills, stack, smem, occupancy per kernel")
    pick(sp)
    sp.add_argument("--block", type=_int_in(1, MAX_BLOCK, "a block size"), default=128,
                    help="block size for occupancy (default 128)")
    common(sp)
    sp.set_defaults(func=cmd_inspect)

    sp = sub.add_parser("run", help="run, check and time cases (GPU if present, else emulator)")
    pick(sp)
    sp.add_argument("--dispatch", action="append", choices=list(DISPATCH_MODES),
                    help="default: every mode the executor has")
    sp.add_argument("--granularity", action="append", choices=["thread", "warp", "block"],
                    help="default: every granularity the executor has")
    backend(sp)
    sp.add_argument("--ntasks", type=_int_in(1, MAX_NTASKS, "a task count"),
                    help="tasks per case, 1 to 2^26 (default 2^20 on a GPU, 64 on the "
                         "emulator: every case then runs in a few seconds of CPU)")
    sp.add_argument("--block", type=_int_in(1, MAX_BLOCK, "a block size"), default=128,
                    help="threads per block, 1 to 1024 (default 128)")
    sp.add_argument("--repeats", type=_int_in(1, what="a sample count"),
                    help="a fixed number of timed samples per kernel (default: the protocol "
                         "decides, from --max-noise/--min-samples/--timeout)")
    sp.add_argument("--max-noise", type=_positive("percent", 100.0), default=0.5,
                    metavar="PERCENT",
                    help="stop sampling once the relative std-dev is under this (default 0.5)")
    sp.add_argument("--min-samples", type=_int_in(1, what="a sample count"), default=10,
                    help="samples before stopping (default 10)")
    sp.add_argument("--timeout", type=_positive("seconds"), default=10.0, metavar="SECONDS",
                    help="time limit of one kernel's sampling (default 10)")
    sp.add_argument("--cold", action="store_true",
                    help="flush L2 before every sample (no graph batching)")
    seed(sp)
    sp.add_argument("--case-timeout", type=_positive("seconds"), default=DEFAULT_TIMEOUT_S,
                    metavar="SECONDS",
                    help="wall-clock limit of one case from its turn; the case is then "
                         f"killed and recorded as timeout (default {DEFAULT_TIMEOUT_S:g})")
    sp.add_argument("--out", default="results", metavar="DIR",
                    help="results folder: writes DIR/<machine>/<UTC time>-<git sha>.json "
                         "(default results/)")
    sp.add_argument("--no-save", action="store_true", help="write no results file")
    sp.add_argument("--resume", metavar="FILE",
                    help="a results file of an interrupted run (same machine, commit and timing "
                         "options): keep its cases, run only the ones it lacks, write a new file "
                         "with all of them")
    sp.add_argument("--wide", action="store_true",
                    help="every column in the table (default: the ones read first; fits 100 columns)")
    sp.add_argument("--json", action="store_true",
                    help="print the case records as JSON on stdout instead of the table")
    common(sp, arch=False)
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("selftest", help="the op table's differential self-tests "
                        "(GPU against the emulator; emulator against numpy)")
    backend(sp)
    seed(sp)
    common(sp, arch=False)
    sp.set_defaults(func=cmd_selftest)

    sp = sub.add_parser("sweep", help="GPU: backoff's min/max sleep against wake-to-poll "
                        "latency and the issue slots left to co-resident compute")
    seed(sp)
    sp.add_argument("--workload", choices=["ping_pong", "idle_wait"], default="ping_pong",
                    help="ping_pong (workers idle about half the time; default) or idle_wait "
                         "(a few tasks a block parked 10 µs-10 ms)")
    sp.add_argument("--json", action="store_true",
                    help="print the rows as JSON (for pollbench plot --sweep) instead of a table")
    common(sp, arch=False)
    sp.set_defaults(func=cmd_sweep)

    sp = sub.add_parser("conform", help="what this GPU promises an executor: litmus tests, "
                        "forward progress, probes, the executor suite, sanitizers")
    sp.add_argument("--quick", action="store_true",
                    help="10^4 litmus iterations per configuration instead of 10^6")
    sp.add_argument("--sanitize", action="store_true",
                    help="also run compute-sanitizer (memcheck, racecheck, synccheck, "
                    "initcheck) over every executor, a process per executor and tool")
    sp.add_argument("--iterations", type=_int_in(1, what="an iteration count"),
                    help="litmus iterations per configuration (overrides --quick)")
    sp.add_argument("--test", action="append", metavar="TEST",
                    help="one litmus test (MP, SB, LB, CoRR, IRIW, 2+2W); repeat for several")
    backend(sp)
    seed(sp)
    sp.add_argument("--out", default="results", metavar="DIR",
                    help="where conform-<time>-<sha>.json goes (default: results)")
    sp.add_argument("--no-save", action="store_true", help="write no file")
    common(sp, arch=False)
    sp.set_defaults(func=cmd_conform)

    sp = sub.add_parser("compare", help="per-case B/A ratios of two results files")
    sp.add_argument("a", metavar="A", help="results file (the reference)")
    sp.add_argument("b", metavar="B", help="results file (compared against A)")
    sp.add_argument("--plot", metavar="PNG", help="also draw the ratios with their intervals "
                    "into PNG (needs matplotlib: pip install 'pollbench[plot]')")
    sp.set_defaults(func=cmd_compare)

    sp = sub.add_parser("plot", help="PNG pictures of results files (needs matplotlib)")
    sp.add_argument("results", metavar="RESULTS", nargs="*", help="results files")
    sp.add_argument("--out", default="plots", metavar="DIR",
                    help="folder for the PNGs (default: plots)")
    sp.add_argument("--sweep", metavar="FILE", help="a `pollbench sweep --json` file: "
                    "latency against the compute left to a co-resident kernel")
    sp.set_defaults(func=cmd_plot)

    sp = sub.add_parser("explain", help="what a table column means (all of them without COLUMN)")
    sp.add_argument("column", metavar="COLUMN", nargs="?")
    sp.set_defaults(func=cmd_explain)
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
    except Terminated:
        print("pollbench: terminated (SIGTERM)", file=sys.stderr)
        return 128 + signal.SIGTERM


if __name__ == "__main__":
    sys.exit(main())
