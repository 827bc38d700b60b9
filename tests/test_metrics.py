"""Metrics against scikit-learn / direct definitions, on random and tied scores."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from sklearn.metrics import roc_auc_score, roc_curve

from anrl_ray.metrics import eer_threshold, evaluate_scores, rates_at_threshold, tpr_at_fpr, video_level


def _random(n: int, seed: int, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = rng.normal(size=n) + 1.2 * y
    s = 1 / (1 + np.exp(-s))
    if ties:
        s = np.round(s, 1)  # ~10 distinct values: many ties across classes
    return s, y


def _reference_eer(s: np.ndarray, y: np.ndarray) -> float:
    """The reference's EER (TFace common/utils/metrics.py: brentq on the interpolated ROC)."""
    fpr, tpr, _ = roc_curve(y, s)
    return brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ties", [False, True])
def test_against_sklearn_and_reference(seed: int, ties: bool) -> None:
    s, y = _random(300, seed, ties)
    res = evaluate_scores(s, y, threshold=0.5)
    assert res["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert res["eer"] == pytest.approx(_reference_eer(s, y), abs=1e-9)
    # HTER at the EER threshold is a real operating point, close to the EER
    at = rates_at_threshold(s, y, res["eer_threshold"])
    assert res["hter_eer"] == at["hter"]
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    k = int(np.flatnonzero(thr == res["eer_threshold"])[0])
    assert at["bpcer"] == pytest.approx(fpr[k]) and at["apcer"] == pytest.approx(1 - tpr[k])
    # fpr - fnr is monotone along the ROC, so the two points around the crossing are the
    # ones with the smallest |fpr - fnr|: the chosen point is the best of them
    gaps = np.abs(fpr - (1 - tpr))[np.isfinite(thr)]
    assert abs(fpr[k] - (1 - tpr[k])) == pytest.approx(gaps.min())
    # fixed-threshold rates by direct count
    pred = s >= 0.5
    assert res["apcer"] == pytest.approx(np.mean(~pred[y == 1]))
    assert res["bpcer"] == pytest.approx(np.mean(pred[y == 0]))
    assert res["hter"] == res["acer"] == pytest.approx((res["apcer"] + res["bpcer"]) / 2)
    assert res["acc"] == pytest.approx(np.mean(pred == (y == 1)))
    assert res["threshold"] == 0.5


def test_rates_definitions_by_hand() -> None:
    s = np.array([0.1, 0.4, 0.6, 0.35, 0.8, 0.9])
    y = np.array([0, 0, 0, 1, 1, 1])
    r = rates_at_threshold(s, y, 0.5)
    assert r["bpcer"] == pytest.approx(1 / 3)  # live 0.6 rejected
    assert r["apcer"] == pytest.approx(1 / 3)  # spoof 0.35 accepted
    assert r["acer"] == r["hter"] == pytest.approx(1 / 3)
    assert r["acc"] == pytest.approx(4 / 6)
    assert rates_at_threshold(s, y, 0.6)["bpcer"] == pytest.approx(1 / 3)  # >= threshold is spoof
    assert rates_at_threshold(s, y, 0.61)["bpcer"] == 0.0


def test_tpr_at_fpr() -> None:
    # live scores 0..0.99 (100), spoof: 50 above every live score, 50 below
    live = np.arange(100) / 100
    spoof = np.concatenate([np.full(50, 2.0), np.full(50, -1.0)])
    s = np.concatenate([live, spoof])
    y = np.concatenate([np.zeros(100), np.ones(100)]).astype(int)
    assert tpr_at_fpr(s, y, 0.0) == pytest.approx(0.5)
    assert tpr_at_fpr(s, y, 0.01) == pytest.approx(0.5)
    assert tpr_at_fpr(s, y, 1.0) == pytest.approx(1.0)
    # random: equals the best achievable TPR over sklearn ROC points with FPR <= target
    s, y = _random(500, 3)
    fpr, tpr, _ = roc_curve(y, s)
    for target in (0.001, 0.01, 0.1):
        assert tpr_at_fpr(s, y, target) == pytest.approx(tpr[fpr <= target].max())
    with pytest.raises(ValueError, match="fpr"):
        tpr_at_fpr(s, y, 1.5)


def test_perfect_and_inverted() -> None:
    y = np.array([0, 0, 1, 1])
    good = evaluate_scores([0.1, 0.2, 0.8, 0.9], y)
    assert good["auc"] == 1.0 and good["eer"] == 0.0 and good["hter_eer"] == 0.0
    assert good["tpr@fpr=0.1%"] == 1.0
    bad = evaluate_scores([0.9, 0.8, 0.2, 0.1], y)
    assert bad["auc"] == 0.0 and bad["eer"] == pytest.approx(1.0)
    tied = evaluate_scores([0.5, 0.5, 0.5, 0.5], y)
    assert tied["auc"] == 0.5 and tied["eer"] == pytest.approx(0.5)


def test_video_level() -> None:
    scores = [0.1, 0.3, 0.9, 0.7, 0.5]
    labels = [0, 0, 1, 1, 0]
    vids = ["b/v2", "b/v2", "a/v1", "a/v1", "c/v3"]
    vs, vl, ids = video_level(scores, labels, vids)
    assert ids.tolist() == ["a/v1", "b/v2", "c/v3"]
    np.testing.assert_allclose(vs, [0.8, 0.2, 0.5])
    assert vl.tolist() == [1, 0, 0]
    vs2, _, ids2 = video_level(np.array([0.2, 0.4]), np.array([1, 1]), np.array([7, 7]))  # one class ok here
    assert ids2.tolist() == [7] and vs2.tolist() == pytest.approx([0.3])
    with pytest.raises(ValueError, match="mix live and spoof.*b/v2"):
        video_level(scores, [0, 1, 1, 1, 0], vids)
    with pytest.raises(ValueError, match="length"):
        video_level(scores, labels, vids[:4])


@pytest.mark.parametrize("fn", [
    lambda s, y: evaluate_scores(s, y),
    lambda s, y: eer_threshold(s, y),
    lambda s, y: rates_at_threshold(s, y, 0.5),
    lambda s, y: tpr_at_fpr(s, y, 0.01),
])
def test_degenerate_inputs_raise(fn: object) -> None:
    with pytest.raises(ValueError, match="empty"):
        fn([], [])
    with pytest.raises(ValueError, match="one class"):
        fn([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="NaN or infinite"):
        fn([0.1, float("nan")], [0, 1])
    with pytest.raises(ValueError, match="NaN or infinite"):
        fn([0.1, float("inf")], [0, 1])
    with pytest.raises(ValueError, match="length"):
        fn([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match="labels must be 0"):
        fn([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="empty"):
        video_level([], [], [])
