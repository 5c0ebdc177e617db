"""``ping_pong``: task pairs passing a token through two SPSC channels (architecture §6).

Tasks ``2p`` (ping) and ``2p + 1`` (pong) share pair ``p``'s channels ``ab`` and ``ba``
(capacity 1, ``harness.futures.channel``). For ``R_p`` rounds ping sends its token on ``ab``
and awaits the reply on ``ba``; pong receives, replies ``3 * token + 1``; ping's next token is
``reply + 7`` (u32, wrapping). Outputs (SoA): 0: the task's last token (ping: ``reply + 7``
after the last round; pong: the last token it received), 1: messages it received. A pair is
adjacent ids, so with an even block size both tasks live in one block: they are co-resident,
whatever the grid (a pair split over blocks could wait on a block that never gets an SM).
An odd last task has no partner and runs 0 rounds.

Figure: wake-to-poll latency, measured on the device. Right before each send the sender
stamps ``%globaltimer`` into the receiver's ``stamp`` cell; the receiver's poll that takes
the token reads ``%globaltimer`` again and accumulates the difference. The receiver is parked
on the channel at that point in all but the first round, so the interval is: the sender's
publish, its ``wake`` (fetch_or + push), the receiver's worker finding the task in its next
batch, and the poll itself. ``metrics`` reports the mean and the max over all messages of
all runs of the case (the stats buffer accumulates), and messages per second.
"""

from __future__ import annotations

import numpy as np

from harness.futures.channel import HEAD, SLOTS, TAIL, channel_bytes, recv, send
from harness.futures.lib import AsyncFn
from harness.ptx import Builder, Module
from harness.ptx.types import U32, U64
from workloads import latency
from workloads.base import Workload

CAP = 1
CB = channel_bytes(CAP)


def _at(b: Builder, ch, off: int):
    return b.add(ch, off, type=U64) if off else ch


def _slot(b: Builder, ch, index):
    """Address of ring slot ``index mod CAP`` of channel ``ch``."""
    return b.add(_at(b, ch, SLOTS), b.mul(b.and_(index, CAP - 1, type=U32), 4, mode="wide"),
                 type=U64)


