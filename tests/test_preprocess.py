"""The shared MNIST-style normalisation: gray, polarity, background, crop, 20 px box,
centre of mass, no-ink detection; MNIST itself changes little."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from batchdigits.imaging.preprocess import BOX, CENTRE, normalize, to_gray


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


@pytest.mark.slow
def test_mnist_digits_centred_boxed_and_little_changed(mnist):
    """500 MNIST digits through the batched normalisation every front end runs (one
    image at a time gives the same bits: test_batch_with_padding_equals_one_by_one)."""
    from batchdigits.imaging.preprocess import normalize_batch, pad_batch, prepare

    digits = mnist.x_test[:500]
    gray, sizes = pad_batch([prepare(d) for d in digits])
    out = normalize_batch(gray, sizes)[0].numpy()[..., 0]
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
    reference = normalize(digit)[0]
    for canvas, at, scale in [
        ((120, 140), (10, 40), 3),
        ((300, 400), (200, 20), 3),
        ((60, 60), (0, 0), 2),
    ]:
        page = paper_digit(digit, canvas, at, scale)
        x = normalize(page)[0]
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
    x = normalize(page.clip(0, 255).astype(np.uint8))[0]
    reference = normalize(digit)[0]
    assert max(ink_box(x)) == BOX
    assert np.abs(x - reference).mean() < 15


def test_faint_and_thin_strokes_survive():
    page = np.full((100, 100), 230, np.uint8)
    page[20:80, 50] = 200  # a faint, 1-pixel-wide vertical stroke: a "1"
    x, found = normalize(page)
    x = x[..., 0]
    assert bool(found)
    h, w = ink_box(x)
    assert h == BOX and w <= 3
    assert x.max() > 200  # stretched to full ink


@pytest.mark.parametrize("size", [8, 16])
def test_tiny_digits_are_upscaled(mnist, size):
    small = np.asarray(Image.fromarray(mnist.x_test[0]).resize((size, size), Image.BILINEAR))
    x = normalize(small)[0]
    assert max(ink_box(x)) == BOX
    cy, cx = centre_of_mass(x)
    assert abs(cy - CENTRE) <= 0.5 and abs(cx - CENTRE) <= 0.5


def test_huge_image(mnist):
    page = paper_digit(mnist.x_test[7], (4000, 4000), (1500, 2200), 40)
    x = normalize(page)[0]
    assert max(ink_box(x)) == BOX
    assert np.abs(x - normalize(mnist.x_test[7])[0]).mean() < 15


def test_polarity_both_ways_and_rgb_and_alpha(mnist):
    digit = mnist.x_test[9]
    bright = normalize(digit)[0]
    dark = normalize(255 - digit)[0]
    assert np.abs(bright - dark).mean() < 3
    rgb = np.stack([255 - digit, 255 - digit // 2, np.full_like(digit, 255)], -1)  # blue ink
    assert np.abs(normalize(rgb)[0] - bright).mean() < 12
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., 3] = digit  # black strokes on a transparent background
    assert np.abs(normalize(rgba)[0] - bright).mean() < 3


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
    x, found = normalize(image)
    assert not bool(found)
    assert float(np.asarray(x).max()) == 0.0


def test_blank_scanned_page_with_paper_noise_is_not_a_digit():
    rng = np.random.default_rng(0)
    page = Image.fromarray(rng.normal(225, 4, (200, 150)).clip(0, 255).astype(np.uint8))
    page = page.filter(ImageFilter.GaussianBlur(0.7))
    _, found = normalize(np.asarray(page))
    assert not bool(found)


def test_polarity_with_vignetting_and_a_thin_small_digit():
    """Darker corners (vignetting) make the border darker than the page's mean; a thin,
    small "1" barely moves the mean. The ink is still found to be the dark part."""
    yy, xx = np.mgrid[0:120, 0:140]
    r2 = ((yy - 60) / 60.0) ** 2 + ((xx - 70) / 70.0) ** 2
    page = 215 - 25 * r2  # bright centre, darker border
    page[50:75, 66:69] = 30  # a thin dark stroke
    x, found = normalize(page.clip(0, 255).astype(np.uint8))
    assert bool(found)
    h, w = ink_box(x)
    assert h == BOX and w <= 6  # a tall thin stroke, not an inverted page


def test_batch_with_padding_equals_one_by_one(mnist):
    """normalize_batch on a zero-padded batch of different sizes gives exactly what each
    image gives alone: padding never leaks into an image's result."""
    from batchdigits.imaging.preprocess import normalize_batch, pad_batch, prepare

    images = [
        mnist.x_test[0],
        paper_digit(mnist.x_test[1], (120, 140), (10, 40), 3),
        paper_digit(mnist.x_test[2], (60, 60), (0, 0), 2),
        np.asarray(Image.fromarray(mnist.x_test[3]).resize((8, 8), Image.BILINEAR)),
        np.full((30, 50), 255, np.uint8),  # blank
    ]
    batch, found = normalize_batch(*pad_batch([prepare(i) for i in images]))  # to 120x140
    for i, image in enumerate(images):
        alone, alone_found = normalize(image)
        assert bool(found[i]) == bool(alone_found)
        np.testing.assert_allclose(batch[i].numpy(), alone, atol=1e-3, err_msg=str(i))


