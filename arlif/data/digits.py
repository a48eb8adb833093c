"""scikit-learn's bundled 8×8 handwritten digits: real data that needs no download.

1,797 grey images of the digits 0-9 (pixel values 0-16, scaled to [0, 1]) as static
[1, 8, 8] samples.  The test split is fixed (stratified, `dataset.test_size` images, a count
as for `dataset=synthetic`, chosen with a constant seed), so every run and seed tests on the
same images.
"""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from arlif.data import DataBundle
from arlif.errors import ConfigError

SPLIT_SEED = 0  # fixes the held-out test images
N_IMAGES, N_CLASSES = 1797, 10


def build_digits(cfg) -> DataBundle:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    test_size = cfg.dataset.test_size
    if isinstance(test_size, bool) or not isinstance(test_size, int) \
            or not N_CLASSES <= test_size <= N_IMAGES - N_CLASSES:
        raise ConfigError(f"dataset.test_size={test_size!r} must be a number of test images in "
                          f"[{N_CLASSES}, {N_IMAGES - N_CLASSES}] (every class in both splits)")
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    train_idx, test_idx = train_test_split(torch.arange(len(y)).numpy(), test_size=test_size,
                                           random_state=SPLIT_SEED, stratify=digits.target)
    return DataBundle(train=TensorDataset(x[train_idx], y[train_idx]), test=TensorDataset(x[test_idx], y[test_idx]),
                      num_classes=10, in_channels=1, image_size=8, temporal=False)
