"""asv benchmarks: device-measured figures tracked over the project's history.

Run on a GPU machine, in place (the GPU hosts have no network for asv's own envs):
``asv run --environment existing:python3 --set-commit-hash $(git rev-parse HEAD)``.
Without a GPU every ``setup`` raises ``NotImplementedError`` and asv skips the benchmark.
"""

from __future__ import annotations

NTASKS = 1 << 20


def _require_gpu():
    from harness.gpu import gpu_available

    if not gpu_available():
        raise NotImplementedError("no GPU: pollbench's figures are device measurements")


class SeedDemoBlockOn:
    """block_on x seed_demo at 2^20 tasks: time, baseline and overhead per dispatch mode."""

    params = (["direct", "indirect"], ["thread", "warp", "block"])
    param_names = ["dispatch", "granularity"]
    timeout = 300

    def setup(self, dispatch, granularity):
        _require_gpu()
        from harness.backend import GpuBackend
        from harness.cases import CaseSpec, run_case

        with GpuBackend() as be:
            self.result = run_case(CaseSpec("block_on", "seed_demo", dispatch, granularity,
                                            NTASKS), be, repeats=20, instrument=False)
        if not self.result.ok:
            raise RuntimeError(f"check failed: {self.result.check}")

    def track_time_ms(self, dispatch, granularity):
        return self.result.time_ms

    track_time_ms.unit = "ms"

    def track_overhead_ratio(self, dispatch, granularity):
        return self.result.time_ms / self.result.baseline_ms

    track_overhead_ratio.unit = "x baseline"

    def track_registers(self, dispatch, granularity):
        return self.result.extra.get("registers_driver", self.result.registers)

    track_registers.unit = "registers/thread"
