"""Pr[Z1 > h, Z2 > k] of a standard normal pair of correlation r, and the NTK of points of any norm.

Genz's ``bvnu`` (A. Genz, "Numerical computation of rectangular bivariate and trivariate
normal and t probabilities", Statistics and Computing 14, 2004; after Drezner & Wesolowsky
1990): Gauss–Legendre on 6, 12 or 20 nodes of the arcsine form for |r| < 0.925, and an
expansion around |r| = 1 with a 20-node correction above, to about 1e-15 absolute.

A point x of norm s fires a neuron of w ~ N(0, I) when <w, x> > b, i.e. when a standard
normal exceeds b / s: the kernel of points that are not scaled to unit norm is
H[i, j] = <x_i, x_j> · Pr[Z1 > b / s_i, Z2 > b / s_j], Z of correlation <x_i, x_j> / (s_i s_j).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

_JIT = dict(nogil=True, cache=True)

# Gauss–Legendre nodes x and weights w on [-1, 1], the half with x > 0, for 6, 12 and 20 points.
_W6 = np.array([0.1713244923791705, 0.3607615730481384, 0.4679139345726904])
_X6 = np.array([0.9324695142031522, 0.6612093864662647, 0.2386191860831970])
_W12 = np.array([0.04717533638651177, 0.1069393259953183, 0.1600783285433464,
                 0.2031674267230659, 0.2334925365383547, 0.2491470458134029])  # fmt: skip
_X12 = np.array([0.9815606342467191, 0.9041172563704750, 0.7699026741943050,
                 0.5873179542866171, 0.3678314989981802, 0.1252334085114692])  # fmt: skip
_W20 = np.array([0.01761400713915212, 0.04060142980038694, 0.06267204833410906, 0.08327674157670475,
                 0.1019301198172404, 0.1181945319615184, 0.1316886384491766, 0.1420961093183821,
                 0.1491729864726037, 0.1527533871307259])  # fmt: skip
_X20 = np.array([0.9931285991850949, 0.9639719272779138, 0.9122344282513259, 0.8391169718222188,
                 0.7463319064601508, 0.6360536807265150, 0.5108670019508271, 0.3737060887154196,
                 0.2277858511416451, 0.07652652113349733])  # fmt: skip


@nb.njit(**_JIT)
def _upper(z):
    """Φ̄(z) = Pr[Z > z]."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


@nb.njit(**_JIT)
def upper_bivariate(h, k, r):
    """Pr[Z1 > h, Z2 > k] for a standard normal pair of correlation r in [-1, 1]."""
    if r == 0.0:
        return _upper(h) * _upper(k)
    two_pi = 2.0 * math.pi
    hk = h * k
    if abs(r) < 0.3:
        w, x = _W6, _X6
    elif abs(r) < 0.75:
        w, x = _W12, _X12
    else:
        w, x = _W20, _X20
    if abs(r) < 0.925:
        hs = 0.5 * (h * h + k * k)
        asr = 0.5 * math.asin(r)
        total = 0.0
        for i in range(w.size):
            for sign in (-1.0, 1.0):
                sn = math.sin(asr * (1.0 + sign * x[i]))
                total += w[i] * math.exp((sn * hk - hs) / (1.0 - sn * sn))
        bvn = total * asr / two_pi + _upper(h) * _upper(k)
        return min(1.0, max(0.0, bvn))
    if r < 0.0:
        k, hk = -k, -hk
    bvn = 0.0
    if abs(r) < 1.0:
        a_s = (1.0 - r) * (1.0 + r)
        a = math.sqrt(a_s)
        bs = (h - k) ** 2
        c = (4.0 - hk) / 8.0
        d = (12.0 - hk) / 80.0
        asr = -0.5 * (bs / a_s + hk)
        if asr > -100.0:
            bvn = a * math.exp(asr) * (1.0 - c * (bs - a_s) * (1.0 - d * bs) / 3.0 + c * d * a_s * a_s)
        if hk > -100.0:
            b = math.sqrt(bs)
            sp = math.sqrt(two_pi) * _upper(b / a)
            bvn -= math.exp(-0.5 * hk) * sp * b * (1.0 - c * bs * (1.0 - d * bs) / 3.0)
        a *= 0.5
        total = 0.0
        for i in range(w.size):
            for sign in (-1.0, 1.0):
                xs = (a * (1.0 + sign * x[i])) ** 2
                asr = -0.5 * (bs / xs + hk)
                if asr > -100.0:
                    sp = 1.0 + c * xs * (1.0 + 5.0 * d * xs)
                    rs = math.sqrt(1.0 - xs)
                    ep = math.exp(-0.5 * hk * xs / (1.0 + rs) ** 2) / rs
                    total += w[i] * math.exp(asr) * (sp - ep)
        bvn = (a * total - bvn) / two_pi
    if r > 0.0:
        bvn += _upper(max(h, k))
    elif h >= k:
        bvn = -bvn
    else:
        span = _upper(h) - _upper(k) if h >= 0.0 else (1.0 - _upper(k)) - (1.0 - _upper(h))
        bvn = span - bvn
    return min(1.0, max(0.0, bvn))


@nb.njit(parallel=True, nogil=True, cache=True)
def ntk_from_inner_products(block, row_norm, col_norm, shift):
    """Overwrite inner products <x_i, y_j> (rows, cols) with <x_i, y_j> · Pr[Z1 > b / |x_i|, Z2 > b / |y_j|].

    Parameters
    ----------
    block : (rows, cols) float64, C-contiguous
    row_norm : (rows,) float64 >= 0
    col_norm : (cols,) float64 >= 0
        Norms of the points; a zero point's entries are 0.
    shift : float >= 0
    """
    for i in nb.prange(block.shape[0]):
        for j in range(block.shape[1]):
            g = block[i, j]
            if g == 0.0:  # orthogonal points, or a zero point (whose norm is 0)
                block[i, j] = 0.0
                continue
            r = min(1.0, max(-1.0, g / (row_norm[i] * col_norm[j])))
            block[i, j] = g * upper_bivariate(shift / row_norm[i], shift / col_norm[j], r)
