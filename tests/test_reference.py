"""predict against a plain reference implementation: decode with Pillow, normalise,
``model(x)``, one image at a time. Every row must agree to within rounding, so the
pipeline's speed-ups (parallel decode, batching, prefetch) never change a result."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import model_probabilities
from PIL import Image

from batchdigits.imaging.preprocess import normalize
from batchdigits.options import PredictOptions
from batchdigits.run.driver import predict_folder


@pytest.mark.slow
def test_predict_matches_a_plain_reference(tmp_path, mnist, model_file):
    from batchdigits.training.probes import scan_like

    root = tmp_path / "mixed"
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(5)
    for i in range(40):
        Image.fromarray(mnist.x_test[i]).save(root / f"m{i:02d}.png")
    for i in range(40, 70):
        scan_like(mnist.x_test[i], rng).save(root / "sub" / f"s{i:02d}.jpg", quality=80)
    out = tmp_path / "out.csv"
    predict_folder(root, out, PredictOptions(model=model_file, batch_size=16, probabilities=True))
    rows = pd.read_csv(out, keep_default_na=False)
    assert len(rows) == 70

    for _, row in rows.iterrows():
        with Image.open(root / row["path"]) as image:
            pixels = np.asarray(image.convert("L"))
        x, found = normalize(pixels)
        assert bool(found)
        probs = model_probabilities(model_file, x[None])[0]
        assert int(row["prediction"]) == int(probs.argmax()), row["path"]
        np.testing.assert_allclose(
            [row[f"p{d}"] for d in range(10)], probs, atol=2e-5, err_msg=row["path"]
        )
