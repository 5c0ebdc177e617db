"""Per-thread counters of instrumented builds (executors.base.COUNTER_FIELDS) summarised
into architecture §8's figures: bookkeeping share, polls per task, achieved occupancy per SM."""

from __future__ import annotations

import numpy as np

from executors.base import COUNTER_FIELDS


def as_table(raw: np.ndarray) -> dict:
    """u64[threads * fields] -> {field: u64[threads]}."""
    rec = raw.reshape(-1, len(COUNTER_FIELDS))
    return {f: rec[:, i] for i, f in enumerate(COUNTER_FIELDS)}


def summarise(raw: np.ndarray, ntasks: int, max_warps_per_sm: int | None = None) -> dict:
    """The figures of one instrumented run. Threads that stored no record (their counters
    are still the host's zeros) are left out.

    - bookkeeping_share = 1 - cycles in poll bodies / total cycles of the run loops
    - polls_per_task, pending_per_task, wakes, queue_ops, cas_retries (totals)
    - idle_share = idle cycles / total cycles
    - achieved_occupancy: per SM, warp-residency time over (max warps x the SM's busy
      span), averaged over the SMs that ran anything (needs ``max_warps_per_sm``)
    """
    c = as_table(raw)
    live = c["total_cycles"] > 0
    if not live.any():
        return {"threads_recorded": 0}
    t = {k: v[live].astype(np.float64) for k, v in c.items()}
    total = t["total_cycles"].sum()
    out = {
        "threads_recorded": int(live.sum()),
        "bookkeeping_share": float(1.0 - t["poll_cycles"].sum() / total),
        "idle_share": float(t["idle_cycles"].sum() / total),
        "polls_per_task": float(t["polls"].sum() / ntasks),
        "pending_per_task": float(t["pending_polls"].sum() / ntasks),
        "wakes": int(t["wakes"].sum()),
        "queue_ops": int(t["queue_ops"].sum()),
        "cas_retries": int(t["cas_retries"].sum()),
        "sms_used": int(np.unique(c["smid"][live]).size),
    }
    if max_warps_per_sm:
        occ = []
        smid, start, end = c["smid"][live], c["start_ns"][live], c["end_ns"][live]
        for sm in np.unique(smid):
            sel = smid == sm
            span = float(end[sel].max() - start[sel].min())
            if span <= 0:
                continue
            warp_time = float((end[sel] - start[sel]).sum()) / 32.0
            occ.append(min(1.0, warp_time / (max_warps_per_sm * span)))
        out["achieved_occupancy"] = float(np.mean(occ)) if occ else None
    return out
