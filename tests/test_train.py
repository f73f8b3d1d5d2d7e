"""Training: a quick run saves a model and a card that load back and predict identically."""

from __future__ import annotations

import json

import numpy as np
import pytest

from batchdigits.errors import ModelLoadError, OutputError
from batchdigits.model.store import card_path, load_model, read_card, save_model
from batchdigits.progress import NullReporter
from batchdigits.training.train import TrainConfig, split_train_validation, train, train_model


def test_split_is_disjoint_seeded_and_holds_out_a_twelfth():
    tr, va = split_train_validation(60000, seed=3)
    assert len(va) == 5000 and len(tr) == 55000
    assert not set(tr) & set(va)
    tr2, va2 = split_train_validation(60000, seed=3)
    np.testing.assert_array_equal(va, va2)
    assert not np.array_equal(va, split_train_validation(60000, seed=4)[1])


@pytest.mark.slow
def test_trained_model_and_card_survive_save_and_load(tmp_path, mnist):
    model, card = train_model(mnist, TrainConfig(epochs=1, limit=1000, batch_size=16, seed=7))
    out = tmp_path / "sub" / "m.keras"
    save_model(model, out, card)
    assert out.is_file() and card_path(out).is_file()
    assert json.loads(card_path(out).read_text()) == read_card(out) == card
    for key in (
        "test_accuracy",
        "test_loss",
        "validation_accuracy",
        "epochs",
        "batch_size",
        "seed",
        "parameters",
        "train_seconds",
        "data_source",
        "data_checksums",
        "tensorflow_version",
        "keras_version",
        "date",
    ):
        assert key in card, key
    assert card["epochs"] == 1 and card["seed"] == 7 and card["limit"] == 1000
    assert card["train_images"] + card["validation_images"] == 1000
    assert card["test_images"] == len(mnist.x_test) == 1000
    assert 0.5 < card["test_accuracy"] <= 1.0  # 1,000 images, 1 epoch: far above chance

    import zipfile

    import h5py

    with zipfile.ZipFile(out) as z, z.open("model.weights.h5") as f:
        assert "optimizer" not in h5py.File(f, "r")  # weights only: small, quick to load

    from batchdigits.model.network import temperature_of

    for key in (
        "temperature",
        "test_ece",
        "test_ece_before_calibration",
        "review_threshold",
        "test_review_coverage",
        "test_review_accuracy",
    ):
        assert key in card, key
    # The calibration lives in the model file itself.
    assert temperature_of(load_model(out)) == pytest.approx(card["temperature"], rel=1e-5)
    assert temperature_of(model) == pytest.approx(card["temperature"], rel=1e-5)

    x = mnist.x_test[:64, ..., None].astype("float32")
    before = model(x, training=False).numpy()
    after = load_model(out)(x, training=False).numpy()
    # Saved for inference: batch norm folded into the convolutions, same function.
    np.testing.assert_allclose(before, after, atol=1e-5)
    assert not [layer for layer in load_model(out).layers if layer.name.startswith("bn")]
    np.testing.assert_allclose(after.sum(axis=1), 1.0, rtol=1e-5)
    reloaded = load_model(out)(x, training=False).numpy()
    np.testing.assert_array_equal(after, reloaded)  # loading is deterministic


def test_train_rejects_bad_output_before_training(tmp_path):
    with pytest.raises(OutputError, match=r"must end in \.keras"):
        train(tmp_path / "model.h5", data=tmp_path / "nowhere")


def test_training_batches_use_predicts_normalisation_and_uniform_non_digit_targets(mnist):
    from batchdigits.imaging.preprocess import normalize_batch, pad_batch, prepare
    from batchdigits.training.datasets import image_dataset
    from batchdigits.training.negatives import NOT_A_DIGIT_CLASS

    x = mnist.x_test[:6]
    y = np.array([*mnist.y_test[:5], NOT_A_DIGIT_CLASS])
    inputs, targets = next(iter(image_dataset(x, y, batch_size=6)))
    expected, _ = normalize_batch(*pad_batch([prepare(i) for i in x]))
    np.testing.assert_allclose(inputs.numpy(), expected.numpy(), atol=1e-3)
    targets = targets.numpy()
    np.testing.assert_array_equal(targets[:5].argmax(1), mnist.y_test[:5])
    np.testing.assert_array_equal(targets[:5].max(1), 1.0)
    np.testing.assert_allclose(targets[5], np.full(10, 0.1))


