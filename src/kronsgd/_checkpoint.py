"""Checkpoints of a KronSGD run: write the whole training state, resume it exactly.

A checkpoint holds what cannot be recomputed cheaply — alpha, P (recomputing P0 costs
O(m·n·d)), the batch samplers' states, counters, history and the update log when kept —
plus the configuration of the net and the trainer. The training points and targets are not
stored: ``resume`` takes them again and checks them against fingerprints. Resuming a
sequential run and finishing it gives the same bits as a run that was never interrupted.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ._atomic import FileFormatError, load_checked, write_atomic
from ._data import KroneckerData
from ._log import Record
from ._model import TwoLayerNet
from ._version import __version__

KIND, VERSION = "kronsgd.checkpoint", 1


def fingerprint(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_checkpoint(trainer, path) -> None:
    """Write ``trainer``'s state to ``path`` atomically (no worker may be running)."""
    trainer._flush()
    net, log = trainer.net, trainer.log
    arrays = {"P": trainer._P, "alpha": trainer.alpha, "staleness": np.asarray(log.staleness, dtype=np.int64)}
    prior = [block for block in net._support if block[1] is not trainer.alpha]
    for b, (points, alpha) in enumerate(prior):
        arrays[f"prior{b}_alpha"] = alpha
        for l, factor in enumerate(points.factors):
            arrays[f"prior{b}_factor{l}"] = factor
    records = log.ordered_records()
    if records:
        arrays["rec_meta"] = np.array([[r.seq, r.worker, r.staleness, r.batch.size, r.rows.size] for r in records])
        for field in ("batch", "rows", "owner", "coef"):
            arrays[f"rec_{field}"] = np.concatenate([getattr(r, field) for r in records])
    meta = {
        "format": KIND,
        "format_version": VERSION,
        "library": __version__,
        "net": {
            "dims": list(net.dims),
            "width": net.width,
            "outputs": net.outputs,
            "shift": net.shift,
            "seed": net.seed,
            "normalize": net.normalize,
            "prior_blocks": len(prior),
        },
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
    }
    write_atomic(path, meta, arrays)


def resume(path, data, y, memory_budget=None):
    """Rebuild the KronSGD run saved at ``path``; continue it with ``trainer.run(...)``.

    Parameters
    ----------
    path : str or Path
        A checkpoint written by ``run(..., checkpoint=path)``.
    data, y
        The same training points and targets as the saved run (checked by fingerprint).

    Raises FileFormatError for a missing, damaged or foreign file and ValidationError when
    ``data`` or ``y`` differ from the run's.
    """
    from ._trainer import KronSGD  # deferred: the trainer module imports this one

    meta, arrays = load_checked(path, KIND, VERSION)
    cfg, tcfg = meta["net"], meta["trainer"]
    net = TwoLayerNet(cfg["dims"], cfg["width"], cfg["outputs"], cfg["shift"], cfg["seed"], cfg["normalize"])
    for b in range(cfg["prior_blocks"]):
        factors = [arrays[f"prior{b}_factor{l}"] for l in range(len(cfg["dims"]))]
        net.attach_support(KroneckerData(factors), arrays[f"prior{b}_alpha"])
    restore = {"P": np.ascontiguousarray(arrays["P"]), "alpha": np.ascontiguousarray(arrays["alpha"])}
    trainer = KronSGD(
        net, data, y, lr=tcfg["lr"], batch_size=tcfg["batch_size"], seed=tcfg["seed"], gram=tcfg["gram"],
        dtype=tcfg["dtype"], memory_budget=memory_budget, window=tcfg["window"], workers=tcfg["workers"],
        max_staleness=tcfg["max_staleness"], keep_log=tcfg["keep_log"], _restore=restore,
    )  # fmt: skip
    if fingerprint(*trainer.data.factors) != meta["data"]:
        raise FileFormatError(f"data differs from the training points of the run saved in {path}.")
    if fingerprint(trainer.y) != meta["targets"]:
        raise FileFormatError(f"y differs from the targets of the run saved in {path}.")
    log = trainer.log
    log.reserved = log.published = meta["published"]
    log.folded = [meta["published"]] * len(trainer.workers)
    log.staleness[:] = arrays["staleness"].tolist()
    if "rec_meta" in arrays:
        _restore_records(log, arrays)
    for w, state, counters in zip(trainer.workers, meta["samplers"], meta["counters"], strict=True):
        w.sampler.rng.bit_generator.state = state
        w.snapshot = meta["published"]
        w.counters.update(counters)
    trainer.step_count, trainer.train_seconds = meta["step_count"], meta["train_seconds"]
    trainer.history[:] = meta["history"]
    trainer._last_log = meta["last_log"]
    return trainer


def _restore_records(log, arrays) -> None:
    offsets = {"b": 0, "p": 0}
    for seq, worker, staleness, size, nnz in arrays["rec_meta"].tolist():
        b, p = offsets["b"], offsets["p"]
        log.records[seq] = Record(
            seq=seq, worker=worker, staleness=staleness, batch=arrays["rec_batch"][b : b + size],
            rows=arrays["rec_rows"][p : p + nnz], owner=arrays["rec_owner"][p : p + nnz],
            coef=arrays["rec_coef"][p : p + nnz],
        )  # fmt: skip
        offsets["b"], offsets["p"] = b + size, p + nnz
