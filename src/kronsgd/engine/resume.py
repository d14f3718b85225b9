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
    meta, arrays = load_checked(path, KIND, VERSION)
    cfg, tcfg = meta["net"], meta["trainer"]
    net = TwoLayerNet.from_config(cfg)  # a checkpoint without w0_stream gets W0 as drawn then
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
