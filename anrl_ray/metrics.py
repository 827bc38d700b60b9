"""Face anti-spoofing metrics: video-level scores, AUC, EER, HTER/ACER, APCER, BPCER, TPR@FPR.

Conventions (as the reference code): label 0 = live (bona fide), 1 = spoof (attack); the
score is ``P(spoof)``; a sample is called spoof when ``score >= threshold``. The ROC treats
spoof as the positive class, so:

* APCER = fraction of spoof samples accepted as live (``score < threshold``),
* BPCER = fraction of live samples rejected as spoof (``score >= threshold``),
* HTER = ACER = (APCER + BPCER) / 2,
* FPR = BPCER (live false alarms), TPR = 1 - APCER (spoof detection rate);
  ``TPR@FPR=x`` is the highest spoof detection rate reachable by a threshold whose live
  false-alarm rate is at most ``x`` (no interpolation between ROC points).

ROC and AUC come from ``sklearn.metrics``. Degenerate inputs (empty, one class only,
NaN/inf scores, length mismatch, labels other than 0/1) raise ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from anrl_ray import SPOOF

ArrayLike = Sequence[float] | np.ndarray


def _scores_labels(scores: ArrayLike, labels: ArrayLike, *, both_classes: bool = True
                   ) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if s.size == 0:
        raise ValueError("scores are empty: nothing to evaluate")
    if s.size != y.size:
        raise ValueError(f"scores and labels differ in length: {s.size} vs {y.size}")
    if not np.all(np.isfinite(s)):
        bad = int(np.sum(~np.isfinite(s)))
        raise ValueError(f"{bad} score(s) are NaN or infinite; scores must be finite P(spoof)")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError(f"labels must be 0 (live) or 1 (spoof), got values {np.unique(y)[:10].tolist()}")
    y = y.astype(np.int64)
    if both_classes and (y.min() == y.max()):
        raise ValueError(f"labels hold one class only ({'spoof' if y[0] == SPOOF else 'live'}); "
                         "these metrics need both live (0) and spoof (1) samples")
    return s, y


def video_level(scores: ArrayLike, labels: ArrayLike, video_ids: Sequence[object] | np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Average frame scores per video.

    Args:
        scores: ``(N,)`` frame scores.
        labels: ``(N,)`` frame labels.
        video_ids: ``(N,)`` video identifiers (e.g. the frame path's parent folder).

    Returns:
        (video scores, video labels, video ids), one entry per distinct id, ids sorted.

    Raises:
        ValueError: on empty/mismatched/non-finite input, or a video whose frames mix labels.
    """
    s, y = _scores_labels(scores, labels, both_classes=False)
    ids = np.asarray(video_ids).reshape(-1)
    if ids.size != s.size:
        raise ValueError(f"video_ids and scores differ in length: {ids.size} vs {s.size}")
    uniq, inv = np.unique(ids, return_inverse=True)
    counts = np.bincount(inv)
    spoof_frames = np.bincount(inv, weights=y)
    mixed = (spoof_frames != 0) & (spoof_frames != counts)
    if mixed.any():
        raise ValueError(f"{int(mixed.sum())} video(s) mix live and spoof frames, e.g. {uniq[mixed][:5].tolist()}")
    return np.bincount(inv, weights=s) / counts, (spoof_frames > 0).astype(np.int64), uniq


