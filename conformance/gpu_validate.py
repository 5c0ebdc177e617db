"""One-shot GPU validation of the run-queue executors: figures, the backoff sweep, then the
conformance suite under ``-m gpu``; prints the tables last and writes JSON to ``--out``.

    export PYTHONPATH=$PWD
    python3 conformance/gpu_validate.py --out $OUT            # on the GPU machine
    python3 conformance/gpu_validate.py --backend emu --ntasks 64 --no-pytest   # dry run

Each executor's figures and the sweep run in their own process, so a kernel that wedges the
CUDA context costs that part only. Figures (``harness.cases.run_case``, median of
``--repeats`` event-timed launches, one thread per task, block 128):
- yield_storm: polls/s over the grid and ns per poll;
- ping_pong: mean and max wake-to-poll latency (``%globaltimer`` stamps), messages/s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

EXECUTORS = ("block_on", "embassy", "backoff", "smem_ready", "graph")
WORKLOADS = ("yield_storm", "ping_pong", "fan_out")


def figures(executor: str, backend_name: str, ntasks: int, repeats: int) -> list:
    from harness.backend import EmuBackend, GpuBackend
    from harness.cases import CaseSpec, Unsupported, run_case

    be = GpuBackend(timeout_s=20.0) if backend_name == "gpu" else EmuBackend()
    rows = []
    for wl in WORKLOADS:
        spec = CaseSpec(executor, wl, "direct", "thread", ntasks=ntasks, block=128, seed=1)
        t0 = time.time()
        try:
            r = run_case(spec, be, repeats=repeats, instrument=True)
        except Unsupported as e:
            rows.append({"executor": executor, "workload": wl, "check": f"skip: {e}"})
            continue
        except Exception as e:  # keep going: the table says what failed
            rows.append({"executor": executor, "workload": wl, "check": f"error: {e}"[:300]})
            continue
        rows.append({"executor": executor, "workload": wl, "check": r.check,
                     "time_ms": r.time_ms, "registers": r.extra.get("registers_driver"),
                     "metrics": r.extra.get("metrics", {}),
                     "counters": r.extra.get("counters", {}), "wall_s": time.time() - t0})
    if backend_name == "gpu":
        rows.append({"device": be.rt.name, "sms": be.rt.sm_count})
    return rows


def backoff_sweep() -> list:
    from experiments.backoff_sweep import sweep
    from harness.backend import GpuBackend

    with GpuBackend(timeout_s=20.0) as be:
        return sweep(be)


def _child(args) -> int:
    """Run one part in this process, writing its rows as JSON."""
    if args.part == "sweep":
        rows = backoff_sweep()
    else:
        rows = figures(args.part, args.backend, args.ntasks, args.repeats)
    with open(args.json, "w") as fh:
        json.dump(rows, fh, default=float)
    return 0


def _run_part(part: str, args, out: str, timeout: float) -> list:
    path = os.path.join(out, f"part-{part}.json")
    cmd = [sys.executable, __file__, "--part", part, "--json", path, "--backend", args.backend,
           "--ntasks", str(args.ntasks), "--repeats", str(args.repeats)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return [{"executor": part, "check": f"part timed out after {timeout:.0f} s"}]
    if p.returncode != 0 or not os.path.exists(path):
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        return [{"executor": part, "check": "part failed: " + " | ".join(tail)}]
    with open(path) as fh:
        return json.load(fh)


def _fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def print_tables(fig_rows: list, sweep_rows: list, pytest_summary: str, device: str) -> None:
    print(f"\n== figures ({device}; median ms of event-timed launches) ==")
    print("| executor | workload | check | ms | polls/s | ns/poll | wake->poll mean ns | "
          "max ns | msgs/s | regs | bookkeeping |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in fig_rows:
        if "workload" not in r:
            continue
        m, c = r.get("metrics", {}), r.get("counters", {})
        print(f"| {r['executor']} | {r['workload']} | {str(r['check'])[:60]} | "
              f"{_fmt(r.get('time_ms'), '.4f')} | {_fmt(m.get('polls_per_s'), '.3e')} | "
              f"{_fmt(m.get('ns_per_poll'), '.4f')} | {_fmt(m.get('wake_to_poll_ns_mean'), '.0f')} | "
              f"{_fmt(m.get('wake_to_poll_ns_max'), 'd')} | {_fmt(m.get('messages_per_s'), '.3e')} | "
              f"{_fmt(r.get('registers'), 'd')} | {_fmt(c.get('bookkeeping_share'), '.2f')} |")
    if sweep_rows:
        print("\n== backoff sweep: ping_pong beside fma_spin (second stream) ==")
        print("| executor | min ns | max ns | check | ms alone | wake->poll ns alone | "
              "wake->poll ns beside | compute share | overlap |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in sweep_rows:
            if "compute_share" not in r:
                print(f"| {r.get('executor')} | | | {r.get('check')} | | | | | |")
                continue
            print(f"| {r['executor']} | {_fmt(r['min_ns'], 'd')} | {_fmt(r['max_ns'], 'd')} | "
                  f"{r['check'][:30]} | {r['executor_ms_alone']:.3f} | {r['latency_ns_alone']:.0f} | "
                  f"{r['latency_ns_beside']:.0f} | {r['compute_share']:.3f} | {r['overlap']:.2f} |")
    print("\n== conformance (-m gpu), per executor ==")
    for part in pytest_summary.split("; "):
        print(f"- {part}")


def run_pytest(out: str, timeout: float, executors) -> str:
    """``pytest -m gpu conformance/test_executors.py``, one process per executor (a kernel
    fault makes a CUDA context unusable for the rest of its process), each with its verbose
    log streamed to ``out/conformance-<executor>.txt``, so a run cut short still says what
    passed. Returns one summary line per executor."""
    start, summaries = time.time(), []
    for i, ex in enumerate(executors):
        left = timeout - (time.time() - start)
        share = left / (len(executors) - i)
        log = os.path.join(out, f"conformance-{ex}.txt")
        cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-v", "-rfE", "-p", "no:cacheprovider",
               "-k", ex, "conformance/test_executors.py"]
        with open(log, "w") as fh:
            p = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, text=True)
            try:
                p.wait(timeout=max(20.0, share))
                cut = ""
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                cut = f"cut at {share:.0f} s: "
        lines = open(log).read().splitlines()
        for ln in [ln for ln in lines if ln.startswith(("FAILED", "ERROR"))][:20]:
            print(ln[:300])
        if cut or not lines:
            passed = sum(" PASSED" in ln for ln in lines)
            bad = sum(" FAILED" in ln or " ERROR" in ln for ln in lines)
            summaries.append(f"{ex}: {cut}{passed} passed, {bad} failed so far")
        else:
            summaries.append(f"{ex}: {lines[-1].strip('= ')}")
        print(f"[conformance] {summaries[-1]}", flush=True)
    return "; ".join(summaries)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--backend", default="gpu", choices=("gpu", "emu"))
    ap.add_argument("--ntasks", type=int, default=1 << 20)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--budget", type=float, default=330.0, help="seconds for everything")
    ap.add_argument("--no-pytest", action="store_true")
    ap.add_argument("--executors", default=",".join(EXECUTORS))
    ap.add_argument("--part")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if args.part:
        return _child(args)
    if args.backend == "gpu":
        from harness.errors import PollbenchError
        from harness.gpu.driver import require_device

        try:
            require_device(0)
        except PollbenchError as e:  # no driver, no GPU: say so, once, before any part
            print(f"gpu_validate: error: {str(e).splitlines()[0]}", file=sys.stderr)
            return 2
    start = time.time()
    os.makedirs(args.out, exist_ok=True)
    fig_rows, device = [], args.backend
    for ex in args.executors.split(","):
        left = args.budget - (time.time() - start)
        rows = _run_part(ex, args, args.out, max(30.0, min(60.0, left - 150)))
        for r in rows:
            if "device" in r:
                device = f"{r['device']}, {r['sms']} SMs"
        fig_rows += rows
        print(f"[{time.time() - start:5.1f} s] figures {ex}: "
              + ", ".join(f"{r.get('workload')}={str(r.get('check'))[:40]}" for r in rows
                          if "check" in r), flush=True)
    sweep_rows = []
    if args.backend == "gpu":
        sweep_rows = _run_part("sweep", args, args.out, 60.0)
        print(f"[{time.time() - start:5.1f} s] sweep: {len(sweep_rows)} rows", flush=True)
    summary = "not run"
    if not args.no_pytest:
        summary = run_pytest(args.out, args.budget - (time.time() - start) - 10,
                             args.executors.split(","))
    with open(os.path.join(args.out, "gpu_validate.json"), "w") as fh:
        json.dump({"device": device, "figures": fig_rows, "sweep": sweep_rows,
                   "conformance": summary}, fh, indent=1, default=float)
    print_tables(fig_rows, sweep_rows, summary, device)
    checks = [str(r["check"]) for r in fig_rows + sweep_rows if "check" in r]
    return 0 if all(c == "pass" or c.startswith("skip") for c in checks) else 1


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main())
