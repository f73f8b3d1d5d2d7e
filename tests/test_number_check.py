"""``--numbers``: the digit model's second opinion on the digits that stand alone."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import number_image

from batchdigits.imaging.preprocess import pad_batch, prepare
from batchdigits.model.inference import Inference
from batchdigits.numbers.reader import read_cleaned, sequence_inputs_fn
from batchdigits.numbers.second import (
    CHECKED_BELOW,
    DOUBTED_BELOW,
    READER_WEIGHT,
    DigitCheck,
    column_runs,
    second_opinion,
)
from batchdigits.numbers.sequence import HEIGHT, STEPS, WIDTH, collapsed, digit_runs
from batchdigits.options import PredictOptions

POWER = 0.3
REVIEW = 0.9954


def _steps(rows: int):
    p = np.zeros((rows, STEPS, 11), np.float32)
    p[:, :, 0] = 1.0  # blank everywhere ...
    return p


def _digit(p, row: int, step: int, **digits: float):
    """Put digits ``{"d4": 0.6, ...}`` at one step, the rest of its mass on the blank."""
    p[row, step] = 0.0
    for name, q in digits.items():
        p[row, step, 1 + int(name[1:])] = q
    p[row, step, 0] = 1.0 - sum(digits.values())


class FakeDigitModel:
    """Answers by where a crop's ink is, and keeps the crops it was asked about."""

    def __init__(self, answers):
        self.answers = answers  # [(first column, last column, probabilities (10,))]
        self.crops = []

    def __call__(self, crops):
        self.crops.extend(crops)
        out = []
        for crop in crops:
            cols = np.flatnonzero(crop.any(0))
            out.append(next(p for a, b, p in self.answers if a <= cols[0] and cols[-1] < b))
        return np.array(out)


def _one_hot(d: int, q: float):
    p = np.full(10, (1.0 - q) / 9, np.float32)
    p[d] = q
    return p


def test_runs_of_columns_and_of_steps():
    ink = np.zeros((2, HEIGHT, WIDTH), np.float32)
    ink[0, 5:20, 10:14] = 1.0
    ink[0, 3:9, 30:41] = 0.5
    ink[0, 10, 50] = 0.05  # too faint to hold ink
    assert column_runs(ink) == [[(10, 14), (30, 41)], []]
    assert digit_runs([0, 3, 3, 0, 3, 5, 5, 0]) == [(3, [1, 2]), (3, [4]), (5, [5, 6])]


def test_a_doubted_digit_standing_alone_takes_both_models_reading():
    p = _steps(3)
    # row 0: a doubted 4 (the reader leans to 4, not far from 9) at step 5, a sure 1 at 20
    _digit(p, 0, 5, d4=0.6, d9=0.35)
    _digit(p, 0, 20, d1=0.9999)
    # row 1: a reading that passes review, one digit checked (at 0.995, under 0.999)
    _digit(p, 1, 10, d7=0.995)
    # row 2: two doubted digits in one run of ink (touching): the reader's alone
    _digit(p, 2, 30, d3=0.7)
    _digit(p, 2, 32, d8=0.7)
    ink = np.zeros((3, HEIGHT, WIDTH), np.float32)
    ink[0, 4:28, 16:28] = ink[0, 4:28, 76:90] = 1.0  # step 5: columns 20-23; 20: 80-83
    ink[1, 4:28, 36:48] = 1.0  # step 10: columns 40-43
    ink[2, 4:28, 112:140] = 1.0  # steps 30 and 32: columns 120-131
    fake = FakeDigitModel(
        [(16, 28, _one_hot(9, 0.95)), (36, 48, _one_hot(7, 0.2)), (0, WIDTH, _one_hot(0, 1.0))]
    )
    paths = [p[r].argmax(1).tolist() for r in range(3)]
    before = [collapsed(path, p[r], POWER) for r, path in enumerate(paths)]
    assert before[1][1] >= REVIEW > before[1][1] * 0.2**POWER
    check = DigitCheck(fake, REVIEW)
    first = [b[1] for b in before]
    new, checked, ceilings, factors = second_opinion(p, paths, first, ink, check, POWER)
    after = [collapsed(path, checked[r], POWER) for r, path in enumerate(new)]
    assert before[0][0] == "41" and after[0][0] == "91"  # .63**.5 x .0056 < .37**.5 x .95
    # the reader's digit probabilities, made to sum to 1, to READER_WEIGHT, times the digit model's
    reader = p[0, 5, 1:] / p[0, 5, 1:].sum()
    both = reader**READER_WEIGHT * np.asarray(_one_hot(9, 0.95))
    assert READER_WEIGHT < 1 and after[0][2][0] == pytest.approx(both[9] / both.sum() * 0.95)
    assert np.array_equal(checked[1:], p[1:]) and np.array_equal(checked[0, :5], p[0, :5])
    assert ceilings[0] == pytest.approx(before[0][1]) and np.isinf(ceilings[1:]).all()
    assert after[1][0] == "7" and factors[1] == pytest.approx(0.2**POWER)
    assert after[2][0] == "38" and factors[2] == 1.0
    # two crops asked: row 0's doubted 4, alone in its columns, and row 1's checked 7
    assert len(fake.crops) == 2
    assert set(np.flatnonzero(fake.crops[0].any(0))) == set(range(16, 28))
    assert set(np.flatnonzero(fake.crops[1].any(0))) == set(range(36, 48))


