"""harness.gpu: no-GPU unit tests, plus GPU tests that skip themselves (with the reason) here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import harness.gpu as gpu
from harness.errors import PollbenchError
from harness.gpu import args as gargs
from harness.gpu import driver as gdriver
from harness.gpu import selftest
from harness.gpu.errors import CudaCallError, GpuUnavailable, KernelFault, KernelTimeout, LaunchArgError
from harness.gpu.testing import GPU_SKIP_REASON, requires_gpu
from harness.gpu.watchdog import poll_until, wait_with_watchdog

REPO = Path(__file__).resolve().parents[1]
no_gpu = pytest.mark.skipif(gpu.gpu_available(), reason="this machine has a GPU; the test checks the no-GPU path")


# ---------------------------------------------------------------- availability (no GPU)


def test_import_does_not_touch_the_driver() -> None:
    code = "import sys, harness.gpu; print(sorted(m for m in sys.modules if m.startswith('cuda')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_gpu_available_never_raises() -> None:
    assert gpu.gpu_available() in (True, False)
    assert isinstance(gpu.device_count(), int)


@no_gpu
def test_unavailable_reason_is_one_actionable_line() -> None:
    reason = gpu.unavailable_reason()
    assert reason and "\n" not in reason
    assert "--backend emu" in reason
    assert gpu.list_gpus() == []


@no_gpu
def test_runtime_raises_gpu_unavailable() -> None:
    with pytest.raises(GpuUnavailable) as info:
        gpu.Runtime()
    msg = str(info.value)
    assert isinstance(info.value, PollbenchError)
    assert "\n" not in msg and msg == gpu.unavailable_reason()


def test_runtime_bad_device_index_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gdriver, "_probe", lambda: (2, ""))
    with pytest.raises(GpuUnavailable, match=r"^no CUDA device 5 \(found 2\)"):
        gdriver.require_device(5)
    gdriver.require_device(1)


def test_gpu_tests_skip_with_a_reason() -> None:
    if gpu.gpu_available():
        assert GPU_SKIP_REASON == ""
    else:
        assert GPU_SKIP_REASON == "needs a GPU: " + gpu.unavailable_reason()


# ---------------------------------------------------------------- driver-call checking (no GPU)


def _cuda_result(name: str):
    from cuda.bindings import driver

    return getattr(driver.CUresult, name)


def test_check_returns_values_and_raises_with_call_and_result_name() -> None:
    ok = _cuda_result("CUDA_SUCCESS")
    assert gdriver.check("cuFoo", (ok,)) is None
    assert gdriver.check("cuFoo", (ok, 7)) == 7
    assert gdriver.check("cuFoo", (ok, 7, 8)) == (7, 8)
    with pytest.raises(CudaCallError) as info:
        gdriver.check("cuMemHostAlloc", (_cuda_result("CUDA_ERROR_OUT_OF_MEMORY"), 0))
    err = info.value
    assert err.call == "cuMemHostAlloc" and err.result == "CUDA_ERROR_OUT_OF_MEMORY"
    assert str(err).startswith("cuMemHostAlloc failed: CUDA_ERROR_OUT_OF_MEMORY")
    assert "\n" not in str(err) and isinstance(err, PollbenchError)


def test_sticky_errors_are_kernel_faults() -> None:
    with pytest.raises(KernelFault, match="process must exit"):
        gdriver.check("cuEventQuery", (_cuda_result("CUDA_ERROR_ILLEGAL_ADDRESS"),))


def test_error_from_cuda_core_exception_extracts_the_result_name() -> None:
    exc = RuntimeError("CUDA_ERROR_NO_BINARY_FOR_GPU: no kernel image is available for execution on the device")
    err = gdriver.error_from_exception("loading a cubin", exc)
    assert err.result == "CUDA_ERROR_NO_BINARY_FOR_GPU"
    assert "loading a cubin failed: CUDA_ERROR_NO_BINARY_FOR_GPU" in str(err)
    assert "another GPU architecture" in str(err)
    plain = gdriver.error_from_exception("x", ValueError("bad\nthing"))
    assert plain.result == "" and str(plain) == "x failed — bad thing"


# ---------------------------------------------------------------- argument packing (no GPU)


class FakeArray:
    """Anything with an integer .ptr is passed as a u64 pointer (DeviceArray, StopFlag)."""

    def __init__(self, ptr: int) -> None:
        self.ptr = ptr


@pytest.mark.parametrize(
    ("arg", "dtype", "value"),
    [
        (np.uint32(7), np.uint32, 7),
        (np.int32(-3), np.int32, -3),
        (np.uint64(2**63 + 5), np.uint64, 2**63 + 5),
        (np.int64(-(2**40)), np.int64, -(2**40)),
        (np.uint8(255), np.uint8, 255),
        (np.int16(-2), np.int16, -2),
        (np.float32(1.5), np.float32, 1.5),
        (np.float64(2.25), np.float64, 2.25),
        (np.float16(0.5), np.float16, 0.5),
        (np.bool_(True), np.uint8, 1),
        (5, np.uint64, 5),
        (2**64 - 1, np.uint64, 2**64 - 1),
        (-1, np.int64, -1),
        (FakeArray(0x7F0000001000), np.uint64, 0x7F0000001000),
    ],
)
def test_pack_args_widths(arg: object, dtype: type, value: float) -> None:
    (packed,) = gargs.pack_args([arg])
    assert type(packed) is dtype
    assert packed.dtype.itemsize == np.dtype(dtype).itemsize
    assert packed == value


def test_pack_args_keeps_order_and_sizes() -> None:
    packed = gargs.pack_args([FakeArray(16), np.uint32(3), 9, np.float32(1.0), np.uint16(2)])
    assert gargs.arg_sizes(packed) == [8, 4, 8, 4, 2]
    assert [int(p) if p.dtype.kind in "iu" else float(p) for p in packed] == [16, 3, 9, 1.0, 2]


def test_pack_args_graph_condition_handle() -> None:
    from cuda.bindings import driver

    (packed,) = gargs.pack_args([driver.CUgraphConditionalHandle(0x1234)])
    assert type(packed) is np.uint64 and int(packed) == 0x1234


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        (True, "Python bool"),
        (1.5, "Python float"),
        (2**64, "does not fit in 64 bits"),
        (-(2**63) - 1, "does not fit in 64 bits"),
        (np.zeros(3), "rt.to_device"),
        ("x", "has type str"),
        (None, "has type NoneType"),
        (np.complex64(1), "cannot be a kernel parameter"),
        (FakeArray(-1), "not a 64-bit address"),
        (FakeArray("0x10"), "must be an int"),  # type: ignore[arg-type]
    ],
)
def test_pack_args_rejects_ambiguous_arguments(arg: object, message: str) -> None:
    with pytest.raises(LaunchArgError, match="kernel argument 1") as info:
        gargs.pack_args([np.uint32(0), arg])
    assert message in str(info.value)
    assert isinstance(info.value, PollbenchError) and isinstance(info.value, TypeError)
    assert "\n" not in str(info.value)


def test_check_arg_layout() -> None:
    packed = gargs.pack_args([FakeArray(1), np.uint32(2)])
    gargs.check_arg_layout("k", packed, (8, 4))
    gargs.check_arg_layout("k", packed, None)
    with pytest.raises(LaunchArgError, match="takes 3 parameter"):
        gargs.check_arg_layout("k", packed, (8, 4, 4))
    with pytest.raises(LaunchArgError, match="parameter 1 is 8 bytes but argument 1 \\(uint32\\) is 4 bytes"):
        gargs.check_arg_layout("k", packed, (8, 8))


# ---------------------------------------------------------------- watchdog state machine (no GPU)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, dt: float) -> None:
        self.now += max(dt, 1e-6)


def _watch(done_at: float | None, stops_on_flag_after: float | None, timeout_s: float = 1.0, grace_s: float = 0.5):
    clock = FakeClock()
    flag = {"set_at": None}

    def query() -> bool:
        if done_at is not None and clock.now >= done_at:
            return True
        if flag["set_at"] is not None and stops_on_flag_after is not None:
            return clock.now >= flag["set_at"] + stops_on_flag_after
        return False

    def raise_flag() -> None:
        flag["set_at"] = clock.now

    outcome = wait_with_watchdog(
        query, raise_flag, "kernel 'k'", timeout_s=timeout_s, grace_s=grace_s, clock=clock, sleep=clock.sleep
    )
    return outcome, flag["set_at"], clock.now


def test_watchdog_ok_when_done_before_timeout() -> None:
    outcome, flag_at, now = _watch(done_at=0.3, stops_on_flag_after=None)
    assert outcome == "ok" and flag_at is None and now < 0.31


def test_watchdog_stopped_when_kernel_sees_the_flag() -> None:
    outcome, flag_at, now = _watch(done_at=None, stops_on_flag_after=0.1)
    assert outcome == "stopped"
    assert flag_at is not None and 1.0 <= flag_at < 1.01
    assert now < 1.0 + 0.1 + 0.01


def test_watchdog_times_out_with_an_actionable_message() -> None:
    with pytest.raises(KernelTimeout) as info:
        _watch(done_at=None, stops_on_flag_after=None)
    msg = str(info.value)
    assert "kernel 'k' did not finish within 1 s" in msg and "process must exit" in msg
    assert "\n" not in msg and isinstance(info.value, PollbenchError)


def test_poll_until_checks_once_more_at_the_deadline() -> None:
    clock = FakeClock()
    calls = []

    def query() -> bool:
        calls.append(clock.now)
        return clock.now >= 0.5

    assert poll_until(query, 0.5, clock=clock, sleep=clock.sleep, max_sleep_s=0.1)
    assert calls[-1] >= 0.5
    assert not poll_until(lambda: False, clock.now + 0.2, clock=clock, sleep=clock.sleep)


# ---------------------------------------------------------------- self-test PTX (nvJitLink, no GPU)


def _nvjitlink_available() -> bool:
    try:
        selftest.link_ptx(selftest.selftest_ptx("sm_90"), "sm_90")
    except Exception:
        return False
    return True


needs_nvjitlink = pytest.mark.skipif(not _nvjitlink_available(), reason="nvJitLink is not usable here")


@needs_nvjitlink
@pytest.mark.parametrize("arch", ["sm_80", "sm_90", "sm_100", "sm_120"])
def test_selftest_ptx_links(arch: str) -> None:
    cubin = selftest.link_ptx(selftest.selftest_ptx(arch), arch)
    assert cubin[:4] == b"\x7fELF"


@needs_nvjitlink
def test_nvjitlink_leaves_cudaGraphSetConditional_unresolved() -> None:
    """Finding: nvJitLink links a PTX that calls the undefined extern cudaGraphSetConditional
    without error; the cubin keeps an undefined symbol that the driver must resolve at load time
    (as it does for vprintf).  The driver JIT path (Runtime.load_ptx) is what architecture §11 measured;
    tests/gpu_smoke.py tries both."""
    cubin = selftest.link_ptx(selftest.conditional_ptx("sm_90"), "sm_90")
    assert cubin[:4] == b"\x7fELF"
    assert b"cudaGraphSetConditional" in cubin


def test_ptx_isa_for() -> None:
    assert selftest.ptx_isa_for("sm_90") == "8.0"
    assert selftest.ptx_isa_for("sm_90a") == "8.0"
    assert selftest.ptx_isa_for("sm_100") == "8.6"  # the IR's table: sm_100 is PTX ISA 8.6
    from harness.ptx.ir import ptx_isa_for

    assert selftest.ptx_isa_for is ptx_isa_for  # one table
    assert selftest.ptx_isa_for("sm_121") == "8.8" and selftest.ptx_isa_for("sm_75") == "8.0"
    assert selftest.ptx_isa_for("sm_130") == "9.0"  # newer than the table: its newest ISA


# ---------------------------------------------------------------- on a GPU


@requires_gpu
def test_gpu_list_gpus() -> None:
    gpus = gpu.list_gpus()
    assert gpus and gpus[0]["index"] == 0
    assert gpus[0]["arch"].startswith("sm_") and gpus[0]["sm_count"] > 0 and gpus[0]["memory_bytes"] > 0


@requires_gpu
def test_gpu_runtime_attributes(gpu_runtime: gpu.Runtime) -> None:  # noqa: F811
    rt = gpu_runtime
    assert rt.arch.startswith("sm_") and rt.sm_count > 0 and rt.name
    assert rt.stop_flag.ptr != 0 and rt.stop_flag.get() in (0, 1)


@requires_gpu
def test_gpu_vadd_matches_numpy(gpu_runtime: gpu.Runtime) -> None:  # noqa: F811
    selftest.scenario_vadd(gpu_runtime)


@requires_gpu
def test_gpu_kernel_attributes_and_occupancy(gpu_runtime: gpu.Runtime) -> None:  # noqa: F811
    selftest.scenario_attributes(gpu_runtime)


@requires_gpu
def test_gpu_launch_rejects_wrong_argument_widths(gpu_runtime: gpu.Runtime) -> None:  # noqa: F811
    k = selftest.load_selftest(gpu_runtime).kernel("vadd_u32")
    if k.param_sizes is None:
        pytest.skip("the driver does not report parameter sizes")
    out = gpu_runtime.alloc(16)
    with pytest.raises(LaunchArgError, match="parameter 3 is 4 bytes"):
        gpu_runtime.launch(k, 1, 4, out, out, out, 4, np.uint32(1))  # 4 is a Python int: u64


@requires_gpu
def test_gpu_device_array_roundtrip(gpu_runtime: gpu.Runtime) -> None:  # noqa: F811
    x = np.random.default_rng(2).random((3, 5), dtype=np.float32)
    d = gpu_runtime.to_device(x)
    assert d.nbytes == x.nbytes and d.ptr != 0
    np.testing.assert_array_equal(d.to_host(np.float32, x.shape), x)
    d.fill_bytes(0xFF)
    assert np.all(d.to_host(np.uint8) == 0xFF)
    d.free()
    with pytest.raises(gpu.GpuError, match="freed"):
        d.to_host()


@requires_gpu
def test_gpu_watchdog_ok(gpu_runtime: gpu.Runtime) -> None:  # noqa: F811
    selftest.scenario_watchdog_ok(gpu_runtime)


@requires_gpu
def test_gpu_watchdog_stops_a_spinning_kernel(gpu_runtime: gpu.Runtime) -> None:  # noqa: F811
    selftest.scenario_watchdog_stop(gpu_runtime)


@requires_gpu
def test_gpu_captured_graph(gpu_runtime: gpu.Runtime) -> None:  # noqa: F811
    selftest.scenario_capture_graph(gpu_runtime)


@requires_gpu
def test_gpu_while_graph_runs_exactly_n_iterations(gpu_runtime: gpu.Runtime) -> None:  # noqa: F811
    selftest.scenario_while_graph(gpu_runtime, n=50, via="ptx")


@requires_gpu
def test_gpu_timer_measures_something(gpu_runtime: gpu.Runtime) -> None:  # noqa: F811
    us = selftest.timing_empty_launch(gpu_runtime, repeat=100)
    assert 0.0 < us < 10_000.0


@requires_gpu
def test_gpu_kernel_timeout_needs_a_fresh_process() -> None:
    selftest.scenario_kernel_timeout_subprocess()
