"""Measurement (architecture §7, §8): the timing protocol and the NVML sampler.

Importing this package touches no driver. Public API::

    TimingConfig(max_noise=0.005, min_samples=10, max_samples=10_000, timeout_s=10.0,
                 cold=False, warmup=3, batch=None, ...)          # NVBench's vocabulary
    measure(launch, rt, config=None) -> Stats                    # launch(): enqueue on rt.stream
    measure_kernel(rt, kernel, grid, block, *args, shared=0, config=None) -> Stats
    Stats: median_ms min_ms max_ms mean_ms q1_ms q3_ms rel_stddev samples rejected
           sm_clock_mhz graph_batch max_clock_mhz converged settled timed_out cold elapsed_s
           samples_ms notes; .to_dict(include_samples=True)
    run_protocol(take_sample, config, max_clock_mhz=...) -> Stats   # the loop, GPU-free
    NvmlSampler(device_index=0, pci_bus_id=None, interval_s=0.01)  # context manager
    NvmlSampler.for_runtime(rt); .summary() -> dict

Errors (``harness.errors.PollbenchError``): ``MeasureError``, ``TimingConfigError``,
``NoValidSamples``, ``StreamBlockTimeout``.
"""

from harness.measure.errors import MeasureError, NoValidSamples, StreamBlockTimeout, TimingConfigError
from harness.measure.nvml import NvmlSampler
from harness.measure.protocol import Sample, Stats, TimingConfig, choose_batch, run_protocol, summarize
from harness.measure.timing import l2_cache_bytes, measure, measure_kernel

__all__ = [
    "TimingConfig",
    "Stats",
    "Sample",
    "measure",
    "measure_kernel",
    "run_protocol",
    "choose_batch",
    "summarize",
    "l2_cache_bytes",
    "NvmlSampler",
    "MeasureError",
    "TimingConfigError",
    "NoValidSamples",
    "StreamBlockTimeout",
]