# --------------------------------------------------------------------------- no margin assumed


def tight_crop(digit: np.ndarray, side: int, one_bit: bool) -> np.ndarray:
    """The digit's ink box stretched to fill ``side x side``, dark ink on white: the ink
    touches every edge (form crops, the Semeion scans)."""
    rows, cols = np.nonzero(digit > 40)
    box = digit[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    ink = np.asarray(Image.fromarray(box).resize((side, side), Image.BILINEAR), np.float64)
    if one_bit:
        ink = np.where(ink > 110, 255.0, 0.0)
    return (255 - ink).astype(np.uint8)


@pytest.mark.parametrize(
    "side, one_bit",
    [
        (16, True),
        pytest.param(16, False, marks=pytest.mark.slow),
        pytest.param(32, True, marks=pytest.mark.slow),
    ],
)
def test_tight_crops_whose_ink_touches_the_edges_are_read(mnist, side, one_bit):
    for i in range(20):
        crop = tight_crop(mnist.x_test[i], side, one_bit)
        for image in (crop, 255 - crop):  # dark on light and light on dark
            x, found = normalize(image)
            assert bool(found), i
            assert max(ink_box(x)) == BOX
            # the ink is the digit, not the paper: a fifth to a half of the box, not most
            share = (x > 127).sum() / BOX**2
            assert 0.08 < share < 0.6, (i, share)


def test_polarity_of_a_bold_tight_crop_is_the_thin_class(mnist):
    """A bold 0 that fills its box: the ink is nearly half the pixels and touches all four
    sides, yet the ring (thin) is the ink and the paper (inside and corners) is not."""
    page = np.full((16, 16), 255, np.uint8)
    yy, xx = np.mgrid[0:16, 0:16]
    r = np.hypot((yy - 7.5) / 8.0, (xx - 7.5) / 6.5)
    page[(r > 0.62) & (r < 1.02)] = 0
    x, found = normalize(page)
    x = x[..., 0]
    assert bool(found)
    assert x[14, 14] < 50  # the hole of the 0 is paper
    assert x[14, 8:20].max() > 200 or x[8:20, 14].max() > 200  # the ring is ink


@pytest.mark.parametrize("edges", [(0, 2), (1, 3), (0, 1), (2, 3)])
def test_bands_along_two_edges_are_not_the_digit(mnist, edges):
    digit = mnist.x_test[11]
    reference = normalize(digit)[0]
    for dark_ink in (True, False):
        ink = np.asarray(Image.fromarray(digit).resize((84, 84), Image.BICUBIC), np.float64)
        for edge in edges:
            side = [np.s_[:6], np.s_[-6:], np.s_[:, :6], np.s_[:, -6:]][edge]
            ink[side] = 255
        image = (255 - ink) if dark_ink else ink
        x = normalize(image.astype(np.uint8))[0]
        # the same digit, up to a whole-pixel placement (the centring rounds to pixels)
        differences = [
            np.abs(np.roll(x, (dy, dx), (0, 1)) - reference).mean()
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
        ]
        assert min(differences) < 15, (edges, dark_ink, differences)


def test_a_ruling_that_touches_the_digit_goes_a_tight_bar_stays(mnist):
    digit = mnist.x_test[0]  # a 7 with a margin
    ruled = digit.copy()
    rows = np.nonzero(digit.max(axis=1) > 40)[0]
    ruled[rows[-1] + 1 :] = 0
    ruled[rows[-1] + 1 : rows[-1] + 3] = 255  # a ruling right under the digit, touching it
    reference = normalize(digit)[0]
    assert np.abs(normalize(ruled)[0] - reference).mean() < 12
    # A tight crop of the same 7: its bar runs along the top edge, and the digit reaches the
    # far edge, so the bar is the digit's: the top rows of the result hold ink across.
    x = normalize(tight_crop(digit, 16, True))[0][..., 0]
    rows, cols = np.nonzero(x > 127)
    top = x[rows.min() : rows.min() + 3]
    assert (top > 127).any(axis=0).sum() >= 12


def test_salt_and_pepper_noise_does_not_survive(mnist):
    digit = mnist.x_test[21]
    reference = normalize(digit)[0]
    rng = np.random.default_rng(5)
    for dark_ink in (True, False):
        page = np.asarray(Image.fromarray(digit).resize((56, 56), Image.BICUBIC)).copy()
        if dark_ink:
            page = 255 - page
        hit = rng.random(page.shape) < 0.08
        page[hit] = np.where(rng.random(hit.sum()) < 0.5, 0, 255)
        x = normalize(page)[0]
        assert max(ink_box(x)) == BOX
        assert np.abs(x - reference).mean() < 15, dark_ink


def test_only_the_noisy_images_of_a_batch_lose_their_lone_pixels(mnist):
    """In a batch, an image with salt and pepper keeps only the ink with at least two ink
    neighbours, twice over (the rule, written out in numpy here); the clean images of the
    same batch are untouched, their thin strokes included."""
    from batchdigits.imaging.ink import without_salt_and_pepper

    def neighbours(m):
        p = np.pad(m.astype(np.float32), 1)
        return sum(p[i : i + m.shape[0], j : j + m.shape[1]] for i in range(3) for j in range(3))

    rng = np.random.default_rng(8)
    batch = np.zeros((6, 40, 40), np.float32)
    for k in range(6):
        batch[k, 6:34, 6:34] = mnist.x_test[k] / 255.0
    batch[5, 20, 2:38] = 1.0  # a thin stroke, one pixel high, in a clean image ...
    batch[5, 1, 1] = 1.0  # ... and one lone pixel, which the rule would take
    for k in (1, 4):
        batch[k][rng.random((40, 40)) < 0.06] = 1.0
    out = without_salt_and_pepper(batch).numpy()
    for k in range(6):
        if k in (1, 4):
            kept = (batch[k] > 0) & (neighbours(batch[k] > 0) >= 3)
            kept &= neighbours(kept) >= 3
            np.testing.assert_array_equal(out[k], batch[k] * kept)
            assert (out[k] > 0).sum() < (batch[k] > 0).sum()
        else:
            np.testing.assert_array_equal(out[k], batch[k])


@pytest.mark.parametrize(
    "kind",
    [
        "gradient",
        "vertical-gradient",
        "sensor-noise",
        "grain",
        "one-dot",
        "uniform-1bit",
        "tiny-uniform",
    ],
)
def test_no_stroke_is_no_digit(kind):
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:64, 0:80]
    image = {
        "gradient": 40 + 1.5 * xx + yy,
        "vertical-gradient": 230 - 2.5 * yy,
        "sensor-noise": rng.integers(0, 256, (64, 80)),
        "grain": rng.normal(128, 30, (64, 80)).clip(0, 255),
        "one-dot": np.where((yy - 30) ** 2 + (xx - 20) ** 2 <= 2, 20, 230),
        "uniform-1bit": np.full((64, 80), 255),
        "tiny-uniform": np.full((8, 8), 0),
    }[kind].astype(np.uint8)
    x, found = normalize(image)
    assert not bool(found), kind
    assert float(np.asarray(x).max()) == 0.0