def eer_threshold(scores: ArrayLike, labels: ArrayLike) -> tuple[float, float]:
    """Equal error rate and a threshold at it.

    The EER is where the ROC, linearly interpolated between its points, crosses
    ``FPR = 1 - TPR`` (BPCER = APCER), as the reference's ``brentq`` on the interpolated ROC.
    The threshold is the one of the two ROC points around the crossing whose
    ``|BPCER - APCER|`` is smaller (ties: smaller HTER, then the higher threshold), so that
    :func:`rates_at_threshold` at it reproduces that ROC point exactly.

    Returns:
        (eer, threshold).
    """
    s, y = _scores_labels(scores, labels)
    from sklearn.metrics import roc_curve  # imported here: sklearn adds ~2 s to every Ray worker's start-up

    fpr, tpr, thr = roc_curve(y, s, pos_label=SPOOF, drop_intermediate=False)
    fnr = 1.0 - tpr
    i = int(np.argmax(fpr >= fnr))  # first point at or past the crossing; fpr[0] = 0 < fnr[0] = 1
    if i == 0:  # cannot happen with both classes present; keep it loud
        raise ValueError("ROC never crosses FPR = FNR")
    a, b = i - 1, i
    da, db = fnr[a] - fpr[a], fpr[b] - fnr[b]  # both >= 0
    t = da / (da + db) if da + db > 0 else 0.0
    eer = float(fpr[a] + t * (fpr[b] - fpr[a]))
    candidates = [k for k in (a, b) if np.isfinite(thr[k])]
    best = min(candidates, key=lambda k: (abs(fpr[k] - fnr[k]), fpr[k] + fnr[k], -thr[k]))
    return eer, float(thr[best])


def rates_at_threshold(scores: ArrayLike, labels: ArrayLike, threshold: float) -> dict[str, float]:
    """Error rates when calling spoof every sample with ``score >= threshold``.

    Returns:
        ``{"apcer", "bpcer", "acer", "hter", "acc"}`` (fractions in [0, 1]; hter = acer).
    """
    s, y = _scores_labels(scores, labels)
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold!r}")
    pred = (s >= threshold).astype(np.int64)
    apcer = float(np.mean(pred[y == 1] == 0))
    bpcer = float(np.mean(pred[y == 0] == 1))
    acer = (apcer + bpcer) / 2
    return {"apcer": apcer, "bpcer": bpcer, "acer": acer, "hter": acer, "acc": float(np.mean(pred == y))}


def tpr_at_fpr(scores: ArrayLike, labels: ArrayLike, fpr: float) -> float:
    """Spoof detection rate (TPR, positive = spoof) at live false-alarm rate (FPR) <= ``fpr``.

    The best TPR over ROC points with FPR not above ``fpr`` (no interpolation).
    """
    if not 0.0 <= fpr <= 1.0:
        raise ValueError(f"fpr must be in [0, 1], got {fpr!r}")
    s, y = _scores_labels(scores, labels)
    from sklearn.metrics import roc_curve

    roc_fpr, roc_tpr, _ = roc_curve(y, s, pos_label=SPOOF, drop_intermediate=False)
    return float(np.max(roc_tpr[roc_fpr <= fpr + 1e-12]))


def evaluate_scores(scores: ArrayLike, labels: ArrayLike, threshold: float | None = None
                    ) -> dict[str, float]:
    """All metrics of one score set.

    Returns:
        ``auc``, ``eer``, ``eer_threshold``, ``hter_eer`` (HTER at the scores' own EER
        threshold: the number the literature reports, an oracle on test data),
        ``tpr@fpr=1%``, ``tpr@fpr=0.1%``; with ``threshold`` (e.g. chosen on source
        validation data) also ``threshold``, ``hter``, ``apcer``, ``bpcer``, ``acer``, ``acc``.
    """
    from sklearn.metrics import roc_auc_score

    s, y = _scores_labels(scores, labels)
    eer, thr = eer_threshold(s, y)
    res = {
        "auc": float(roc_auc_score(y, s)),
        "eer": eer,
        "eer_threshold": thr,
        "hter_eer": rates_at_threshold(s, y, thr)["hter"],
        "tpr@fpr=1%": tpr_at_fpr(s, y, 0.01),
        "tpr@fpr=0.1%": tpr_at_fpr(s, y, 0.001),
    }
    if threshold is not None:
        res["threshold"] = float(threshold)
        res.update(rates_at_threshold(s, y, threshold))
    return res
