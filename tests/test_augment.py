"""Training augmentation: reproducible for a seed, varied, and optional per digit."""

from __future__ import annotations

import numpy as np

from batchdigits._lazy import tf
from batchdigits.augment import augment


def test_same_seed_same_digit_other_seed_other_digit(mnist):
    digit = mnist.x_test[0]
    seed = tf().constant([3, 4], tf().int64)
    a, b = augment(digit, seed).numpy(), augment(digit, seed).numpy()
    assert a.shape == (56, 56, 1) and a.min() >= 0 and a.max() <= 255
    np.testing.assert_array_equal(a, b)
    other = augment(digit, tf().constant([3, 5], tf().int64)).numpy()
    assert np.abs(a - other).mean() > 1.0


def test_fraction_zero_passes_digits_through(mnist):
    digit = mnist.x_test[1]
    upscaled = tf().image.resize(digit[..., None].astype("float32"), [56, 56]).numpy()
    for s in range(5):
        seed = tf().constant([s, 0], tf().int64)
        np.testing.assert_allclose(augment(digit, seed, fraction=0.0).numpy(), upscaled)
    varied = [
        not np.allclose(augment(digit, tf().constant([s, 0], tf().int64), 0.5).numpy(), upscaled)
        for s in range(40)
    ]
    assert 8 < sum(varied) < 32  # about half
