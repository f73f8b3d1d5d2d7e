"""The training data as TensorFlow datasets: MNIST-style digits through ``predict``'s
normalisation (varied afresh every epoch, or varied once and drawn from their copies),
and the validation parts."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from batchdigits.imaging.preprocess import normalize_batch
from batchdigits.runtime.lazy import tf
from batchdigits.training.augment import augment_batch
from batchdigits.training.negatives import NOT_A_DIGIT_CLASS


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


def varied_copies(
    images: np.ndarray,
    labels: np.ndarray,
    variants: int,
    seed: int,
    fraction: float = 1.0,
    clean_share: float = 0.0,
) -> np.ndarray:
    """The training digits normalised as they are, and ``variants`` more times varied by
    the augmentation (each copy one fixed draw of ``seed``): the model inputs, ``uint8
    (N, variants + 1, 28, 28, 1)``. Made once, in both cores' time, so the epochs after
    cost the network alone (see :func:`copies_dataset`)."""
    t = tf()
    finish = _inputs_and_targets()
    copies = []
    for k in range(variants + 1):
        ds = t.data.Dataset.from_tensor_slices((images, labels.astype("int32"))).batch(512)

        def one(i, xy, k=k):
            gray = xy[0]
            if k:
                draw = t.stack([t.constant(seed * 1000 + k, t.int64), i])
                gray = augment_batch(gray, draw, fraction, clean_share)
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
