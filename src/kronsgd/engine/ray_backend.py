"""The Ray backend: the asynchronous engine with workers as Ray actors, on one machine or a cluster.

Each worker actor owns a contiguous shard of the training points (its columns of P and
alpha) and holds the factors of all points, so it computes the Gram blocks it needs itself.
An ordering actor keeps the update log: records travel as small NumPy arrays (batch,
fired rows, batch positions, coefficients) whose size depends on nnz only, never on d or n.
A worker applies every record to its own columns in log order — alpha included, from the
record of its own points — so a worker actor that dies is replaced by one that rebuilds its
shard from the seed (P0) and the log: no update lost, none applied twice.

Only this module imports Ray, and only when ``backend="ray"`` is asked for.
"""

from __future__ import annotations

import copy

import numpy as np

from ..base.errors import DivergenceError, ValidationError
from ..base.random import BatchSampler
from ..kernels import step as K
from .log import Record
from .worker import step_coefficients

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
        self.records, self.staleness, self.workers, self.stopped = [], [], [], False
        self.counters = {"steps": 0, "samples": 0, "nnz": 0, "rows_touched": 0}

    def append(self, record, worker: int, snapshot: int, max_staleness, end: int):
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
            self.records.append(record)
            self.staleness.append(seq - snapshot)
            self.workers.append(worker)
            batch, rows = record[0], record[1]
            c = self.counters
            c["steps"], c["samples"], c["nnz"] = c["steps"] + 1, c["samples"] + batch.size, c["nnz"] + rows.size
            c["rows_touched"] += int(np.count_nonzero(np.diff(rows)) + (rows.size > 0))
        return seq, self.records[snapshot:], len(self.records), self.stopped

    def fetch(self, since: int):
        return self.records[since:], len(self.records), self.stopped

    def set_stopped(self, stopped: bool) -> None:
        self.stopped = stopped

    def summary(self, since: int):
        return len(self.records), self.staleness[since:], self.workers[since:], dict(self.counters)


class ShardWorker:
    """A worker actor: points start:stop of ``data`` (unit-normalised), its P and alpha columns."""

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
        self.shift, self.inv_sqrt_m = net.shift, 1.0 / np.sqrt(m)
        self.sampler = BatchSampler(
            np.arange(start, stop), cfg["batch_size"], cfg["seed"], worker=wid + 1009 * incarnation
        )
        self.applied = 0  # records 0..applied-1 are in P and alpha
        self.retry = None

    # ---- apply -------------------------------------------------------------------------
    def _apply(self, records) -> None:
        m = self.P.shape[0]
        for batch, rows, owner, coef in records:
            B = batch.size
            g = self.G[batch] if self.G is not None else self.data.gram(rows=batch, other=self.shard)  # (B, n_w)
            row_ptr = np.zeros((1, m + 1), dtype=np.int64)
            np.cumsum(np.bincount(rows, minlength=m), out=row_ptr[0, 1:])
            touched = np.unique(rows).astype(np.int64)[None]  # (1, u) the rows with pairs, ascending
            K.fold_records(
                self.P, g.astype(self.dtype).reshape(1, B, -1), row_ptr, owner.astype(np.int64)[None],
                coef.astype(self.dtype)[None], np.zeros(1, dtype=np.int64), 0, self.P.shape[1], touched,
                np.array([touched.shape[1]]),
            )  # fmt: skip
            mine = (batch[owner] >= self.start) & (batch[owner] < self.stop)
            np.add.at(self.alpha, (rows[mine], batch[owner[mine]] - self.start), coef[mine].astype(self.dtype))
            self.applied += 1

    def catch_up(self):
        import ray

        records, total, stopped = ray.get(self.log.fetch.remote(self.applied))
        self._apply(records)
        return total, stopped

    # ---- compute -----------------------------------------------------------------------
    def _update(self, batch):
        """The record of one SGD step on ``batch`` from this worker's current columns."""
        e, B, m = self.cfg, batch.size, self.P.shape[0]
        cols = np.ascontiguousarray(self.P[:, batch - self.start])  # (m, B)
        fired_ptr, fired_rows = np.zeros(B + 1, dtype=np.int64), np.zeros(m * B, dtype=np.int64)
        f = np.zeros((B, self.a.shape[1]))
        nnz = K.forward_batch(cols, self.a, np.arange(B), self.shift, self.inv_sqrt_m, fired_ptr, fired_rows, f)
        coefs = np.zeros(nnz, dtype=self.dtype)
        batch_loss, diverged = step_coefficients(
            self.a, f, self.y[batch], fired_ptr, fired_rows, -e["lr"] * self.inv_sqrt_m, e["gram_bound"], self.dtype,
            coefs,
        )  # fmt: skip
        if diverged:
            raise DivergenceError(
                f"training diverged: the batch loss is {batch_loss:.3g} on worker {self.wid}. "
                f"Lower lr (now {e['lr']:g}) and start again."
            )
        row_ptr, owner, coef = np.zeros(m + 1, dtype=np.int64), np.zeros(nnz, np.int64), np.zeros(nnz, self.dtype)
        K.group_by_row(m, fired_ptr, fired_rows, coefs, row_ptr, owner, coef, np.zeros(nnz, np.int64))
        rows = np.repeat(np.arange(m, dtype=np.int32), np.diff(row_ptr))
        return batch, rows, owner.astype(np.int32), coef

    def run(self, end: int) -> None:
        """Make updates until the log holds ``end`` records (or the run is stopped)."""
        import ray

        total, stopped = self.catch_up()
        while not stopped and total < end:
            batch = self.retry if self.retry is not None else self.sampler.next()
            self.retry = batch
            answer = self.log.append.remote(self._update(batch), self.wid, self.applied, self.cfg["max_staleness"], end)
            seq, records, total, stopped = ray.get(answer)
            self._apply(records)  # everything logged since this worker's snapshot, its own record included
            if seq != STALE:
                self.retry = None

    def state(self):
        """(start, P columns, alpha columns), after catching up with the whole log."""
        self.catch_up()
        return self.start, self.P, self.alpha


