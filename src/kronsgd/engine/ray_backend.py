"""The Ray backend: the asynchronous engine with workers as Ray actors, on one machine or a cluster.

Each worker actor owns a contiguous shard of the training points (its columns of P and
alpha) and holds the factors of all points, so it computes the Gram blocks it needs itself.
An ordering actor keeps the update log: records travel as ``Record`` objects (batch, fired
rows, batch positions, coefficients) whose size depends on nnz only, never on d or n. A
worker computes its updates with the engine's one compute function (``record.compute_update``)
and applies every record, in log order, with the engine's one fold (``fold.fold``) through a
ring of its own (``log.UpdateLog`` over its shard's columns) — alpha included, from the
record of its own points — so a worker actor that dies is replaced by one that rebuilds its
shard from the seed (P0) and the log: no update lost, none applied twice.

Only this module imports Ray, and only when ``backend="ray"`` is asked for.
"""

from __future__ import annotations

import copy

import numpy as np

from ..base.errors import ValidationError
from ..base.random import BatchSampler
from .fold import fold
from .log import UpdateLog
from .loop import divergence_error
from .record import Buffers, Record, compute_update, to_record

DONE, STALE = -1, -2  # answers of OrderingLog.append besides a sequence number


def import_ray():
    from ..base.optional import require_module

    return require_module("ray", "ray", "backend='ray'")


def frozen_copy(net):
    """A copy of ``net`` whose weights stay as they are now (later support blocks are not shared)."""
    clone = copy.copy(net)
    clone._support = list(net._support)
    return clone


class OrderingLog:
    """The update log (a Ray actor): hands out sequence numbers and serves records in order."""

    def __init__(self):
        self.records: list[Record] = []
        self.stopped = False
        self.counters = {"steps": 0, "samples": 0, "nnz": 0, "rows_touched": 0}

    def append(self, record: Record, snapshot: int, max_staleness, end: int):
        """Log ``record`` from a worker whose state holds records < snapshot.

        Returns (its sequence number or DONE or STALE, the records from ``snapshot`` on,
        the log length, stopped): one round trip per update.
        """
        seq = len(self.records)
        if self.stopped or seq >= end:
            seq = DONE
        elif max_staleness is not None and seq - snapshot > max_staleness:
            seq = STALE
        else:
            record = Record(seq, record.worker, seq - snapshot, record.batch, record.rows, record.owner, record.coef)
            self.records.append(record)
            c, rows = self.counters, record.rows
            c["steps"], c["samples"], c["nnz"] = c["steps"] + 1, c["samples"] + record.batch.size, c["nnz"] + rows.size
            c["rows_touched"] += int(np.count_nonzero(np.diff(rows)) + (rows.size > 0))
        return seq, self.records[snapshot:], len(self.records), self.stopped

    def fetch(self, since: int):
        return self.records[since:], len(self.records), self.stopped

    def set_stopped(self, stopped: bool) -> None:
        self.stopped = stopped

    def summary(self):
        return len(self.records), dict(self.counters)


class ShardWorker:
    """A worker actor: points start:stop of ``data`` (unit-normalised), its P and alpha columns, a ring of records."""

    def __init__(self, wid, start, stop, net, data, y, cfg, log, incarnation=0):
        self.wid, self.start, self.stop, self.log = wid, start, stop, log
        self.data, self.y, self.cfg = data, y, cfg
        self.dtype = np.dtype(cfg["dtype"])
        m, n_w = net.width, stop - start
        shard = data[np.arange(start, stop)]
        self.P = net.preactivations(shard, prepared=True, dtype=self.dtype)  # (m, n_w) P0 of the shard
        self.alpha = np.zeros((m, n_w), dtype=self.dtype)  # (m, n_w)
        self.G = data.gram(other=shard).astype(self.dtype) if cfg["gram"] == "precomputed" else None  # (n, n_w)
        self.shard = shard
        self.a = np.ascontiguousarray(net.a, dtype=np.float64)  # (m, C)
        self.shift = net.shift
        self.sampler = BatchSampler(
            np.arange(start, stop), cfg["batch_size"], cfg["seed"], worker=wid + 1009 * incarnation
        )
        B = cfg["batch_size"]
        self.ring = UpdateLog(2, m, n_w, B, B * m, self.dtype, 1)  # the records of the log, folded one at a time
        self.buffers = Buffers(m, self.a.shape[1], B, B * m, self.dtype)
        self.applied = 0  # records 0..applied-1 are in P and alpha
        self.retry = None

    # ---- apply: the engine's fold, one record at a time ----------------------------------
    def _apply(self, records) -> None:
        ring = self.ring
        for record in records:
            seq = self.applied
            if not ring.fits(record.batch.size, record.rows.size):
                ring.grow(record.batch.size, record.rows.size)
            g = ring.g_rows[ring.slot(seq), : record.batch.size]  # (B, n_w)
            g[:] = self.G[record.batch] if self.G is not None else self.data.gram(rows=record.batch, other=self.shard)
            ring.write_record(seq, record)
            ring.reserved = ring.published = seq + 1
            fold(ring, 0, self.P, self.alpha, (self.start, self.stop), seq + 1, local=True)
            self.applied += 1

    def catch_up(self):
        import ray

        records, total, stopped = ray.get(self.log.fetch.remote(self.applied))
        self._apply(records)
        return total, stopped

    # ---- compute: the engine's compute, from this worker's current columns ---------------
    def _update(self, batch) -> Record:
        """The record of one SGD step on ``batch`` from this worker's current columns."""
        e, m = self.cfg, self.P.shape[0]
        cols = np.ascontiguousarray(self.P[:, batch - self.start])  # (m, B)
        update = compute_update(cols, batch, self.a, self.shift, self.y[batch], e["lr"], e["gram_bound"], self.buffers)
        if update.nnz < 0:
            raise divergence_error(self.applied, e["lr"], update.loss, batch.size, f"on worker {self.wid}")
        return to_record(update, m, worker=self.wid)

    def run(self, end: int) -> None:
        """Make updates until the log holds ``end`` records (or the run is stopped)."""
        import ray

        total, stopped = self.catch_up()
        while not stopped and total < end:
            batch = self.retry if self.retry is not None else self.sampler.next()
            self.retry = batch
            answer = self.log.append.remote(self._update(batch), self.applied, self.cfg["max_staleness"], end)
            seq, records, total, stopped = ray.get(answer)
            self._apply(records)  # everything logged since this worker's snapshot, its own record included
            if seq != STALE:
                self.retry = None

    def state(self):
        """(start, P columns, alpha columns), after catching up with the whole log."""
        self.catch_up()
        return self.start, self.P, self.alpha


