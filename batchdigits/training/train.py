"""Training a model on MNIST, with a held-out validation split and a model card."""

from __future__ import annotations

import datetime as dt
import functools
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from batchdigits.errors import ModelLoadError
from batchdigits.imaging.preprocess import normalize_batch
from batchdigits.model.calibrate import (
    choose_review_threshold,
    coverage_and_accuracy,
    expected_calibration_error,
    fit_temperature,
    nll,
    softmax,
    tradeoff,
)
from batchdigits.model.inference import Inference, compute_images_per_second
from batchdigits.model.network import (
    DEFAULT_ARCHITECTURE,
    as_float32,
    build_model,
    fold_batch_norm,
    logits_model,
    networks,
    paired,
    with_temperature,
)
from batchdigits.model.store import check_model_output, load_model, read_card, save_model
from batchdigits.progress import NullReporter, Reporter
from batchdigits.runtime.lazy import keras, tf
from batchdigits.training.augment import augment_batch
from batchdigits.training.data import Mnist, load_mnist
from batchdigits.training.fitting import FitPlan, compute_dtype, fit
from batchdigits.training.negatives import NOT_A_DIGIT_CLASS, non_digits
from batchdigits.training.probes import hard_set, non_digit_set, scan_like_set

#: Share of the (possibly --limit'ed) training images held out for validation.
VALIDATION_FRACTION = 1 / 12  # 5,000 of MNIST's 60,000
#: Rows not flagged for review should be at least this accurate on the validation split,
#: clean and varied digits together. (On clean MNIST alone, 99.95% was the target; the
#: varied half holds deliberately hard inputs, and 99.8% there keeps the rows not flagged
#: above 99.5% right off MNIST while most clean digits stay unflagged.)
REVIEW_TARGET = 0.998


@dataclass
class TrainConfig:
    epochs: int = 28
    batch_size: int = 128
    seed: int = 1
    limit: int | None = None
    learning_rate: float = 2e-3
    augment: bool = True
    augment_fraction: float = 1.0  # share of the training digits varied each epoch
    clean_share: float = 0.0  # share of those only reshaped (rotation, scale, shear, pen)
    ema: bool = False  # evaluate and keep an average of the weights
    mixed_precision: bool = False  # compute in bfloat16 while training
    checkpoints: Path | None = None  # keep each epoch's state here; resume from it
    variants: int = 0  # > 0: vary each digit this many times once, draw from them per epoch
    second_opinion_of: Path | None = None  # pair the trained network with this model's
    non_digit_share: float = 0.0  # generated non-digits added per training digit (outlier exposure)
    probe_images: int = 2000  # per generated probe set for the card (0: skip the probes)
    architecture: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_ARCHITECTURE))


#: TrainConfig fields that describe this machine's run, not the model
_NOT_IN_CARD = ("checkpoints", "second_opinion_of")


def split_train_validation(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and validation parts of ``n`` images (seeded, disjoint)."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, round(n * VALIDATION_FRACTION))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def image_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    shuffle_seed: int | None = None,
    augment_data: bool = False,
    augment_fraction: float = 1.0,
    clean_share: float = 0.0,
):
    """28x28 MNIST-style arrays -> batched ``(inputs, targets)`` through the shared
    normalisation (:func:`~batchdigits.imaging.preprocess.normalize_batch`, as in ``predict``).

    ``targets`` are one-hot; label
    :data:`~batchdigits.training.negatives.NOT_A_DIGIT_CLASS` gets the uniform target.
    With ``shuffle_seed``, the order is reshuffled every epoch, reproducibly; with
    ``augment_data`` too, every epoch sees freshly (and reproducibly) varied digits,
    augmented a whole batch at a time. (``prepare``, the per-file step of ``predict``,
    leaves one-channel images this small unchanged, so it is skipped.)
    """
    t = tf()
    ds = t.data.Dataset.from_tensor_slices((images, labels.astype("int32")))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(images), seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if augment_data:
        seeds = t.data.Dataset.random(seed=shuffle_seed, rerandomize_each_iteration=True)
        ds = t.data.Dataset.zip(ds, seeds.batch(2)).map(
            lambda xy, seed: (augment_batch(xy[0], seed, augment_fraction, clean_share), xy[1]),
            num_parallel_calls=t.data.AUTOTUNE,
            deterministic=True,
        )

    finish = _inputs_and_targets()
    ds = ds.map(
        lambda gray, label: finish(t.cast(gray, t.float32), label),
        num_parallel_calls=t.data.AUTOTUNE,
        deterministic=True,
    )
    return ds.prefetch(t.data.AUTOTUNE)