class PingPongWorkload(Workload):
    name = "ping_pong"
    summary = "task pairs passing a token through SPSC channels: wake-to-poll latency"
    input_names = ("x", "rounds", "chans", "stats")
    outputs_per_task = 2
    output_dtype = np.uint32

    def __init__(self, rounds: int = 8):
        self.rounds = rounds

    # ------------------------------------------------------------ device side

    def _chan(self, f, which: int):
        """Channel ``ab`` (0) or ``ba`` (1) of this task's pair."""
        base = self.input_ptr(f, f.arg("args"), self.input_names.index("chans"))
        pair = f.shr(f.arg("task"), 1)
        return f.add(f.element_addr(base, pair, 2 * CB), which * CB, type=U64)

    def _stamp_peer(self, f) -> None:
        latency.stamp(self, f, f.xor(f.arg("task"), 1, type=U32))

    def root(self) -> AsyncFn:
        w = self

        def body(f, task, args):
            f.local("i", U32)
            f.local("tok", U32)
            f.set("i", f.mov(0, type=U32))
            ping = f.setp("eq", f.and_(task, 1, type=U32), 0, type="b32")
            f.set("tok", f.selp(w.load_input(f, args, "x", f.shr(task, 1), U32),
                                f.mov(0, type=U32), ping))
            with f.if_(ping):
                with f.loop() as lp:
                    lp.break_if(f.setp("ge", f.get("i"), w._rounds(f)))
                    w._stamp_peer(f)
                    f.await_(send(w._chan(f, 0), f.get("tok")))
                    reply = f.await_(recv(w._chan(f, 1)))
                    latency.record(w, f)
                    f.set("tok", f.add(reply, 7))
                    f.set("i", f.add(f.get("i"), 1))
            with f.if_(f.setp("ne", f.and_(f.arg("task"), 1, type=U32), 0, type="b32")):
                with f.loop() as lp:
                    lp.break_if(f.setp("ge", f.get("i"), w._rounds(f)))
                    token = f.await_(recv(w._chan(f, 0)))
                    latency.record(w, f)
                    f.set("tok", token)
                    w._stamp_peer(f)
                    f.await_(send(w._chan(f, 1), f.add(f.mul(f.get("tok"), 3), 1)))
                    f.set("i", f.add(f.get("i"), 1))
            w.store_output(f, f.arg("args"), f.arg("task"), 0, f.get("tok"), U32)
            w.store_output(f, f.arg("args"), f.arg("task"), 1, f.get("i"), U32)
            return None

        return AsyncFn("ping_pong_root", [("task", U32), ("args", U64)], None, body)

    def _rounds(self, f):
        return self.load_input(f, f.arg("args"), "rounds", f.arg("task"), U32)

    # ------------------------------------------------------------ baseline

    @staticmethod
    def _spin_send(b: Builder, ch, value) -> None:
        """``channel.send`` without parking: spin while the ring is full, then publish."""
        tail = b.ld("global", _at(b, ch, TAIL), U32, sem="relaxed", scope="gpu")
        with b.loop() as lp:
            head = b.ld("global", _at(b, ch, HEAD), U32, sem="acquire", scope="gpu")
            lp.break_if(b.setp("lt", b.sub(tail, head), CAP, type=U32))
        b.st("global", _slot(b, ch, tail), value, type=U32)
        b.st("global", _at(b, ch, TAIL), b.add(tail, 1), sem="release", scope="gpu")

    @staticmethod
    def _spin_recv(b: Builder, ch):
        """``channel.recv`` without parking: spin while the ring is empty, then take one."""
        head = b.ld("global", _at(b, ch, HEAD), U32, sem="relaxed", scope="gpu")
        with b.loop() as lp:
            tail = b.ld("global", _at(b, ch, TAIL), U32, sem="acquire", scope="gpu")
            lp.break_if(b.setp("ne", tail, head))
        value = b.ld("global", _slot(b, ch, head), U32)
        b.st("global", _at(b, ch, HEAD), b.add(head, 1), sem="release", scope="gpu")
        return value

    def build_baseline(self, module: Module) -> str:
        """A flag hand-off written by hand: each pair's threads spin on the same two channels
        (same layout and acquire/release protocol as ``harness.futures.channel``) in one
        kernel. Nobody parks, so the waiter slots stay 0 and no wake or fence.sc is needed;
        head/tail only grow, so a relaunch on the same ``chans`` starts from empty channels.
        The latency stats are not recorded. The two threads of a pair are adjacent lanes
        of one warp: their spinning relies on independent thread scheduling (sm_70+)."""
        b, task, args, _ = self.baseline_entry(module)
        rounds = self.load_input(b, args, "rounds", task, U32)
        pair = b.shr(task, 1)
        base = self.input_ptr(b, args, self.input_names.index("chans"))
        ab = b.element_addr(base, pair, 2 * CB)
        ba = b.add(ab, CB, type=U64)
        ping = b.setp("eq", b.and_(task, 1, type=U32), 0, type="b32")
        tok = b.selp(self.load_input(b, args, "x", pair, U32), 0, ping, type=U32)
        i = b.mov(0, type=U32)
        with b.if_(ping):
            with b.loop() as lp:
                lp.break_if(b.setp("ge", i, rounds))
                self._spin_send(b, ab, tok)
                b.add(self._spin_recv(b, ba), 7, dst=tok)
                b.add(i, 1, dst=i)
        with b.if_(ping, negate=True):
            with b.loop() as lp:
                lp.break_if(b.setp("ge", i, rounds))
                b.mov(self._spin_recv(b, ab), dst=tok)
                self._spin_send(b, ba, b.add(b.mul(tok, 3), 1))
                b.add(i, 1, dst=i)
        self.store_output(b, args, task, 0, tok, U32)
        self.store_output(b, args, task, 1, i, U32)
        b.ret()
        return b.fn.name

    # -------------------------------------------------------------- host side

    def make_inputs(self, rng: np.random.Generator, n: int) -> dict:
        pairs = (n + 1) // 2
        per_pair = rng.integers(max(1, self.rounds // 2), self.rounds + self.rounds // 2,
                                pairs, dtype=np.uint32, endpoint=True)
        rounds = np.repeat(per_pair, 2)[:n]
        if n % 2:
            rounds[-1] = 0  # no partner
        return {"x": rng.integers(1, 2**32, pairs, dtype=np.uint32), "rounds": rounds,
                "chans": np.zeros(pairs * 2 * CB // 4, np.uint32),
                "stats": latency.zeros(n)}

    def reference(self, inputs: dict, n: int) -> np.ndarray:
        x, rounds = inputs["x"].astype(np.uint64), inputs["rounds"]
        tok = np.zeros(n, np.uint64)
        got = np.zeros(n, np.uint32)
        m = 0xFFFFFFFF
        for t in range(0, n, 2):
            v, last_ping = int(x[t // 2]), 0
            for _ in range(int(rounds[t])):
                last_ping = v
                v = ((3 * v + 1) & m) + 7 & m
            tok[t], got[t] = v, rounds[t]
            if t + 1 < n:
                tok[t + 1], got[t + 1] = last_ping, rounds[t + 1]
        return np.concatenate([tok.astype(np.uint32), got])

    def metrics(self, backend, inputs, args_ptr, n, time_ms) -> dict:
        """Wake-to-poll latency (ns; on the emulator, emulated steps) from the stats the
        tasks accumulated over every run of the case, and messages per second."""
        messages = int(inputs["rounds"].astype(np.int64).sum())
        out = {"messages_per_run": messages, **latency.summary(backend, self, args_ptr, n)}
        if time_ms:
            out["messages_per_s"] = messages / (time_ms * 1e-3)
        return out