@pytest.mark.slow
def test_training_data_order_and_augmentation_follow_the_seed(mnist):
    from batchdigits.training.datasets import image_dataset

    x, y = mnist.x_train[:64], mnist.y_train[:64]

    def epochs(seed: int, n: int = 2) -> list[np.ndarray]:
        ds = image_dataset(x, y, 32, shuffle_seed=seed, augment_data=True)
        return [np.concatenate([b[0].numpy() for b in ds]) for _ in range(n)]

    first, again, other = epochs(5), epochs(5), epochs(6)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)  # same seed: same order, same variations
    assert not np.allclose(first[0], first[1])  # every epoch reshuffled and varied anew
    assert not np.allclose(first[0], other[0])


@pytest.mark.slow
def test_digits_varied_once_are_drawn_from_their_copies_every_epoch(mnist):
    from batchdigits.imaging.preprocess import normalize_batch, pad_batch, prepare
    from batchdigits.training.datasets import copies_dataset, varied_copies

    x, y = mnist.x_train[:40], mnist.y_train[:40]
    copies = varied_copies(x, y, variants=2, seed=3)
    assert copies.shape == (40, 3, 28, 28, 1) and copies.dtype == np.uint8
    np.testing.assert_array_equal(copies, varied_copies(x, y, 2, 3))  # one fixed draw
    clean, _ = normalize_batch(*pad_batch([prepare(i) for i in x]))
    np.testing.assert_allclose(copies[:, 0], np.round(clean.numpy()), atol=1)
    assert (copies[:, 1] != copies[:, 0]).any(axis=(1, 2, 3)).mean() > 0.9  # varied
    assert (copies[:, 1] != copies[:, 2]).any(axis=(1, 2, 3)).mean() > 0.9  # two draws

    ds = copies_dataset(copies, y, batch_size=16, seed=1)
    epochs = [[(b[0].numpy(), b[1].numpy()) for b in ds] for _ in range(2)]
    for epoch in epochs:
        inputs = np.concatenate([b[0] for b in epoch])
        labels = np.concatenate([b[1] for b in epoch]).argmax(1)
        assert sorted(labels) == sorted(y)  # every digit once per epoch
        # each input is one of the copies, and all three kinds are drawn
        match = (inputs[:, None, None] == copies[None]).all(axis=(3, 4, 5))  # (j, i, k)
        assert match.any(axis=(1, 2)).all()
        assert match.any(axis=(0, 1)).all()
    assert not np.array_equal(epochs[0][0][0], epochs[1][0][0])  # reshuffled


@pytest.mark.slow
def test_training_is_deterministic_for_a_seed(mnist):
    config = TrainConfig(epochs=1, limit=600, batch_size=32, seed=3, probe_images=0)
    a, _ = train_model(mnist, config)
    b, _ = train_model(mnist, config)
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)


class _Recorder(NullReporter):
    """Records what it is told; with ``stop``, stops the run (as Ctrl-C would) once the
    first epoch is done."""

    def __init__(self, stop: bool):
        self.stop_run, self.lines = stop, []

    def log(self, message):
        self.lines.append(message)
        if self.stop_run and message.startswith("epoch 1/"):
            raise KeyboardInterrupt


@pytest.mark.slow
def test_an_interrupted_run_resumes_after_its_last_epoch_with_its_curve(
    tmp_path, mnist, monkeypatch
):
    from batchdigits.training import train as training
    from batchdigits.training.train import checkpoint_folder

    monkeypatch.setattr(training, "load_mnist", lambda data, verify: mnist)
    out = tmp_path / "m.keras"
    folder = checkpoint_folder(out)
    config = TrainConfig(
        epochs=2,
        limit=360,
        batch_size=32,
        seed=5,
        checkpoints=folder,
        ema=True,
        clean_share=0.5,
        probe_images=0,
    )
    with pytest.raises(KeyboardInterrupt):
        train(out, config=config, reporter=_Recorder(stop=True))
    assert not out.exists() and (folder / "best.json").is_file()
    second = _Recorder(stop=False)
    card = train(out, config=config, reporter=second)
    epochs = [line.split(":")[0] for line in second.lines]
    assert epochs == ["epoch 2/2"], second.lines  # the first epoch is not trained again
    assert [row["epoch"] for row in card["learning_curve"]] == [1, 2]
    for row in card["learning_curve"]:
        assert 0.0 <= row["val_clean"] <= 1.0 and 0.0 <= row["val_varied"] <= 1.0
    assert card["ema"] is True and card["clean_share"] == 0.5 and "checkpoints" not in card
    assert out.is_file() and not folder.exists()  # a finished run leaves no state behind
    assert load_model(out).count_params() == card["parameters"]