def test_a_retaken_digit_never_merges_into_its_neighbour():
    p = _steps(1)
    _digit(p, 0, 5, d2=0.9999)
    _digit(p, 0, 6, d4=0.6, d2=0.39)  # right after the 2, no blank between them
    ink = np.zeros((1, HEIGHT, WIDTH), np.float32)
    ink[0, 4:28, 18:23] = ink[0, 4:28, 25:29] = 1.0  # two runs: step 5's and step 6's
    fake = FakeDigitModel([(24, 30, _one_hot(2, 0.99)), (0, WIDTH, _one_hot(0, 1.0))])
    check = DigitCheck(fake, REVIEW)
    paths = [p[0].argmax(1).tolist()]
    first = [collapsed(paths[0], p[0], POWER)[1]]
    new, checked, ceilings, _ = second_opinion(p, paths, first, ink, check, POWER)
    assert np.array_equal(checked, p) and np.isinf(ceilings).all()  # nothing changed
    assert len(fake.crops) == 1
    assert collapsed(new[0], p[0], POWER)[0] == "24"  # a 2 there would read "2"


def test_the_check_never_raises_a_confidence_and_changes_only_doubted_digits(mnist):
    inference = Inference.open(PredictOptions(numbers=True))
    grays, labels = [], []
    for i in range(64):
        image, label = number_image(mnist, [(7 * i + k) % 1000 for k in range(5)], gap=2 + i % 4)
        grays.append(prepare(image).numpy())
        labels.append(label)
    inputs, has_ink = sequence_inputs_fn()(*pad_batch(grays))
    alone, _ = read_cleaned(inference.numbers, inputs, has_ink, logits=inference.infer)
    checked = inference.finish((inputs, has_ink)).readings
    # op by op (small runs) gives the same bits as compiled
    assert inference.finish((inputs, has_ink), compiled=False).readings == checked
    changed = 0
    for a, c in zip(alone, checked, strict=True):
        assert c.confidence <= a.confidence and isinstance(c.confidence, float)
        assert len(c.digits) == len(a.digits)
        for da, dc, q in zip(a.digits, c.digits, a.digit_confidences, strict=True):
            assert da == dc or q < DOUBTED_BELOW
        changed += a.digits != c.digits
        # a confidence lowered with the same digits: a doubted digit the digit model
        # doubts too, or a checked digit of a reading that passed review
        if c.confidence < a.confidence and a.digits == c.digits:
            doubted = min(a.digit_confidences) < DOUBTED_BELOW
            assert doubted or (
                a.confidence >= inference.threshold and min(a.digit_confidences) < CHECKED_BELOW
            )
    assert changed >= 1  # measured: one of the 64, a doubted digit read right
    right = [sum(r.digits == t for r, t in zip(rs, labels, strict=True)) for rs in (alone, checked)]
    assert right[1] >= right[0] + changed  # every change here puts a digit right
