"""The shipped model on the files real users have, through ``predict``: every stress
variant (made from MNIST *test* digits, both polarities) and the development set of real
handwriting. A smaller run of ``tests/benchmarks/stress.py``, with issue 13's bounds."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from variants import DEFAULT_TARGET, SEED_ORDER, TARGETS, VARIANTS, variant_set

from batchdigits.imaging.one_file import prepare_pixels
from batchdigits.model.inference import Inference
from batchdigits.options import PredictOptions
from batchdigits.run.driver import predict_folder

sys.path.insert(0, str(Path(__file__).parent / "benchmarks"))
from fields import empty_field  # noqa: E402
from stress import DEV, dev_truth, score, write_stress_folder  # noqa: E402

IMAGES = 1000  # per variant: the benchmark's table, so one wrong row is 0.1 point
MAX_NO_DIGIT = 0.002  # readable digits reported as "no digit found"
MIN_UNFLAGGED_ACCURACY = 0.995  # rows with needs_review=false
# Issue 13's targets not reached by the shipped model (README, "Real users' files"):
# these bounds guard what it does reach, so a worse model cannot ship unnoticed.
UNFLAGGED_REACHED = {
    "tiny8": 0.99,  # target 99.5%; the shipped model: 99.37%
    "loose-field": 0.985,  # target 99.5%; the shipped model: 98.87%
    "real-photo": 0.975,  # target 99.5%; the shipped model: 97.97%
}
ACCURACY_REACHED = {
    "loose-field": 0.915,  # target 98%; the shipped model: 92.2%
    "real-photo": 0.70,  # target 85%; the shipped model: 71.9%
}
NO_DIGIT_REACHED = {
    "loose-field": 0.025,  # target 0.2%; the shipped model: 1.6%
    "real-photo": 0.055,  # target 0.2%; the shipped model: 4.5%
}
DEV_MIN_ACCURACY = 0.90  # target 94%; the shipped model: 90.77%
DEV_MIN_UNFLAGGED_ACCURACY = 0.98  # target 99.5%; the shipped model: 98.19%
EMPTY_CELLS = 400  # generated cells of rulings, margins and print, with no digit
# Target: none read as a digit without a review flag. Reached: 1.0% (0.2.0's search: 2.25%).
EMPTY_UNFLAGGED_REACHED = 0.0125
EMPTY_NO_DIGIT_REACHED = 0.8  # answered "no digit found": 84%


def test_variants_are_deterministic_and_alternate_polarity(mnist):
    # every variant has a fixed place in the seeds: a new one changes no other's images
    assert sorted(SEED_ORDER) == sorted(VARIANTS) and len(set(SEED_ORDER)) == len(SEED_ORDER)
    digits = mnist.x_test[:6]
    for name in VARIANTS:
        a, dark = variant_set(name, digits, seed=3)
        b, _ = variant_set(name, digits, seed=3)
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True)), name
        assert list(dark) == [True, False] * 3
        for image in a:
            assert image.dtype == np.uint8 and min(image.shape[:2]) >= 16, name
        other, _ = variant_set(name, digits, seed=4)
        assert not all(np.array_equal(x, y) for x, y in zip(a, other, strict=True)), name
    # 1-bit crops hold black and white only, 16 px a side
    one_bit = variant_set("crop16-1bit", digits[:1], seed=1)[0][0]
    assert set(np.unique(one_bit)) <= {0, 255} and one_bit[0].size == 16


@pytest.fixture(scope="module")
def stress_figures(mnist_full, tmp_path_factory):
    mnist = mnist_full
    root = tmp_path_factory.mktemp("stress")
    digits, labels = mnist.x_test[-IMAGES:], mnist.y_test[-IMAGES:]
    truth = write_stress_folder(root / "in", digits, labels)
    predict_folder(root / "in", root / "out.csv")  # the shipped model
    return score(root / "out.csv", truth)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(VARIANTS))
def test_shipped_model_reads_every_stress_variant(stress_figures, name):
    f = stress_figures[name]
    assert f["images"] == IMAGES
    target = ACCURACY_REACHED.get(name, TARGETS.get(name, DEFAULT_TARGET))
    assert f["accuracy"] >= target, f"{name}: {f['accuracy']:.2%} right < {target:.0%}"
    no_digit = NO_DIGIT_REACHED.get(name, MAX_NO_DIGIT)
    assert f["no_digit"] <= no_digit, f"{name}: {f['no_digit']:.2%} 'no digit found'"
    bound = UNFLAGGED_REACHED.get(name, MIN_UNFLAGGED_ACCURACY)
    assert f["unflagged_accuracy"] >= bound, (
        f"{name}: rows not flagged are {f['unflagged_accuracy']:.2%} right"
    )


@pytest.mark.slow
def test_shipped_model_on_the_development_set(tmp_path):
    if not (DEV / "semeion").is_dir():
        pytest.skip(f"no development set at {DEV} (see its README; CI has it)")
    predict_folder(DEV / "semeion", tmp_path / "dev.csv")
    f = score(tmp_path / "dev.csv", dev_truth(), group=lambda path: "dev")["dev"]
    assert f["images"] == 1593
    assert f["accuracy"] >= DEV_MIN_ACCURACY, f"{f['accuracy']:.2%} right"
    assert f["no_digit"] <= MAX_NO_DIGIT, f"{f['no_digit']:.2%} 'no digit found'"
    assert f["unflagged_accuracy"] >= DEV_MIN_UNFLAGGED_ACCURACY, f


@pytest.mark.slow
def test_an_empty_cell_is_rarely_read_as_a_digit_without_a_flag():
    inference = Inference.open(PredictOptions())
    rng = np.random.default_rng(5)
    cells = [empty_field(None, rng, bool(i % 2)) for i in range(EMPTY_CELLS)]
    got = inference.predict_prepared([prepare_pixels(c) for c in cells])
    found = np.asarray(got.has_digit, bool)
    unflagged = found & (got.probabilities.max(1) >= got.review_below)
    assert (~found).mean() >= EMPTY_NO_DIGIT_REACHED, f"{(~found).mean():.1%} no digit"
    assert unflagged.mean() <= EMPTY_UNFLAGGED_REACHED, f"{unflagged.mean():.2%} unflagged"
