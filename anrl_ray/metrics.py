"""Face anti-spoofing metrics: video-level scores, AUC, EER, HTER, APCER/BPCER/ACER, TPR@FPR, bootstrap CIs.

Conventions (as the reference code): label 0 = live (bona fide), 1 = spoof (attack); the
score is ``P(spoof)``; a sample is called spoof when ``score >= threshold``. The ROC treats
spoof as the positive class, so:

* APCER = fraction of spoof samples accepted as live (``score < threshold``),
* BPCER = fraction of live samples rejected as spoof (``score >= threshold``),
* HTER = (APCER + BPCER) / 2 with APCER pooled over all attacks; the keys ``apcer`` /
  ``acer`` hold these pooled, HTER-like numbers (``acer`` == ``hter``),
* ISO/IEC 30107-3 instead reports APCER per attack (presentation attack instrument) type,
  e.g. print / replay / cut / mask, and ACER = (max over types of APCER + BPCER) / 2, so one
  badly detected type is not averaged away: ``acer_iso`` >= the pooled ``acer``
  (:func:`evaluate_scores` with ``attack_types``),
* FPR = BPCER (live false alarms), TPR = 1 - APCER (spoof detection rate);
  ``TPR@FPR=x`` is the highest spoof detection rate reachable by a threshold whose live
  false-alarm rate is at most ``x`` (no interpolation between ROC points).

ROC and AUC come from ``sklearn.metrics``; the bootstrap (:func:`bootstrap_ci`) resamples
videos and computes AUC from ranks (Mann-Whitney U) and HTER from counts, vectorised over
resamples. Degenerate inputs (empty, one class only, NaN/inf scores, length mismatch, labels
other than 0/1, attack types contradicting labels) raise ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, overload

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


def _attack_types(attack_types: Sequence[object] | np.ndarray, y: np.ndarray) -> np.ndarray:
    """Attack types as a ``(N,)`` str array, checked against the labels ("live" <=> label 0)."""
    t = np.asarray(attack_types, dtype=object).reshape(-1).astype(str)
    if t.size != y.size:
        raise ValueError(f"attack_types and labels differ in length: {t.size} vs {y.size}")
    bad = np.flatnonzero((t == "live") != (y == 0))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{bad.size} sample(s) have an attack type that contradicts their label, e.g. "
                         f"sample {i}: label {int(y[i])}, type {str(t[i])!r}; label 0 (live) needs type 'live', "
                         "label 1 (spoof) needs its attack type ('print', 'replay', ...)")
    return t


@overload
def video_level(scores: ArrayLike, labels: ArrayLike, video_ids: Sequence[object] | np.ndarray,
                attack_types: None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...
@overload
def video_level(scores: ArrayLike, labels: ArrayLike, video_ids: Sequence[object] | np.ndarray,
                attack_types: Sequence[object] | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]: ...
def video_level(scores: ArrayLike, labels: ArrayLike, video_ids: Sequence[object] | np.ndarray,
                attack_types: Sequence[object] | np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """Average frame scores per video.

    Args:
        scores: ``(N,)`` frame scores.
        labels: ``(N,)`` frame labels.
        video_ids: ``(N,)`` video identifiers (e.g. the frame path's parent folder).
        attack_types: optional ``(N,)`` frame attack types ("live" for bona fide, else e.g.
            "print" / "replay" / "cut" / "mask"); all frames of a video must share one.

    Returns:
        (video scores, video labels, video ids), one entry per distinct id, ids sorted; with
        ``attack_types`` a 4-tuple whose last entry holds each video's attack type (str array).

    Raises:
        ValueError: on empty/mismatched/non-finite input, a video whose frames mix labels or
            attack types, or an attack type contradicting its label.
    """
    s, y = _scores_labels(scores, labels, both_classes=False)
    ids = np.asarray(video_ids).reshape(-1)
    if ids.size != s.size:
        raise ValueError(f"video_ids and scores differ in length: {ids.size} vs {s.size}")
    uniq, inv = np.unique(ids, return_inverse=True)
    inv = inv.reshape(-1)
    counts = np.bincount(inv)
    spoof_frames = np.bincount(inv, weights=y)
    mixed = (spoof_frames != 0) & (spoof_frames != counts)
    if mixed.any():
        raise ValueError(f"{int(mixed.sum())} video(s) mix live and spoof frames, e.g. {uniq[mixed][:5].tolist()}")
    out = (np.bincount(inv, weights=s) / counts, (spoof_frames > 0).astype(np.int64), uniq)
    if attack_types is None:
        return out
    t = _attack_types(attack_types, y)
    _, first = np.unique(inv, return_index=True)  # each video's first frame
    v_types = t[first]
    bad = np.unique(inv[t != v_types[inv]])
    if bad.size:
        v = int(bad[0])
        raise ValueError(f"{bad.size} video(s) mix attack types, e.g. video {uniq[v].tolist()!r} has frames of types "
                         f"{sorted(set(t[inv == v].tolist()))}; all frames of a video need one attack type")
    return (*out, v_types)


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


def iso_rates_at_threshold(scores: ArrayLike, labels: ArrayLike, attack_types: Sequence[object] | np.ndarray,
                           threshold: float) -> dict[str, Any]:
    """ISO/IEC 30107-3 error rates at ``threshold``: APCER per attack type, its maximum, ACER.

    Args:
        scores: ``(N,)`` scores.
        labels: ``(N,)`` 0 live / 1 spoof.
        attack_types: ``(N,)`` "live" for label 0, the attack type (e.g. "print") for label 1.
        threshold: spoof when ``score >= threshold``.

    Returns:
        ``apcer_per_type`` ({type: APCER}, sorted by type; a type with no attack sample is
        absent), ``apcer_max``, ``apcer_max_type`` (ties: the first type by name), ``bpcer``,
        ``acer_iso`` = (apcer_max + bpcer) / 2.
    """
    s, y = _scores_labels(scores, labels)
    t = _attack_types(attack_types, y)
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold!r}")
    accepted = s < threshold  # spoof accepted as live (meaningful for spoof samples)
    per_type = {str(k): float(np.mean(accepted[t == k])) for k in sorted(set(t[y == SPOOF].tolist()))}
    worst = next(k for k, v in per_type.items() if v == max(per_type.values()))
    bpcer = float(np.mean(~accepted[y == 0]))
    return {"apcer_per_type": per_type, "apcer_max": per_type[worst], "apcer_max_type": worst,
            "bpcer": bpcer, "acer_iso": (per_type[worst] + bpcer) / 2}


def evaluate_scores(scores: ArrayLike, labels: ArrayLike, threshold: float | None = None,
                    attack_types: Sequence[object] | np.ndarray | None = None) -> dict[str, Any]:
    """All metrics of one score set.

    Returns:
        ``auc``, ``eer``, ``eer_threshold``, ``hter_eer`` (HTER at the scores' own EER
        threshold: the number the literature reports, an oracle on test data),
        ``tpr@fpr=1%``, ``tpr@fpr=0.1%``; with ``threshold`` (e.g. chosen on source
        validation data) also ``threshold``, ``hter``, ``apcer``, ``bpcer``, ``acer``, ``acc``,
        where ``apcer`` is pooled over all attack types and so ``acer`` == ``hter`` (HTER-like,
        not ISO's ACER).

        With ``attack_types`` (``(N,)``, "live" for label 0, e.g. "print" / "replay" / "cut" /
        "mask" for label 1) also the ISO/IEC 30107-3 rates of :func:`iso_rates_at_threshold` at
        the operating threshold ``iso_threshold`` (``threshold`` if given, else the own EER
        threshold): ``apcer_per_type`` ({type: APCER}), ``apcer_max``, ``apcer_max_type``,
        ``bpcer_iso``, ``acer_iso`` = (apcer_max + bpcer_iso) / 2; and the same at the own EER
        threshold: ``apcer_per_type_eer``, ``apcer_max_eer``, ``apcer_max_type_eer``,
        ``acer_iso_eer``.
    """
    from sklearn.metrics import roc_auc_score

    s, y = _scores_labels(scores, labels)
    t = None if attack_types is None else _attack_types(attack_types, y)  # fail before the work
    eer, thr = eer_threshold(s, y)
    res: dict[str, Any] = {
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
    if t is not None:
        at_eer = iso_rates_at_threshold(s, y, t, thr)
        op = at_eer if threshold is None else iso_rates_at_threshold(s, y, t, threshold)
        res.update({"iso_threshold": thr if threshold is None else float(threshold),
                    "apcer_per_type": op["apcer_per_type"], "apcer_max": op["apcer_max"],
                    "apcer_max_type": op["apcer_max_type"], "bpcer_iso": op["bpcer"], "acer_iso": op["acer_iso"],
                    "apcer_per_type_eer": dict(at_eer["apcer_per_type"]), "apcer_max_eer": at_eer["apcer_max"],
                    "apcer_max_type_eer": at_eer["apcer_max_type"], "acer_iso_eer": at_eer["acer_iso"]})
    return res


# ---------------------------------------------------------------- bootstrap over videos

BootMetric = Literal["hter", "hter_eer", "auc"]
BOOT_METRICS: tuple[str, ...] = ("hter", "hter_eer", "auc")
_MAX_CELLS = 50_000_000  # n_boot * n_videos: ~400 MB of float64 counts


def _resample_counts(y: np.ndarray, n_boot: int, seed: int, stratified: bool) -> np.ndarray:
    """``(n_boot, N)`` multiplicity of each sample in each resample with replacement.

    Stratified: each class is resampled on its own to its own size (every resample holds both
    classes). Otherwise all N are drawn together and resamples missing a class are dropped.
    """
    n = y.size
    if n_boot * n > _MAX_CELLS:
        raise ValueError(f"bootstrap over {n} samples x {n_boot} resamples is too large; "
                         "pass video-level scores (metrics.video_level) or fewer resamples")
    rng = np.random.default_rng(seed)
    if stratified:
        idx = np.empty((n_boot, n), dtype=np.int64)
        for cls in (0, 1):
            members = np.flatnonzero(y == cls)
            idx[:, members] = members[rng.integers(0, members.size, size=(n_boot, members.size))]
    else:
        idx = rng.integers(0, n, size=(n_boot, n))
    flat = (idx + n * np.arange(n_boot)[:, None]).reshape(-1)
    counts = np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n)
    if not stratified:
        counts = counts[(counts[:, y == 0].sum(1) > 0) & (counts[:, y == 1].sum(1) > 0)]
        if counts.shape[0] == 0:
            raise ValueError("every unstratified resample lost a class; use stratified=True")
    return counts


def resampled_metric(scores: ArrayLike, labels: ArrayLike, counts: np.ndarray, metric: BootMetric,
                     threshold: float | None = None) -> np.ndarray:
    """A metric on many reweighted copies of one score set at once (the bootstrap's inner step).

    Row ``b`` of ``counts`` says how often each sample occurs in resample ``b``; the result for
    that row equals the metric on ``np.repeat(scores, counts[b])`` (AUC by ranks / Mann-Whitney
    with ties counted half, HTER at ``threshold``, or HTER at the resample's own EER threshold
    as :func:`eer_threshold` picks it).

    Args:
        scores: ``(N,)`` scores.
        labels: ``(N,)`` 0 live / 1 spoof.
        counts: ``(B, N)`` non-negative integer multiplicities; every row needs both classes.
        metric: "hter" (needs ``threshold``), "hter_eer" or "auc".
        threshold: operating threshold for "hter".

    Returns:
        ``(B,)`` metric values.
    """
    s, y = _scores_labels(scores, labels)
    w = np.asarray(counts, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] != s.size:
        raise ValueError(f"counts must have shape (B, {s.size}), got {w.shape}")
    if not np.all(np.isfinite(w) & (w >= 0)):
        raise ValueError("counts must be finite and non-negative")
    if metric not in BOOT_METRICS:
        raise ValueError(f"unknown bootstrap metric {metric!r}; expected one of {list(BOOT_METRICS)}")
    live = y == 0
    w0, w1 = w * live, w * ~live  # (B, N) live / spoof multiplicities
    n0, n1 = w0.sum(1), w1.sum(1)  # (B,)
    if np.any(n0 == 0) or np.any(n1 == 0):
        raise ValueError("every resample needs both live (0) and spoof (1) samples")
    if metric == "hter":
        if threshold is None or not np.isfinite(threshold):
            raise ValueError(f"metric 'hter' needs a finite threshold, got {threshold!r}")
        called_spoof = (s >= threshold).astype(np.float64)
        return ((w1 @ (1.0 - called_spoof)) / n1 + (w0 @ called_spoof) / n0) / 2
    # histogram over distinct scores, highest first: h[:, j] = weight of samples at the j-th highest value
    _, code = np.unique(-s, return_inverse=True)
    order = np.argsort(code, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(code[order]) != 0])
    h0 = np.add.reduceat(w0[:, order], starts, axis=1)  # (B, U)
    h1 = np.add.reduceat(w1[:, order], starts, axis=1)
    c0 = np.cumsum(h0, axis=1)  # live at or above each value
    if metric == "auc":  # P(spoof > live) + P(spoof == live) / 2
        return np.sum(h1 * (n0[:, None] - c0 + 0.5 * h0), axis=1) / (n0 * n1)
    # hter_eer: the ROC with one point per distinct value (plus the all-live point), as eer_threshold
    b_rows = np.arange(w.shape[0])
    fpr = np.concatenate([np.zeros((w.shape[0], 1)), c0 / n0[:, None]], axis=1)
    fnr = np.concatenate([np.ones((w.shape[0], 1)), 1.0 - np.cumsum(h1, axis=1) / n1[:, None]], axis=1)
    i = np.argmax(fpr >= fnr, axis=1)  # >= 1: column 0 has fpr 0 < fnr 1
    gap, tot = np.abs(fpr - fnr), fpr + fnr
    ga, gb, ta, tb = gap[b_rows, i - 1], gap[b_rows, i], tot[b_rows, i - 1], tot[b_rows, i]
    pick_a = (i - 1 > 0) & ((ga < gb) | ((ga == gb) & (ta <= tb)))  # column 0 (threshold inf) is no candidate
    return np.where(pick_a, ta, tb) / 2


def bootstrap_ci(scores: ArrayLike, labels: ArrayLike, metric: BootMetric, *, threshold: float | None = None,
                 n_boot: int = 1000, alpha: float = 0.05, seed: int = 0, stratified: bool = True
                 ) -> tuple[float, float]:
    """Percentile bootstrap interval of a metric, resampling videos with replacement.

    Pass one entry per video (the output of :func:`video_level`): the resampling unit is the
    entry, and frames of one video are not independent. Deterministic for a ``seed``.

    Args:
        scores: ``(V,)`` video scores.
        labels: ``(V,)`` video labels, both classes present.
        metric: "hter" (at ``threshold``, e.g. the source-val EER threshold), "hter_eer" (HTER
            at each resample's own EER threshold) or "auc".
        threshold: operating threshold; required for "hter".
        n_boot: number of resamples.
        alpha: 1 - coverage (0.05: a 95 % interval).
        seed: seed of the resampling.
        stratified: resample live and spoof videos separately, each to its own count (every
            resample has both classes); otherwise resamples missing a class are dropped.

    Returns:
        (low, high): the ``alpha/2`` and ``1 - alpha/2`` quantiles of the resampled metric.
    """
    s, y = _scores_labels(scores, labels)
    if metric not in BOOT_METRICS:
        raise ValueError(f"unknown bootstrap metric {metric!r}; expected one of {list(BOOT_METRICS)}")
    if metric == "hter" and threshold is None:
        raise ValueError("metric 'hter' needs a threshold (e.g. the source-val EER threshold)")
    if not (isinstance(n_boot, int | np.integer) and n_boot >= 1):
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    vals = resampled_metric(s, y, _resample_counts(y, int(n_boot), seed, stratified), metric, threshold)
    lo, hi = np.quantile(vals, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def bootstrap_intervals(v_scores: ArrayLike, v_labels: ArrayLike, threshold: float | None, *,
                        n_boot: int = 1000, seed: int = 0) -> dict[str, list[float]]:
    """95 % bootstrap intervals of the target's HTER, own-EER HTER and AUC over videos.

    All three use the same resamples, so each equals :func:`bootstrap_ci` with the same
    ``n_boot`` / ``seed`` (stratified).

    Args:
        v_scores: ``(V,)`` target video scores.
        v_labels: ``(V,)`` target video labels.
        threshold: the operating threshold (source-val EER threshold); None leaves out
            ``target_hter_ci95``.
        n_boot: number of resamples.
        seed: seed of the resampling.

    Returns:
        ``{"target_hter_ci95": [lo, hi], "target_hter_eer_ci95": [lo, hi], "target_auc_ci95": [lo, hi]}``
        (fractions, like the metrics).
    """
    s, y = _scores_labels(v_scores, v_labels)
    if not (isinstance(n_boot, int | np.integer) and n_boot >= 1):
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    counts = _resample_counts(y, int(n_boot), seed, stratified=True)
    out = {}
    for metric in BOOT_METRICS:
        if metric == "hter" and threshold is None:
            continue
        lo, hi = np.quantile(resampled_metric(s, y, counts, metric, threshold), [0.025, 0.975])
        out[f"target_{metric}_ci95"] = [float(lo), float(hi)]
    return out
