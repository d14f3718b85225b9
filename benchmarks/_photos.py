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
