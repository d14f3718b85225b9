"""A table of Pr[Z1 > b, Z2 > b] for one threshold b, fast enough for n² kernel entries.

``orthant_probability`` integrates with 32–96 nodes per correlation: exact to ~1e-13, but
about 100 transcendental functions per entry, which dominates an n × n kernel at n in the
thousands. As a function of s = arcsin(ρ) + π/2 the probability is smooth on [0, π]
(d Pr / ds = exp(-b²/(1 - cos s)) / 2π), so polynomials on a few hundred panels of s,
fitted to the exact values, reproduce it to 1e-12 · Φ̄(b) absolute (about 1e-13 measured;
values far below Φ̄(b), at ρ near -1, lose relative accuracy) for one arcsin and a short Horner
polynomial per entry (``kronsgd.kernels.orthant``). Near s = 0 (ρ → -1) the integrand turns
on over a scale of about b, so the panels below s = 0.12 are graded geometrically down to b / 8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..base.validation import check_float
from ..kernels.orthant import ntk_from_correlations
from .orthant import orthant_probability

_PANELS = 256  # uniform panels of s over [0, π]: width 0.0123
_DEGREE = 11  # polynomial degree per panel: within 1e-12 · Φ̄(b) of the quadrature (checked in tests)
_UNIFORM_FROM = 10  # uniform panels from s = 10 h (ρ > -0.9928); graded ones below
_RATIO = 1.15  # ratio of consecutive graded panel edges


@dataclass(frozen=True)
class OrthantTable:
    """Polynomial pieces of Pr[Z1 > b, Z2 > b] in s = arcsin(ρ) + π/2, for one threshold b.

    Attributes
    ----------
    shift : float
        The threshold b.
    edges : ndarray (P + 1,)
        Panel edges in s, from 0 to π.
    coefs : ndarray (P, degree + 1)
        Monomial coefficients in the panel's local coordinate t in [-1, 1].
    graded : int
        Panels before the first uniform one.
    width : float
        Width of the uniform panels.
    """

    shift: float
    edges: np.ndarray
    coefs: np.ndarray
    graded: int
    width: float

    def ntk_inplace(self, block: np.ndarray) -> np.ndarray:
        """Overwrite correlations ρ (rows, cols), C-contiguous float64, with ρ · Pr; returns block."""
        ntk_from_correlations(block, self.edges, self.coefs, self.graded, self.width)
        return block

    def probability(self, rho) -> np.ndarray:
        """Pr[Z1 > b, Z2 > b] from the table, for testing against ``orthant_probability``."""
        rho = np.asarray(rho, dtype=np.float64)
        block = rho.reshape(1, -1).copy()  # (1, N), overwritten below
        self.ntk_inplace(block)
        with np.errstate(divide="ignore", invalid="ignore"):  # ρ = 0: Pr is not recoverable as H / ρ
            return (block / rho.reshape(1, -1)).reshape(rho.shape)


def orthant_table(shift) -> OrthantTable:
    """Tabulate Pr[Z1 > b, Z2 > b] for the threshold ``shift`` (about 10 ms).

    Parameters
    ----------
    shift : float >= 0

    Returns
    -------
    OrthantTable

    Examples
    --------
    >>> from kronsgd.theory import orthant_probability
    >>> table = orthant_table(1.5)
    >>> rho = np.array([-0.99, -0.3, 0.2, 0.9999])
    >>> bool(np.allclose(table.probability(rho), orthant_probability(rho, 1.5), rtol=0, atol=1e-14))
    True
    """
    b = check_float(shift, "shift", low=0.0)
    width = math.pi / _PANELS
    start = _UNIFORM_FROM * width  # the uniform panels begin here
    # Below `start`, exp(-b²/(1 - cos s)) ≈ exp(-2b²/s²) turns on at s ≈ b with an essential
    # singularity at 0, bounded in the sector |arg s| < 45°: panels [a, q a] with q = 1.15 keep
    # each one's Bernstein ellipse inside it (convergence ~20^-degree). Below b / 8 the
    # integrand is below exp(-128): one panel [0, b / 8] of F ≈ Φ̄(b)² - ... ≈ 0 suffices.
    floor = min(b / 8.0, start)
    steps = math.ceil(math.log(start / floor) / math.log(_RATIO)) if floor > 0 else 0
    graded = np.geomspace(floor, start, steps + 1)[:-1] if steps else np.empty(0)  # (steps,)
    edges = np.concatenate([[0.0], graded, start + width * np.arange(_PANELS - _UNIFORM_FROM + 1)])  # (P + 1,)
    edges[-1] = math.pi
    graded = graded.size + 1  # panels below `start`
    k = np.arange(_DEGREE + 1)
    t = np.cos((2 * k + 1) * math.pi / (2 * (_DEGREE + 1)))[::-1]  # (deg + 1,) Chebyshev nodes, increasing
    lo, hi = edges[:-1, None], edges[1:, None]  # (P, 1)
    s = 0.5 * (lo + hi) + 0.5 * (hi - lo) * t  # (P, deg + 1)
    values = orthant_probability(-np.cos(s), b)  # (P, deg + 1); ρ = sin(s - π/2) = -cos s
    cheb = np.polynomial.chebyshev.chebfit(t, values.T, _DEGREE)  # (deg + 1, P)
    coefs = np.zeros((edges.size - 1, _DEGREE + 1))  # (P, deg + 1)
    for p, c in enumerate(cheb.T):
        poly = np.polynomial.chebyshev.cheb2poly(c)  # may come back shorter: trailing zeros are trimmed
        coefs[p, : poly.size] = poly
    return OrthantTable(b, np.ascontiguousarray(edges), np.ascontiguousarray(coefs), graded, width)
