"""numba kernels: contiguous arrays and scalars in, no validation, no allocation in hot loops.

``step`` (the SGD step's compute and fold), ``tree`` and ``tree_fold`` (the fired-neuron
tree), ``intrinsics`` (prefetch, 16-wide compare), ``orthant`` and ``bivariate`` (NTK
entries from correlations). Each has a NumPy twin in tests (tests/naive.py, and
tests/test_ntk_gram.py for the NTK kernels).
Imports nothing else from kronsgd.
"""
