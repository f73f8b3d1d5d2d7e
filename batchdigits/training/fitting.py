"""The training loop: Adam on cross-entropy, progress, the best epoch kept, learning
curves, an average of the weights (EMA), bfloat16 compute, and checkpoints that let an
interrupted run resume."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from batchdigits.progress import Reporter
from batchdigits.runtime.lazy import keras

#: The average kept of the weights: each step moves it this little towards them (a
#: horizon of about 1,000 steps, two to three epochs of MNIST).
EMA_MOMENTUM = 0.999


@dataclass
class FitPlan:
    """How :func:`fit` trains: ``epochs`` of ``steps`` batches at ``learning_rate`` (a
    number or a Keras schedule); ``ema``: evaluate and keep the average of the weights;
    ``checkpoints``: a folder where each epoch's state is kept, so that a run started
    again with the same folder resumes after the last finished epoch (it is removed when
    the run ends); ``curves``: datasets ``{name: (dataset, labels)}`` whose accuracy is
    measured after every epoch (the learning curves; their mean is the selection
    score, else Keras's own ``val_accuracy``)."""

    epochs: int
    steps: int
    learning_rate: Any
    ema: bool = False
    checkpoints: Path | None = None
    curves: dict[str, Any] | None = None


@contextlib.contextmanager
def compute_dtype(mixed: bool):
    """Layers built inside compute in bfloat16 (variables stay float32) when ``mixed``;
    the policy is restored afterwards, so models built later (the saved, inference form)
    are float32 throughout."""
    k = keras()
    before = k.config.dtype_policy()
    if mixed:
        k.config.set_dtype_policy("mixed_bfloat16")
    try:
        yield
    finally:
        k.config.set_dtype_policy(before)


def _progress_callback(reporter: Reporter, epochs: int, steps: int):
    k = keras()

    class _Report(k.callbacks.Callback):
        started = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()
            reporter.start(f"epoch {epoch + 1}/{epochs}", steps)

        def on_train_batch_end(self, batch, logs=None):
            reporter.advance(1)

        def on_epoch_end(self, epoch, logs=None):
            reporter.stop()
            logs = logs or {}
            extra = "".join(
                f", {key} {value:.4f}" for key, value in logs.items() if key.startswith("val_")
            )
            reporter.log(
                f"epoch {epoch + 1}/{epochs}: loss {logs.get('loss', float('nan')):.4f}, "
                f"accuracy {logs.get('accuracy', float('nan')):.4f}{extra}, "
                f"{time.perf_counter() - self.started:.0f} s"
            )

    return _Report()


def _curves_callback(curves: dict[str, Any], history: list[dict[str, Any]]):
    """After each epoch: accuracy on each named dataset (with the averaged weights when
    they are swapped in), logged as ``val_NAME``, their mean as ``val_accuracy``; every
    epoch's figures appended to ``history``."""
    k = keras()

    class _Curves(k.callbacks.Callback):
        started = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs if logs is not None else {}
            seconds = time.perf_counter() - self.started
            scores = {}
            for name, (dataset, labels) in curves.items():
                probs = self.model.predict(dataset.map(lambda x, y: x), verbose=0)
                scores[name] = float(np.mean(probs.argmax(1) == labels))
                logs[f"val_{name}"] = scores[name]
            logs["val_accuracy"] = float(np.mean(list(scores.values())))
            history.append(
                {
                    "epoch": epoch + 1,
                    "loss": round(float(logs.get("loss", np.nan)), 5),
                    "accuracy": round(float(logs.get("accuracy", np.nan)), 5),
                    **{f"val_{key}": round(value, 5) for key, value in scores.items()},
                    "seconds": round(seconds, 1),
                }
            )

    return _Curves()


def _best_weights_callback(folder: Path | None, history: list[dict[str, Any]]):
    """Keep the weights of the epoch with the best validation accuracy (model selection).
    With a checkpoint ``folder``, the best weights so far and the learning curve are kept
    there too, so a resumed run selects among all its epochs."""
    k = keras()

    class _Best(k.callbacks.Callback):
        best = -1.0
        weights = None

        def on_train_begin(self, logs=None):
            if folder is not None and (folder / "best.json").is_file():
                state = json.loads((folder / "best.json").read_text())
                self.best = state["best"]
                history[:] = state["history"]
                with np.load(folder / "best.npz") as saved:
                    self.weights = [saved[f"w{i}"] for i in range(len(saved.files))]

        def on_epoch_end(self, epoch, logs=None):
            acc = (logs or {}).get("val_accuracy", -1.0)
            if acc > self.best:
                self.best, self.weights = acc, self.model.get_weights()
                if folder is not None:
                    arrays = {f"w{i}": w for i, w in enumerate(self.weights)}
                    np.savez(folder / "best.npz", **arrays)
            if folder is not None:
                state = {"best": self.best, "history": history}
                (folder / "best.json").write_text(json.dumps(state))

        def on_train_end(self, logs=None):
            if self.weights is not None:
                self.model.set_weights(self.weights)

    return _Best()


def fit(model, train_ds, val_ds, plan: FitPlan, reporter: Reporter):
    """Adam on cross-entropy as ``plan`` says, progress reported; the weights of the
    epoch with the best validation accuracy are kept. Returns ``(best accuracy, learning
    curve)``: one dict of figures per epoch."""
    k = keras()
    model.compile(
        optimizer=k.optimizers.Adam(
            learning_rate=plan.learning_rate, use_ema=plan.ema, ema_momentum=EMA_MOMENTUM
        ),
        loss=k.losses.CategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    history: list[dict[str, Any]] = []
    callbacks = []
    if plan.checkpoints is not None:  # first: it saves the raw weights, before any swap
        plan.checkpoints.mkdir(parents=True, exist_ok=True)
        callbacks.append(k.callbacks.BackupAndRestore(str(plan.checkpoints / "state")))
    if plan.ema:
        callbacks.append(k.callbacks.SwapEMAWeights(swap_on_epoch=True))
    if plan.curves:
        callbacks.append(_curves_callback(plan.curves, history))
    best = _best_weights_callback(plan.checkpoints, history)
    callbacks += [best, _progress_callback(reporter, plan.epochs, plan.steps)]
    model.fit(
        train_ds,
        validation_data=None if plan.curves else val_ds,
        epochs=plan.epochs,
        shuffle=False,  # the dataset shuffles itself, seeded
        verbose=0,
        callbacks=callbacks,
    )
    return best.best, history