class RayEngine:
    """Drives the worker actors of one run; gathers their P and alpha columns into ``shared``.

    ``shared`` (worker.Shared) holds the run's arrays and settings, ``log`` the driver's
    UpdateLog (its staleness, kept records and totals mirror the ordering actor's), ``cfg``
    the sampler's settings (dtype, gram mode, batch size, seed).
    """

    def __init__(self, shared, log, cfg: dict, net_for_workers, workers: int, address):
        ray = import_ray()
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        self.ray, self.shared, self.driver_log = ray, shared, log
        self.log = ray.remote(num_cpus=0)(OrderingLog).remote()
        # no CPU reservation: a reserved CPU held by a finished run's actors would block the next run's start
        self._worker_cls = ray.remote(num_cpus=0)(ShardWorker)
        s = shared
        self.cfg = dict(cfg, lr=s.lr, max_staleness=s.max_staleness, gram_bound=s.gram_bound)
        self.refs = (ray.put(net_for_workers), ray.put(s.data), ray.put(s.y))
        self.bounds = np.linspace(0, s.data.n, workers + 1).round().astype(int)
        self.incarnations = [0] * workers
        self.actors = [self._start(w) for w in range(workers)]
        self.seen = 0  # log records already mirrored in the driver's log
        self.counters = {}
        self.gather()

    def close(self) -> None:
        """End this run's actors (also done when the trainer is garbage collected)."""
        for actor in [*self.actors, self.log]:
            try:
                self.ray.kill(actor)
            except Exception:  # noqa: BLE001 - already gone, or Ray shut down
                pass
        self.actors = []

    def __del__(self):
        ray = getattr(self, "ray", None)  # None when __init__ failed before Ray was imported
        if ray is not None and ray.is_initialized():
            self.close()

    def _start(self, w: int):
        return self._worker_cls.remote(
            w, int(self.bounds[w]), int(self.bounds[w + 1]), *self.refs, self.cfg, self.log, self.incarnations[w]
        )

    def run_for(self, work, guard) -> None:
        """The driver's ``_advance``: ``work`` updates over all worker actors."""
        if isinstance(work, list):
            raise ValidationError("batches= drives one worker; with workers > 1 each worker samples its own shard.")
        self.advance(work, guard)
        guard.check()

    def advance(self, count: int, guard) -> None:
        """Run until ``count`` more records are logged; restart workers that die on the way.

        A Ctrl-C (``guard``) stops the workers after their update in hand; P and alpha are
        gathered in every case before this returns or raises.
        """
        ray = self.ray
        end = self.seen + count
        pending = {actor.run.remote(end): w for w, actor in enumerate(self.actors)}
        error = None
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.05)
            if guard.requested and error is None:
                error = KeyboardInterrupt()
                ray.get(self.log.set_stopped.remote(True))
            if not ready:
                continue
            ref = ready[0]
            w = pending.pop(ref)
            try:
                ray.get(ref)
            except ray.exceptions.RayActorError:  # the actor died: a new one rebuilds from P0 and the log
                self.incarnations[w] += 1
                self.actors[w] = self._start(w)
                if error is None:
                    pending[self.actors[w].run.remote(end)] = w
            except ray.exceptions.RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                error = error or (cause if isinstance(cause, BaseException) else exc)
                ray.get(self.log.set_stopped.remote(True))
        ray.get(self.log.set_stopped.remote(False))
        self.gather()
        if error is not None and not isinstance(error, KeyboardInterrupt):  # a Ctrl-C is the guard's to raise
            raise error

    def gather(self) -> None:
        """Copy every worker's P and alpha columns into ``shared``; new records and counters into the driver's log."""
        s, log = self.shared, self.driver_log
        states = self.ray.get([actor.state.remote() for actor in self.actors])
        for start, P, alpha in states:
            s.P[:, start : start + P.shape[1]] = P
            s.alpha[:, start : start + P.shape[1]] = alpha
        total, counters = self.ray.get(self.log.summary.remote())
        if total > self.seen:
            records, _, _ = self.ray.get(self.log.fetch.remote(self.seen))
            log.staleness.extend(r.staleness for r in records)
            if log.records is not None:
                log.records.update((r.seq, r) for r in records)
        log.totals.update(counters)
        self.seen, self.counters = total, counters
