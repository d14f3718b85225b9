"""The engine options of a KronSGD run, checked together: each alone, and how they combine."""

from __future__ import annotations

from dataclasses import dataclass

from ..base.errors import ValidationError
from ..base.validation import check_choice, check_int
from .delay import STALENESS_RULES, DelaySchedule, parse_delay


@dataclass(frozen=True)
class Options:
    workers: int
    max_staleness: int | None
    gram: str  # "auto", "precomputed" or "on_the_fly" (the plan decides "auto")
    fired: str  # "auto", "scan" or "tree" (the plan decides "auto")
    backend: str  # "threads" or "ray"
    window: int | str
    delay: DelaySchedule | None
    staleness_lr: str
    max_restarts: int
    snapshot_every: int | str


def check_options(n, batch_size, seed, *, workers, max_staleness, gram, fired, backend, window, delay, staleness_lr,
                  max_restarts, snapshot_every) -> Options:  # fmt: skip
    """Every engine option validated, with the combinations that cannot run refused by name."""
    workers = check_int(workers, "workers", low=1, high=n)
    if workers > 1 and batch_size > n // workers:
        raise ValidationError(
            f"batch_size must be at most the smallest shard, n // workers = {n // workers}, "
            f"since each worker samples from its own points. Got {batch_size}."
        )
    max_staleness = None if max_staleness is None else check_int(max_staleness, "max_staleness", low=0)
    gram = check_choice(gram, "gram", ("auto", "precomputed", "on_the_fly"))
    fired = check_choice(fired, "fired", ("auto", "scan", "tree"))
    backend = check_choice(backend, "backend", ("threads", "ray"))
    if backend == "ray":
        fired = "scan" if fired == "auto" else fired
        if fired == "tree":
            raise ValidationError("fired='tree' runs on the threads backend; the Ray backend scans.")
    window = window if window == "auto" else check_int(window, "window", low=1)
    schedule = parse_delay(delay, seed)
    staleness_lr = check_choice(staleness_lr, "staleness_lr", STALENESS_RULES)
    if schedule is not None:
        if workers > 1 or backend == "ray" or max_staleness is not None:
            raise ValidationError(
                "delay= reproduces staleness on one sequential worker; it takes workers=1, "
                "backend='threads' and no max_staleness (with several workers the staleness is real)."
            )
        if fired == "tree":
            raise ValidationError("fired='tree' answers for P as folded; with delay= use fired='scan' or 'auto'.")
        fired = "scan"
    max_restarts = check_int(max_restarts, "max_restarts", low=0)
    if snapshot_every != "auto":
        snapshot_every = check_int(snapshot_every, "snapshot_every", low=1)
    return Options(workers, max_staleness, gram, fired, backend, window, schedule, staleness_lr, max_restarts,
                   snapshot_every)  # fmt: skip
