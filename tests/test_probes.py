"""The probe sets: deterministic, the right kinds, and measured through the shared path."""

from __future__ import annotations

import numpy as np
from helpers import model_probabilities

from batchdigits.training.probes import hard_set, non_digit_set, scan_like_set


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


def test_inference_of_images_matches_one_by_one(mnist, model_file):
    from batchdigits.imaging.preprocess import normalize
    from batchdigits.model.inference import Inference
    from batchdigits.options import PredictOptions

    # Digits only: on pure noise, float rounding that differs between a padded batch and
    # a single image (~1e-4) can tip pixels over the noise threshold either way.
    images = scan_like_set(mnist.x_test[:10], seed=0)
    inference = Inference.open(PredictOptions(model=model_file, batch_size=4))
    probs, found = inference.predict_images(images)
    for i, image in enumerate(images):
        x, has_ink = normalize(image)
        assert bool(has_ink) == bool(found[i])
        np.testing.assert_allclose(model_probabilities(model_file, x[None])[0], probs[i], atol=1e-5)
