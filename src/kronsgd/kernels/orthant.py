"""The NTK entry ρ · Pr[Z1 > b, Z2 > b] from a correlation ρ, by a piecewise-polynomial table.

The orthant probability is a smooth function of s = arcsin(ρ) + π/2 in [0, π] (its
derivative in s is exp(-b²/(1 - cos s)) / 2π, with no singularity at ρ = ±1). The theory
room tabulates it once per threshold b as polynomials on panels of s; this kernel evaluates
one arcsin and one Horner polynomial per entry, in place, over a block of a Gram matrix.

Table layout (built by ``kronsgd.theory.orthant_table``):

* ``edges`` (P + 1,): panel edges in s, increasing from 0 to π. The panels are uniform of
  width ``h`` from ``edges[J]`` on; the first J panels grade geometrically towards s = 0,
  where the integrand turns on over a scale of about b (ρ near -1).
* ``coefs`` (P, degree + 1): on panel p, Pr = Σ_k coefs[p, k] t^k with t in [-1, 1] the
  position inside the panel.
"""

from __future__ import annotations

import math

import numba as nb

_JIT = dict(nogil=True, cache=True)


@nb.njit(**_JIT)
def _entry(rho, edges, coefs, graded, width):
    """ρ · Pr[Z1 > b, Z2 > b] for one correlation ρ (clipped to [-1, 1])."""
    if rho > 1.0:
        rho = 1.0
    elif rho < -1.0:
        rho = -1.0
    s = math.asin(rho) + 0.5 * math.pi  # in [0, π]
    panels = coefs.shape[0]
    if s >= edges[graded]:  # the uniform panels: one division
        p = graded + int((s - edges[graded]) / width)
        if p >= panels:
            p = panels - 1
    else:  # ρ near -1 (below -0.99): binary search of the graded panels
        lo_p, hi_p = 0, graded - 1
        while lo_p < hi_p:
            mid = (lo_p + hi_p + 1) // 2
            if s >= edges[mid]:
                lo_p = mid
            else:
                hi_p = mid - 1
        p = lo_p
    lo, hi = edges[p], edges[p + 1]
    t = (2.0 * s - lo - hi) / (hi - lo)
    value = coefs[p, coefs.shape[1] - 1]
    for k in range(coefs.shape[1] - 2, -1, -1):
        value = value * t + coefs[p, k]
    return rho * value


@nb.njit(parallel=True, nogil=True, cache=True)
def ntk_from_correlations(block, edges, coefs, graded, width):
    """Overwrite every correlation ρ in ``block`` (rows, cols) with ρ · Pr[Z1 > b, Z2 > b].

    Parameters
    ----------
    block : (rows, cols) float64, C-contiguous
        Correlations of unit points; rounding slightly outside [-1, 1] is clipped.
    edges : (P + 1,) float64
    coefs : (P, degree + 1) float64
    graded : int
        Number J of graded panels before the uniform ones.
    width : float
        Width h of the uniform panels.
    """
    for i in nb.prange(block.shape[0]):
        for j in range(block.shape[1]):
            block[i, j] = _entry(block[i, j], edges, coefs, graded, width)
