"""A model file with a second opinion: two networks in one ``.keras`` file, the second
asked only about the rows the first doubts, the same rows however they are batched."""

from __future__ import annotations

import json

import numpy as np
import pytest

from batchdigits.errors import ModelLoadError
from batchdigits.imaging.one_file import prepare_pixels
from batchdigits.model.inference import SECOND_CHUNK, Inference
from batchdigits.model.network import build_model, networks, paired
from batchdigits.model.store import ModelRef, card_path, load_model, save_model
from batchdigits.options import PredictOptions


def _network(seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    return build_model([[4], [8]], dense=16, dropout=0.0, block_dropout=0.0, batch_norm=False)


@pytest.fixture(scope="module")
def pair_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("pair") / "pair.keras"
    save_model(paired(_network(1), _network(2)), out, {"review_threshold": 0.5})
    return out


def _inputs(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.random((n, 28, 28, 1)) * 255).astype(np.float32)


def test_a_pair_is_one_file_and_loads_as_two_networks(pair_file):
    first, second = networks(load_model(pair_file))
    assert second is not None
    x = _inputs(4)
    a, b = first(x).numpy(), second(x).numpy()
    assert not np.allclose(a, b)  # two different networks
    np.testing.assert_allclose(a, networks(_network(1))[0](x).numpy(), atol=1e-6)


def test_only_doubtful_rows_are_asked_and_get_the_mean(pair_file):
    model = load_model(pair_file)
    first, second = (np.asarray(n(_inputs(40))) for n in networks(model))
    # between the lowest and highest first confidence: some rows doubtful, some not
    below = float(np.median(first.max(1)))
    inference = Inference.of(model, PredictOptions(review_threshold=0.5), consult_below=below)
    got, asked = inference.second.consulted(_inputs(40), first, np.ones(40, bool))
    doubtful = first.max(1) < below
    assert 0 < doubtful.sum() < 40
    np.testing.assert_array_equal(asked, doubtful)
    np.testing.assert_array_equal(got[~doubtful], first[~doubtful])
    np.testing.assert_allclose(got[doubtful], (first[doubtful] + second[doubtful]) / 2, atol=1e-6)
    # a row with no digit is never asked
    none, asked = inference.second.consulted(_inputs(40), first, np.zeros(40, bool))
    np.testing.assert_array_equal(none, first)
    assert not asked.any()


def test_a_rows_answer_does_not_depend_on_its_company(pair_file):
    model = load_model(pair_file)
    inference = Inference.of(model, PredictOptions(review_threshold=0.5), consult_below=0.5)
    x = _inputs(SECOND_CHUNK + 5)  # every row doubtful: rows share places, two chunks
    doubtful = np.full((len(x), 10), 0.1, np.float32)
    together, _ = inference.second.consulted(x, doubtful, np.ones(len(x), bool))
    for i in range(len(x)):  # the same row the only doubtful one of its batch
        sure = np.eye(10, dtype=np.float32)[np.zeros(len(x), int)]
        sure[i] = 0.1
        alone, _ = inference.second.consulted(x, sure, np.ones(len(x), bool))
        np.testing.assert_array_equal(alone[i], together[i])
        np.testing.assert_array_equal(np.delete(alone, i, 0), np.delete(sure, i, 0))


def test_the_card_says_when_the_second_opinion_is_asked(pair_file):
    card = json.loads(card_path(pair_file).read_text())
    assert ModelRef(pair_file).consult_below() is None  # the review threshold then
    inference = Inference.open(PredictOptions(model=str(pair_file)))
    assert inference.second.below == 0.5
    card["second_opinion"] = {"consulted_below": 0.8}
    card_path(pair_file).write_text(json.dumps(card))
    try:
        assert Inference.open(PredictOptions(model=str(pair_file))).second.below == 0.8
    finally:
        card.pop("second_opinion")
        card_path(pair_file).write_text(json.dumps(card))


def _digits(mnist, n: int = 60):
    return [prepare_pixels(image) for image in mnist.x_test[:n]]


def test_a_row_the_first_network_doubts_stays_flagged(pair_file, mnist):
    model = load_model(pair_file)
    alone = Inference.of(networks(model)[0]).predict_prepared(_digits(mnist))
    below = float(np.median(alone.probabilities.max(1)))
    options = PredictOptions(review_threshold=below)
    got = Inference.of(model, options, consult_below=below).predict_prepared(_digits(mnist))
    asked = alone.probabilities.max(1) < below
    assert asked.any() and not asked.all()
    np.testing.assert_array_equal(got.review_below, np.where(asked, 1.0, below))
    rows = [got.row(k, str(k)) for k in range(len(asked))]
    pairs = list(zip(rows, asked, strict=True))
    assert any(r.confidence >= below for r, a in pairs if a)  # the mean would clear it
    assert all(r.needs_review == (a or r.confidence < below) for r, a in pairs)
    # a threshold the user gives is every row's, consulted or not
    mine = Inference.of(model, options, consult_below=below, consulted_review_below=below)
    again = mine.predict_prepared(_digits(mnist))
    assert (again.review_below == below).all()


def test_the_users_threshold_is_every_rows(pair_file):
    ref = ModelRef(pair_file)
    assert ref.consulted_review_below() == 1.0
    assert ref.consulted_review_below(0.7) == 0.7


def test_a_file_with_two_other_outputs_is_refused(tmp_path):
    import keras

    inputs = keras.Input((28, 28, 1))
    flat = keras.layers.Flatten()(inputs)
    odd = keras.Model(inputs, [keras.layers.Dense(10)(flat), keras.layers.Dense(10)(flat)])
    odd.save(tmp_path / "odd.keras")
    with pytest.raises(ModelLoadError, match="not a batchdigits model"):
        load_model(tmp_path / "odd.keras")


def test_a_single_network_has_no_second_opinion(tmp_path):
    save_model(_network(1), tmp_path / "one.keras", {"review_threshold": 0.5})
    assert Inference.open(PredictOptions(model=str(tmp_path / "one.keras"))).second is None


def test_a_cascade_gives_doubtful_rows_the_second_networks_answer(pair_file):
    model = load_model(pair_file)
    first, second = (np.asarray(n(_inputs(40))) for n in networks(model))
    below = float(np.median(first.max(1)))
    options = PredictOptions(review_threshold=0.5)
    cascade = Inference.of(model, options, consult_below=below, second_alone=True)
    got, asked = cascade.second.consulted(_inputs(40), first, np.ones(40, bool))
    doubtful = first.max(1) < below
    np.testing.assert_array_equal(asked, doubtful)
    np.testing.assert_array_equal(got[~doubtful], first[~doubtful])
    np.testing.assert_allclose(got[doubtful], second[doubtful], atol=1e-6)


def test_the_card_says_when_the_file_is_a_cascade(pair_file):
    card = json.loads(card_path(pair_file).read_text())
    assert not ModelRef(pair_file).second_answers_alone()
    assert not Inference.open(PredictOptions(model=str(pair_file))).second.alone
    card["second_opinion"] = {"consulted_below": 0.8, "answers": "second"}
    card_path(pair_file).write_text(json.dumps(card))
    try:
        assert Inference.open(PredictOptions(model=str(pair_file))).second.alone
    finally:
        card.pop("second_opinion")
        card_path(pair_file).write_text(json.dumps(card))
