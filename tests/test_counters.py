import numpy as np

from executors.base import COUNTER_FIELDS
from harness.counters import summarise


def _raw(rows):
    a = np.zeros((len(rows), len(COUNTER_FIELDS)), np.uint64)
    for i, r in enumerate(rows):
        for k, v in r.items():
            a[i, COUNTER_FIELDS.index(k)] = v
    return a.reshape(-1)


def test_bookkeeping_share_and_polls():
    rows = [dict(total_cycles=100, poll_cycles=25, polls=3, pending_polls=2, smid=0,
                 start_ns=0, end_ns=10)] * 64 + [{}] * 4  # 4 threads stored nothing
    s = summarise(_raw(rows), ntasks=64, max_warps_per_sm=64)
    assert s["threads_recorded"] == 64
    assert abs(s["bookkeeping_share"] - 0.75) < 1e-12
    assert s["polls_per_task"] == 3 and s["pending_per_task"] == 2
    # 64 threads = 2 warps resident for the whole span of SM 0, out of 64 warps
    assert abs(s["achieved_occupancy"] - 2 / 64) < 1e-12


def test_no_records():
    assert summarise(np.zeros(len(COUNTER_FIELDS) * 8, np.uint64), 8)["threads_recorded"] == 0
