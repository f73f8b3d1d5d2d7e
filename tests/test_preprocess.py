"""The shared preprocessing: gray conversion, alpha onto white, 28x28 output."""

from __future__ import annotations

import numpy as np
from PIL import Image

from batchdigits.preprocess import normalize, to_gray


def test_modes_to_gray_match_pillow():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    ours = to_gray(rgb).numpy()
    pillow = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float32)
    assert np.abs(ours - pillow).max() <= 1.0  # Pillow rounds to integers
    gray = rgb[..., 0]
    np.testing.assert_array_equal(to_gray(gray[..., None]).numpy(), gray.astype(np.float32))


def test_alpha_is_composited_onto_white():
    rgba = np.zeros((4, 4, 4), np.uint8)  # black, fully transparent ...
    rgba[1, 1] = (0, 0, 0, 255)  # ... but one opaque black pixel
    gray = to_gray(rgba).numpy()
    assert gray[1, 1] == 0 and gray[0, 0] == 255
    la = np.stack([np.full((2, 2), 10, np.uint8), np.array([[0, 255], [128, 0]], np.uint8)], -1)
    g = to_gray(la).numpy()
    np.testing.assert_allclose(g, [[255, 10], [10 * 128 / 255 + 255 * 127 / 255, 255]], atol=1e-3)


def test_normalize_shape_range_and_mnist_identity(mnist):
    for shape in [(28, 28), (28, 28, 1), (100, 60, 3), (8, 8, 4)]:
        x = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
        out = normalize(x).numpy()
        assert out.shape == (28, 28, 1) and out.dtype == np.float32
        assert out.min() >= 0 and out.max() <= 255
    digit = mnist.x_test[0]
    np.testing.assert_allclose(normalize(digit).numpy()[..., 0], digit, atol=1e-3)