class RayEngine:
    """Drives the worker actors of one KronSGD run; gathers P and alpha into the trainer."""

    def __init__(self, trainer, net_for_workers, workers: int, address):
        ray = import_ray()
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        self.ray, self.trainer = ray, trainer
        self.log = ray.remote(num_cpus=0)(OrderingLog).remote()
        # no CPU reservation: a reserved CPU held by a finished run's actors would block the next run's start
        self._worker_cls = ray.remote(num_cpus=0)(ShardWorker)
        t = trainer
        self.cfg = {"dtype": t.dtype.name, "gram": t.gram_mode, "batch_size": t.batch_size, "seed": t.seed,
                    "lr": t.lr, "max_staleness": t.max_staleness, "gram_bound": t._gram_bound}  # fmt: skip
        self.refs = (ray.put(net_for_workers), ray.put(t.data), ray.put(t.y))
        self.bounds = np.linspace(0, t.n, workers + 1).round().astype(int)
        self.incarnations = [0] * workers
        self.actors = [self._start(w) for w in range(workers)]
        self.seen = 0  # log records already reported to the trainer
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
        if self.ray.is_initialized():
            self.close()

    def _start(self, w: int):
        return self._worker_cls.remote(
            w, int(self.bounds[w]), int(self.bounds[w + 1]), *self.refs, self.cfg, self.log, self.incarnations[w]
        )

    def run_for(self, work) -> None:
        """The trainer's ``_advance``: ``work`` updates over all worker actors."""
        if isinstance(work, list):
            raise ValidationError("batches= drives one worker; with workers > 1 each worker samples its own shard.")
        try:
            self.advance(work)
        finally:
            self.trainer.step_count = self.seen

    def advance(self, count: int) -> None:
        """Run until ``count`` more records are logged; restart workers that die on the way."""
        ray = self.ray
        end = self.seen + count
        pending = {actor.run.remote(end): w for w, actor in enumerate(self.actors)}
        error = None
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
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
        if error is not None:
            raise error

    def gather(self) -> None:
        """Copy every worker's P and alpha columns, counters and the new log entries into the trainer."""
        t = self.trainer
        states = self.ray.get([actor.state.remote() for actor in self.actors])
        for start, P, alpha in states:
            t._P[:, start : start + P.shape[1]] = P
            t.alpha[:, start : start + P.shape[1]] = alpha
        total, staleness, workers, counters = self.ray.get(self.log.summary.remote(self.seen))
        t.log.staleness.extend(staleness)
        if t.log.records is not None and total > self.seen:
            records, _, _ = self.ray.get(self.log.fetch.remote(self.seen))
            for k, (batch, rows, owner, coef) in enumerate(records):
                seq = self.seen + k
                t.log.records[seq] = Record(seq, workers[k], staleness[k], batch, rows.astype(np.int64),
                                            owner.astype(np.int64), coef)  # fmt: skip
        self.seen, self.counters = total, counters