@functools.lru_cache(maxsize=1)
def _inputs_and_targets():
    """A batch of gray 28x28 digits and their labels -> ``(inputs, targets)``, traced once
    per process: every dataset (training, validation, test, in every ``train`` call) calls
    the same function instead of tracing the ~2,000-op normalisation again."""
    t = tf()

    @t.function(
        input_signature=[
            t.TensorSpec([None, None, None], t.float32),
            t.TensorSpec([None], t.int32),
        ],
        autograph=False,
    )
    def finish(gray, label):
        size = t.shape(gray)[1:3]
        inputs, _ = normalize_batch(gray, t.tile(size[None], [t.shape(gray)[0], 1]))
        return inputs, _targets(label)

    return finish


def _targets(label):
    """One-hot targets; :data:`~batchdigits.training.negatives.NOT_A_DIGIT_CLASS` gets
    the uniform one."""
    t = tf()
    target = t.one_hot(label, 10)
    return t.where((label == NOT_A_DIGIT_CLASS)[:, None], 0.1, target)


def varied_copies(images: np.ndarray, labels: np.ndarray, config: TrainConfig) -> np.ndarray:
    """The training digits normalised as they are, and ``config.variants`` more times
    varied by the augmentation (each copy one fixed draw): the model inputs, ``uint8
    (N, variants + 1, 28, 28, 1)``. Made once, in both cores' time, so the epochs after
    cost the network alone (see :func:`copies_dataset`)."""
    t = tf()
    finish = _inputs_and_targets()
    copies = []
    for k in range(config.variants + 1):
        ds = t.data.Dataset.from_tensor_slices((images, labels.astype("int32"))).batch(512)

        def one(i, xy, k=k):
            gray = xy[0]
            if k:
                seed = t.stack([t.constant(config.seed * 1000 + k, t.int64), i])
                gray = augment_batch(gray, seed, config.augment_fraction, config.clean_share)
            inputs = finish(t.cast(gray, t.float32), xy[1])[0]
            return t.cast(t.round(inputs), t.uint8)

        ds = ds.enumerate().map(one, num_parallel_calls=t.data.AUTOTUNE, deterministic=True)
        copies.append(np.concatenate(list(ds.as_numpy_iterator())))
    return np.stack(copies, 1)


def copies_dataset(copies: np.ndarray, labels: np.ndarray, batch_size: int, seed: int):
    """Batches of ``(inputs, targets)`` from :func:`varied_copies`: every epoch reshuffled,
    and each digit drawn as one of its copies (the clean one among them), reproducibly."""
    t = tf()
    ds = t.data.Dataset.from_tensor_slices((copies, labels.astype("int32")))
    ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    seeds = t.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

    def drawn(xy, seed):
        x, label = xy
        which = t.random.stateless_uniform(
            [t.shape(x)[0]], seed, maxval=copies.shape[1], dtype=t.int32
        )
        return t.cast(t.gather(x, which, batch_dims=1), t.float32), _targets(label)

    return t.data.Dataset.zip(ds, seeds).map(drawn).prefetch(t.data.AUTOTUNE)


def validation_parts(images: np.ndarray, labels: np.ndarray, seed: int | None):
    """The validation digits as they are (``clean``) and, with a ``seed``, once more
    varied by the training augmentation with a fixed draw (``varied``): ``{name:
    (dataset, labels)}``. Model selection, temperature and review threshold then answer
    for the inputs real users have, not only for clean MNIST."""
    parts = {"clean": (image_dataset(images, labels, 512), labels)}
    if seed is not None:
        t = tf()
        varied = np.concatenate(
            [
                augment_batch(images[i : i + 512], t.constant([seed, i], t.int64)).numpy()
                for i in range(0, len(images), 512)
            ]
        )
        parts["varied"] = (image_dataset(varied, labels, 512), labels)
    return parts


def joined(parts: dict[str, Any]):
    """The validation parts as one dataset and its labels, in order."""
    datasets = [dataset for dataset, _ in parts.values()]
    both = datasets[0]
    for dataset in datasets[1:]:
        both = both.concatenate(dataset)
    return both, np.concatenate([labels for _, labels in parts.values()])


def _logits(model, dataset) -> np.ndarray:
    return logits_model(model).predict(dataset.map(lambda x, y: x), verbose=0)


