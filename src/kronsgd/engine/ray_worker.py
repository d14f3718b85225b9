"""A worker of the Ray backend: one shard of points, updates sent ``group`` at a time.

The actor owns points start:stop (its columns of P and alpha) and holds the factors of all
points, so it computes the Gram blocks it needs itself. Its loop: compute ``group`` updates
from its columns as folded (the engine's one compute function, ``record.compute_update``),
send them in one call to the ordering actor (ray_log.py), and fold the reply — every record
the others logged since its last reply, then its own — with the engine's one fold (``fold.fold``)
through a small ring of its own, several records per pass. One round trip per ``group``
updates instead of one per update; records that the log refused (too stale, log full) are
computed again from the newer state and sent with the next group.

Whenever its fold reaches a multiple of ``snapshot_every`` it sends its alpha columns to the
ordering actor, which can then drop the records every shard has folded. A replacement
actor (the old one died, or its node did) rebuilds its columns from P0 + alpha(T) · G at
the last point T every shard reported, then folds the records since T.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from ..base.random import BatchSampler
from ..kernels import step as K
from .fold import fold
from .log import UpdateLog
from .loop import divergence_error
from .ray_log import DONE, FULL, from_wire, scaled, to_wire
from .record import Buffers, Record, compute_update, gram_rows, to_record

RING = 8  # records folded per pass: the window the thread engine finds best (their Gram rows stay in cache)
_GRAM_BLOCK = 1024  # points per block of Gram rows when a rebuild computes them from the factors
_IDLE = 0.002  # seconds a worker waits when the log is full and nothing new has arrived


class ShardWorker:
    """Points ``bounds[wid]:bounds[wid + 1]`` of ``data`` (unit-normalised), their columns of P and alpha.

    ``initial`` is None (rebuild from the ordering actor's snapshot and records: a fresh
    run, or a replacement) or (P columns, alpha columns, sampler state) of a restored run
    at record ``cfg["base"]``.
    """

    def __init__(self, wid, bounds, net, data, y, cfg, log, incarnation=0, initial=None):
        self.wid, self.log, self.data, self.y, self.cfg = wid, log, data, y, cfg
        self.start, self.stop = int(bounds[wid]), int(bounds[wid + 1])
        self.dtype = np.dtype(cfg["dtype"])
        self.shard = data[np.arange(self.start, self.stop)]
        self.G = data.gram(other=self.shard, dtype=self.dtype) if cfg["gram"] == "precomputed" else None  # (n, n_w)
        self.a = np.ascontiguousarray(net.a, dtype=np.float64)  # (m, C)
        self.shift, m, B = net.shift, net.width, cfg["batch_size"]
        self.sampler = BatchSampler(np.arange(self.start, self.stop), B, cfg["seed"], worker=wid + 1009 * incarnation)
        self.buffers = Buffers(m, self.a.shape[1], B, B * m, self.dtype)
        self.retry: list[np.ndarray] = []  # drawn batches whose records the log has not taken yet
        if initial is not None:
            P, alpha, sampler_state = initial
            self.P, self.alpha = np.array(P, self.dtype), np.array(alpha, self.dtype)  # (m, n_w) each, writable
            self.applied = self.point = cfg["base"]
            if sampler_state is not None:
                self.sampler.rng.bit_generator.state = sampler_state
            records = []
        else:
            self.applied, records = self._rebuild(net)
        self.ring = UpdateLog(RING, m, self.stop - self.start, B, 1, self.dtype, 1)  # pairs grow on demand
        self.ring.reserved = self.ring.published = self.applied
        self.ring.folded, self.ring.alpha_folded = [self.applied], [self.applied]
        self._apply(records)

    def _rebuild(self, net):
        """P and alpha columns at the last complete snapshot T: P0 + alpha(T) · G[:, shard]; then (T, records since)."""
        import ray

        point, shards, wire = ray.get(self.log.recovery.remote())
        records = [from_wire(t) for t in wire]
        alpha = np.concatenate(shards, axis=1)  # (m, n) alpha of every point at T
        self.P = net.preactivations(self.shard, prepared=True, dtype=self.dtype)  # (m, n_w) P0
        if alpha.any():  # a fresh run starts at alpha = 0: P is P0
            for i in range(0, alpha.shape[1], _GRAM_BLOCK):
                rows = np.arange(i, min(i + _GRAM_BLOCK, alpha.shape[1]))
                g = np.empty((rows.size, self.stop - self.start), dtype=self.dtype)  # (rows, n_w)
                gram_rows(self.G, self.data, rows, g, other=self.shard)
                self.P += alpha[:, rows] @ g
        self.alpha = np.ascontiguousarray(alpha[:, self.start : self.stop])  # (m, n_w)
        self.point = point
        return point, records

    # ---- apply: the engine's fold, up to RING records per pass ------------------------------
    def _apply(self, records: list[Record]) -> None:
        every, i = self.cfg["snapshot_every"], 0
        while i < len(records):
            to_point = every - self.applied % every  # records until the next multiple of snapshot_every
            chunk = records[i : i + min(RING, to_point)]
            self._fold(chunk)
            i += len(chunk)
            if self.applied % every == 0 and self.applied > self.point:
                self.log.snapshot.remote(self.wid, self.applied, self.alpha)  # the argument is copied now
                self.point = self.applied

    def _fold(self, chunk: list[Record]) -> None:
        ring, seq0 = self.ring, self.applied
        if chunk[0].seq != seq0:
            raise RuntimeError(f"worker {self.wid} expected record {seq0}, got {chunk[0].seq}")
        batch_cap, pair_cap = max(r.batch.size for r in chunk), max(r.rows.size for r in chunk)
        if not ring.fits(batch_cap, pair_cap):
            ring.grow(batch_cap, 2 * pair_cap)
        for seq, rec in enumerate(chunk, start=seq0):
            gram_rows(self.G, self.data, rec.batch, ring.g_rows[ring.slot(seq), : rec.batch.size], other=self.shard)
            ring.write_record(seq, rec)
        ring.reserved = ring.published = seq0 + len(chunk)
        fold(ring, 0, self.P, self.alpha, (self.start, self.stop), seq0 + len(chunk), local=True)
        self.applied = seq0 + len(chunk)

    def catch_up(self):
        import ray

        wire, head, stopped = ray.get(self.log.fetch.remote(self.applied))
        self._apply([from_wire(t) for t in wire])
        return head, stopped

    # ---- compute: the engine's compute, from this worker's columns as folded -----------------
    def _update(self, batch) -> Record:
        e, m = self.cfg, self.P.shape[0]
        cols = self.buffers.columns(batch.size)  # (m, B) = P[:, batch] as folded
        K.gather_columns(self.P, batch - self.start, cols)
        update = compute_update(cols, batch, self.a, self.shift, self.y[batch], e["lr"], e["gram_bound"], self.buffers)
        if update.nnz < 0:
            raise divergence_error(self.applied, e["lr"], update.loss, batch.size, f"on worker {self.wid}")
        return to_record(update, m, worker=self.wid)

    def _group(self, size: int):
        """(batches, their records, the snapshot they were computed from): refused batches first."""
        batches = self.retry[:size] + [self.sampler.next() for _ in range(size - len(self.retry[:size]))]
        del self.retry[:size]
        with np.errstate(over="raise", invalid="raise"):  # an overflow is divergence, as on threads
            try:
                return batches, [self._update(batch) for batch in batches], self.applied
            except FloatingPointError as exc:
                raise divergence_error(self.applied, self.cfg["lr"], float("inf"), batches[0].size,
                                       f"{exc} on worker {self.wid}") from None  # fmt: skip

    def run(self, end: int) -> None:
        """Make updates until the log holds ``end`` records or the run is stopped.

        ``group`` records per round trip. With ``depth`` 2 a group travels while the worker
        folds the last reply and computes the next group, so the round trip costs no time;
        that group then misses the reply's records, which count in its staleness.
        """
        group, depth = self.cfg["group"], self.cfg["depth"]
        head, stopped = self.catch_up()
        flight = ready = None  # the group travelling, and the one computed and not yet sent
        while True:
            if ready is None and not stopped and head < end and (flight is None or depth > 1):
                ready = self._group(group)
            if flight is None:
                if ready is None:
                    return
                flight, ready = self._send(ready, end, self.applied), None
                continue
            answer, others, news, stopped = self._receive(flight)
            flight = None
            if ready is not None and answer != DONE:
                flight, ready = self._send(ready, end, self.applied + len(news)), None
            self._apply(news)  # while the group just sent travels
            head = self.applied
            if answer == DONE:
                if ready is not None:
                    self.retry[:0] = ready[0]  # drawn, never sent: the next run takes them first
                return
            if answer == FULL and not others:  # another shard must fold and snapshot before the log takes more
                time.sleep(_IDLE)

    def _send(self, ready, end: int, since: int):
        batches, records, snapshot = ready
        wire = [to_wire(r) for r in records]
        reference = self.log.append.remote(
            self.wid, wire, snapshot, self.cfg["max_staleness"], end, since, self.cfg["staleness_lr"]
        )
        return reference, batches, records, since, snapshot

    def _receive(self, flight):
        """(answer, the others' records, every new record in log order, stopped) of a group sent."""
        import ray

        reference, batches, records, since, snapshot = flight
        accepted, answer, wire, stopped = ray.get(reference)
        others = [from_wire(t) for t in wire]
        first = since + len(others)  # the log numbered this worker's accepted records from here
        rule = self.cfg["staleness_lr"]
        mine = [
            replace(r, seq=first + j, staleness=first + j - snapshot, coef=scaled(r.coef, rule, first + j - snapshot))
            for j, r in enumerate(records[:accepted])
        ]
        self.retry[:0] = batches[accepted:]  # refused (too stale, log full): computed again from a newer state
        return answer, others, others + mine, stopped

    def state(self):
        """(start, P columns, alpha columns, sampler state) after folding the whole log."""
        self.catch_up()
        return self.start, self.P, self.alpha, self.sampler.rng.bit_generator.state

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()
