"""Scoring: P(spoof) of evaluation sets and the metrics of those scores.

One :class:`Scores` type serves both paths: the trials' per-epoch evaluation (Ray Data shards,
gathered over DDP ranks: :func:`score_batches`, :func:`gather`, :func:`epoch_metrics`) and the
single-process scoring of ``anrl-ray evaluate`` / ``predict`` / the plots of ``best/``
(Parquet read directly: :func:`score_split`, :func:`score_images`). Both feed every crop through
the same evaluation transform (``FASTransform(augment=False)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
import torch.distributed as dist

from anrl_ray import LIVE, SPOOF, metrics
from anrl_ray.errors import UserError

SPLIT_CHOICES = ("test", "dev", "train", "all")


@dataclass
class Scores:
    """Frame-level scores (and optionally pooled features) of one or more evaluation sets."""

    scores: list[float] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    video_ids: list[str] = field(default_factory=list)  # "domain/video_id"
    domains: list[str] = field(default_factory=list)
    attack_types: list[str] = field(default_factory=list)  # "live", "print", "replay", ... (when known)
    features: list[np.ndarray] = field(default_factory=list)  # (B, C) blocks, when kept

    def extend(self, other: "Scores") -> None:
        for name in ("scores", "labels", "video_ids", "domains", "attack_types", "features"):
            getattr(self, name).extend(getattr(other, name))

    def split(self, first: Callable[[str], bool]) -> tuple["Scores", "Scores"]:
        """(samples whose domain satisfies ``first``, the rest), in order; features are not split."""
        a, b = Scores(), Scores()
        typed = len(self.attack_types) == len(self.scores)
        for i, domain in enumerate(self.domains):
            out = a if first(domain) else b
            out.scores.append(self.scores[i])
            out.labels.append(self.labels[i])
            out.video_ids.append(self.video_ids[i])
            out.domains.append(domain)
            if typed:
                out.attack_types.append(self.attack_types[i])
        return a, b

    def feature_matrix(self) -> np.ndarray:
        return np.concatenate(self.features) if self.features else np.zeros((0, 0), np.float32)


def _spoof_probability(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits.float(), dim=1)[:, SPOOF]


# --------------------------------------------------------------------------- trials (Ray Data shards, DDP)


@torch.no_grad()
def score_batches(model: torch.nn.Module, batches: Iterable[dict], device: torch.device, autocast: Callable) -> Scores:
    """P(spoof) for every sample of ``batches`` (model in eval mode)."""
    out = Scores()
    for batch in batches:
        with autocast():
            logits = model(batch["image"].to(device)).logits
        out.scores.extend(_spoof_probability(logits).cpu().tolist())
        out.labels.extend(int(x) for x in batch["label"])
        out.video_ids.extend(f"{d}/{v}" for d, v in zip(batch["domain"], batch["video_id"]))
        out.domains.extend(batch["domain"])
        if "attack_type" in batch:
            out.attack_types.extend(str(a) for a in batch["attack_type"])
    return out


def gather(local: Scores) -> Scores:
    """Concatenate every rank's scores (no-op in a single process)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return local
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, local)
    merged = Scores()
    for part in parts:
        merged.extend(part)
    return merged


def epoch_metrics(val: Scores, target: Scores) -> dict[str, Any]:
    """Video-level metrics: source validation, and the target at (a) the source-val threshold and (b) its own EER.

    Also ISO/IEC 30107-3 rates per attack type (when the scores carry attack types), 95 %
    bootstrap intervals over target videos, and the per-video scores (``video_scores``).

    The threshold that a deployed model would use is chosen on source validation data (its EER
    threshold); the target's own EER threshold gives the literature's (optimistic) HTER.
    """
    v_scores, v_labels, v_ids = metrics.video_level(val.scores, val.labels, val.video_ids)
    val_m = metrics.evaluate_scores(v_scores, v_labels)
    thr = float(val_m["eer_threshold"])
    if len(target.attack_types) == len(target.scores):  # ISO/IEC 30107-3: APCER per attack type, ACER from the worst
        t_scores, t_labels, t_ids, t_types = metrics.video_level(target.scores, target.labels, target.video_ids,
                                                                 target.attack_types)
        tgt_m = metrics.evaluate_scores(t_scores, t_labels, threshold=thr, attack_types=list(t_types))
    else:
        t_scores, t_labels, t_ids = metrics.video_level(target.scores, target.labels, target.video_ids)
        tgt_m = metrics.evaluate_scores(t_scores, t_labels, threshold=thr)
    # 95 % bootstrap intervals over target videos: how far a few dozen videos let the numbers move
    tgt_m.update(metrics.bootstrap_intervals(t_scores, t_labels, thr))
    per_domain = {}
    for d in sorted(set(val.domains)):
        idx = [i for i, x in enumerate(val.domains) if x == d]
        s, y, _ = metrics.video_level([val.scores[i] for i in idx], [val.labels[i] for i in idx], [val.video_ids[i] for i in idx])
        try:
            per_domain[d] = metrics.evaluate_scores(s, y)
        except ValueError as e:  # a tiny dev split with one class: say so in the record rather than crash
            per_domain[d] = {"error": str(e)}
    return {
        "val": {**val_m, "videos": len(v_scores), "frames": len(val.scores), "per_domain": per_domain},
        "target": {**tgt_m, "videos": len(t_scores), "frames": len(target.scores)},
        "thresholds": {"source_val_eer": thr, "target_eer": float(tgt_m["eer_threshold"])},
        # per-video mean scores, kept beside the checkpoint (not in the records): offline re-analysis
        "video_scores": {"val": dict(zip(map(str, v_ids), map(float, v_scores))),
                         "target": dict(zip(map(str, t_ids), map(float, t_scores)))},
    }


