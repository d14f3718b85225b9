"""Delayed SGD, exactly and on one core: each update computed from the model as it was τ_t updates earlier.

Every asynchronous worker computes its gradient from a model some updates old; on a cluster
that staleness is whatever the network makes it. ``KronSGD(..., delay=...)`` reproduces it
deterministically: update t is computed from P as it was after update t - τ_t (the batch's
columns brought back by the log's records, see worker.py) and applied to the current model
— the dense oracle is "the gradient at W_{t-τ} applied to W_t". τ_t comes from a schedule:

    delay=4                        τ_t = 4 (until t = 4, τ_t = t: there is nothing older)
    delay=("uniform", 64)          τ_t uniform on 0 .. 64
    delay=("geometric", 8.0)       τ_t geometric on 0, 1, ... with mean 8 (capped at 20 × the mean)
    delay=("geometric", 8.0, 100)  ... capped at 100
    delay=("pareto", 1.5, 1024)    heavy-tailed: P(τ_t >= k) = (1 + k)^-1.5, capped at 1024
    delay=f, delay=(f, 512)        τ_t = f(t), an int in 0 .. 512 (default cap 1024)

Random schedules draw τ_t from the trainer's seed and t alone (a counter-based stream), so a
run is reproducible and a resumed run draws the same delays. Memory: the log keeps the last
cap records (O(cap · record)).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..base.errors import ValidationError
from ..base.random import step_rng
from ..base.validation import check_float, check_int

CALLABLE_CAP = 1024  # the largest τ a callable may return unless a cap is given
_GEOMETRIC_CAP = 20  # a geometric schedule is capped at this many times its mean (P(τ > cap) < 2e-9)


class DelaySchedule:
    """τ_t for every step t: ``schedule(t)``; ``cap`` bounds every value."""

    def __init__(self, kind: str, cap: int, draw, description: str):
        self.kind, self.cap, self._draw, self.description = kind, cap, draw, description

    def __call__(self, step: int) -> int:
        tau = self._draw(step)
        if self.kind == "callable":
            if isinstance(tau, (bool, np.bool_)) or not isinstance(tau, numbers.Integral):
                raise ValidationError(f"delay(step) must return an int. At step {step} it returned {tau!r}.")
            if not 0 <= tau <= self.cap:
                raise ValidationError(
                    f"delay(step) must return an int in the range [0, {self.cap}] (the cap). "
                    f"At step {step} it returned {tau}. Pass delay=(f, cap) for a larger cap."
                )
        return min(int(tau), step)  # update t can look back at most t updates

    def __repr__(self) -> str:
        return f"DelaySchedule({self.description})"


def parse_delay(delay, seed: int) -> DelaySchedule | None:
    """The schedule a ``delay=`` argument describes (see the module doc), or None for no delay."""
    if delay is None:
        return None
    if isinstance(delay, numbers.Integral) and not isinstance(delay, (bool, np.bool_)):
        tau = check_int(delay, "delay", low=0)
        return DelaySchedule("constant", tau, lambda step: tau, f"constant {tau}")
    if callable(delay):
        return DelaySchedule("callable", CALLABLE_CAP, delay, f"callable, cap {CALLABLE_CAP}")
    if not isinstance(delay, tuple) or not delay:
        raise ValidationError(
            "delay must be an int >= 0, a callable step -> int, or a tuple such as ('uniform', 64), "
            f"('geometric', 8.0), ('pareto', 1.5, 1024) or (f, cap). Got {delay!r}."
        )
    kind, params = delay[0], delay[1:]
    if callable(kind):
        if len(params) != 1:
            raise ValidationError(f"delay=(f, cap) takes one cap after the callable. Got {len(params)} values.")
        cap = check_int(params[0], "delay cap", low=0)
        return DelaySchedule("callable", cap, kind, f"callable, cap {cap}")
    if kind == "uniform":
        _arity(delay, 1, 1)
        cap = check_int(params[0], "delay ('uniform', tau_max): tau_max", low=0)
        return DelaySchedule("uniform", cap, lambda t: int(step_rng(seed, t).integers(0, cap + 1)), f"uniform 0..{cap}")
    if kind == "geometric":
        _arity(delay, 1, 2)
        mean = check_float(params[0], "delay ('geometric', mean): mean", low=0.0, low_inclusive=False)
        default_cap = max(1, math.ceil(_GEOMETRIC_CAP * mean))
        cap = check_int(params[1], "delay ('geometric', mean, cap): cap", low=0) if len(params) == 2 else default_cap
        p = 1.0 / (1.0 + mean)  # failures before the first success: mean (1 - p) / p
        return DelaySchedule(
            "geometric", cap, lambda t: min(cap, int(step_rng(seed, t).geometric(p)) - 1), f"geometric mean {mean:g}"
        )
    if kind == "pareto":
        _arity(delay, 2, 2)
        shape = check_float(params[0], "delay ('pareto', shape, cap): shape", low=0.0, low_inclusive=False)
        cap = check_int(params[1], "delay ('pareto', shape, cap): cap", low=0)
        return DelaySchedule(
            "pareto", cap, lambda t: min(cap, int(step_rng(seed, t).pareto(shape))), f"pareto shape {shape:g}"
        )
    raise ValidationError(
        f"delay's model must be 'uniform', 'geometric', 'pareto' or a callable. Got {kind!r} in delay={delay!r}."
    )


def _arity(delay: tuple, low: int, high: int) -> None:
    given = len(delay) - 1
    if not low <= given <= high:
        expected = str(low) if low == high else f"{low} or {high}"
        raise ValidationError(f"delay={delay!r}: the model {delay[0]!r} takes {expected} parameter(s). Got {given}.")


STALENESS_RULES = ("none", "inverse")


def staleness_factor(rule: str, tau: int) -> float:
    """The step-size factor of an update computed τ updates late.

    "inverse": 1 / (1 + τ), the staleness-dependent learning rate of Zhang, Gupta, Lian and
    Liu, "Staleness-aware Async-SGD for Distributed Deep Learning" (IJCAI 2016), which divides
    the rate by the staleness (counted there from 1 for a fresh gradient).
    """
    return 1.0 / (1.0 + tau) if rule == "inverse" else 1.0
