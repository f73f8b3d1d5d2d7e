"""Image -> model input: the one preprocessing path shared by training and prediction.

Every function here is made of TensorFlow ops, so it runs inside a ``tf.data`` map
(in parallel, in graph mode) and equally on a single eager tensor (the Pillow fallback,
the tests). The model input is a ``float32`` tensor of shape ``(28, 28, 1)`` with ink
bright (up to 255) on a dark (0) background; the model rescales it itself.
"""

from __future__ import annotations

from ._lazy import tf

SIZE = 28
#: Per channel count C (row C), the weights that turn a pixel into gray (ITU-R BT.601
#: luma for colour, as Pillow's ``convert("L")``) and the one that picks its alpha.
_GRAY_WEIGHTS = (
    (0, 0, 0, 0),
    (1, 0, 0, 0),  # L
    (1, 0, 0, 0),  # LA
    (0.299, 0.587, 0.114, 0),  # RGB
    (0.299, 0.587, 0.114, 0),  # RGBA
)
_ALPHA_WEIGHTS = ((0, 0, 0, 0), (0, 0, 0, 0), (0, 1, 0, 0), (0, 0, 0, 0), (0, 0, 0, 1))


def to_gray(image):
    """``uint8 (H, W, C)``, C in 1-4 -> ``float32 (H, W)`` in 0..255.

    Colour becomes luma; an alpha channel (C = 2 or 4) is composited onto white, so
    dark strokes on a transparent background read as dark ink on paper.
    """
    t = tf()
    image = t.cast(image, t.float32)
    channels = t.shape(image)[-1]
    gray_w = t.gather(t.constant(_GRAY_WEIGHTS, t.float32), channels)[:channels]
    alpha_w = t.gather(t.constant(_ALPHA_WEIGHTS, t.float32), channels)[:channels]
    gray = t.reduce_sum(image * gray_w, axis=-1)
    alpha = t.reduce_sum(image * alpha_w, axis=-1) / 255.0 + (1.0 - t.reduce_sum(alpha_w))
    return gray * alpha + 255.0 * (1.0 - alpha)


def normalize(image):
    """Decoded image ``uint8 (H, W, C)`` or ``(H, W)`` -> model input ``float32 (28, 28, 1)``.

    Grayscale, then resize to 28x28 with anti-aliasing. Values stay in 0..255.
    """
    t = tf()
    image = t.convert_to_tensor(image)
    if image.shape.rank == 2:
        image = image[..., None]
    gray = to_gray(image)[..., None]
    out = t.image.resize(gray, (SIZE, SIZE), method="bilinear", antialias=True)
    return t.ensure_shape(t.clip_by_value(out, 0.0, 255.0), (SIZE, SIZE, 1))
