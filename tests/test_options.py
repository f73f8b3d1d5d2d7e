"""PredictOptions: one object, one default per setting, and the checks that turn
impossible combinations into exit 2 in the library (not only in the CLI)."""

from __future__ import annotations

import dataclasses

import pytest

from batchdigits.errors import ExitCode, UsageError
from batchdigits.options import BeamSettings, PredictOptions


def test_defaults_and_variants():
    options = PredictOptions()
    assert (options.batch_size, options.engine, options.beam.smallest_batch) == (256, "local", 32)
    assert PredictOptions(beam=BeamSettings(max_batch=8)).beam.smallest_batch == 8
    assert dataclasses.replace(options, batch_size=64).batch_size == 64
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.batch_size = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "options, message",
    [
        (PredictOptions(engine="beam", incremental=True), "local engine only"),
        (PredictOptions(beam=BeamSettings(min_batch=64, max_batch=32)), "--beam-min-batch"),
        (PredictOptions(train_if_missing=True), "--train-if-missing needs --model"),
        (PredictOptions(engine="spark"), "unknown engine"),
        (PredictOptions(batch_size=0), "at least 1"),
        (PredictOptions(review_threshold=1.5), "between 0 and 1"),
    ],
)
def test_impossible_combinations_are_usage_errors(options, message):
    with pytest.raises(UsageError, match=message) as info:
        options.check()
    assert info.value.exit_code == ExitCode.USAGE


def test_needs_training_only_for_a_missing_model(tmp_path):
    present = tmp_path / "m.keras"
    present.write_bytes(b"x")
    assert not PredictOptions(model=present, train_if_missing=True).needs_training
    assert PredictOptions(model=tmp_path / "new.keras", train_if_missing=True).needs_training
    assert not PredictOptions(model=tmp_path / "new.keras").needs_training
