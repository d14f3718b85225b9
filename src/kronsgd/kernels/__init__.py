"""numba kernels: contiguous arrays and scalars in, no validation, no allocation in hot loops.

``step`` (the SGD step's compute and fold), ``tree`` and ``tree_fold`` (the fired-neuron
tree), ``intrinsics`` (prefetch, 16-wide compare). Each has a NumPy twin in tests/naive.py.
Imports nothing else from kronsgd.
"""
