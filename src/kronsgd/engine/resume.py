"""``kronsgd.resume``: rebuild a KronSGD run from the checkpoint ``checkpoint.py`` wrote."""

from __future__ import annotations

import numpy as np

from ..base.atomic import load_checked
from ..base.errors import FileFormatError
from ..data.kronecker import KroneckerData
from ..model.net import TwoLayerNet
from .checkpoint import KIND, VERSION, fingerprint
from .log import Record
from .trainer import KronSGD


def resume(path, data, y, memory_budget=None, backend=None, ray_address=None):
    """Rebuild the KronSGD run saved at ``path``; continue it with ``trainer.run(...)``.

    Parameters
    ----------
    path : str or Path
        A checkpoint written by ``run(..., checkpoint=path)``.
    data, y
        The same training points and targets as the saved run (checked by fingerprint).
    backend : {"threads", "ray"}, optional
        Where to continue (default: where the run was saved). A run saved on Ray continues
        on threads and the other way round, with the same shards of points.
    ray_address : str, optional
        With backend="ray": the cluster to join (see ``KronSGD``).

    Raises FileFormatError for a missing, damaged or foreign file and ValidationError when
    ``data`` or ``y`` differ from the run's.
    """
    meta, arrays = load_checked(path, KIND, VERSION)
    cfg, tcfg = meta["net"], meta["trainer"]
    net = TwoLayerNet(cfg["dims"], cfg["width"], cfg["outputs"], cfg["shift"], cfg["seed"], cfg["normalize"])
    for b in range(cfg["prior_blocks"]):
        factors = [arrays[f"prior{b}_factor{l}"] for l in range(len(cfg["dims"]))]
        net.attach_support(KroneckerData(factors), arrays[f"prior{b}_alpha"])
    restore = {"P": np.ascontiguousarray(arrays["P"]), "alpha": np.ascontiguousarray(arrays["alpha"]),
               "published": meta["published"], "samplers": meta["samplers"]}  # fmt: skip
    backend = tcfg.get("backend", "threads") if backend is None else backend
    fired = tcfg.get("fired", "auto")
    if backend == "ray" and fired == "tree":  # Ray scans; the fired sets, and so the iterates, are the same
        fired = "scan"
    trainer = KronSGD(
        net, data, y, lr=tcfg["lr"], batch_size=tcfg["batch_size"], seed=tcfg["seed"], gram=tcfg["gram"],
        dtype=tcfg["dtype"], memory_budget=memory_budget, window=tcfg["window"], workers=tcfg["workers"],
        max_staleness=tcfg["max_staleness"], keep_log=tcfg["keep_log"], fired=fired,
        backend=backend, ray_address=ray_address, max_restarts=tcfg.get("max_restarts", 3),
        snapshot_every=tcfg.get("snapshot_every", "auto"), _restore=restore,
    )  # fmt: skip
    if fingerprint(*trainer.data.factors) != meta["data"]:
        raise FileFormatError(f"data differs from the training points of the run saved in {path}.")
    if fingerprint(trainer.y) != meta["targets"]:
        raise FileFormatError(f"y differs from the targets of the run saved in {path}.")
    log = trainer.log
    log.reserved = log.published = meta["published"]
    log.folded = [meta["published"]] * len(trainer.workers)
    log.alpha_folded = list(log.folded)
    log.staleness[:] = arrays["staleness"].tolist()
    if "rec_meta" in arrays:
        _restore_records(log, arrays)
    totals = {key: 0 for key in log.totals}
    for w, state, counters in zip(trainer.workers, meta["samplers"], meta["counters"], strict=True):
        w.sampler.rng.bit_generator.state = state
        w.snapshot = meta["published"]
        for key, value in counters.items():  # files written before the log kept the totals: per worker
            if key in totals:
                totals[key] += value
            else:
                w.counters[key] = value
    log.totals.update(meta.get("totals", totals))
    if meta.get("retry_batch") is not None:
        trainer.retry_batch = np.asarray(meta["retry_batch"], dtype=np.int64)
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
            rows=arrays["rec_rows"][p : p + nnz].astype(np.int32),
            owner=arrays["rec_owner"][p : p + nnz].astype(np.int32),
            coef=arrays["rec_coef"][p : p + nnz],
        )  # fmt: skip
        offsets["b"], offsets["p"] = b + size, p + nnz