def calibrate(model, val_ds, val_labels, test_ds, test_labels) -> tuple[Any, dict[str, Any]]:
    """Temperature scaling fitted on the validation split (clean and varied digits), and
    the review threshold chosen there; the figures (ECE before/after, coverage and
    accuracy) measured on the test set."""
    val_logits, test_logits = _logits(model, val_ds), _logits(model, test_ds)
    temperature = fit_temperature(val_logits, val_labels)
    val_probs = softmax(val_logits, temperature)
    val_correct = val_probs.argmax(1) == val_labels
    threshold = choose_review_threshold(val_probs.max(1), val_correct, REVIEW_TARGET)
    before, after = softmax(test_logits), softmax(test_logits, temperature)
    correct = after.argmax(1) == test_labels
    coverage, kept_accuracy = coverage_and_accuracy(after.max(1), correct, threshold)
    figures = {
        "test_accuracy": round(float(correct.mean()), 6),
        "test_loss": round(nll(test_logits, test_labels, temperature), 6),
        "temperature": round(temperature, 6),
        "test_ece_before_calibration": round(expected_calibration_error(before.max(1), correct), 6),
        "test_ece": round(expected_calibration_error(after.max(1), correct), 6),
        "review_threshold": round(threshold, 6),
        "review_target_accuracy": REVIEW_TARGET,
        "test_review_coverage": round(coverage, 6),
        "test_review_accuracy": round(kept_accuracy, 6),
        "test_review_tradeoff": tradeoff(after.max(1), correct),
    }
    return with_temperature(model, temperature), figures


