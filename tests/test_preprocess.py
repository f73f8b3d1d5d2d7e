"""The shared MNIST-style normalisation: gray, polarity, background, crop, 20 px box,
centre of mass, no-ink detection; MNIST itself changes little."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from batchdigits.preprocess import BOX, CENTRE, normalize, normalize_found, to_gray


def centre_of_mass(x: np.ndarray) -> tuple[float, float]:
    x = x.reshape(28, 28).astype(np.float64)
    ys, xs = np.mgrid[0:28, 0:28]
    return float((x * ys).sum() / x.sum()), float((x * xs).sum() / x.sum())


def ink_box(x: np.ndarray) -> tuple[int, int]:
    rows, cols = np.nonzero(x.reshape(28, 28) > 0)
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


def paper_digit(digit: np.ndarray, canvas=(120, 140), at=(10, 40), scale=3, paper=225, ink=40):
    """An MNIST digit as dark ink on light paper, on a larger canvas, off-centre."""
    big = np.asarray(Image.fromarray(digit).resize((28 * scale,) * 2, Image.BICUBIC)) / 255.0
    page = np.full(canvas, float(paper))
    y, x = at
    page[y : y + big.shape[0], x : x + big.shape[1]] = paper * (1 - big) + ink * big
    return page.clip(0, 255).astype(np.uint8)


def test_modes_to_gray_match_pillow():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    ours = to_gray(rgb).numpy()
    pillow = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float32)
    assert np.abs(ours - pillow).max() <= 1.0  # Pillow rounds to integers
    gray = rgb[..., 0]
    np.testing.assert_array_equal(to_gray(gray[..., None]).numpy(), gray.astype(np.float32))


def test_alpha_is_composited_onto_white():
    rgba = np.zeros((4, 4, 4), np.uint8)  # black, fully transparent ...
    rgba[1, 1] = (0, 0, 0, 255)  # ... but one opaque black pixel
    gray = to_gray(rgba).numpy()
    assert gray[1, 1] == 0 and gray[0, 0] == 255
    la = np.stack([np.full((2, 2), 10, np.uint8), np.array([[0, 255], [128, 0]], np.uint8)], -1)
    g = to_gray(la).numpy()
    np.testing.assert_allclose(g, [[255, 10], [10 * 128 / 255 + 255 * 127 / 255, 255]], atol=1e-3)


def test_mnist_digits_centred_boxed_and_little_changed(mnist):
    digits = mnist.x_test[:500]
    out = np.stack([normalize(d).numpy()[..., 0] for d in digits])
    assert out.shape == (500, 28, 28) and out.min() >= 0 and out.max() <= 255
    for x in out:
        cy, cx = centre_of_mass(x)
        assert abs(cy - CENTRE) <= 0.5 and abs(cx - CENTRE) <= 0.5
        assert max(ink_box(x)) == BOX
    change = np.abs(out - digits.astype(np.float32)).mean(axis=(1, 2))
    assert np.median(change) < 2.0  # gray levels of 255, per pixel
    assert np.mean(change) < 3.0


def test_dark_ink_on_light_paper_matches_the_mnist_digit(mnist):
    digit = mnist.x_test[3]
    reference = normalize(digit).numpy()
    for canvas, at, scale in [
        ((120, 140), (10, 40), 3),
        ((300, 400), (200, 20), 3),
        ((60, 60), (0, 0), 2),
    ]:
        page = paper_digit(digit, canvas, at, scale)
        x = normalize(page).numpy()
        cy, cx = centre_of_mass(x)
        assert abs(cy - CENTRE) <= 0.5 and abs(cx - CENTRE) <= 0.5
        assert max(ink_box(x)) == BOX
        # Same digit, same place: close to the normalised MNIST original.
        assert np.abs(x - reference).mean() < 20, (canvas, at)


def test_uneven_lighting_noise_and_specks(mnist):
    digit = mnist.x_test[5]
    page = paper_digit(digit, (160, 160), (40, 40), 3).astype(np.float64)
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:160, 0:160]
    page = page - 60 * (xx / 160) + rng.normal(0, 5, page.shape)  # shadow to the right
    page[150:152, 5:7] = 20  # a dust speck far from the digit
    page[5:7, 150:152] = 20
    x = normalize(page.clip(0, 255).astype(np.uint8)).numpy()
    reference = normalize(digit).numpy()
    assert max(ink_box(x)) == BOX
    assert np.abs(x - reference).mean() < 15


def test_faint_and_thin_strokes_survive():
    page = np.full((100, 100), 230, np.uint8)
    page[20:80, 50] = 200  # a faint, 1-pixel-wide vertical stroke: a "1"
    x, found = normalize_found(page)
    x = x.numpy()[..., 0]
    assert bool(found)
    h, w = ink_box(x)
    assert h == BOX and w <= 3
    assert x.max() > 200  # stretched to full ink


@pytest.mark.parametrize("size", [8, 16])
def test_tiny_digits_are_upscaled(mnist, size):
    small = np.asarray(Image.fromarray(mnist.x_test[0]).resize((size, size), Image.BILINEAR))
    x = normalize(small).numpy()
    assert max(ink_box(x)) == BOX
    cy, cx = centre_of_mass(x)
    assert abs(cy - CENTRE) <= 0.5 and abs(cx - CENTRE) <= 0.5


def test_huge_image(mnist):
    page = paper_digit(mnist.x_test[7], (4000, 4000), (1500, 2200), 40)
    x = normalize(page).numpy()
    assert max(ink_box(x)) == BOX
    assert np.abs(x - normalize(mnist.x_test[7]).numpy()).mean() < 15


def test_polarity_both_ways_and_rgb_and_alpha(mnist):
    digit = mnist.x_test[9]
    bright = normalize(digit).numpy()
    dark = normalize(255 - digit).numpy()
    assert np.abs(bright - dark).mean() < 3
    rgb = np.stack([255 - digit, 255 - digit // 2, np.full_like(digit, 255)], -1)  # blue ink
    assert np.abs(normalize(rgb).numpy() - bright).mean() < 12
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., 3] = digit  # black strokes on a transparent background
    assert np.abs(normalize(rgba).numpy() - bright).mean() < 3


@pytest.mark.parametrize(
    "image",
    [
        np.full((50, 50), 255, np.uint8),  # blank white page
        np.zeros((50, 50, 3), np.uint8),  # black
        np.full((40, 60, 3), (200, 30, 90), np.uint8),  # uniform colour
        np.full((8, 8), 128, np.uint8),
    ],
)
def test_no_ink_is_not_a_digit(image):
    x, found = normalize_found(image)
    assert not bool(found)
    assert float(np.asarray(x).max()) == 0.0


def test_blank_scanned_page_with_paper_noise_is_not_a_digit():
    rng = np.random.default_rng(0)
    page = Image.fromarray(rng.normal(225, 4, (200, 150)).clip(0, 255).astype(np.uint8))
    page = page.filter(ImageFilter.GaussianBlur(0.7))
    _, found = normalize_found(np.asarray(page))
    assert not bool(found)


def test_polarity_with_vignetting_and_a_thin_small_digit():
    """Darker corners (vignetting) make the border darker than the page's mean; a thin,
    small "1" barely moves the mean. The ink is still found to be the dark part."""
    yy, xx = np.mgrid[0:120, 0:140]
    r2 = ((yy - 60) / 60.0) ** 2 + ((xx - 70) / 70.0) ** 2
    page = 215 - 25 * r2  # bright centre, darker border
    page[50:75, 66:69] = 30  # a thin dark stroke
    x, found = normalize_found(page.clip(0, 255).astype(np.uint8))
    assert bool(found)
    h, w = ink_box(x.numpy())
    assert h == BOX and w <= 6  # a tall thin stroke, not an inverted page


def test_batch_with_padding_equals_one_by_one(mnist):
    """normalize_batch on a zero-padded batch of different sizes gives exactly what each
    image gives alone: padding never leaks into an image's result."""
    from batchdigits.preprocess import normalize_many

    images = [
        mnist.x_test[0],
        paper_digit(mnist.x_test[1], (120, 140), (10, 40), 3),
        paper_digit(mnist.x_test[2], (60, 60), (0, 0), 2),
        np.asarray(Image.fromarray(mnist.x_test[3]).resize((8, 8), Image.BILINEAR)),
        np.full((30, 50), 255, np.uint8),  # blank
    ]
    batch, found = normalize_many(images)  # zero-padded to 120x140
    for i, image in enumerate(images):
        alone, alone_found = normalize_found(image)
        assert bool(found[i]) == bool(alone_found)
        np.testing.assert_allclose(batch[i].numpy(), alone.numpy(), atol=1e-3, err_msg=str(i))
