"""Per-sample preprocessing: shapes, RGB/HSV channels, depth target, and equality with the albumentations chain."""

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from anrl_ray.data.transforms import FASTransform, normalize


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


# --------------------------------------------------------------------------- the fast path = the reference


class _Recording(FASTransform):
    """Remembers the augmentation decisions it draws (flip, HSV shifts), to rebuild them with albumentations."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.decisions = []

    def _draw(self):
        d = super()._draw()
        self.decisions.append(d)
        return d


def _albumentations_reference(img: bytes, dep: bytes | None, label: int, size: int, channels: int, color, flip: bool):
    """The reference transform chain run by albumentations itself, with the given decisions."""
    bgr = cv2.imdecode(np.frombuffer(img, np.uint8), cv2.IMREAD_COLOR)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if color is not None:
        h, s, v = color
        rgb = A.HueSaturationValue(hue_shift_limit=(h, h), sat_shift_limit=(s, s), val_shift_limit=(v, v), p=1)(image=rgb)["image"]
    geo = A.Compose([A.HorizontalFlip(p=1.0 if flip else 0.0), A.Resize(size, size), A.Normalize(mean=0.5, std=0.5)],
                    additional_targets={"image1": "image"})
    targets = {"image": rgb}
    if channels == 6:
        targets["image1"] = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
    live = dep is not None and label == 0
    if live:
        dmap = cv2.imdecode(np.frombuffer(dep, np.uint8), cv2.IMREAD_GRAYSCALE)
        if dmap.shape != bgr.shape[:2]:
            dmap = cv2.resize(dmap, (bgr.shape[1], bgr.shape[0]), interpolation=cv2.INTER_LINEAR)
        targets["mask"] = dmap
    out = geo(**targets)
    x = np.concatenate([out["image"]] + ([out["image1"]] if channels == 6 else []), axis=2).transpose(2, 0, 1)
    s = size // 8
    d = np.zeros((1, s, s), np.float32)
    if live:
        d[0] = cv2.resize(out["mask"].astype(np.float32), (s, s), interpolation=cv2.INTER_LINEAR) / 255.0
    return x, d


@pytest.mark.parametrize("size,channels", [(16, 6), (64, 6), (64, 3), (96, 6)])  # down, same, up-scaling
def test_outputs_equal_the_albumentations_chain(size, channels):
    rng = np.random.default_rng(1)
    samples = []
    for i in range(40):
        h, w = (48, 48) if i % 3 else (40, 56)  # and a non-square crop with a smaller depth map
        img = rng.integers(0, 256, (h, w, 3), np.uint8)
        img[:, : w // 2] //= 3  # structure, so that a flip shows
        dep = rng.integers(0, 256, (h, w) if i % 3 else (20, 28), np.uint8)
        samples.append((_png(img), _png(dep) if i % 4 else None, i % 2))
    images, depths, labels = zip(*samples)
    tf = _Recording(size, channels, augment=True, seed=5)
    x, d = tf.batch(images, depths, labels)
    assert {f for _, f in tf.decisions} == {True, False} and any(c is not None for c, _ in tf.decisions)
    for i, (color, flip) in enumerate(tf.decisions):
        rx, rd = _albumentations_reference(*samples[i], size, channels, color, flip)
        np.testing.assert_array_equal(x[i], rx)
        np.testing.assert_array_equal(d[i], rd)
    x2, d2 = FASTransform(size, channels).batch(images, depths, labels)  # evaluation: no augmentation
    for i in range(len(samples)):
        rx, rd = _albumentations_reference(*samples[i], size, channels, None, False)
        np.testing.assert_array_equal(x2[i], rx)
        np.testing.assert_array_equal(d2[i], rd)


def test_augmentation_draws_follow_the_reference_distribution():
    """HueSaturationValue with p=0.1 and albumentations' default shift limits; HorizontalFlip with p=0.5."""
    img = _png(np.full((8, 8, 3), 120, np.uint8))
    tf = _Recording(8, 6, augment=True, seed=0)
    n = 4000
    tf.batch([img] * n, [None] * n, [1] * n)
    flips = np.array([f for _, f in tf.decisions])
    colors = np.array([c for c, _ in tf.decisions if c is not None])
    ref = A.HueSaturationValue()
    assert abs(flips.mean() - 0.5) < 4 * np.sqrt(0.25 / n)
    assert abs(len(colors) / n - 0.1) < 4 * np.sqrt(0.09 / n)
    for k, limit in enumerate([ref.hue_shift_limit, ref.sat_shift_limit, ref.val_shift_limit]):
        lo, hi = limit
        assert lo < 0 < hi and np.all((colors[:, k] >= lo) & (colors[:, k] <= hi))
        assert abs(colors[:, k].mean() - (lo + hi) / 2) < 0.1 * (hi - lo)  # uniform: centred, spread out
        assert colors[:, k].std() > 0.2 * (hi - lo)


def test_normalize_equals_albumentations_normalize():
    u8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    ref = A.Normalize(mean=0.5, std=0.5)(image=np.repeat(u8[:, :, None], 3, axis=2))["image"][:, :, 0]
    np.testing.assert_array_equal(normalize(u8), ref)
    out = np.empty((2, 16, 16), np.float32)
    assert normalize(np.stack([u8, u8]), out=out) is out and np.array_equal(out[1], ref)
    with pytest.raises(TypeError, match="uint8"):
        normalize(u8.astype(np.float32))


def test_planes_failures_and_buffer_inputs():
    img, dep = _asymmetric()
    tf = FASTransform(32, 6)
    good = [img, np.frombuffer(img, np.uint8), b"junk", img]  # bytes or a uint8 view of them
    failures = []
    planes, d = tf.planes(good, [dep, dep, dep, None], [0, 0, 0, 1], failures=failures)
    assert planes.dtype == np.uint8 and planes.shape == (4, 6, 32, 32)
    assert [i for i, _ in failures] == [2] and "could not decode" in failures[0][1]
    assert not planes[2].any() and not d[2].any() and np.array_equal(planes[0], planes[1])
    x, _ = tf.batch(good, [dep, dep, dep, None], [0, 0, 0, 1], failures=[])
    np.testing.assert_array_equal(x[0], normalize(planes[0]))
    assert not x[2].any()  # a failed row: zeros, not normalize(0) = -1
    with pytest.raises(ValueError, match="decode"):
        tf.planes(good, [None] * 4, [1] * 4)  # without a failures list, the first bad row raises