def probe_figures(model, mnist: Mnist, n: int, threshold: float) -> dict[str, Any]:
    """Accuracy on the scan-like and hard probe sets (made from MNIST *test* digits) and
    the share of generated non-digits flagged for review; see :mod:`batchdigits.training.probes`."""
    if n <= 0:
        return {}
    x, y = mnist.x_test[-n:], mnist.y_test[-n:]
    figures: dict[str, Any] = {"probe_images": int(len(x))}
    inference = Inference.of(model)
    for name, images in (("scan_like", scan_like_set(x, 1)), ("hard", hard_set(x, 2))):
        probs, found = inference.predict_images(images)
        figures[f"{name}_accuracy"] = round(float(np.mean((probs.argmax(1) == y) & found)), 6)
    probs, found = inference.predict_images(non_digit_set(max(1, n // 2), 3))
    flagged = ~found | (probs.max(1) < threshold)
    figures["non_digits_flagged"] = round(float(flagged.mean()), 6)
    return figures


def train_model(
    mnist: Mnist, config: TrainConfig, reporter: Reporter | None = None
) -> tuple[Any, dict[str, Any]]:
    """Train on ``mnist``; return the model (best validation epoch) and its card."""
    reporter = reporter or NullReporter()
    keras().utils.set_random_seed(config.seed)
    tf().config.experimental.enable_op_determinism()
    split = _split(mnist, config)
    train_ds = _training_dataset(split, config, reporter)
    seed = config.seed if config.augment else None
    val_parts = validation_parts(split["x_val"], split["y_val"], seed)
    test_ds = image_dataset(mnist.x_test, mnist.y_test, 512)
    with compute_dtype(config.mixed_precision):
        model = build_model(**config.architecture)
    t0 = time.perf_counter()
    best, curve = _fit(model, train_ds, val_parts, len(split["x_fit"]), config, reporter)
    seconds = time.perf_counter() - t0
    model = as_float32(model)  # calibrated, measured and saved as it predicts
    val_ds, y_val = joined(val_parts)
    model, calibration = calibrate(model, val_ds, y_val, test_ds, mnist.y_test)
    model = fold_batch_norm(model)  # the inference form, as saved
    # Quick trials (--limit) get proportionally small probe sets.
    n_probes = min(config.probe_images, split["images"] // 10)
    card = {
        "format": "batchdigits-model-card/2",
        **calibration,
        **probe_figures(model, mnist, n_probes, calibration["review_threshold"]),
        "validation_accuracy": round(float(best), 6),
        "test_images": int(len(mnist.x_test)),
        "train_images": split["train_images"],
        "train_non_digits": split["non_digits"],
        "validation_images": int(len(split["x_val"])),
        **{k: v for k, v in asdict(config).items() if k not in _NOT_IN_CARD},
        "learning_curve": curve,
    }
    return model, {**card, **_provenance(model, mnist, seconds)}


def _training_dataset(split: dict[str, Any], config: TrainConfig, reporter: Reporter):
    """Digits varied afresh every epoch, or (``config.variants``) drawn from copies
    varied once."""
    if config.variants and config.augment:
        reporter.log(f"varying the training digits {config.variants} times, once ...")
        copies = varied_copies(split["x_fit"], split["y_fit"], config)
        return copies_dataset(copies, split["y_fit"], config.batch_size, config.seed)
    return image_dataset(
        split["x_fit"],
        split["y_fit"],
        config.batch_size,
        config.seed,
        config.augment,
        config.augment_fraction,
        config.clean_share,
    )


def _split(mnist: Mnist, config: TrainConfig) -> dict[str, Any]:
    """The training digits (plus generated non-digits) and the held-out validation part."""
    x, y = mnist.x_train, mnist.y_train
    if config.limit is not None:
        x, y = x[: config.limit], y[: config.limit]
    train_idx, val_idx = split_train_validation(len(x), config.seed)
    x_fit, y_fit = x[train_idx], y[train_idx]
    n_neg = round(config.non_digit_share * len(train_idx))
    if n_neg:  # outlier exposure: marks that are not one digit, with a uniform target
        x_fit = np.concatenate([x_fit, non_digits(x_fit, y_fit, n_neg, config.seed)])
        y_fit = np.concatenate([y_fit, np.full(n_neg, NOT_A_DIGIT_CLASS, y_fit.dtype)])
    return {
        "x_fit": x_fit,
        "y_fit": y_fit,
        "x_val": x[val_idx],
        "y_val": y[val_idx],
        "images": len(x),
        "train_images": int(len(train_idx)),
        "non_digits": int(n_neg),
    }


def _fit(model, train_ds, val_parts, n_fit: int, config: TrainConfig, reporter: Reporter):
    """Adam with a cosine schedule, the learning curves measured on each validation part;
    returns the best validation accuracy and the curve."""
    steps = -(-n_fit // config.batch_size)
    schedule = keras().optimizers.schedules.CosineDecay(
        config.learning_rate, decay_steps=max(1, steps * config.epochs), alpha=0.01
    )
    plan = FitPlan(
        config.epochs,
        steps,
        schedule,
        ema=config.ema,
        checkpoints=config.checkpoints,
        curves=val_parts,
    )
    return fit(model, train_ds, None, plan, reporter)


def _provenance(model, mnist: Mnist, seconds: float) -> dict[str, Any]:
    return {
        "parameters": int(model.count_params()),
        "batch_norm_folded": True,
        # Measured on the training machine, right after training (noisy on shared ones).
        "compute_images_per_second": round(compute_images_per_second(model)),
        "train_seconds": round(seconds, 1),
        "data_source": mnist.source,
        "data_checksums": mnist.checksums,
        "tensorflow_version": tf().__version__,
        "keras_version": keras().__version__,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _first_network(path: Path | None):
    """``(network, card)`` of the model a new second opinion joins, or ``None``."""
    if path is None:
        return None
    model = load_model(path)
    if networks(model)[1] is not None:
        raise ModelLoadError(f"model {path} already has a second opinion")
    return model, read_card(path)


def paired_with(first, second, second_card: dict[str, Any], mnist: Mnist):
    """The model file's pair (:func:`~batchdigits.model.network.paired`): ``first``'s
    network reads every row; ``second`` is asked below the first's review threshold. The
    card is the first's, its test figures measured again for the pair (the first's own
    kept under ``first_network``), with the second's card under ``second_opinion``."""
    network, card = first
    pair = paired(network, second)
    threshold = float(card["review_threshold"])
    inputs = np.concatenate([x for x, _ in image_dataset(mnist.x_test, mnist.y_test, 512)])
    alone = Inference.of(network).infer(inputs).numpy()
    opinion = Inference.of(pair, consult_below=threshold).second
    probs = opinion.consulted(inputs, alone, np.ones(len(inputs), bool))
    correct = probs.argmax(1) == mnist.y_test
    coverage, kept_accuracy = coverage_and_accuracy(probs.max(1), correct, threshold)
    measured = {
        "test_accuracy": round(float(correct.mean()), 6),
        "test_ece": round(expected_calibration_error(probs.max(1), correct), 6),
        "test_review_coverage": round(coverage, 6),
        "test_review_accuracy": round(kept_accuracy, 6),
        "test_review_tradeoff": tradeoff(probs.max(1), correct),
    }
    consulted = float(np.mean(alone.max(1) < threshold))
    return pair, {
        **card,
        **measured,
        "first_network": {key: card[key] for key in measured if key in card},
        "second_opinion": {
            "consulted_below": threshold,
            "test_consulted_share": round(consulted, 6),
            "card": second_card,
        },
    }


def checkpoint_folder(output: str | os.PathLike) -> Path:
    """Where ``train --resume`` keeps the state of a run saving ``output``."""
    output = Path(output)
    return output.with_name(output.name + ".checkpoints")


def train(
    output: str | os.PathLike,
    data: str | os.PathLike | None = None,
    config: TrainConfig | None = None,
    verify: bool = True,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Load MNIST, train, save ``output`` (.keras) and its card; return the card."""
    config = config or TrainConfig()
    check_model_output(output)
    first = _first_network(config.second_opinion_of)  # a bad one fails before training
    mnist = load_mnist(data, verify=verify)
    model, card = train_model(mnist, config, reporter)
    if first is not None:
        model, card = paired_with(first, model, card, mnist)
    card["model_file"] = Path(output).name
    save_model(model, output, card)
    if config.checkpoints is not None:  # the run is complete: nothing left to resume
        shutil.rmtree(config.checkpoints, ignore_errors=True)
    return card
