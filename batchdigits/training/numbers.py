"""Training the sequence reader of numbers on synthetic numbers composed from MNIST
*training* digits: each digit scaled and slanted, neighbours apart, touching or
overlapping, on a wandering baseline; sometimes a separator (. , -) that is not in the
label, rulings, a scanner margin, a cell much larger than the number; both polarities,
paper noise. The fields go through the product's own cleaning and scaling
(:func:`~batchdigits.numbers.field.field_ink`, :func:`~batchdigits.numbers.sequence.
sequence_inputs`), so training sees what prediction sees."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image

from batchdigits.imaging.preprocess import pad_batch
from batchdigits.numbers.sequence import HEIGHT, WIDTH, build_sequence_model, greedy
from batchdigits.runtime.lazy import keras, tf

MAX_LABEL = 10  # digits in a synthetic number, at most


def _digit(image: np.ndarray, height: int, shear: float) -> np.ndarray:
    """A digit's ink (0..1) cut to its box, ``height`` rows, sheared."""
    ys, xs = np.nonzero(image > 30)
    box = image[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    width = max(2, round(box.shape[1] * height / box.shape[0]))
    extra = int(abs(shear) * height) + 1
    canvas = Image.new("L", (width + 2 * extra, height))
    canvas.paste(Image.fromarray(box).resize((width, height), Image.BILINEAR), (extra, 0))
    leaned = canvas.transform(
        canvas.size, Image.AFFINE, (1, shear, -shear * height / 2, 0, 1, 0), Image.BILINEAR
    )
    ink = np.asarray(leaned, np.float32) / 255.0
    used = np.flatnonzero(ink.max(0) > 0.1)
    return ink[:, used.min() : used.max() + 1] if len(used) else ink


def _number(digits, labels, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """One number's ink and its label."""
    length = int(rng.integers(1, MAX_LABEL + 1))
    label = "".join(str(d) for d in rng.integers(0, 10, length))
    height = int(rng.integers(20, 48))
    shear = float(rng.normal(0, 0.15))
    spacing = rng.choice(["apart", "touching", "overlapping"], p=[0.45, 0.3, 0.25])
    separator = rng.random() < 0.2 and length > 1
    at = int(rng.integers(1, length)) if separator else -1
    pieces, x = [], 0
    for i, ch in enumerate(label):
        pool = np.flatnonzero(labels == int(ch))
        size = max(8, round(height * rng.uniform(0.85, 1.15)))
        ink = _digit(digits[pool[rng.integers(len(pool))]], size, shear)
        gap = {"apart": (0.1, 0.5), "touching": (-0.08, 0.02), "overlapping": (-0.3, -0.08)}[
            spacing
        ]
        x += round(rng.uniform(*gap) * height) if i else 0
        top = height - size + round(rng.normal(0, 0.05) * height)
        pieces.append((ink, top, x))
        x += ink.shape[1]
        if i == at:  # a separator after this digit
            pen = max(2, round(height * 0.1))
            mark = np.ones((pen, pen if rng.random() < 0.6 else 3 * pen), np.float32)
            x += round(0.15 * height)
            pieces.append((mark, height - pen if mark.shape[1] == pen else height // 2, x))
            x += mark.shape[1] + round(0.15 * height)
    x0 = min(p[2] for p in pieces)
    out = np.zeros((2 * height + 8, x - x0 + 8), np.float32)
    for ink, top, left in pieces:
        r, c = top + height // 2 + 4, left - x0 + 4
        region = out[max(r, 0) : r + ink.shape[0], c : c + ink.shape[1]]
        np.maximum(region, ink[: region.shape[0], : region.shape[1]], out=region)
    return out, label


def _field(ink: np.ndarray, rng: np.random.Generator, digits=None) -> np.ndarray:
    """The number on paper: room around it, sometimes a form's cell (rulings, a ragged
    scanner margin, a word of print or a neighbour's stroke cut by the edge, an
    underline), the polarity, paper level, shading and noise of a scan; ``uint8 (H, W)``."""
    rows = np.flatnonzero(ink.max(1) > 0.1)
    ink = ink[rows.min() : rows.max() + 1]
    h, w = ink.shape
    loose = rng.random() < 0.45
    pad_y = int(h * (rng.uniform(0.4, 1.3) if loose else rng.uniform(0.05, 0.4)))
    pad_x = int(h * rng.uniform(0.05, 0.6))
    field = np.zeros((h + 2 * pad_y, w + 2 * pad_x), np.float32)
    field[pad_y : pad_y + h, pad_x : pad_x + w] = ink
    if rng.random() < 0.1:  # an underline the digits sit on
        r = min(pad_y + h + int(rng.integers(-2, 3)), field.shape[0] - 1)
        field[r : r + int(rng.integers(1, 3)), :] = rng.uniform(0.5, 1.0)
    if loose:
        _clutter(field, (pad_y, pad_y + h, pad_x, pad_x + w), rng, digits)
    return _on_paper(field, rng)


def _clutter(field: np.ndarray, box, rng: np.random.Generator, digits) -> None:
    """A form cell's clutter, drawn into ``field`` (ink 0..1) in place, none of it over
    the number's ink ``box`` (top, bottom, left, right)."""
    H, W = field.shape
    top, bottom, left, right = box
    if rng.random() < 0.75:  # the cell's rulings, a pixel or two of drift
        for _ in range(int(rng.integers(1, 4))):
            _ruling(field, rng)
    if rng.random() < 0.3:
        _print(field, rng, top, H - bottom)
    room = min(left, W - right) - 2
    if digits is not None and room >= 2 and rng.random() < 0.2:  # a neighbour's stroke
        other = digits[int(rng.integers(len(digits)))].astype(np.float32) / 255.0
        size = int(min(H, max(8, rng.uniform(0.4, 0.9) * H)))
        part = np.asarray(Image.fromarray(other).resize((size, size), Image.BILINEAR))
        keep = min(room, max(2, int(size * rng.uniform(0.15, 0.35))))
        y = int(rng.integers(0, max(1, H - size + 1)))
        cut, x = (part[:, -keep:], 0) if rng.random() < 0.5 else (part[:, :keep], W - keep)
        region = field[y : y + size, x : x + keep]
        np.maximum(region, cut[: region.shape[0], : region.shape[1]], out=region)
    if rng.random() < 0.45:
        _margin(field, rng, (top, H - bottom, left, W - right))


def _ruling(field: np.ndarray, rng: np.random.Generator) -> None:
    H, W = field.shape
    thick = int(rng.integers(1, 3))
    level = rng.uniform(0.5, 1.0)
    vertical = rng.random() < 0.6
    n, along = (W, H) if vertical else (H, W)
    at = rng.uniform(0, 5) if rng.random() < 0.5 else n - 1 - rng.uniform(0, 5)
    line = np.round(at + np.linspace(0, rng.uniform(-2, 2), along)).astype(int)
    for t in range(thick):
        pos = np.clip(line + t, 0, n - 1)
        if vertical:
            field[np.arange(H), pos] = np.maximum(field[np.arange(H), pos], level)
        else:
            field[pos, np.arange(W)] = np.maximum(field[pos, np.arange(W)], level)


def _margin(field: np.ndarray, rng: np.random.Generator, free) -> None:
    """A dark scanner margin along one side, its inner edge skewed and ragged, within the
    ``free`` room on each side (top, bottom, left, right)."""
    H, W = field.shape
    side = int(rng.integers(4))
    n, along = (H, W) if side < 2 else (W, H)
    room = free[side] - 2
    if room < 3:
        return
    depth = min(rng.uniform(0.08, 0.4) * n, room * rng.uniform(0.4, 0.9))
    skew = np.linspace(-1, 1, along) * rng.uniform(-0.05, 0.05) * n
    wander = np.cumsum(rng.normal(0, 0.3, along))
    edge = np.minimum(depth + skew + wander - wander.mean(), room)
    band = np.arange(n)[None, :] < edge[:, None]  # (along, n)
    if side in (1, 3):
        band = band[:, ::-1]
    field[band.T if side < 2 else band] = rng.uniform(0.8, 1.0)


def _print(field: np.ndarray, rng: np.random.Generator, above: int, below: int) -> None:
    """A word of print (random letters) at the top or bottom edge, often cut by it, in
    the room ``above`` or ``below`` the number."""
    from PIL import ImageDraw, ImageFont

    H, W = field.shape
    size = int(max(8, rng.uniform(0.12, 0.3) * H))
    if max(above, below) < size * 0.6:
        return
    at_top = above >= below
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz:./#"
    word = "".join(rng.choice(list(letters), int(rng.integers(2, 7))))
    canvas = Image.new("L", (W, H))
    draw = ImageDraw.Draw(canvas)
    shown = min(size * 1.1, max(above, below) - 2)  # rows of the word inside the field
    y = shown - size * 1.2 if at_top else H - shown
    x = rng.uniform(0, max(1, W * 0.6))
    draw.text((float(x), float(y)), word, fill=255, font=ImageFont.load_default(size=size))
    np.maximum(field, np.asarray(canvas, np.float32) / 255.0, out=field)


def _on_paper(field: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ink 0..1 -> a scan ``uint8``: paper (sometimes grey, sometimes shaded) and pen,
    either polarity, noise."""
    H, W = field.shape
    paper = rng.uniform(170, 255) if rng.random() < 0.8 else rng.uniform(110, 190)
    pen = rng.uniform(0, min(90, paper - 60))
    if rng.random() < 0.25:  # uneven light across the page
        ramp = np.linspace(-1, 1, W)[None, :] * rng.uniform(-1, 1) + np.linspace(-1, 1, H)[
            :, None
        ] * rng.uniform(-1, 1)
        paper = paper + ramp * rng.uniform(5, 25)
    image = paper + (pen - paper) * np.clip(field, 0, 1)
    if rng.random() < 0.5:
        image = 255.0 - image
    image += rng.normal(0, rng.uniform(0, 8), image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def synthetic_numbers(digits, labels, count: int, seed: int):
    """``count`` synthetic fields ``uint8`` and their labels."""
    rng = np.random.default_rng(seed)
    images, texts = [], []
    for _ in range(count):
        ink, label = _number(digits, labels, rng)
        images.append(_field(ink, rng, digits))
        texts.append(label)
    return images, texts


def model_inputs_of(images, batch: int = 128) -> np.ndarray:
    """Fields (``uint8 (H, W)``) -> the sequence model's inputs ``(N, HEIGHT, WIDTH, 1)``,
    through the product's cleaning; each batch is prepared as it is cleaned, so the working
    images of a large training set are never all held at once."""
    from batchdigits.imaging.one_file import prepare_pixels

    return fields_of(images, batch, prepare_pixels)[0]


def fields_of(grays, batch: int = 128, prepare=None) -> tuple[np.ndarray, np.ndarray]:
    """Gray working images (or images that ``prepare`` turns into them, a batch at a
    time) -> ``(the sequence model's inputs (N, HEIGHT, WIDTH, 1)`` float16, ``has_ink
    (N,))``, through the product's cleaning and scaling."""
    from batchdigits.numbers.reader import sequence_inputs_fn

    clean = sequence_inputs_fn()
    inputs, has_ink = [], []
    for start in range(0, len(grays), batch):
        part = grays[start : start + batch]
        x, ink = clean(*pad_batch([prepare(g) for g in part] if prepare else part))
        inputs.append(x.numpy().astype(np.float16))
        has_ink.append(ink.numpy())
    if not inputs:
        return np.zeros((0, HEIGHT, WIDTH, 1), np.float16), np.zeros(0, bool)
    return np.concatenate(inputs), np.concatenate(has_ink)


def read_probabilities(model, x: np.ndarray) -> np.ndarray:
    """The model's step probabilities ``(N, STEPS, 11)`` for inputs ``x``."""
    return tf().nn.softmax(model.predict(x, batch_size=256, verbose=0)).numpy()


#: Rows not flagged must be at least this share exact where the threshold is chosen.
UNFLAGGED_EXACT = 0.995
_POWERS = np.round(np.arange(0.02, 1.001, 0.02), 2)


def calibrate_reader(probabilities: np.ndarray, texts, target: float = UNFLAGGED_EXACT) -> dict:
    """The confidence power (the lowest ECE of the whole strings' confidences) and the
    review threshold (the lowest at which the rows kept are ``target`` exact) on numbers
    the model did not learn from, with the figures there."""
    from batchdigits.model.calibrate import (
        choose_review_threshold,
        coverage_and_accuracy,
        expected_calibration_error,
    )

    read = greedy(probabilities)
    exact = np.array([r[0] == t for r, t in zip(read, texts, strict=True)], bool)
    raw = np.array([r[1] for r in read], np.float64)
    eces = [expected_calibration_error(raw**p, exact) for p in _POWERS]
    power = float(_POWERS[int(np.argmin(eces))])
    confidence = raw**power
    threshold = choose_review_threshold(confidence, exact, target)
    coverage, kept_exact = coverage_and_accuracy(confidence, exact, threshold)
    return {
        "confidence_power": power,
        "review_threshold": round(threshold, 6),
        "calibration_images": int(len(texts)),
        "calibration_exact": round(float(exact.mean()), 6) if len(texts) else 0.0,
        "calibration_ece_raw": round(expected_calibration_error(raw, exact), 6),
        "calibration_ece": round(float(min(eces)), 6),
        "calibration_unflagged": round(coverage, 6),
        "calibration_unflagged_exact": round(kept_exact, 6),
    }


def targets(texts) -> np.ndarray:
    """Labels -> ``(N, MAX_LABEL)`` int32, digit d as d + 1, 0-padded (CTC's blank)."""
    out = np.zeros((len(texts), MAX_LABEL), np.int32)
    for i, t in enumerate(texts):
        out[i, : len(t)] = [int(c) + 1 for c in t]
    return out


def train_sequence(
    output: Path,
    mnist,
    count: int,
    epochs: int,
    seed: int = 1,
    log=print,
    initial: Path | None = None,
    learning_rate: float = 2e-3,
):
    """Train the sequence reader on ``count`` synthetic numbers (another tenth held out)
    and save it to ``output`` (after every epoch, so a stopped run keeps its best so far);
    ``initial``: start from that model's weights. Returns the held-out exact-match
    accuracy of each epoch."""
    k = keras()
    k.utils.set_random_seed(seed)
    t0 = time.time()
    images, texts = synthetic_numbers(mnist.x_train, mnist.y_train, count + count // 10, seed)
    x = model_inputs_of(images)
    y = targets(texts)
    log(f"{len(x)} fields made and cleaned in {time.time() - t0:.0f} s")
    x_val, val_texts = x[count:], texts[count:]
    x, y = x[:count], y[:count]
    model = k.models.load_model(initial, compile=False) if initial else build_sequence_model()
    steps = epochs * (count // 64)
    schedule = k.optimizers.schedules.CosineDecay(learning_rate, steps, alpha=0.02)
    model.compile(optimizer=k.optimizers.Adam(schedule), loss=k.losses.CTC())
    curve = []
    for epoch in range(epochs):
        t = time.time()
        model.fit(x, y, batch_size=64, epochs=1, verbose=0, shuffle=True)
        read = [r[0] for r in greedy(read_probabilities(model, x_val))]
        curve.append(float(np.mean([a == b for a, b in zip(read, val_texts, strict=True)])))
        log(f"epoch {epoch + 1}: held-out exact {curve[-1]:.4f} ({time.time() - t:.0f} s)")
        model.save(output)
    return curve
