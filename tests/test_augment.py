"""Training augmentation: reproducible for a seed, varied per image, optional per digit."""

from __future__ import annotations

import numpy as np

from batchdigits.runtime.lazy import tf
from batchdigits.training.augment import augment_batch


def _seed(a: int, b: int = 0):
    return tf().constant([a, b], tf().int64)


def test_same_seed_same_batch_other_seed_other_batch(mnist):
    digits = mnist.x_test[:8]
    a, b = augment_batch(digits, _seed(3, 4)).numpy(), augment_batch(digits, _seed(3, 4)).numpy()
    assert a.shape == (8, 56, 56) and a.min() >= 0 and a.max() <= 255
    np.testing.assert_array_equal(a, b)
    other = augment_batch(digits, _seed(3, 5)).numpy()
    assert np.abs(a - other).mean() > 1.0


def test_each_image_gets_its_own_variation(mnist):
    same = np.repeat(mnist.x_test[:1], 6, axis=0)
    out = augment_batch(same, _seed(7)).numpy()
    differences = [np.abs(out[0] - out[i]).mean() for i in range(1, 6)]
    assert min(differences) > 1.0


def test_fraction_zero_passes_digits_through(mnist):
    digits = mnist.x_test[:40]
    upscaled = tf().image.resize(digits[..., None].astype("float32"), [56, 56]).numpy()[..., 0]
    np.testing.assert_allclose(augment_batch(digits, _seed(1), fraction=0.0).numpy(), upscaled)
    half = augment_batch(digits, _seed(1), fraction=0.5).numpy()
    varied = [not np.allclose(half[i], upscaled[i]) for i in range(40)]
    assert 8 < sum(varied) < 32  # about half
