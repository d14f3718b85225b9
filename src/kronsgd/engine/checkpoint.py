"""Checkpoints of a KronSGD run: write the whole training state, resume it exactly.

A checkpoint holds what cannot be recomputed cheaply — alpha, P (recomputing P0 costs
O(m·n·d)), the batch samplers' states, counters, history and the update log when kept —
plus the configuration of the net and the trainer. The training points and targets are not
stored: ``resume`` takes them again and checks them against fingerprints. Resuming a
sequential run and finishing it gives the same bits as a run that was never interrupted.
"""

from __future__ import annotations

import hashlib
import numbers

import numpy as np

from .._version import __version__
from ..base.atomic import write_atomic
from .record import Record

KIND, VERSION = "kronsgd.checkpoint", 2  # 2: the net's config records how W0 was drawn (w0_stream, init)
READS = (1, 2)  # version 1 files resume with W0 drawn as it was then


def fingerprint(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_checkpoint(trainer, path) -> None:
    """Write ``trainer``'s state to ``path`` atomically; only between runs of the workers.

    The engine calls it where the state is quiescent: no worker runs and every published
    record is folded into P and alpha (``KronSGD._advance`` folds before it returns or raises).
    """
    log = trainer.log
    if not log.quiescent():
        raise RuntimeError("a checkpoint is taken only of a quiescent run: every record published and folded")
    net = trainer.net
    arrays = {"P": trainer._P, "alpha": trainer.alpha, "staleness": np.asarray(log.staleness, dtype=np.int64)}
    prior = [block for block in net._support if block[1] is not trainer.alpha]
    for b, (points, alpha) in enumerate(prior):
        arrays[f"prior{b}_alpha"] = alpha
        for l, factor in enumerate(points.factors):
            arrays[f"prior{b}_factor{l}"] = factor
    arrays.update(pack_records("rec", log.ordered_records()))
    if trainer.delay is not None:  # the records a delayed update may still read back: the ring's tail
        tail = range(max(0, log.published - trainer.delay.cap), log.published)
        arrays.update(pack_records("tail", [log.record(seq, 0, 0) for seq in tail]))
    meta = {
        "format": KIND,
        "format_version": VERSION,
        "library": __version__,
        "net": {**net.config(), "prior_blocks": len(prior)},
        "trainer": {
            "lr": trainer.lr,
            "batch_size": trainer.batch_size,
            "seed": trainer.seed,
            "gram": trainer.gram_mode,
            "dtype": trainer.dtype.name,
            "window": trainer.window_size,
            "workers": len(trainer.workers),
            "max_staleness": trainer.max_staleness,
            "keep_log": log.records is not None,
            "fired": trainer.fired_mode,
            "delay": delay_spec(trainer.delay_spec),
            "staleness_lr": trainer.staleness_lr,
            "backend": trainer.backend,
            "max_restarts": trainer.max_restarts,
            "snapshot_every": trainer.snapshot_every,
        },
        "data": fingerprint(*trainer.data.factors),
        "targets": fingerprint(trainer.y),
        "step_count": trainer.step_count,
        "train_seconds": trainer.train_seconds,
        "published": log.published,
        "history": trainer.history,
        "last_log": trainer._last_log,
        "samplers": [w.sampler.rng.bit_generator.state for w in trainer.workers],
        "counters": [w.counters for w in trainer.workers],
        "totals": log.totals,
        "retry_batch": None if trainer.retry_batch is None else trainer.retry_batch.tolist(),
    }
    write_atomic(path, meta, arrays)


def delay_spec(delay):
    """``delay=`` as JSON: an int, a list for a tuple of plain values, "callable" when it holds code."""
    if delay is None or isinstance(delay, numbers.Integral):
        return None if delay is None else int(delay)
    if isinstance(delay, tuple) and not callable(delay[0]):
        return [v if isinstance(v, str) else float(v) if isinstance(v, float) else int(v) for v in delay]
    return "callable"


def pack_records(prefix: str, records) -> dict[str, np.ndarray]:
    """Records as five arrays: ``{prefix}_meta`` (seq, worker, staleness, B, nnz) and the concatenated fields."""
    if not records:
        return {}
    arrays = {f"{prefix}_meta": np.array([[r.seq, r.worker, r.staleness, r.batch.size, r.rows.size] for r in records])}
    for field in ("batch", "rows", "owner", "coef"):
        arrays[f"{prefix}_{field}"] = np.concatenate([getattr(r, field) for r in records])
    return arrays


def unpack_records(prefix: str, arrays) -> list[Record]:
    """The records ``pack_records`` stored (indices as int32, whatever a file of an older version held)."""
    if f"{prefix}_meta" not in arrays:
        return []
    records, b, p = [], 0, 0
    for seq, worker, staleness, size, nnz in arrays[f"{prefix}_meta"].tolist():
        records.append(Record(
            seq=seq, worker=worker, staleness=staleness, batch=arrays[f"{prefix}_batch"][b : b + size],
            rows=arrays[f"{prefix}_rows"][p : p + nnz].astype(np.int32),
            owner=arrays[f"{prefix}_owner"][p : p + nnz].astype(np.int32), coef=arrays[f"{prefix}_coef"][p : p + nnz],
        ))  # fmt: skip
        b, p = b + size, p + nnz
    return records