def test_large_images_are_cleaned_at_64_px_and_small_ones_untouched(mnist):
    """After the polarity decision, an image longer than CLEAN_SIZE is box-filtered to
    that side (aspect kept, mean level kept); a small image in the same batch passes
    through bit for bit."""
    from batchdigits.imaging.resample import CLEAN_SIZE, shrunk
    from batchdigits.runtime.lazy import tf

    t = tf()
    rng = np.random.default_rng(0)
    big = rng.uniform(0, 255, (150, 75)).astype(np.float32)
    small = mnist.x_test[0].astype(np.float32)
    batch = np.zeros((2, 150, 75), np.float32)
    batch[0], batch[1, :28, :28] = big, small
    out, h, w = shrunk(t.constant(batch), t.constant([150, 28]), t.constant([75, 28]))
    out = out.numpy()
    assert out.shape == (2, CLEAN_SIZE, CLEAN_SIZE)
    assert (int(h[0]), int(w[0])) == (CLEAN_SIZE, 32)
    assert abs(out[0, :64, :32].mean() - big.mean()) < 1.0
    assert out[0, :, 32:].max() == 0.0  # the padding stays empty
    np.testing.assert_array_equal(out[1, :28, :28], small)
    assert (int(h[1]), int(w[1])) == (28, 28)


def test_eager_and_compiled_normalisation_agree_bit_for_bit(mnist):
    """Small runs normalise eagerly, large ones through the compiled function: the same
    bits, for a padded batch of mixed sizes and polarities."""
    from batchdigits.imaging.preprocess import (
        compiled_normalization,
        normalize_batch,
        pad_batch,
        prepare,
    )
    from batchdigits.runtime.lazy import tf

    t = tf()
    images = [mnist.x_test[i] for i in range(6)]
    images.append(255 - np.asarray(Image.fromarray(mnist.x_test[6]).resize((120, 90))))
    images.append(np.asarray(Image.fromarray(mnist.x_test[7]).resize((40, 200))))
    gray, sizes = pad_batch([prepare(i).numpy() for i in images])
    eager = normalize_batch(gray, sizes)
    compiled = compiled_normalization()(gray, sizes)
    np.testing.assert_array_equal(eager[0].numpy(), compiled[0].numpy())
    np.testing.assert_array_equal(eager[1].numpy(), compiled[1].numpy())
    assert bool(t.reduce_all(eager[1]))
