"""The timing protocol of architecture §7 without the GPU: configuration, the sampling loop, statistics.

NVBench's vocabulary and rules (its *cold* measurement): warm-up runs; one sample at a
time; a sample is *rejected* when the SM clock it ran at is under ``throttle_threshold``
(75%) of the maximum clock; sampling stops once the relative standard deviation of the
accepted samples is under ``max_noise`` with at least ``min_samples`` of them, or once that
noise has *settled* above ``max_noise`` (NVBench's stdrel rule: over the last
``NOISE_WINDOW`` noise values, checked every ``NOISE_CHECK_EVERY`` samples after more than
``NOISE_MIN_VALUES``, their std-dev about the current value is under ``NOISE_SETTLED`` of
it: more samples would not bring it down, only take time -- a 0.55 ms kernel with 0.6%
noise ran to 10,000 samples, 7 s, on the H200), or at ``max_samples``, or when
``timeout_s`` has passed.

Everything here is pure Python so it is tested with fake samples and a fake clock;
:func:`harness.measure.timing.measure` supplies the GPU samples.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from harness.measure.errors import NoValidSamples, TimingConfigError

NOISE_WINDOW = 512  # trailing noise values the settled rule looks at
NOISE_MIN_VALUES = 64  # noise values needed before it may apply
NOISE_CHECK_EVERY = 16  # samples between checks
NOISE_SETTLED = 0.05  # relative std-dev of the noise values under which it has settled

__all__ = ["TimingConfig", "Sample", "Stats", "RunningNoise", "choose_batch", "run_protocol", "summarize"]


@dataclass(frozen=True)
class TimingConfig:
    """How to time one launch function.

    Attributes:
        max_noise: stop once the accepted samples' relative std-dev is below this (0.005 = 0.5%).
        min_samples: accepted samples needed before ``max_noise`` may stop sampling.
        max_samples: stop after this many accepted samples whatever the noise.
        timeout_s: stop after this many seconds of sampling (warm-up not counted).
        cold: flush the L2 cache (write an L2-sized buffer) before every sample; turns off
            automatic graph batching, since the 2nd..Nth launches of a batch would be warm.
        warmup: launches run (and waited for) before sampling; at least 1 is always run, so
            lazy module loading never happens while the stream is blocked.
        batch: launches per sample: ``None`` = automatic (a captured graph of launches when
            one launch takes under ``batch_below_ms``), ``1`` = never batch, ``N`` = a graph
            of N launches per sample. Times are always reported per launch.
        batch_below_ms: a launch shorter than this is timed in a batch (automatic mode).
        batch_target_ms: the GPU time one batched sample aims at.
        max_batch: the most launches in one batch.
        throttle_threshold: reject a sample whose SM clock is under this fraction of the max clock.
        throttle_recovery_s: pause after a rejected sample (NVBench waits 50 ms; 0 keeps the GPU busy).
        max_clock_mhz: the reference clock; ``None`` = the device attribute (CLOCK_RATE), else NVML.
        blocking: hold the stream with a spinning kernel while the sample is enqueued, so the
            events time the GPU work, not the host's launch latency (NVBench's blocking kernel).
            A launch function that synchronizes needs ``blocking=False``.
        block_timeout_s: the blocking kernel gives up after this long (then the sample raises
            :class:`~harness.measure.errors.StreamBlockTimeout`).
        probe_spin_ns: how long each clock probe spins between its two clock readings.
    """

    max_noise: float = 0.005
    min_samples: int = 10
    max_samples: int = 10_000
    timeout_s: float = 10.0
    cold: bool = False
    warmup: int = 3
    batch: int | None = None
    batch_below_ms: float = 0.05
    batch_target_ms: float = 1.0
    max_batch: int = 1000
    throttle_threshold: float = 0.75
    throttle_recovery_s: float = 0.0
    max_clock_mhz: float | None = None
    blocking: bool = True
    block_timeout_s: float = 5.0
    probe_spin_ns: int = 1000

    def __post_init__(self) -> None:
        def bad(what: str) -> TimingConfigError:
            return TimingConfigError(f"TimingConfig: {what}")

        if not 0 < self.max_noise < 1:
            raise bad(f"max_noise must be a fraction in (0, 1), not {self.max_noise!r} (0.005 = 0.5%)")
        if self.min_samples < 1:
            raise bad(f"min_samples must be >= 1, not {self.min_samples!r}")
        if self.max_samples < self.min_samples:
            raise bad(f"max_samples ({self.max_samples}) must be >= min_samples ({self.min_samples})")
        if not self.timeout_s > 0:
            raise bad(f"timeout_s must be > 0, not {self.timeout_s!r}")
        if self.warmup < 0:
            raise bad(f"warmup must be >= 0, not {self.warmup!r}")
        if self.batch is not None and self.batch < 1:
            raise bad(f"batch must be None (automatic) or >= 1, not {self.batch!r}")
        if self.max_batch < 1:
            raise bad(f"max_batch must be >= 1, not {self.max_batch!r}")
        if not self.batch_below_ms >= 0 or not self.batch_target_ms > 0:
            raise bad("batch_below_ms must be >= 0 and batch_target_ms > 0")
        if not 0 <= self.throttle_threshold <= 1:
            raise bad(f"throttle_threshold must be a fraction in [0, 1], not {self.throttle_threshold!r}")
        if self.throttle_recovery_s < 0:
            raise bad(f"throttle_recovery_s must be >= 0, not {self.throttle_recovery_s!r}")
        if self.max_clock_mhz is not None and not self.max_clock_mhz > 0:
            raise bad(f"max_clock_mhz must be > 0 or None, not {self.max_clock_mhz!r}")
        if not self.block_timeout_s > 0:
            raise bad(f"block_timeout_s must be > 0, not {self.block_timeout_s!r}")
        if self.probe_spin_ns < 0:
            raise bad(f"probe_spin_ns must be >= 0, not {self.probe_spin_ns!r}")


@dataclass(frozen=True)
class Sample:
    """One timed sample: milliseconds per launch, and the SM clock it ran at (None: unknown)."""

    ms: float
    sm_clock_mhz: float | None = None


@dataclass
class Stats:
    """What :func:`~harness.measure.measure` reports; times are per launch, in milliseconds."""

    median_ms: float
    min_ms: float
    max_ms: float
    mean_ms: float
    q1_ms: float
    q3_ms: float
    #: standard deviation (ddof=1) over the mean; None with fewer than two samples
    rel_stddev: float | None
    #: accepted samples
    samples: int
    #: samples dropped because the SM clock was under the threshold
    rejected: int = 0
    #: median SM clock of the accepted samples (None when the probe could not tell)
    sm_clock_mhz: float | None = None
    #: launches per sample (1: not batched)
    graph_batch: int = 1
    max_clock_mhz: float | None = None
    #: stopped because the noise fell under max_noise
    converged: bool = False
    #: stopped because the noise settled above max_noise (it would not fall with more samples)
    settled: bool = False
    #: stopped by timeout_s
    timed_out: bool = False
    cold: bool = False
    #: seconds spent sampling
    elapsed_s: float = 0.0
    #: the accepted samples, in order
    samples_ms: list[float] = field(default_factory=list)
    #: one-line remarks (fallbacks, unknown clocks)
    notes: list[str] = field(default_factory=list)

    def to_dict(self, include_samples: bool = True) -> dict:
        """A JSON-ready dict (``samples_ms`` left out when ``include_samples`` is False)."""
        d = asdict(self)
        if not include_samples:
            d.pop("samples_ms")
        return d


class RunningNoise:
    """Welford's running mean and variance: the relative std-dev after each sample in O(1)."""

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self._m2 = 0.0

    def add(self, x: float) -> None:
        """Add one sample."""
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self._m2 += delta * (x - self.mean)

    def rel_stddev(self) -> float:
        """Sample std-dev (ddof=1) over the mean; ``inf`` with fewer than two samples or a zero mean."""
        if self.n < 2 or self.mean == 0:
            return math.inf
        return math.sqrt(max(self._m2, 0.0) / (self.n - 1)) / abs(self.mean)


