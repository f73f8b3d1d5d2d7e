"""Generated non-digits for outlier exposure: deterministic, MNIST-shaped, varied."""

from __future__ import annotations

import numpy as np

from batchdigits.training.negatives import non_digits


def test_non_digits_are_deterministic_and_mnist_shaped(mnist):
    x, y = mnist.x_train[:500], mnist.y_train[:500]
    a = non_digits(x, y, 60, seed=4)
    np.testing.assert_array_equal(a, non_digits(x, y, 60, seed=4))
    assert a.shape == (60, 28, 28) and a.dtype == np.uint8
    assert not np.array_equal(a, non_digits(x, y, 60, seed=5))
    # Ink on black like MNIST: mostly dark, every image with some ink.
    assert (a.reshape(60, -1).max(1) > 100).all()
    assert np.median(a) < 30


def test_non_digits_are_not_copies_of_training_digits(mnist):
    x, y = mnist.x_train[:500], mnist.y_train[:500]
    flat = x.reshape(len(x), -1).astype(int)
    for image in non_digits(x, y, 40, seed=1):
        assert np.abs(flat - image.reshape(1, -1)).sum(1).min() > 0