# --------------------------------------------------------------------------- single process (Parquet read directly)


def check_domain(data_root: str | Path, domain: str) -> Path:
    """``data_root/domain`` as a converted dataset, or a UserError naming what is there instead."""
    from anrl_ray.data.format import MANIFEST, read_manifest

    root = Path(data_root)
    if not root.is_dir():
        raise UserError(f"--data {root}: no such folder (expected a converted data root with O/, C/, I/, M/)")
    path = root / domain
    if not (path / MANIFEST).is_file():
        found = sorted(p.name for p in root.iterdir() if (p / MANIFEST).is_file())
        raise UserError(
            f"--domain {domain}: {root} has no converted dataset {domain}/ (found: {', '.join(found) or 'none'}); "
            f"pick one of those or convert it with `anrl-ray convert ... --out {root}/{domain}`"
        )
    read_manifest(path)  # schema version, shards present
    return path


def is_synthetic(data_root: str | Path, domain: str) -> bool:
    """True when ``data_root/domain`` is the generated synthetic benchmark."""
    from anrl_ray.data.format import MANIFEST

    m = Path(data_root) / domain / MANIFEST
    try:
        import json

        return m.is_file() and json.loads(m.read_text()).get("converter") == "synthetic"
    except (OSError, ValueError):
        return False


def iter_split_rows(data_root: str | Path, domain: str, split: str, every: int = 1) -> Iterator[dict[str, Any]]:
    """Rows (image bytes, label, video_id, domain) of one split of one domain, read from Parquet directly.

    ``every``: keep every n-th row only (a fixed subsample, e.g. for a t-SNE).
    """
    import pyarrow.parquet as pq

    from anrl_ray.data.format import shard_paths

    if split not in SPLIT_CHOICES:
        raise UserError(f"--split {split!r}: choose one of {', '.join(SPLIT_CHOICES)}")
    filters = None if split == "all" else [("split", "=", split)]
    i = 0
    for path in shard_paths(check_domain(data_root, domain)):
        table = pq.read_table(path, columns=["image", "label", "video_id", "domain", "split"], filters=filters)
        for row in table.to_pylist():
            if i % every == 0:
                yield row
            i += 1


def default_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when present (a full-size model scores seconds per crop on a CPU), else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is visible here; use --device cpu or auto")
    return torch.device(name)


@torch.no_grad()
def score_images(model: torch.nn.Module, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(B, C, H, W)`` float32 inputs -> (P(spoof) ``(B,)``, pooled features ``(B, F)``), on the model's device."""
    device = next(model.parameters()).device
    out = model(torch.from_numpy(images).to(device))
    return _spoof_probability(out.logits).cpu().numpy(), out.feature.float().mean(dim=(2, 3)).cpu().numpy()


def score_split(
    model: torch.nn.Module,
    cfg: Any,
    data_root: str | Path,
    domain: str,
    split: str,
    *,
    batch_size: int = 64,
    label: str | None = None,
    keep_features: bool = False,
    into: Scores | None = None,
    max_frames: int | None = None,
) -> Scores:
    """Score every crop of ``domain``'s ``split`` (frame level) with ``model`` on its device.

    Args:
        cfg: the model's TrialConfig (input size and channels).
        label: the name stored in ``Scores.domains`` (default ``domain``), e.g. "M (target)".
        into: append to this instead of a new :class:`Scores`.
        max_frames: score about this many crops at most (every n-th row; manifest counts).

    Raises:
        UserError: missing domain or an empty split.
    """
    from anrl_ray.data.transforms import FASTransform

    tf = FASTransform(cfg.img_size, cfg.in_channels, augment=False)
    out = into if into is not None else Scores()
    n0 = len(out.scores)
    rows: list[dict[str, Any]] = []

    def flush() -> None:
        x, _ = tf.batch([r["image"] for r in rows], [None] * len(rows), [r["label"] for r in rows])
        p, feat = score_images(model, x)
        out.scores.extend(float(v) for v in p)
        out.labels.extend(int(r["label"]) for r in rows)
        out.video_ids.extend(f"{r['domain']}/{r['video_id']}" for r in rows)
        out.domains.extend([label or domain] * len(rows))
        if keep_features:
            out.features.append(feat.astype(np.float32))
        rows.clear()

    every = 1
    if max_frames:
        from anrl_ray.data.format import read_manifest

        counts = read_manifest(Path(data_root) / domain).get("counts", {})
        n = sum(sum(c.values()) for sp, by_label in counts.items() if split in (sp, "all") for c in by_label.values())
        every = max(1, -(-n // max_frames))
    for row in iter_split_rows(data_root, domain, split, every=every):
        rows.append(row)
        if len(rows) >= batch_size:
            flush()
    if rows:
        flush()
    if len(out.scores) == n0:
        raise UserError(f"{Path(data_root) / domain}: split {split!r} holds no face crop; choose another --split")
    return out


def score_metrics(scored: Scores, threshold: float | None, what: str) -> dict[str, Any]:
    """Video- and frame-level metrics of ``scored`` at ``threshold`` (if any) and at its own EER."""
    try:
        v_s, v_y, _ = metrics.video_level(scored.scores, scored.labels, scored.video_ids)
        video = metrics.evaluate_scores(v_s, v_y, threshold=threshold)
        frame = metrics.evaluate_scores(scored.scores, scored.labels, threshold=threshold)
    except ValueError as e:
        raise UserError(f"{what}: cannot compute metrics ({e})") from e
    return {
        "frames": len(scored.scores),
        "videos": len(v_s),
        "live_videos": int(np.sum(v_y == LIVE)),
        "spoof_videos": int(np.sum(v_y == SPOOF)),
        "video_level": video,
        "frame_level": frame,
    }
