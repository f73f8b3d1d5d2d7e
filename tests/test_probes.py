"""The probe sets: deterministic, the right kinds, and measured through the shared path."""

from __future__ import annotations

import numpy as np

from batchdigits.probes import hard_set, non_digit_set, predict_arrays, scan_like_set


def test_probe_sets_are_deterministic(mnist):
    a, b = scan_like_set(mnist.x_test[:5], seed=4), scan_like_set(mnist.x_test[:5], seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert all(x.shape[0] > 28 and x.mean() > 128 for x in a)  # larger canvas, light paper
    h = hard_set(mnist.x_test[:8], seed=1)
    assert all(
        np.array_equal(x, y) for x, y in zip(h, hard_set(mnist.x_test[:8], seed=1), strict=True)
    )
    n = non_digit_set(30, seed=2)
    assert len(n) == 30 and all(x.ndim == 2 for x in n)


def test_predict_arrays_matches_one_by_one(mnist, tiny_model):
    from batchdigits.model import load_model
    from batchdigits.preprocess import normalize_found

    model = load_model(tiny_model)
    # Digits only: on pure noise, float rounding that differs between a padded batch and
    # a single image (~1e-4) can tip pixels over the noise threshold either way.
    images = scan_like_set(mnist.x_test[:10], seed=0)
    probs, found = predict_arrays(model, images, batch_size=4)
    for i, image in enumerate(images):
        x, has_ink = normalize_found(image)
        assert bool(has_ink) == bool(found[i])
        np.testing.assert_allclose(model(x[None], training=False).numpy()[0], probs[i], atol=1e-5)
