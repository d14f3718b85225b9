"""NTK theory of the shifted-ReLU two-layer net: the infinite-width kernel, its smallest
eigenvalue, the linear convergence rate it predicts, and drift tracking for KronSGD runs.

>>> import kronsgd.theory
>>> round(kronsgd.theory.fire_fraction(0.0), 2)
0.5
"""

from .drift import DriftTracker, TheoryReport, empirical_ntk, theory_report
from .kron_ntk import kronecker_fire_fraction
from .ntk import (
    EigenvalueEstimate,
    contraction_factor,
    fire_fraction,
    lr_limit,
    min_eigenvalue,
    ntk_cross,
    ntk_gram,
    orthant_probability,
)
from .orthant_table import OrthantTable, orthant_table

__all__ = [
    "DriftTracker",
    "EigenvalueEstimate",
    "TheoryReport",
    "contraction_factor",
    "empirical_ntk",
    "fire_fraction",
    "kronecker_fire_fraction",
    "lr_limit",
    "min_eigenvalue",
    "ntk_cross",
    "ntk_gram",
    "OrthantTable",
    "orthant_probability",
    "orthant_table",
    "theory_report",
]
