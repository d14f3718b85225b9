"""The Ray backend: the asynchronous engine with workers as Ray actors, on one machine or a cluster.

Each worker actor (ray_worker.py) owns a contiguous shard of the training points, its
columns of P and alpha, and holds the factors of all points. An ordering actor
(ray_log.py) keeps the update log: records travel as ``Record`` objects (batch, fired rows,
batch positions, coefficients) whose size depends on nnz only, never on d or n. Workers
compute with the engine's one compute function and fold with its one fold; they send
``group`` records per round trip and receive the records the others logged meanwhile.

The driver here starts the actors, runs them for a number of updates, replaces an actor
that dies (at most ``max_restarts`` times per shard; the replacement rebuilds its columns
from the last alpha snapshot and the records since) and, after every ``advance``, gathers
P and alpha into the trainer's arrays: all actors have stopped after their update in hand
and folded the whole log, so what it gathers is one consistent state, the one a
checkpoint writes.

Only this module and ray_worker.py import Ray (ray_log.py is plain Python run as an actor),
and only when ``backend="ray"`` is asked for.
"""

from __future__ import annotations

import copy
import math

import numpy as np

from ..base.errors import KronsgdError, ValidationError
from .ray_log import OrderingLog, from_wire
from .ray_worker import ShardWorker

GROUP = 8  # the most records a worker sends per round trip
# Ray sends objects up to max_direct_call_object_size (100 KB by default) inside the call and
# larger ones through the object store, which costs the raylet and both ends more CPU than the
# call itself. The actors raise that limit for what they send (groups of records, replies);
# snapshots and gathered columns, megabytes, still go through the store. Measured at
# n = 4,096, m = 2,048 (2 workers, in one run): 8 records per call inside the call 1.22x the
# thread engine's samples/s, 3 records under the default limit 0.86x.
INLINE_BYTES = 1 << 20
ACTOR_ENV = {"env_vars": {"RAY_max_direct_call_object_size": str(INLINE_BYTES)}}


def import_ray():
    from ..base.optional import require_module

    return require_module("ray", "ray", "backend='ray'")


def frozen_copy(net):
    """A copy of ``net`` whose weights stay as they are now (later support blocks are not shared)."""
    clone = copy.copy(net)
    clone._support = list(net._support)
    return clone


def record_bytes(m: int, batch: int, shift: float, itemsize: int) -> float:
    """Expected bytes of one record: 8 per batch point, 8 + itemsize per fired pair."""
    fired = 0.5 * math.erfc(shift / math.sqrt(2.0))  # the share of neurons a unit point fires at W0
    return batch * (8 + m * fired * (8 + itemsize))


def auto_snapshot_every(m: int, n_shard: int, record: float, itemsize: int) -> int:
    """Records whose bytes about equal one shard's alpha columns: snapshots then cost no more
    than the records they let the log drop, and the log (≤ 2 of these) about two shards' alpha."""
    return max(16, round(m * n_shard * itemsize / record))


