"""Per-sample preprocessing: shapes, RGB/HSV channels, depth target (reference semantics)."""

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from anrl_ray.data.transforms import FASTransform


def _png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def _asymmetric(size: int = 48) -> tuple[bytes, bytes]:
    """An image and a depth map that are both bright on the left half only."""
    bgr = np.zeros((size, size, 3), np.uint8)
    bgr[:, : size // 2] = (40, 200, 90)
    depth = np.zeros((size, size), np.uint8)
    depth[:, : size // 2] = 200
    return _png(bgr), _png(depth)


@pytest.mark.parametrize("channels", [6, 3])
def test_shapes_and_dtypes(channels):
    img, dep = _asymmetric()
    x, d = FASTransform(64, channels)(img, dep, 0)
    assert x.shape == (channels, 64, 64) and x.dtype == np.float32
    assert d.shape == (1, 8, 8) and d.dtype == np.float32
    xs, ds = FASTransform(64, channels).batch([img, img], [dep, None], [0, 1])
    assert xs.shape == (2, channels, 64, 64) and ds.shape == (2, 1, 8, 8)


def test_rgb_and_hsv_channels_match_opencv_reference():
    # pure red in BGR: RGB = (255, 0, 0), OpenCV 8-bit HSV = (0, 255, 255); another colour for H != 0
    for bgr in [(0, 0, 255), (200, 120, 30)]:
        img = np.full((16, 16, 3), bgr, np.uint8)
        x, _ = FASTransform(16, 6)(_png(img), None, 1)
        rgb = np.array(bgr[::-1], np.float32)
        hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)[0, 0].astype(np.float32)  # H in [0, 180), as the reference
        expected = np.concatenate([rgb, hsv]) / 255.0 * 2.0 - 1.0  # Normalize(mean .5, std .5) of x / 255
        np.testing.assert_allclose(x[:, 8, 8], expected, atol=1e-5)


def test_depth_is_zero_for_spoof_and_scaled_for_live():
    img, _ = _asymmetric()
    dep = _png(np.full((48, 48), 255, np.uint8))
    tf = FASTransform(32, 6)
    assert np.all(tf(img, dep, 1)[1] == 0.0)  # spoof: zeros even when a map is stored
    np.testing.assert_allclose(tf(img, dep, 0)[1], 1.0, atol=1e-6)  # live: /255
    assert np.all(tf(img, None, 0)[1] == 0.0)  # live without a stored map: zeros


def test_depth_resize_matches_reference_interpolate():
    rng = np.random.default_rng(0)
    dep = rng.integers(0, 256, (40, 40), dtype=np.uint8)
    img = _png(np.zeros((40, 40, 3), np.uint8))
    _, d = FASTransform(64, 6)(img, _png(dep), 0)
    # reference: mask resized with the image (nearest), then F.interpolate(bilinear) to 1/8, / 255
    mask = cv2.resize(dep, (64, 64), interpolation=cv2.INTER_NEAREST).astype(np.float32)
    ref = F.interpolate(torch.from_numpy(mask)[None, None], (8, 8), mode="bilinear").numpy()[0] / 255.0
    np.testing.assert_allclose(d, ref, atol=1e-4)


def test_depth_follows_horizontal_flip():
    img, dep = _asymmetric()
    tf = FASTransform(32, 6, augment=True)
    flips = set()
    for seed in range(24):
        tf.set_seed(seed)
        x, d = tf(img, dep, 0)
        img_left = x[1, :, :16].mean() > x[1, :, 16:].mean()  # green channel
        dep_left = d[0, :, :2].mean() > d[0, :, 2:].mean()
        assert img_left == dep_left, f"seed {seed}: image and depth flipped differently"
        flips.add(bool(img_left))
    assert flips == {True, False}, "expected both flipped and unflipped samples over 24 seeds"


def test_augmentation_is_seeded():
    img, dep = _asymmetric()
    a, b = FASTransform(32, 6, augment=True, seed=3), FASTransform(32, 6, augment=True, seed=3)
    for _ in range(5):
        np.testing.assert_array_equal(a(img, dep, 0)[0], b(img, dep, 0)[0])


def test_rejects_bad_sizes():
    with pytest.raises(ValueError, match="multiple of 8"):
        FASTransform(30)
    with pytest.raises(ValueError, match="in_channels"):
        FASTransform(32, 4)
    with pytest.raises(ValueError, match="decode"):
        FASTransform(32)(b"not an image", None, 1)
