"""The photos patches task: 2,048 grayscale 128 x 128 patches of scikit-learn's two sample photos.

Task: which photo a patch comes from (china.jpg = 0, flower.jpg = 1), 1,024 random patches
of each (``extract_patches_2d``, seeded), gray = mean of the RGB channels / 255, split into
1,638 training and 410 test patches (stratified, seeded).
"""

from __future__ import annotations

import numpy as np

PATCH = 128
PER_PHOTO = 1024
TEST = 410


def photos_patches(seed: int = 0):
    """(X_train (1638, 16384), X_test (410, 16384), y_train, y_test), float64 in [0, 1]."""
    from sklearn.datasets import load_sample_images
    from sklearn.feature_extraction.image import extract_patches_2d
    from sklearn.model_selection import train_test_split

    X, y = [], []
    for label, image in enumerate(load_sample_images().images):
        gray = image.astype(np.float64).mean(axis=2) / 255.0  # (427, 640)
        patches = extract_patches_2d(gray, (PATCH, PATCH), max_patches=PER_PHOTO, random_state=seed)
        X.append(patches.reshape(PER_PHOTO, -1))  # (1024, 16384)
        y.append(np.full(PER_PHOTO, label))
    X, y = np.concatenate(X), np.concatenate(y)
    return train_test_split(X, y, test_size=TEST, random_state=seed, stratify=y)


def photos_spatial(n_train: int, n_test: int = 1000, seed: int = 0):
    """(X_train (n_train, 16384), X_test (n_test, 16384), y_train, y_test) split by place, not by draw.

    Random patches overlap: with thousands drawn, a test patch has training patches shifted
    by a pixel or two, and any memoriser scores well. Here training patches lie wholly in
    columns [0, 448) of each photo and test patches wholly in [448, 640): no pixel is shared.
    Half of each set from each photo, positions drawn uniformly (seeded), with replacement
    (up to 96,621 training positions per photo).
    """
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    edge = 448  # the first column of the test strip
    X_train, X_test, y_train, y_test = [], [], [], []
    for label, image in enumerate(load_sample_images().images):
        gray = image.astype(np.float64).mean(axis=2) / 255.0  # (427, 640)
        rows = gray.shape[0] - PATCH + 1
        for count, low, high, X, y in ((n_train // 2 + label * (n_train % 2), 0, edge - PATCH + 1, X_train, y_train),
                                       (n_test // 2 + label * (n_test % 2), edge, gray.shape[1] - PATCH + 1, X_test,
                                        y_test)):  # fmt: skip
            r, c = rng.integers(0, rows, count), rng.integers(low, high, count)
            windows = np.lib.stride_tricks.sliding_window_view(gray, (PATCH, PATCH))  # (rows, cols, 128, 128) view
            X.append(windows[r, c].reshape(count, -1))  # (count, 16384)
            y.append(np.full(count, label))
    return np.concatenate(X_train), np.concatenate(X_test), np.concatenate(y_train), np.concatenate(y_test)
