"""The SGD loop shared by the structured and the dense trainer: validation, batches, history.

A trainer subclass supplies three pieces: ``_step(batch)`` (one SGD step, returns its cost
counters), ``_full_outputs()`` ((n, C) outputs on all training points and the number of
fired (neuron, point) pairs) and the weights for ``predict``. Everything else is here, so
both engines see the same batches for the same seed and report the same history.
"""

from __future__ import annotations

import contextlib
import math
import time

import numpy as np

from ..base.errors import DivergenceError, ValidationError
from ..base.random import BatchSampler
from ..base.validation import check_dtype, check_float, check_indices, check_int, check_targets
from ..model.net import check_net, check_seed
from .interrupts import InterruptGuard, interrupt_guard


class SGDLoop:
    """Common state: the net, unit-normalised data, targets, learning rate, batches, history."""

    def __init__(self, net, data, y, lr, batch_size, seed, dtype):
        self.net = check_net(net)
        self.data = self.net.prepare(data)  # validated, normalised when the net says so
        self.n = self.data.n
        self.y = check_targets(y, "y", self.n, self.net.outputs, np.float64)  # (n, C)
        self.lr = check_float(lr, "lr", low=0.0, low_inclusive=False)
        self.batch_size = check_int(batch_size, "batch_size", low=1, high=self.n)
        self.seed = check_seed(seed)
        self.dtype = check_dtype(dtype)
        self.sampler = BatchSampler(np.arange(self.n), self.batch_size, self.seed)
        self.history: list[dict] = []
        self.step_count = 0
        self.train_seconds = 0.0  # wall time inside steps, logging excluded
        self._inv_sqrt_m = 1.0 / math.sqrt(self.net.width)
        self._last_log = {"step": 0, "seconds": 0.0, "counters": {}}
        self._callback = None
        self._guard = None  # the InterruptGuard of the run in progress
        self.retry_batch = None  # a sampled batch whose step failed: the next step takes it again

    # ---- the public loop ---------------------------------------------------------------
    def run(
        self, steps=None, batches=None, log_every=None, callback=None, checkpoint=None, checkpoint_every=None
    ) -> list[dict]:
        """Run SGD steps, continuing where the last call stopped; returns ``self.history``.

        Parameters
        ----------
        steps : int, optional
            Number of steps; with ``batches`` it may be omitted (one step per batch).
        batches : sequence of index arrays, optional
            The exact batches to use instead of sampling (each a 1-d sequence of indices).
        log_every : int, optional
            Record the full training loss every this many steps (and always at the end);
            default: about 10 records per call. 0 records only at the end.
        callback : callable, optional
            ``callback(trainer, entry)`` is called with each new history record (a dict it
            may extend with its own measurements) right after it is made.
        checkpoint : str or Path, optional
            Write the training state there (atomically) every ``checkpoint_every`` steps,
            at the end, and when a step fails; ``kronsgd.resume`` continues from it.
        checkpoint_every : int, optional
            Steps between checkpoints; default: only at the end (and on failure).
        """
        if callback is not None and not callable(callback):
            raise ValidationError(
                f"callback must be callable as callback(trainer, entry). Got {type(callback).__name__}."
            )
        if checkpoint is None and checkpoint_every is not None:
            raise ValidationError("checkpoint_every needs checkpoint= (a file path) as well.")
        every = None if checkpoint_every is None else check_int(checkpoint_every, "checkpoint_every", low=1)
        if checkpoint is not None:
            checkpoint = self._checkpoint_path(checkpoint)
        self._callback = callback
        plan = self._plan(steps, batches)
        total = len(plan) if isinstance(plan, list) else plan
        log_every = max(1, total // 10) if log_every is None else check_int(log_every, "log_every", low=0)
        with interrupt_guard() as guard:  # Ctrl-C stops the run only where its state is consistent
            self._guard = guard
            try:
                self._run(plan, total, log_every, checkpoint, every, guard)
            finally:
                self._guard = None
        return self.history

    def _run(self, plan, total, log_every, checkpoint, every, guard) -> None:
        try:
            if not self.history:
                self._log()
            done = since_checkpoint = 0
            while done < total:
                to_log = log_every - done % log_every if log_every else total
                size = min(to_log, total - done, (every or total) - since_checkpoint)
                started = time.perf_counter()
                try:
                    self._advance(plan[done : done + size] if isinstance(plan, list) else size, guard)
                finally:
                    self.train_seconds += time.perf_counter() - started
                done += size
                since_checkpoint += size
                if (log_every and done % log_every == 0) or done == total:
                    self._log()
                if checkpoint is not None and (since_checkpoint == every or done == total):
                    self._save_checkpoint(checkpoint)
                    since_checkpoint = 0
                guard.check()
        except BaseException as exc:
            # Every step is whole and no worker runs (_advance folds before it raises): keep the
            # state for a resume. A checkpoint that cannot be written is said, not raised over the cause.
            if checkpoint is not None:
                try:
                    self._save_checkpoint(checkpoint)
                except Exception as failed:  # noqa: BLE001 - e.g. a full disk: the cause matters more
                    exc.add_note(f"kronsgd could not write the checkpoint {checkpoint}: {failed}")
            raise

    def _checkpoint_path(self, path):
        raise ValidationError(f"checkpoints are written by KronSGD runs; {type(self).__name__} has none.")

    def _save_checkpoint(self, path) -> None:  # pragma: no cover - only KronSGD checkpoints
        raise NotImplementedError

    def _advance(self, work, guard=None) -> None:
        """Run ``work`` steps (an int: sampled batches, or a list of batches), one at a time.

        A Ctrl-C is acted on between two steps (``guard.check``), never inside one.
        """
        guard = InterruptGuard() if guard is None else guard
        if isinstance(work, list):
            for batch in work:
                self._guarded_step(batch)
                self.step_count += 1
                guard.check()
            return
        for _ in range(work):
            # a sampled batch whose step failed is the next one tried: a failure consumes no batch,
            # so a run resumed after it makes the steps an uninterrupted run makes
            batch = self.retry_batch if self.retry_batch is not None else self.sampler.next()
            self.retry_batch = batch
            self._guarded_step(batch)
            self.retry_batch = None
            self.step_count += 1
            guard.check()

    def _guarded_step(self, batch: np.ndarray) -> None:
        try:
            # An overflow must stop the step before it writes the weights, whatever the
            # caller's warning filters: numpy raises here, and we report it as divergence.
            with np.errstate(over="raise", invalid="raise"):
                self._step(batch)
        except FloatingPointError as exc:
            raise self._diverged(float("inf"), batch, cause=str(exc)) from None

    def _plan(self, steps, batches):
        if batches is None:
            if steps is None:
                raise ValidationError("run() needs steps (an int >= 0) or batches.")
            return check_int(steps, "steps", low=0)
        if isinstance(batches, np.ndarray) and batches.ndim == 2:
            batches = list(batches)
        if isinstance(batches, (str, bytes)) or not hasattr(batches, "__len__"):
            raise ValidationError(f"batches must be a sequence of index arrays. Got {type(batches).__name__}.")
        plan = []
        for k, b in enumerate(batches):
            idx = check_indices(b, f"batches[{k}]", self.n)
            if idx.size == 0:
                raise ValidationError(f"batches[{k}] is empty; every batch needs at least one index.")
            plan.append(np.ascontiguousarray(idx))
        if steps is not None and check_int(steps, "steps", low=0) != len(plan):
            raise ValidationError(f"steps ({steps}) must equal len(batches) ({len(plan)}) when both are given.")
        return plan

    # ---- history -----------------------------------------------------------------------
    def loss(self) -> float:
        """Full training loss ½ Σ_i ||f(x_i) - y_i||² over all n points."""
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow shows as a non-finite loss
            outputs, _ = self._full_outputs()
            return float(0.5 * np.sum((outputs - self.y) ** 2))

    def _log(self) -> None:
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow shows as a non-finite loss
            outputs, fired_pairs = self._full_outputs()
            loss = float(0.5 * np.sum((outputs - self.y) ** 2))
        if not math.isfinite(loss):  # checked before recording, so history only holds finite losses
            raise DivergenceError(
                f"training diverged: the full training loss became non-finite ({loss}) at step "
                f"{self.step_count}. Lower lr (now {self.lr:g}) and start again."
            )
        counters = self.counters()
        steps = self.step_count - self._last_log["step"]
        entry = {
            "step": self.step_count,
            "loss": loss,
            "fired": fired_pairs / self.n,
            "seconds": self.train_seconds,
            "step_seconds": (self.train_seconds - self._last_log["seconds"]) / steps if steps else float("nan"),
        }
        entry.update(self._log_extras(self._last_log.get("published", 0)))
        for key, value in counters.items():  # per-step means since the last record
            if key in ("nnz", "rows_touched", "multiply_adds"):
                previous = self._last_log["counters"].get(key, 0)
                entry[key] = (value - previous) / steps if steps else 0.0
        self.history.append(entry)
        self._last_log = {
            "step": self.step_count,
            "seconds": self.train_seconds,
            "counters": counters,
            "published": counters.get("steps", 0),
        }
        if self._callback is not None:
            with self._guard.released() if self._guard is not None else contextlib.nullcontext():
                self._callback(self, entry)

    def _log_extras(self, since: int) -> dict:
        """Engine-specific fields of a history record (none by default)."""
        return {}

    def _diverged(self, value: float, batch: np.ndarray, cause: str | None = None) -> DivergenceError:
        return divergence_error(self.step_count, self.lr, value, batch.size, cause)

    def counters(self) -> dict:  # pragma: no cover - overridden
        return {}

    def predict(self, data) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError


def divergence_error(steps: int, lr: float, value: float, batch_size: int, cause: str | None = None) -> DivergenceError:
    """The error of a step that would diverge after ``steps`` good ones (nothing was changed)."""
    what = f"floating-point {cause}" if cause else f"the batch loss is {value:.3g}"
    return DivergenceError(
        f"training diverged at step {steps + 1}: {what} "
        f"(batch of {batch_size} points). The model was left at its state after step "
        f"{steps}. Lower lr (now {lr:g}) and start again."
    )
