"""``kronsgd.resume``: rebuild a KronSGD run from the checkpoint ``checkpoint.py`` wrote."""

from __future__ import annotations

import numpy as np

from ..base.atomic import load_checked
from ..base.errors import FileFormatError, ValidationError
from ..data.kronecker import KroneckerData
from ..model.net import TwoLayerNet
from .checkpoint import KIND, READS, fingerprint, unpack_records
from .record import gram_rows
from .trainer import KronSGD


def resume(path, data, y, memory_budget=None, delay=None, backend=None, ray_address=None):
    """Rebuild the KronSGD run saved at ``path``; continue it with ``trainer.run(...)``.

    Parameters
    ----------
    path : str or Path
        A checkpoint written by ``run(..., checkpoint=path)``.
    data, y
        The same training points and targets as the saved run (checked by fingerprint).
    memory_budget : int, optional
        As for KronSGD.
    delay : optional
        The run's ``delay=`` when it was a callable (code is not stored); other delays are
        read from the file.
    backend : {"threads", "ray"}, optional
        Where to continue (default: where the run was saved). A run saved on Ray continues
        on threads and the other way round, with the same shards of points.
    ray_address : str, optional
        With backend="ray": the cluster to join (see ``KronSGD``).

    Raises FileFormatError for a missing, damaged or foreign file and ValidationError when
    ``data`` or ``y`` differ from the run's.
    """
    meta, arrays = load_checked(path, KIND, READS)
    cfg, tcfg = meta["net"], meta["trainer"]
    net = TwoLayerNet.from_config(cfg)  # a checkpoint without w0_stream gets W0 as drawn then
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
        delay=_delay(tcfg.get("delay"), delay, path), staleness_lr=tcfg.get("staleness_lr", "none"),
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
    if log.records is not None:
        log.records.update((r.seq, r) for r in unpack_records("rec", arrays))
    for record in unpack_records("tail", arrays):  # back into the ring, folded: a delayed update reads them
        gram_rows(trainer.G, trainer.data, record.batch, log.g_rows[log.slot(record.seq), : record.batch.size])
        log.write_record(record.seq, record)
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


def _delay(stored, given, path):
    if given is not None:
        return given
    if stored == "callable":
        raise ValidationError(
            f"the run saved in {path} had delay= a callable, which a file cannot hold: pass it again, "
            "resume(path, data, y, delay=f)."
        )
    return tuple(stored) if isinstance(stored, list) else stored
