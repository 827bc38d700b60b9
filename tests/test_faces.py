"""Face detection, square crops and the procedural depth template (anrl_ray.data.faces)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from matplotlib import cbook

from anrl_ray.data import faces


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    """Grace Hopper (matplotlib's bundled sample photo), BGR, pasted on a gray 640x480 frame."""
    photo = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    frame = np.full((480, 640, 3), 90, np.uint8)
    frame[100:300, 200:360] = cv2.resize(photo, (160, 200), interpolation=cv2.INTER_AREA)
    return frame


@pytest.mark.parametrize("name", ["yuface", "haar"])
def test_detectors_find_the_real_face_and_nothing_in_noise(portrait, name):
    detector = faces.create_detector(name)
    face = faces.main_face(detector.detect(portrait))
    assert face is not None
    x, y, w, h = face.box
    cx, cy = x + w / 2, y + h / 2
    assert 240 < cx < 320 and 130 < cy < 230, face.box  # her face, inside the pasted photo
    assert 40 < w < 130
    noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    assert detector.detect(noise) == []
    assert detector.detect(np.zeros((240, 320, 3), np.uint8)) == []


def test_yuface_landmarks_are_in_image_order(portrait):
    face = faces.main_face(faces.create_detector("yuface").detect(portrait))
    (ex1, ey1), (ex2, ey2), (nx, ny), (mx1, my1), (mx2, my2) = face.landmarks
    assert ex1 < nx < ex2 and mx1 < mx2
    assert max(ey1, ey2) < ny < min(my1, my2)
    x, y, w, h = face.box
    assert np.all((face.landmarks >= [x, y]) & (face.landmarks <= [x + w, y + h]))


def test_downscaled_detection_maps_back_to_frame_pixels(portrait):
    big = cv2.resize(portrait, (1920, 1440))  # 3x: detected at 640 px, reported at 1920
    face = faces.main_face(faces.YuFaceDetector(max_side=640).detect(big))
    small = faces.main_face(faces.YuFaceDetector().detect(portrait))
    np.testing.assert_allclose(np.array(face.box), 3 * np.array(small.box), atol=9)


def test_crop_square_margin_padding_and_mapping():
    image = np.full((100, 200, 3), 255, np.uint8)
    crop = faces.crop_square(image, (-10.0, 10.0, 40.0, 20.0), margin=0.5, size=64)
    assert crop.image.shape == (64, 64, 3)
    assert crop.side == 60  # max(40, 20) * 1.5
    assert crop.origin == (-20, -10)
    assert crop.image[:, 0].max() == 0 and crop.image[0, :].max() == 0  # padded outside the frame
    assert crop.image[40, 40].min() == 255
    np.testing.assert_allclose(crop.to_crop(np.array([[10.0, 20.0]])), [[32.0, 32.0]])  # box centre -> crop centre
    depth_like = np.arange(200, dtype=np.uint8)[None, :].repeat(100, 0)
    cut = faces.crop_like(depth_like, crop)
    assert cut.shape == (64, 64) and cut[32, 63] > cut[32, 20]


def test_similarity_transform_recovers_a_known_one():
    angle, scale, shift = np.deg2rad(30), 2.0, np.array([5.0, -3.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = faces.CANONICAL_POINTS @ rot.T + shift
    m = faces.similarity_transform(faces.CANONICAL_POINTS, dst)
    np.testing.assert_allclose(m[:, :2], rot, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], shift, atol=1e-9)


def test_template_depth_shape_symmetry_and_peak_at_the_nose():
    size = 112
    depth = faces.template_depth(size, landmarks=faces.CANONICAL_POINTS)
    assert depth.dtype == np.uint8 and depth.shape == (size, size)
    assert depth[0, 0] == depth[-1, 0] == depth[0, -1] == 0  # background
    assert depth.max() > 200
    nose = faces.CANONICAL_POINTS[2]
    peak = np.array(np.unravel_index(depth.argmax(), depth.shape))[::-1]
    assert np.linalg.norm(peak - nose) < 5
    cheek, eye = depth[78, 30], depth[52, 38]
    assert depth[72, 56] > cheek and depth[72, 56] > eye  # nose above cheeks and eye sockets
    # Nearly symmetric about the face's midline (the template points are almost symmetric).
    assert np.abs(depth[:, :56].astype(int) - depth[:, 112 - 56 :][:, ::-1].astype(int)).mean() < 3


def test_template_follows_rotated_landmarks():
    size = 256
    centre = np.array([128.0, 128.0])
    angle = np.deg2rad(25)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = (faces.CANONICAL_POINTS * 2.0 - 112.0) @ rot.T + centre
    depth = faces.template_depth(size, landmarks=points)
    peak = np.array(np.unravel_index(depth.argmax(), depth.shape))[::-1]
    assert np.linalg.norm(peak - points[2]) < 8


def test_face_depth_from_a_detection_with_and_without_landmarks(portrait):
    face = faces.main_face(faces.create_detector("yuface").detect(portrait))
    crop = faces.crop_square(portrait, face.box, 0.25, 128)
    depth = faces.face_depth(crop, face)
    assert depth.shape == (128, 128)
    nose = crop.to_crop(face.landmarks[2:3])[0]
    peak = np.array(np.unravel_index(depth.argmax(), depth.shape))[::-1]
    assert np.linalg.norm(peak - nose) < 10
    boxed = faces.face_depth(crop, faces.Face(box=face.box, score=1.0))  # e.g. the Haar detector
    assert boxed.max() > 200 and boxed[64, 64] > 100 and boxed[0, 0] == 0


def test_decode_gray_or_none_handles_8_and_16_bit_and_garbage():
    ramp16 = (np.arange(64, dtype=np.uint16) * 1000)[None, :].repeat(4, 0)
    out = faces.decode_gray_or_none(cv2.imencode(".png", ramp16)[1].tobytes())
    assert out.dtype == np.uint8 and out[0, 63] == round(63000 / 257)
    color = np.zeros((4, 4, 3), np.uint8)
    color[..., 1] = 200
    assert faces.decode_gray_or_none(faces.encode_png(color)).shape == (4, 4)
    assert faces.decode_gray_or_none(b"not an image") is None and faces.decode_gray_or_none(None) is None


def test_resize_square_keeps_the_right_size_and_area_filters_when_shrinking():
    image = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    same = image[:32, :32]
    assert faces.resize_square(same, 32) is same  # already the size: untouched, no re-interpolation
    small = faces.resize_square(image, 20)  # 60 px wide -> shrinking: area filter
    assert small.shape == (20, 20, 3)
    assert np.array_equal(small, cv2.resize(image, (20, 20), interpolation=cv2.INTER_AREA))
    big = faces.resize_square(image[:10, :10], 30)
    assert np.array_equal(big, cv2.resize(image[:10, :10], (30, 30), interpolation=cv2.INTER_LINEAR))
