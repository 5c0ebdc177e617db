"""smem_ready against block_on (and embassy on yield_storm) at 2^20 tasks on a GPU: one
table, printed last, for the device-tool call that validates smem_ready. Not a test
(pytest does not collect it); run as ``python tests/smem_ready_timing.py [out.md]``.

Each row is ``harness.cases.run_case`` (median of 20 event-timed launches after 3
warm-ups; instrumented run for the counters). ``cap`` is smem_ready's slots per block
(128 sizes the arrays to the block: more blocks per SM); "blocks/SM" is the driver's
``cuOccupancyMaxActiveBlocksPerMultiprocessor`` at block 128.
"""

from __future__ import annotations

import sys

from executors import EXECUTORS
from executors.smem_ready import SmemReady
from harness.backend import GpuBackend
from harness.cases import CaseSpec, run_case

N = 1 << 20
ROWS = [  # executor, workload, dispatch, granularity, smem_ready capacity
    ("block_on", "seed_demo", "direct", "thread", None),
    ("block_on", "seed_demo", "indirect", "thread", None),
    ("smem_ready", "seed_demo", "direct", "thread", None),
    ("smem_ready", "seed_demo", "indirect", "thread", None),
    ("smem_ready", "seed_demo", "direct", "warp", None),
    ("smem_ready", "seed_demo", "indirect", "warp", None),
    ("smem_ready", "seed_demo", "direct", "thread", 128),
    ("smem_ready", "seed_demo", "direct", "warp", 128),
    ("block_on", "yield_storm", "direct", "thread", None),
    ("embassy", "yield_storm", "direct", "thread", None),
    ("smem_ready", "yield_storm", "direct", "thread", None),
    ("smem_ready", "yield_storm", "direct", "warp", None),
]


def main(out: str | None = None) -> None:
    lines = ["| executor | workload | dispatch | gran | cap | check | median ms | baseline ms "
             "| x baseline | regs | blocks/SM | bookkeeping | idle | polls/task |",
             "|" + "---|" * 14]
    default = EXECUTORS["smem_ready"]
    with GpuBackend() as be:
        for ex, wl, d, g, cap in ROWS:
            if ex not in EXECUTORS:
                continue
            EXECUTORS["smem_ready"] = SmemReady(cap) if cap else default
            try:
                r = run_case(CaseSpec(ex, wl, d, g, ntasks=N, block=128, seed=7), be, repeats=20)
                bps = "-"
                if getattr(be, "module", None) is not None:
                    bps = be.module.kernel(_kernel_name(ex, wl, d, g)).max_active_blocks_per_sm(128)
                c = r.extra.get("counters", {})
                ratio = (f"{r.time_ms / r.baseline_ms:.1f}" if r.time_ms and r.baseline_ms
                         else "-")
                lines.append(
                    f"| {ex} | {wl} | {d} | {g} | {cap or (256 if ex == 'smem_ready' else '-')} "
                    f"| {r.check[:40]} | {_f(r.time_ms)} | {_f(r.baseline_ms)} | {ratio} "
                    f"| {r.extra.get('registers_driver')} | {bps} "
                    f"| {_p(c.get('bookkeeping_share'))} | {_p(c.get('idle_share'))} "
                    f"| {c.get('polls_per_task', '-')} |")
            except Exception as e:  # a row that fails is a row, not the end of the table
                lines.append(f"| {ex} | {wl} | {d} | {g} | {cap or '-'} | ERROR {type(e).__name__}: "
                             f"{str(e)[:80]} | | | | | | | | |")
            finally:
                EXECUTORS["smem_ready"] = default
            print(lines[-1], flush=True)
    text = "\n".join(lines)
    if out:
        with open(out, "w") as fh:
            fh.write(text + "\n")
    print("\n" + text)


def _kernel_name(ex, wl, d, g):
    from workloads import get_workload

    return f"{ex}_{g}_{d}_{get_workload(wl).root().name}"


def _f(x):
    return f"{x:.4f}" if x is not None else "-"


def _p(x):
    return f"{100 * x:.0f}%" if x is not None else "-"


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
