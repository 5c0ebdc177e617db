"""harness.measure without a GPU: the protocol on fake samples and a fake clock, the helper
kernels on the emulator and through nvJitLink, the NVML sampler with pynvml faked."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.emu import Emulator
from harness.errors import PollbenchError
from harness.measure import (
    NoValidSamples,
    NvmlSampler,
    Sample,
    StreamBlockTimeout,
    TimingConfig,
    TimingConfigError,
    choose_batch,
    run_protocol,
    summarize,
)
from harness.measure.blocker import Blocker
from harness.measure.clock import window_clock_mhz
from harness.measure.kernels import BLOCK_KERNEL, PROBE_KERNEL, RECORD_WORDS, build_module, decode_record
from harness.measure.nvml import THROTTLE_REASONS, reason_names
from harness.measure.protocol import RunningNoise

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- helpers


class FakeClock:
    """A monotonic clock that advances ``step`` seconds per reading."""

    def __init__(self, step: float = 0.0) -> None:
        self.t = 0.0
        self.step = step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


def feed(samples):
    """take_sample() over a list of Samples (or (ms, mhz) pairs); fails the test if exhausted."""
    it = iter(samples)

    def take() -> Sample:
        try:
            s = next(it)
        except StopIteration:  # pragma: no cover - a test bug
            pytest.fail("the protocol asked for more samples than the test provides")
        return s if isinstance(s, Sample) else Sample(*s)

    return take


# ---------------------------------------------------------------- TimingConfig


def test_config_defaults_are_nvbench_s():
    c = TimingConfig()
    assert (c.max_noise, c.min_samples, c.throttle_threshold, c.cold, c.batch) == (0.005, 10, 0.75, False, None)


@pytest.mark.parametrize(
    "kw",
    [
        {"max_noise": 0},
        {"max_noise": 0.5 * 3},
        {"min_samples": 0},
        {"min_samples": 20, "max_samples": 10},
        {"timeout_s": 0},
        {"warmup": -1},
        {"batch": 0},
        {"max_batch": 0},
        {"throttle_threshold": 1.5},
        {"max_clock_mhz": -1.0},
        {"batch_target_ms": 0},
    ],
)
def test_config_rejects_out_of_range_values_in_one_line(kw):
    with pytest.raises(TimingConfigError) as info:
        TimingConfig(**kw)
    assert isinstance(info.value, PollbenchError)
    msg = str(info.value)
    assert msg.startswith("TimingConfig: ") and "\n" not in msg


# ---------------------------------------------------------------- statistics


def test_running_noise_matches_numpy():
    rng = np.random.default_rng(7)
    xs = rng.normal(5.0, 0.3, 200)
    r = RunningNoise()
    assert r.rel_stddev() == math.inf
    for x in xs:
        r.add(float(x))
    assert r.rel_stddev() == pytest.approx(xs.std(ddof=1) / xs.mean(), rel=1e-12)


def test_summarize_reports_order_statistics():
    s = summarize([4.0, 1.0, 3.0, 2.0, 5.0], rejected=2, sm_clock_mhz=1980.0)
    assert (s.median_ms, s.min_ms, s.max_ms, s.mean_ms) == (3.0, 1.0, 5.0, 3.0)
    assert (s.q1_ms, s.q3_ms) == (2.0, 4.0)
    assert s.rel_stddev == pytest.approx(np.std([1, 2, 3, 4, 5], ddof=1) / 3)
    assert s.samples == 5 and s.rejected == 2 and s.samples_ms == [4.0, 1.0, 3.0, 2.0, 5.0]
    d = s.to_dict()
    json.dumps(d)  # JSON-ready
    assert d["median_ms"] == 3.0 and d["graph_batch"] == 1 and "samples_ms" in d
    assert "samples_ms" not in s.to_dict(include_samples=False)
    assert summarize([2.5]).rel_stddev is None
    with pytest.raises(NoValidSamples):
        summarize([])


# ---------------------------------------------------------------- the sampling loop


def test_stops_once_noise_is_under_max_noise_after_min_samples():
    cfg = TimingConfig(min_samples=10, max_noise=0.005)
    stats = run_protocol(feed([(1.0, 1980.0)] * 10), cfg, max_clock_mhz=1980.0, clock=FakeClock())
    assert stats.converged and not stats.timed_out
    assert stats.samples == 10 and stats.rejected == 0
    assert stats.median_ms == 1.0 and stats.rel_stddev == 0.0
    assert stats.sm_clock_mhz == 1980.0 and stats.max_clock_mhz == 1980.0


def test_noisy_samples_run_until_the_timeout():
    rng = np.random.default_rng(3)
    xs = [(float(v), 1900.0) for v in rng.normal(1.0, 0.1, 1000)]
    clock = FakeClock(step=0.01)  # start reading, then one reading per sample
    cfg = TimingConfig(timeout_s=0.5)
    stats = run_protocol(feed(xs), cfg, max_clock_mhz=1980.0, clock=clock)
    assert stats.timed_out and not stats.converged
    assert 45 <= stats.samples <= 51
    assert stats.rel_stddev is not None and stats.rel_stddev > cfg.max_noise


def test_max_samples_stops_a_noisy_run():
    xs = [(1.0 + (i % 2), None) for i in range(50)]
    stats = run_protocol(feed(xs), TimingConfig(min_samples=2, max_samples=20), max_clock_mhz=None, clock=FakeClock())
    assert stats.samples == 20 and not stats.converged and not stats.timed_out


def test_noise_that_settles_above_max_noise_stops_the_run():
    """Stationary 1% noise never gets under 0.5%: NVBench's rule stops once the noise
    estimate stops changing, long before max_samples."""
    rng = np.random.default_rng(5)
    xs = [(float(v), None) for v in rng.normal(1.0, 0.01, 10_000)]
    stats = run_protocol(feed(xs), TimingConfig(max_noise=0.005), max_clock_mhz=None,
                         clock=FakeClock())
    assert stats.settled and not stats.converged and not stats.timed_out
    assert 64 < stats.samples <= 1024 and stats.samples % 16 == 0  # not 10,000
    assert stats.rel_stddev == pytest.approx(0.01, rel=0.3)


def test_noise_still_growing_does_not_count_as_settled():
    # the spread doubles every 100 samples: the noise estimate keeps rising
    xs = [(1.0 + (-1) ** i * 0.001 * 2 ** (i / 100), None) for i in range(600)]
    stats = run_protocol(feed(xs), TimingConfig(max_noise=1e-4, max_samples=600),
                         max_clock_mhz=None, clock=FakeClock())
    assert not stats.settled and stats.samples == 600


def test_samples_under_75_percent_of_the_max_clock_are_rejected():
    # 1400 MHz < 0.75 * 1980 = 1485: rejected, and their (slow) times are not in the stats
    xs = [(9.0, 1400.0), (9.0, 1484.0)] + [(1.0, 1980.0)] * 5 + [(9.0, 345.0)] + [(1.0, 1490.0)] * 5
    stats = run_protocol(feed(xs), TimingConfig(), max_clock_mhz=1980.0, clock=FakeClock())
    assert stats.rejected == 3 and stats.samples == 10
    assert stats.max_ms == 1.0 and stats.converged
    assert stats.sm_clock_mhz == pytest.approx((1980.0 + 1490.0) / 2)


def test_rejection_pauses_for_throttle_recovery():
    pauses = []
    xs = [(1.0, 100.0)] + [(1.0, 2000.0)] * 10
    cfg = TimingConfig(throttle_recovery_s=0.05)
    run_protocol(feed(xs), cfg, max_clock_mhz=1980.0, clock=FakeClock(), sleep=pauses.append)
    assert pauses == [0.05]


def test_unknown_clocks_are_accepted_and_noted():
    xs = [(1.0, None)] * 3 + [(1.0, 1980.0)] * 7
    stats = run_protocol(feed(xs), TimingConfig(), max_clock_mhz=1980.0, clock=FakeClock())
    assert stats.samples == 10 and stats.rejected == 0
    assert any("SM clock unknown for 3 of 10" in n for n in stats.notes)


def test_without_a_max_clock_nothing_is_rejected():
    stats = run_protocol(feed([(1.0, 10.0)] * 10), TimingConfig(), max_clock_mhz=None, clock=FakeClock())
    assert stats.rejected == 0 and stats.samples == 10


def test_every_sample_rejected_until_the_timeout_is_an_error():
    xs = [(1.0, 345.0)] * 100
    with pytest.raises(NoValidSamples) as info:
        run_protocol(feed(xs), TimingConfig(timeout_s=0.1), max_clock_mhz=1980.0, clock=FakeClock(step=0.01))
    msg = str(info.value)
    assert "under 75% of the 1980 MHz max SM clock" in msg and "median 345 MHz" in msg and "\n" not in msg


def test_a_timeout_short_of_min_samples_is_noted():
    clock = FakeClock(step=1.0)
    stats = run_protocol(feed([(1.0, None)] * 5), TimingConfig(timeout_s=2.5), max_clock_mhz=None, clock=clock)
    assert stats.timed_out and stats.samples < 10
    assert any("fewer than min_samples=10" in n for n in stats.notes)


def test_graph_batch_and_cold_are_reported():
    stats = run_protocol(feed([(0.001, None)] * 10), TimingConfig(cold=True), max_clock_mhz=None,
                         graph_batch=400, clock=FakeClock())
    assert stats.graph_batch == 400 and stats.cold


# ---------------------------------------------------------------- batching


@pytest.mark.parametrize(
    ("single_ms", "kw", "want"),
    [
        (0.0025, {}, 400),  # an empty kernel: a 1 ms graph of 400 launches
        (0.012, {}, 84),  # a 10 us spin
        (0.0001, {}, 1000),  # capped at max_batch
        (0.049, {}, 21),
        (0.05, {}, 1),  # not under 50 us
        (0.18, {}, 1),  # a 256 MiB copy
        (0.0025, {"cold": True}, 1),  # cold samples are single launches
        (0.0025, {"batch": 1}, 1),
        (0.5, {"batch": 16}, 16),  # an explicit batch is kept
        (0.0, {}, 1),  # no estimate
    ],
)
def test_choose_batch(single_ms, kw, want):
    assert choose_batch(single_ms, TimingConfig(**kw)) == want


# ---------------------------------------------------------------- clock from probe records


def _record(seq, t0, c0, t1, c1):
    return np.array([seq, t0, c0, t1, c1], dtype=np.uint64)


def test_window_clock_from_two_probe_records():
    pre = _record(7, 1_000_000, 5_000, 1_001_000, 6_980)
    post = _record(7, 1_010_000, 24_800, 1_011_000, 26_780)
    # 21780 cycles over 11000 ns: 1980 MHz
    assert window_clock_mhz(pre, post, 7) == pytest.approx(1980.0)


def test_window_clock_unknown_when_a_probe_missed_sm0_or_time_stood_still():
    pre = _record(7, 1_000, 0, 2_000, 1_000)
    assert window_clock_mhz(pre, _record(6, 0, 0, 9_000, 9_000), 7) is None  # stale post record
    assert window_clock_mhz(_record(6, 0, 0, 0, 0), pre, 7) is None
    assert window_clock_mhz(pre, _record(7, 0, 0, 1_000, 5_000), 7) is None  # t1 <= t0


def test_decode_record_reads_the_claim_word_low_bits():
    rec = np.array([(9 << 32) | 3, 1, 2, 3, 4], dtype=np.uint64)
    assert decode_record(rec) == (3, 1, 2, 3, 4)


# ---------------------------------------------------------------- helper kernels on the emulator


def test_clock_probe_on_the_emulator_claims_one_sm0_block_per_seq():
    emu = Emulator(build_module(), n_sms=4)
    rec = emu.to_device(np.zeros(RECORD_WORDS, np.uint64))
    emu.launch(PROBE_KERNEL, 8, 1, [rec, np.uint32(1), np.uint64(40)])  # blocks 0 and 4 are on SM 0
    seq, t0, c0, t1, c1 = decode_record(emu.read(rec, np.uint64, RECORD_WORDS))
    assert seq == 1 and t1 - t0 >= 40 and c1 > c0 > 0
    first = emu.read(rec, np.uint64, RECORD_WORDS).copy()
    emu.launch(PROBE_KERNEL, 8, 1, [rec, np.uint32(1), np.uint64(40)])  # same seq: nobody writes
    assert (emu.read(rec, np.uint64, RECORD_WORDS) == first).all()
    emu.launch(PROBE_KERNEL, 8, 1, [rec, np.uint32(2), np.uint64(0)])
    seq2, t0b, *_ = decode_record(emu.read(rec, np.uint64, RECORD_WORDS))
    assert seq2 == 2 and t0b > t1


def test_blocking_kernel_on_the_emulator_waits_for_the_flag_or_times_out():
    emu = Emulator(build_module())
    flag = emu.to_device(np.array([1], np.uint32))
    timed_out = emu.to_device(np.array([0], np.uint32))
    emu.launch(BLOCK_KERNEL, 1, 1, [flag, timed_out, np.uint64(1_000)])
    assert emu.read(timed_out, np.uint32, 1)[0] == 0
    held = emu.to_device(np.array([0], np.uint32))
    r = emu.launch(BLOCK_KERNEL, 1, 1, [held, timed_out, np.uint64(200)])
    assert emu.read(timed_out, np.uint32, 1)[0] == 1 and r.steps > 50


def test_helper_kernels_link_for_sm_90_with_nvjitlink():
    from harness.compile import compile_ptx

    compiled = compile_ptx(build_module("sm_90").to_ptx(), "sm_90", cache=False)
    assert set(compiled.resources) >= {PROBE_KERNEL, BLOCK_KERNEL}
    assert all(r.spill_stores == 0 and r.stack_frame == 0 for r in compiled.resources.values())
    assert "ld.relaxed.sys.global.u32" in compiled.ptx and "atom.global.max.u32" in compiled.ptx


def test_stream_block_timeout_message_says_what_to_do():
    class Words:
        def __getitem__(self, i):
            return 1

    b = Blocker.__new__(Blocker)
    b._words, b.timeout_s = Words(), 5.0
    with pytest.raises(StreamBlockTimeout, match=r"blocking=False") as info:
        b.check()
    assert "\n" not in str(info.value)


def test_importing_measure_touches_no_driver():
    code = "import sys, harness.measure; print(sorted(m for m in sys.modules if m.startswith(('cuda', 'pynvml'))))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- NVML sampler, pynvml faked

pynvml = pytest.importorskip("pynvml")


def _nvml_present() -> bool:
    try:
        pynvml.nvmlInit()
    except Exception:
        return False
    pynvml.nvmlShutdown()
    return True


@pytest.mark.skipif(_nvml_present(), reason="this machine has NVML; the test checks the no-driver path")
def test_no_driver_gives_an_unavailable_sampler_with_the_reason():
    with NvmlSampler(0, interval_s=0.001) as s:
        pass
    d = s.summary()
    assert d["available"] is False and d["samples"] == 0
    assert d["reason"].startswith("NVML unavailable: ") and "\n" not in d["reason"]
    assert d["energy_j"] is None and d["sm_clock_mhz"] is None and d["gpm_sm_occupancy_pct"] is None
    json.dumps(d)


def test_no_nvidia_ml_py_gives_an_unavailable_sampler(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    s = NvmlSampler()
    s.start()
    s.stop()
    assert s.summary()["available"] is False and "nvidia-ml-py is not installed" in s.summary()["reason"]


class FakeNvml:
    """Fake pynvml functions; ``unsupported`` names functions that raise NVMLError_NotSupported."""

    def __init__(self, unsupported=(), gpm_supported=True, occupancy=37.5, energy_step_mj=500):
        self.unsupported = set(unsupported)
        self.gpm_supported = gpm_supported
        self.occupancy = occupancy
        self.energy = 1_000_000
        self.energy_step = energy_step_mj
        self.reasons = [0x1, 0x0, 0x4]  # idle, none, sw power cap, ...
        self.n = 0
        self.freed = 0
        self.allocated = 0
        self.shutdown = 0

    def _maybe(self, name):
        if name in self.unsupported:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def install(self, mp):
        mp.setattr(pynvml, "nvmlInit", lambda: None)
        mp.setattr(pynvml, "nvmlShutdown", self._shutdown)
        mp.setattr(pynvml, "nvmlDeviceGetHandleByIndex", lambda i: ("gpu", i))
        mp.setattr(pynvml, "nvmlDeviceGetHandleByPciBusId", self._by_pci)
        mp.setattr(pynvml, "nvmlDeviceGetName", lambda h: b"NVIDIA H100 80GB HBM3")
        mp.setattr(pynvml, "nvmlDeviceGetClockInfo", self._clock)
        mp.setattr(pynvml, "nvmlDeviceGetPowerUsage", self._power)
        mp.setattr(pynvml, "nvmlDeviceGetTemperature", self._temp)
        mp.setattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons", self._reasons)
        mp.setattr(pynvml, "nvmlDeviceGetTotalEnergyConsumption", self._energy)
        mp.setattr(pynvml, "nvmlGpmQueryDeviceSupport", self._gpm_support)
        mp.setattr(pynvml, "nvmlGpmSampleAlloc", self._alloc)
        mp.setattr(pynvml, "nvmlGpmSampleGet", lambda h, s: s)
        mp.setattr(pynvml, "nvmlGpmSampleFree", self._free)
        mp.setattr(pynvml, "nvmlGpmMetricsGet", self._metrics)
        return self

    def _shutdown(self):
        self.shutdown += 1

    def _by_pci(self, bus):
        if bus != "0000:18:00.0":
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
        return ("gpu", bus)

    def _clock(self, h, kind):
        self._maybe("sm_clock" if kind == pynvml.NVML_CLOCK_SM else "mem_clock")
        self.n += 1
        return 1980 if kind == pynvml.NVML_CLOCK_SM else 2619

    def _power(self, h):
        self._maybe("power")
        return 350_000 + 1000 * (self.n % 3)  # mW

    def _temp(self, h, sensor):
        self._maybe("temperature")
        return 41

    def _reasons(self, h):
        self._maybe("reasons")
        return self.reasons[self.n % len(self.reasons)]

    def _energy(self, h):
        self._maybe("energy")
        self.energy += self.energy_step
        return self.energy

    def _gpm_support(self, h):
        self._maybe("gpm")
        s = pynvml.c_nvmlGpmSupport_t()
        s.isSupportedDevice = 1 if self.gpm_supported else 0
        return s

    def _alloc(self):
        self.allocated += 1
        return pynvml.c_nvmlGpmSample_t()

    def _free(self, s):
        self.freed += 1

    def _metrics(self, mg):
        assert mg.version == pynvml.NVML_GPM_METRICS_GET_VERSION and mg.numMetrics == 1
        assert mg.metrics[0].metricId == pynvml.NVML_GPM_METRIC_SM_OCCUPANCY
        mg.metrics[0].nvmlReturn = pynvml.NVML_SUCCESS
        mg.metrics[0].value = self.occupancy
        return mg


def _run_sampler(seconds=0.05, **kw):
    import time

    with NvmlSampler(**{"interval_s": 0.002, **kw}) as s:
        time.sleep(seconds)
    return s, s.summary()


def test_sampler_summarizes_every_field(monkeypatch):
    fake = FakeNvml().install(monkeypatch)
    monkeypatch.setattr("harness.measure.nvml._GPM_EVERY_S", 0.005)
    s, d = _run_sampler(0.06)
    assert d["available"] is True and d["reason"] == "" and d["device"]["name"] == "NVIDIA H100 80GB HBM3"
    assert d["samples"] >= 3
    assert d["sm_clock_mhz"] == {"mean": 1980.0, "min": 1980.0, "max": 1980.0}
    assert d["mem_clock_mhz"]["mean"] == 2619.0
    assert 350.0 <= d["power_w"]["min"] <= d["power_w"]["mean"] <= d["power_w"]["max"] <= 352.0
    assert d["temperature_c"]["max"] == 41.0
    assert d["energy_j"] == pytest.approx(0.5) and d["energy_source"] == "counter"  # two reads, 500 mJ apart
    assert d["clock_event_reasons"]["any"] & 0x4 and "sw_power_cap" in d["clock_event_reasons"]["names"]
    assert 0 < d["clock_event_reasons"]["throttled_fraction"] < 1
    assert d["gpm_sm_occupancy_pct"] == 37.5
    assert d["gpm_sm_occupancy_pct_intervals"]["mean"] == 37.5 and d["gpm_sm_occupancy_pct_intervals"]["n"] >= 1
    assert d["unsupported"] == {} and d["errors"] == {}
    assert fake.freed == fake.allocated and fake.shutdown == 1
    json.dumps(d)


def test_unsupported_fields_are_null_and_named_never_a_crash(monkeypatch):
    FakeNvml(unsupported={"power", "energy", "temperature", "reasons", "gpm", "mem_clock"}).install(monkeypatch)
    s, d = _run_sampler(0.02)
    assert d["available"] is True
    assert d["sm_clock_mhz"]["mean"] == 1980.0
    for field in ("mem_clock_mhz", "power_w", "temperature_c", "clock_event_reasons", "energy_j",
                  "gpm_sm_occupancy_pct", "gpm_sm_occupancy_pct_intervals"):
        assert d[field] is None, field
    assert d["energy_source"] is None
    assert set(d["unsupported"]) == {"mem_clock_mhz", "power_w", "temperature_c", "clock_event_reasons",
                                     "energy_j", "gpm_sm_occupancy_pct"}
    assert "Not Supported" in d["unsupported"]["power_w"]


def test_energy_falls_back_to_integrating_power(monkeypatch):
    FakeNvml(unsupported={"energy"}).install(monkeypatch)
    s, d = _run_sampler(0.05)
    assert d["energy_source"] == "power_integral"
    assert d["energy_j"] == pytest.approx(350.0 * d["duration_s"], rel=0.3)


def test_gpm_not_supported_on_the_device(monkeypatch):
    FakeNvml(gpm_supported=False).install(monkeypatch)
    s, d = _run_sampler(0.01)
    assert d["gpm_sm_occupancy_pct"] is None
    assert d["unsupported"]["gpm_sm_occupancy_pct"] == "GPM is not supported on this GPU"


def test_transient_errors_are_counted_not_raised(monkeypatch):
    fake = FakeNvml().install(monkeypatch)
    calls = {"n": 0}

    def flaky(h):
        calls["n"] += 1
        if calls["n"] % 2:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNKNOWN)
        return 300_000

    monkeypatch.setattr(pynvml, "nvmlDeviceGetPowerUsage", flaky)
    s, d = _run_sampler(0.03)
    assert d["power_w"]["mean"] == 300.0
    assert d["errors"]["power_w"].split("x ", 1)[1] == "Unknown Error"
    assert "power_w" not in d["unsupported"]
    assert fake.shutdown == 1


def test_device_is_found_by_pci_bus_id_else_by_index(monkeypatch):
    FakeNvml().install(monkeypatch)
    seen = []
    monkeypatch.setattr(pynvml, "nvmlDeviceGetName", lambda h: (seen.append(h), b"gpu")[1])
    _run_sampler(0.0, pci_bus_id="0000:18:00.0", device_index=3)
    _run_sampler(0.0, pci_bus_id="0000:99:00.0", device_index=3)
    assert seen == [("gpu", "0000:18:00.0"), ("gpu", 3)]


def test_reason_names_and_throttle_mask():
    assert reason_names(0x1 | 0x40) == ["gpu_idle", "hw_thermal_slowdown"]
    assert not 0x1 & THROTTLE_REASONS and 0x4 & THROTTLE_REASONS


# ---------------------------------------------------------------- measure() against a fake runtime


class FakeKernel:
    def __init__(self, name: str) -> None:
        self.name = name


class FakeArray:
    def __init__(self, rt: "FakeRuntime", nbytes: int) -> None:
        self.rt, self.nbytes = rt, nbytes
        self.ptr = 0x1000_0000 * (len(rt.arrays) + 1)
        self.data = np.zeros(max(nbytes, 8) // 8, np.uint64)
        rt.arrays.append(self)

    def fill_bytes(self, byte: int) -> None:
        self.rt.log.append(f"fill{self.nbytes}")
        self.data[:] = 0 if byte == 0 else self.data

    def to_host(self, dtype, shape):
        self.rt.log.append("to_host")
        return self.data.view(dtype)[: int(np.prod(shape))].reshape(shape).copy()

    def free(self) -> None:
        self.rt.freed.append(self.nbytes)


class FakeRuntime:
    """Enough of harness.gpu.Runtime for measure(): a GPU clock advanced by the kernels it 'runs'."""

    arch, sm_count, device, name = "sm_90", 4, 0, "fake"
    closed = wedged = False
    cu_device = 0

    def __init__(self, kernel_ms: float, mhz: float = 1980.0) -> None:
        self.kernel_ms, self.mhz = kernel_ms, mhz
        self.t_ns = 1_000_000
        self.log: list = []
        self.arrays: list = []
        self.freed: list = []
        self.capturing = False
        self._captured = 0
        self.user = FakeKernel("user")

    # work on the fake GPU
    def _run(self, ms: float) -> None:
        self.t_ns += int(round(ms * 1e6))

    def launch(self, kernel, grid, block, *args, shared=0, check=True):
        if self.capturing:
            self._captured += 1
            return
        self.log.append(kernel.name if kernel.name != "user" else "launch")
        if kernel.name == PROBE_KERNEL:
            rec = next(a for a in self.arrays if a.ptr <= args[0] < a.ptr + a.nbytes)
            w = (args[0] - rec.ptr) // 8
            t0 = self.t_ns
            self._run(0.001)
            rec.data[w: w + 5] = [int(args[1]), t0, int(t0 * self.mhz / 1e3), self.t_ns, int(self.t_ns * self.mhz / 1e3)]
        elif kernel.name == "user":
            self._run(self.kernel_ms)

    def capture_graph(self, fn):
        self.capturing, self._captured = True, 0
        fn()
        self.capturing = False
        g = type("G", (), {"n": self._captured, "close": lambda s: self.log.append("graph.close")})()
        self.log.append(f"capture{g.n}")
        return g

    def launch_graph(self, g):
        self.log.append(f"graph{g.n}")
        self._run(self.kernel_ms * g.n * 0.5)  # graph nodes run back to back, faster

    def timer(self):
        rt = self

        class T:
            def start(self):
                rt.log.append("start")
                self.t0 = rt.t_ns

            def stop(self):
                rt.log.append("stop")
                self.t1 = rt.t_ns

            def elapsed_ms(self):
                return (self.t1 - self.t0) / 1e6

            def close(self):
                rt.log.append("timer.close")

        return T()

    def load(self, cubin, name=""):
        return type("M", (), {"kernel": lambda s, n: FakeKernel(n)})()

    def alloc(self, nbytes):
        return FakeArray(self, nbytes)

    def synchronize(self):
        self.log.append("sync")

    def check_stream(self, what=""):
        return True


class FakeWords:
    def __init__(self, n):
        self.words, self.ptr = [0] * n, 0x7000_0000

    def __getitem__(self, i):
        return self.words[i]

    def __setitem__(self, i, v):
        self.words[i] = v

    def free(self):
        pass


@pytest.fixture
def fake_gpu(monkeypatch):
    import harness.measure.blocker as blocker
    import harness.measure.timing as timing

    monkeypatch.setattr(blocker, "MappedWords", FakeWords)
    monkeypatch.setattr(timing, "max_sm_clock_mhz", lambda rt: (1980.0, "test"))
    monkeypatch.setattr(timing, "l2_cache_bytes", lambda rt: 50 << 20)

    def make(kernel_ms, mhz=1980.0):
        return FakeRuntime(kernel_ms, mhz)

    return make


def _one_sample(log):
    """The operations of the last sample, from its blocking kernel (or flush) to its clock read."""
    end = len(log) - 1 - log[::-1].index("to_host")
    start = max(i for i, op in enumerate(log[:end]) if op == BLOCK_KERNEL)
    if start >= 2 and log[start - 2].startswith("fill"):
        start -= 2
    return log[start: end + 1]


def test_measure_enqueues_a_sample_in_nvbench_s_order(fake_gpu):
    from harness.measure import measure

    rt = fake_gpu(0.2)
    st = measure(lambda: rt.launch(rt.user, 1, 1), rt, TimingConfig(cold=True))
    assert _one_sample(rt.log) == [f"fill{50 << 20}", "sync", BLOCK_KERNEL, PROBE_KERNEL, "start", "launch", "stop",
                                   PROBE_KERNEL, "to_host"]
    assert st.graph_batch == 1 and st.cold and st.converged
    assert st.median_ms == pytest.approx(0.2) and st.sm_clock_mhz == pytest.approx(1980.0, rel=1e-3)
    assert st.max_clock_mhz == 1980.0 and st.rejected == 0
    assert rt.log[-1] == "timer.close" and len(rt.freed) == 2  # probe records and the L2 buffer


def test_measure_batches_tiny_launches_in_a_graph_and_reports_per_launch(fake_gpu):
    from harness.measure import measure

    rt = fake_gpu(0.0025)  # an empty kernel: 2.5 us
    st = measure(lambda: rt.launch(rt.user, 1, 1), rt, TimingConfig())
    assert st.graph_batch == 400 and "capture400" in rt.log
    assert _one_sample(rt.log) == [BLOCK_KERNEL, PROBE_KERNEL, "start", "graph400", "stop", PROBE_KERNEL, "to_host"]
    assert st.median_ms == pytest.approx(0.0025 * 0.5)
    assert "graph.close" in rt.log


def test_measure_warms_up_unblocked_before_sampling(fake_gpu):
    from harness.measure import measure

    rt = fake_gpu(0.2)
    measure(lambda: rt.launch(rt.user, 1, 1), rt, TimingConfig(warmup=2, batch=1))
    first_block = rt.log.index(BLOCK_KERNEL)
    # the helper kernels run once (the blocker released at once), then the warm-ups, each waited for
    assert rt.log[first_block: first_block + 4] == [BLOCK_KERNEL, PROBE_KERNEL, PROBE_KERNEL, "sync"]
    assert rt.log[first_block + 5: first_block + 9] == ["launch", "sync", "launch", "sync"]


def test_measure_rejects_samples_from_a_slow_clock(fake_gpu):
    from harness.measure import measure

    rt = fake_gpu(0.2, mhz=345.0)
    with pytest.raises(NoValidSamples, match="median 345 MHz"):
        measure(lambda: rt.launch(rt.user, 1, 1), rt, TimingConfig(timeout_s=0.05, batch=1))


def test_measure_without_blocking_launches_no_blocker(fake_gpu):
    from harness.measure import measure

    rt = fake_gpu(0.2)
    measure(lambda: rt.launch(rt.user, 1, 1), rt, TimingConfig(blocking=False, batch=1))
    assert BLOCK_KERNEL not in rt.log
