"""The network: folding batch norm, temperature, architecture round trip."""

from __future__ import annotations

import numpy as np

from batchdigits.model.network import (
    architecture_of,
    build_model,
    fold_batch_norm,
    temperature_of,
    with_temperature,
)


def test_fold_batch_norm_keeps_the_function():
    model = build_model([[8], [16, 16]], dense=32, dropout=0.2, block_dropout=0.1)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # non-trivial BN statistics and scales
        if layer.name.startswith("bn"):
            n = layer.weights[0].shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 2, n),
                    rng.normal(0, 0.5, n),
                    rng.normal(0, 1, n),
                    rng.uniform(0.1, 3, n),
                ]
            )
    model = with_temperature(model, 1.7)
    folded = fold_batch_norm(model)
    assert not [layer for layer in folded.layers if layer.name.startswith("bn")]
    assert (
        architecture_of(folded)
        == architecture_of(model)
        == {
            "blocks": [[8], [16, 16]],
            "dense": 32,
            "dropout": 0.2,
            "block_dropout": 0.1,
        }
    )
    assert temperature_of(folded) == temperature_of(model) == 1.7
    x = (rng.random((16, 28, 28, 1)) * 255).astype("float32")
    np.testing.assert_allclose(
        folded(x, training=False).numpy(), model(x, training=False).numpy(), atol=1e-5
    )
    assert fold_batch_norm(folded) is folded  # nothing left to fold