class RayEngine:
    """Drives the worker actors of one run; gathers their P and alpha columns into ``shared``.

    ``shared`` (worker.Shared) holds the run's arrays and settings, ``log`` the driver's
    UpdateLog (its staleness, kept records, totals and counts mirror the ordering actor's),
    ``cfg`` the sampler's settings (dtype, gram mode, batch size, seed), ``samplers`` the
    driver's batch samplers (they receive the actors' states, for checkpoints), ``restore``
    a checkpoint's P, alpha, record count and sampler states.
    """

    def __init__(self, shared, log, cfg: dict, net_for_workers, workers: int, address, *, samplers,
                 restore=None, max_restarts: int = 3, snapshot_every="auto"):  # fmt: skip
        ray = import_ray()
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.ray, self.shared, self.driver_log, self.samplers = ray, shared, log, samplers
        s, m, n = shared, shared.P.shape[0], shared.P.shape[1]
        self.bounds = np.linspace(0, n, workers + 1).round().astype(int)
        record = record_bytes(m, cfg["batch_size"], s.shift, s.P.dtype.itemsize)
        if snapshot_every == "auto":
            snapshot_every = auto_snapshot_every(m, int(np.diff(self.bounds).max()), record, s.P.dtype.itemsize)
        self.snapshot_every, self.max_restarts = snapshot_every, max_restarts
        self.base = self.seen = 0 if restore is None else int(restore["published"])
        tau = s.max_staleness
        # records per round trip: as many as travel inside the call, and the staleness bound leaves room for
        group = max(1, min(GROUP, int(INLINE_BYTES // (2 * record))))  # room for a reply as large
        group = group if tau is None else max(1, min(group, (tau + 1) // (2 * workers)))
        depth = 2 if tau is None or tau >= 2 * group * workers else 1
        self.cfg = dict(cfg, lr=s.lr, max_staleness=tau, gram_bound=s.gram_bound, group=group, depth=depth,
                        snapshot_every=snapshot_every, base=self.base, staleness_lr=s.staleness_lr)  # fmt: skip
        self.here = ray.get_runtime_context().get_node_id()
        here = NodeAffinitySchedulingStrategy(self.here, soft=False)
        alpha = None if restore is None else restore["alpha"]
        # the log lives beside the driver: losing it loses the run, losing a worker's node does not
        self.log = ray.remote(num_cpus=0, scheduling_strategy=here, runtime_env=ACTOR_ENV)(OrderingLog).remote(
            self.base, self.bounds, alpha, m, s.P.dtype.name, snapshot_every, log.records is not None
        )
        # no CPU reservation: a finished run's actors would block the next run's start
        self._worker_cls = ray.remote(num_cpus=0, runtime_env=ACTOR_ENV)(ShardWorker)
        self.refs = (ray.put(net_for_workers), ray.put(s.data), ray.put(s.y))
        self.incarnations = [0] * workers
        self.actors = [self._start(w, restore) for w in range(workers)]
        self.counters: dict = {}
        self.peak = self.held = 0  # most records the log held at once; held after the last advance
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

    def _start(self, w: int, restore=None):
        initial = None
        if restore is not None:  # the restored columns, not P0: the run continues where it was saved
            cols = slice(int(self.bounds[w]), int(self.bounds[w + 1]))
            states = restore.get("samplers")
            initial = (restore["P"][:, cols], restore["alpha"][:, cols], None if states is None else states[w])
        placed = self._worker_cls.options(scheduling_strategy=self._node_for(w))
        return placed.remote(w, self.bounds, *self.refs, self.cfg, self.log, self.incarnations[w], initial)

    def _node_for(self, w: int):
        """Worker w's node: the live nodes in turn, the driver's last (it holds the log and gathers)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        others = sorted(node["NodeID"] for node in self.ray.nodes() if node["Alive"] and node["NodeID"] != self.here)
        nodes = [*others, self.here]
        # hard: a soft affinity does not move actors that reserve no CPU; a replacement asks again
        return NodeAffinitySchedulingStrategy(nodes[w % len(nodes)], soft=False)

    def run_for(self, work, guard) -> None:
        """The driver's ``_advance``: ``work`` updates over all worker actors."""
        if isinstance(work, list):
            raise ValidationError("batches= drives one worker; with workers > 1 each worker samples its own shard.")
        self.advance(work, guard)
        guard.check()

    def advance(self, count: int, guard) -> None:
        """Run until ``count`` more records are logged; replace workers that die on the way.

        A Ctrl-C (``guard``) or a worker's error stops the others after their update in
        hand; P and alpha are gathered in every case before this returns or raises.
        """
        ray = self.ray
        end = self.seen + count
        pending = {actor.run.remote(end): w for w, actor in enumerate(self.actors)}
        error = None

        def stop(exc):
            nonlocal error
            error = error or exc
            ray.get(self.log.set_stopped.remote(True))

        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.05)
            if guard.requested and error is None:
                stop(KeyboardInterrupt())
            if not ready:
                continue
            w = pending.pop(ready[0])
            try:
                ray.get(ready[0])
            except ray.exceptions.RayActorError as exc:  # the actor (or its node) died
                self.incarnations[w] += 1
                if self.incarnations[w] > self.max_restarts:
                    stop(KronsgdError(
                        f"the Ray actor of worker {w} died {self.incarnations[w]} times, more than "
                        f"max_restarts={self.max_restarts}; the run stopped after {self.seen_now()} updates, "
                        f"with P and alpha whole. Last cause: {str(exc).strip().splitlines()[0]}"
                    ))  # fmt: skip
                    continue
                self.actors[w] = self._start(w)  # rebuilds from the last snapshot and the records since
                if error is None:
                    pending[self.actors[w].run.remote(end)] = w
            except ray.exceptions.RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                stop(cause if isinstance(cause, BaseException) else exc)
        ray.get(self.log.set_stopped.remote(False))
        self.gather()
        if error is not None and not isinstance(error, KeyboardInterrupt):  # a Ctrl-C is the guard's to raise
            raise error

    def seen_now(self) -> int:
        return self.ray.get(self.log.head_count.remote())

    def gather(self) -> None:
        """Copy every worker's P and alpha columns into ``shared``; the log's news into the driver's log.

        A shard whose actor cannot answer is rebuilt here, in the driver, by the same code
        a replacement actor runs (last snapshot, then the records since).
        """
        s, log, ray = self.shared, self.driver_log, self.ray
        refs = [actor.state.remote() for actor in self.actors]
        for w, ref in enumerate(refs):
            try:
                start, P, alpha, sampler_state = ray.get(ref)
            except ray.exceptions.RayActorError:
                net, data, y = ray.get(list(self.refs))
                start, P, alpha, sampler_state = ShardWorker(w, self.bounds, net, data, y, self.cfg, self.log).state()
            s.P[:, start : start + P.shape[1]] = P
            s.alpha[:, start : start + P.shape[1]] = alpha
            self.samplers[w].rng.bit_generator.state = sampler_state
        head, counters, staleness, wire, self.peak, self.held, _ = ray.get(self.log.drain.remote())
        records = [from_wire(t) for t in wire]
        log.staleness.extend(staleness)
        if log.records is not None:
            log.records.update((r.seq, r) for r in records)
        for key, value in counters.items():  # deltas: a resumed run's totals start from the checkpoint's
            log.totals[key] += value - self.counters.get(key, 0)
        self.counters = counters
        log.reserved = log.published = head  # every record is in P and alpha: the driver's log is quiescent
        log.folded, log.alpha_folded = [head] * len(log.folded), [head] * len(log.folded)
        self.seen = head