def choose_batch(single_ms: float, config: TimingConfig) -> int:
    """Launches per sample for a launch that takes ``single_ms`` (see :attr:`TimingConfig.batch`)."""
    if config.batch is not None:
        return config.batch
    if config.cold or not 0 < single_ms < config.batch_below_ms:
        return 1
    return int(min(config.max_batch, max(2, math.ceil(config.batch_target_ms / single_ms))))


def summarize(samples_ms: list[float], **fields) -> Stats:
    """Build :class:`Stats` from accepted per-launch samples (at least one) plus the other fields."""
    if not samples_ms:
        raise NoValidSamples("no accepted samples to summarize")
    a = np.asarray(samples_ms, dtype=np.float64)
    mean = float(a.mean())
    rel = float(a.std(ddof=1) / abs(mean)) if a.size >= 2 and mean != 0 else None
    q1, med, q3 = (float(v) for v in np.percentile(a, [25, 50, 75]))
    return Stats(
        median_ms=med,
        min_ms=float(a.min()),
        max_ms=float(a.max()),
        mean_ms=mean,
        q1_ms=q1,
        q3_ms=q3,
        rel_stddev=rel,
        samples=int(a.size),
        samples_ms=[float(v) for v in a],
        **fields,
    )


def _noise_settled(values: list[float], n: int) -> bool:
    """NVBench's test that the noise has stopped changing (module docstring)."""
    if len(values) <= NOISE_MIN_VALUES or n % NOISE_CHECK_EVERY:
        return False
    current = values[-1]
    window = np.asarray(values[-NOISE_WINDOW:])
    spread = math.sqrt(float(np.mean((window - current) ** 2)))
    return current > 0 and spread / current < NOISE_SETTLED


