"""Metrics against scikit-learn / direct definitions, on random and tied scores; ISO rates and the bootstrap by hand."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from sklearn.metrics import roc_auc_score, roc_curve

from anrl_ray.metrics import (
    bootstrap_ci,
    bootstrap_intervals,
    eer_threshold,
    evaluate_scores,
    iso_rates_at_threshold,
    rates_at_threshold,
    resampled_metric,
    tpr_at_fpr,
    video_level,
)


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
    lambda s, y: bootstrap_ci(s, y, "auc", n_boot=20),
    lambda s, y: bootstrap_intervals(s, y, 0.5, n_boot=20),
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


# ------------------------------------------------- ISO/IEC 30107-3: APCER per attack type

# 4 live, 3 print, 3 replay, 2 cut videos; spoof when score >= 0.5
_ISO_VIDEOS = {  # video id: (attack type, video score)
    "live/a": ("live", 0.1), "live/b": ("live", 0.2), "live/c": ("live", 0.3), "live/d": ("live", 0.6),
    "print/a": ("print", 0.9), "print/b": ("print", 0.8), "print/c": ("print", 0.4),
    "replay/a": ("replay", 0.7), "replay/b": ("replay", 0.5), "replay/c": ("replay", 0.95),
    "cut/a": ("cut", 0.2), "cut/b": ("cut", 0.45),
}


def _iso_frames() -> tuple[list[float], list[int], list[str], list[str]]:
    """Two frames per video, at video score -/+ 0.05 (their mean is the video score)."""
    s, y, v, t = [], [], [], []
    for vid, (kind, score) in _ISO_VIDEOS.items():
        for d in (-0.05, 0.05):
            s.append(score + d)
            y.append(0 if kind == "live" else 1)
            v.append(vid)
            t.append(kind)
    return s, y, v, t


def test_iso_rates_by_hand_and_pooled_differs() -> None:
    vs, vl, ids, vt = video_level(*_iso_frames())
    assert ids.tolist() == sorted(_ISO_VIDEOS)
    assert vt.tolist() == [_ISO_VIDEOS[i][0] for i in ids.tolist()]
    np.testing.assert_allclose(vs, [_ISO_VIDEOS[i][1] for i in ids.tolist()])
    r = evaluate_scores(vs, vl, threshold=0.5, attack_types=vt)
    # live 0.6 rejected: BPCER 1/4; print 0.4 accepted: 1/3; replay 0.5 sits on the threshold
    # and is detected: 0; both cuts (0.2, 0.45) accepted: 1
    assert r["apcer_per_type"] == pytest.approx({"cut": 1.0, "print": 1 / 3, "replay": 0.0})
    assert list(r["apcer_per_type"]) == ["cut", "print", "replay"]
    assert r["apcer_max"] == 1.0 and r["apcer_max_type"] == "cut"
    assert r["bpcer_iso"] == r["bpcer"] == pytest.approx(0.25)
    assert r["acer_iso"] == pytest.approx((1.0 + 0.25) / 2)
    assert r["iso_threshold"] == 0.5
    # pooled: 3 of 8 attacks accepted, so 'acer' is the HTER 0.3125, half ISO's ACER
    assert r["apcer"] == pytest.approx(3 / 8)
    assert r["acer"] == r["hter"] == pytest.approx((3 / 8 + 1 / 4) / 2)
    assert r["acer_iso"] > r["acer"] + 0.3
    # the rest of the record is unchanged by attack_types
    plain = evaluate_scores(vs, vl, threshold=0.5)
    assert {k: r[k] for k in plain} == plain
    # at the own EER threshold: the direct definition
    thr = r["eer_threshold"]
    for kind, apcer in r["apcer_per_type_eer"].items():
        assert apcer == pytest.approx(np.mean(vs[vt == kind] < thr))
    assert r["apcer_max_eer"] == max(r["apcer_per_type_eer"].values())
    assert r["acer_iso_eer"] == pytest.approx((r["apcer_max_eer"] + np.mean(vs[vl == 0] >= thr)) / 2)
    # without a threshold the operating point is the own EER threshold
    r_eer = evaluate_scores(vs, vl, attack_types=vt)
    assert r_eer["iso_threshold"] == thr and "threshold" not in r_eer
    assert r_eer["apcer_per_type"] == r_eer["apcer_per_type_eer"] == r["apcer_per_type_eer"]
    assert r_eer["acer_iso"] == r_eer["acer_iso_eer"] == r["acer_iso_eer"]


def test_iso_ties_and_absent_types() -> None:
    # threshold exactly on spoof scores: score >= threshold is spoof (detected)
    s = [0.1, 0.5, 0.5, 0.5, 0.49]
    y = [0, 0, 1, 1, 1]
    t = ["live", "live", "print", "replay", "replay"]
    r = iso_rates_at_threshold(s, y, t, 0.5)
    assert r["apcer_per_type"] == {"print": 0.0, "replay": 0.5}
    assert r["bpcer"] == 0.5  # the live 0.5 is rejected
    assert r["acer_iso"] == pytest.approx(0.5)
    # equal APCER: the first type by name is reported
    r = iso_rates_at_threshold([0.1, 0.2, 0.2], [0, 1, 1], ["live", "replay", "print"], 0.5)
    assert r["apcer_per_type"] == {"print": 1.0, "replay": 1.0} and r["apcer_max_type"] == "print"
    # a type with no attack sample is absent (no 0/0); cut gone -> print is the worst type
    vs, vl, _, vt = video_level(*_iso_frames())
    keep = vt != "cut"
    r = evaluate_scores(vs[keep], vl[keep], threshold=0.5, attack_types=vt[keep])
    assert set(r["apcer_per_type"]) == {"print", "replay"}
    assert r["apcer_max_type"] == "print" and r["apcer_max"] == pytest.approx(1 / 3)


def test_attack_type_errors() -> None:
    s, y, v, t = _iso_frames()
    bad = list(t)
    bad[-1] = "print"  # second frame of cut/b
    with pytest.raises(ValueError, match="mix attack types.*'cut/b'.*cut.*print"):
        video_level(s, y, v, bad)
    with pytest.raises(ValueError, match="contradicts their label.*type 'live'"):
        evaluate_scores([0.1, 0.9], [0, 1], attack_types=["live", "live"])
    with pytest.raises(ValueError, match="contradicts their label.*label 0.*'print'"):
        iso_rates_at_threshold([0.1, 0.9], [0, 1], ["print", "print"], 0.5)
    with pytest.raises(ValueError, match="attack_types and labels differ in length"):
        evaluate_scores([0.1, 0.9], [0, 1], attack_types=["live"])
    with pytest.raises(ValueError, match="attack_types and labels differ in length"):
        video_level(s, y, v, t[:-1])
    # the 3-tuple form is untouched
    assert len(video_level(s, y, v)) == 3


# ------------------------------------------------------------------ bootstrap over videos

def _videos(n_live: int, n_spoof: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(n_live, int), np.ones(n_spoof, int)]
    return 1 / (1 + np.exp(-(rng.normal(size=y.size) + 1.5 * y - 0.7))), y


def test_resampled_metric_equals_repeated_samples() -> None:
    """Each row of counts gives the metric of the explicitly repeated samples (AUC vs sklearn)."""
    rng = np.random.default_rng(5)
    for trial in range(40):
        s, y = _random(int(rng.integers(6, 40)), trial, ties=trial % 2 == 0)
        y[:2] = [0, 1]
        counts = rng.integers(0, 3, size=(8, s.size))
        counts[:, :2] = np.maximum(counts[:, :2], 1)  # both classes in every row
        thr = float(rng.choice(s))
        auc = resampled_metric(s, y, counts, "auc")
        hter_eer = resampled_metric(s, y, counts, "hter_eer")
        hter = resampled_metric(s, y, counts, "hter", threshold=thr)
        for b in range(counts.shape[0]):
            sb, yb = np.repeat(s, counts[b]), np.repeat(y, counts[b])
            assert auc[b] == pytest.approx(roc_auc_score(yb, sb), abs=1e-12)
            ref = evaluate_scores(sb, yb, threshold=thr)
            assert hter_eer[b] == pytest.approx(ref["hter_eer"], abs=1e-12)
            assert hter[b] == pytest.approx(ref["hter"], abs=1e-12)
    # all-ones counts: the plain metrics
    s, y = _random(200, 1, ties=True)
    ones = np.ones((1, s.size))
    assert resampled_metric(s, y, ones, "auc")[0] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    with pytest.raises(ValueError, match="both live"):
        resampled_metric(s, y, ones * (y == 0), "auc")
    with pytest.raises(ValueError, match="shape"):
        resampled_metric(s, y, ones[:, :-1], "auc")


def test_bootstrap_ci_contains_estimate_and_narrows() -> None:
    widths: dict[tuple[str, int], list[float]] = {}
    for n in (20, 200):  # 10x the videos: ~1/sqrt(10) the width
        for seed in range(3):
            s, y = _videos(n, n, seed)
            point = evaluate_scores(s, y, threshold=0.5)
            for metric in ("hter", "hter_eer", "auc"):
                lo, hi = bootstrap_ci(s, y, metric, threshold=0.5)  # type: ignore[arg-type]
                assert 0.0 <= lo < point[metric] < hi <= 1.0, (metric, lo, point[metric], hi)
                widths.setdefault((metric, n), []).append(hi - lo)
    for metric in ("hter", "hter_eer", "auc"):
        small, big = np.mean(widths[(metric, 20)]), np.mean(widths[(metric, 200)])
        assert big < 0.5 * small, (metric, big, small)


def test_bootstrap_deterministic_and_consistent() -> None:
    s, y = _videos(30, 60, 2)
    a = bootstrap_ci(s, y, "auc", seed=3)
    assert bootstrap_ci(s, y, "auc", seed=3) == a
    assert bootstrap_ci(s, y, "auc", seed=4) != a
    assert bootstrap_ci(s, y, "auc", seed=3, alpha=0.5) != a  # a 50 % interval is inside the 95 % one
    inner = bootstrap_ci(s, y, "auc", seed=3, alpha=0.5)
    assert a[0] <= inner[0] <= inner[1] <= a[1]
    ci = bootstrap_intervals(s, y, 0.5, n_boot=500, seed=7)
    assert set(ci) == {"target_hter_ci95", "target_hter_eer_ci95", "target_auc_ci95"}
    assert ci["target_hter_ci95"] == list(bootstrap_ci(s, y, "hter", threshold=0.5, n_boot=500, seed=7))
    assert ci["target_hter_eer_ci95"] == list(bootstrap_ci(s, y, "hter_eer", n_boot=500, seed=7))
    assert ci["target_auc_ci95"] == list(bootstrap_ci(s, y, "auc", n_boot=500, seed=7))
    assert set(bootstrap_intervals(s, y, None, n_boot=50)) == {"target_hter_eer_ci95", "target_auc_ci95"}
    # unstratified resampling also works (resamples that lose a class are dropped)
    lo, hi = bootstrap_ci(s, y, "auc", stratified=False)
    assert lo < evaluate_scores(s, y)["auc"] < hi
    lo, hi = bootstrap_ci([0.2, 0.8], [0, 1], "auc", stratified=False)  # half the draws are one class
    assert lo == hi == 1.0


def test_bootstrap_speed() -> None:
    s, y = _videos(40, 60, 1)
    bootstrap_intervals(s, y, 0.5, n_boot=10)  # warm-up
    t0 = time.perf_counter()
    bootstrap_intervals(s, y, 0.5, n_boot=1000)
    assert time.perf_counter() - t0 < 1.0


def test_bootstrap_bad_arguments() -> None:
    s, y = _videos(5, 5, 0)
    with pytest.raises(ValueError, match="needs a threshold"):
        bootstrap_ci(s, y, "hter")
    with pytest.raises(ValueError, match="unknown bootstrap metric"):
        bootstrap_ci(s, y, "eer", threshold=0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_ci(s, y, "auc", n_boot=0)
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci(s, y, "auc", alpha=1.0)
    with pytest.raises(ValueError, match="finite threshold"):
        bootstrap_ci(s, y, "hter", threshold=float("nan"))