def test_the_cli_offers_every_architecture_and_refuses_others():
    from typer.testing import CliRunner

    from batchdigits.cli.app import app
    from batchdigits.cli.training import ArchitectureName
    from batchdigits.model.network import ARCHITECTURES

    assert [a.value for a in ArchitectureName] == list(ARCHITECTURES)
    result = CliRunner().invoke(app, ["train", "--architecture", "huge", "--epochs", "1"])
    assert result.exit_code == 2


@pytest.mark.slow
def test_a_second_opinion_joins_a_model_in_one_file(tmp_path, trained_model, mnist_path):
    from batchdigits.model.inference import Inference
    from batchdigits.model.network import networks
    from batchdigits.options import PredictOptions

    out = tmp_path / "pair.keras"
    small = {"blocks": [[8, 8], [16]], "dense": 32, "dropout": 0.2, "block_dropout": 0.1}
    config = TrainConfig(
        epochs=1, batch_size=16, variants=1, architecture=small, second_opinion_of=trained_model
    )
    card = train(out, mnist_path, config)
    first_card = read_card(trained_model)
    assert card["second_opinion"]["consulted_below"] == first_card["review_threshold"]
    assert card["review_threshold"] == first_card["review_threshold"]
    assert card["first_network"]["test_accuracy"] == first_card["test_accuracy"]
    assert 0.0 < card["second_opinion"]["test_consulted_share"] < 1.0
    assert card["second_opinion"]["card"]["variants"] == 1
    first, second = networks(load_model(out))
    x = np.random.default_rng(0).random((4, 28, 28, 1)).astype(np.float32) * 255
    np.testing.assert_allclose(first(x), load_model(trained_model)(x), atol=1e-6)
    assert Inference.open(PredictOptions(model=str(out))).second is not None
    with pytest.raises(ModelLoadError, match="already has a second opinion"):
        train(tmp_path / "again.keras", mnist_path, TrainConfig(second_opinion_of=out))
    assert not (tmp_path / "again.keras").exists()


@pytest.mark.slow
def test_a_first_look_passes_its_doubts_to_the_strong_model(tmp_path, trained_model, mnist_path):
    from typer.testing import CliRunner

    from batchdigits.cli.app import app
    from batchdigits.errors import UsageError
    from batchdigits.model.inference import Inference
    from batchdigits.model.network import networks
    from batchdigits.options import PredictOptions

    out = tmp_path / "cascade.keras"
    args = ["train", "-o", str(out), "--data", str(mnist_path), "--epochs", "1"]
    args += ["--batch-size", "16", "--variants", "1", "--architecture", "small"]
    result = CliRunner().invoke(app, [*args, "--first-look-for", str(trained_model)])
    assert result.exit_code == 0, result.output
    assert f"saved {out}: test accuracy" in result.stderr
    card = read_card(out)
    strong_card = read_card(trained_model)
    opinion = card["second_opinion"]
    assert opinion["answers"] == "second"
    assert opinion["consulted_below"] >= strong_card["review_threshold"]
    assert (
        card["review_threshold"] == opinion["review_threshold"] == strong_card["review_threshold"]
    )
    assert opinion["card"]["test_accuracy"] == strong_card["test_accuracy"]
    assert card["first_network"]["architecture"]["blocks"] == [[16], [32], [64]]
    assert 0.0 < opinion["test_consulted_share"] <= 1.0
    first, second = networks(load_model(out))
    x = np.random.default_rng(0).random((4, 28, 28, 1)).astype(np.float32) * 255
    np.testing.assert_allclose(second(x), load_model(trained_model)(x), atol=1e-6)
    inference = Inference.open(PredictOptions(model=str(out)))
    assert inference.second.alone and inference.second.below == opinion["consulted_below"]
    with pytest.raises(UsageError, match="do not go together"):
        both = TrainConfig(first_look_for=trained_model, second_opinion_of=trained_model)
        train(tmp_path / "both.keras", mnist_path, both)
    assert not (tmp_path / "both.keras").exists()