def run_protocol(
    take_sample: Callable[[], Sample],
    config: TimingConfig,
    *,
    max_clock_mhz: float | None,
    graph_batch: int = 1,
    notes: list[str] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Stats:
    """Take samples until the stopping rule of :class:`TimingConfig` says stop; summarize them.

    ``take_sample()`` returns one :class:`Sample` (per-launch ms). A sample whose clock is
    known and under ``throttle_threshold * max_clock_mhz`` is rejected; with
    ``max_clock_mhz=None`` nothing is rejected. Raises :class:`NoValidSamples` when the
    time limit passes with every sample rejected.
    """
    notes = list(notes or [])
    floor = config.throttle_threshold * max_clock_mhz if max_clock_mhz else None
    accepted: list[float] = []
    clocks: list[float] = []
    rejected_clocks: list[float] = []
    unknown = 0
    noise = RunningNoise()
    noise_values: list[float] = []
    converged = settled = timed_out = False
    start = clock()
    while True:
        s = take_sample()
        if floor is not None and s.sm_clock_mhz is not None and s.sm_clock_mhz < floor:
            rejected_clocks.append(s.sm_clock_mhz)
            if config.throttle_recovery_s:
                sleep(config.throttle_recovery_s)
        else:
            accepted.append(s.ms)
            noise.add(s.ms)
            if math.isfinite(noise.rel_stddev()):
                noise_values.append(noise.rel_stddev())
            if s.sm_clock_mhz is None:
                unknown += 1
            else:
                clocks.append(s.sm_clock_mhz)
        n = len(accepted)
        if n >= config.min_samples and noise.rel_stddev() < config.max_noise:
            converged = True
            break
        if n >= config.min_samples and _noise_settled(noise_values, n):
            settled = True
            break
        if n >= config.max_samples:
            break
        if clock() - start >= config.timeout_s:
            timed_out = True
            break
    elapsed = clock() - start
    if not accepted:
        med = float(np.median(rejected_clocks)) if rejected_clocks else float("nan")
        raise NoValidSamples(
            f"all {len(rejected_clocks)} samples in {elapsed:.1f} s ran under "
            f"{config.throttle_threshold:.0%} of the {max_clock_mhz:g} MHz max SM clock "
            f"(median {med:.0f} MHz): the GPU is throttling or idling down; check nvidia-smi -q -d PERFORMANCE"
        )
    if unknown:
        notes.append(f"SM clock unknown for {unknown} of {len(accepted)} accepted samples (no probe block ran on SM 0)")
    if timed_out and len(accepted) < config.min_samples:
        notes.append(f"timeout after {len(accepted)} accepted samples, fewer than min_samples={config.min_samples}")
    return summarize(
        accepted,
        rejected=len(rejected_clocks),
        sm_clock_mhz=float(np.median(clocks)) if clocks else None,
        graph_batch=int(graph_batch),
        max_clock_mhz=max_clock_mhz,
        converged=converged,
        settled=settled,
        timed_out=timed_out,
        cold=config.cold,
        elapsed_s=elapsed,
        notes=notes,
    )
