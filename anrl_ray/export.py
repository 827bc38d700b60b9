"""The selected model, exported and used: ``EXP/best/``, ``anrl-ray best / evaluate / predict``.

``export_best`` re-selects from the records (no retraining; ``anrl_ray.selection``), copies the
chosen epoch's checkpoint and writes everything a user of the model needs::

    EXP/best/model.safetensors    network weights only (ANRLNet state dict)
    EXP/best/model_config.json    how to build the network and feed it; the decision threshold
    EXP/best/checkpoint.pt        the full training checkpoint (learner + optimiser + RNG)
    EXP/best/config.json          the resolved TrialConfig
    EXP/best/metrics.json         the selected record, its summary, the oracle column, the threshold
    EXP/best/selection.json       method, trial, epoch, score, what was compared, in one sentence
    EXP/plots/roc_target.png      target ROC (video level) with the operating point marked
    EXP/plots/tsne_features.png   t-SNE of pooled features, sources (dev) + target (test)

Scoring here is a plain single process (no Ray, no DDP): Parquet shards are read directly and
every crop goes through the evaluation transform the trials use
(:class:`anrl_ray.data.transforms.FASTransform`, ``augment=False``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch

from anrl_ray import LIVE, SPOOF, metrics
from anrl_ray.config import TrialConfig, make_config
from anrl_ray.errors import UserError
from anrl_ray.model import ANRLNet, build_model
from anrl_ray.selection import METHODS, Selection, lodo_scores, select, select_epoch_oracle

BEST_DIR = "best"
PLOTS_DIR = "plots"
TRIALS_DIR = "trials"
MODEL_FILE = "model.safetensors"
MODEL_CONFIG = "model_config.json"
METRICS_FILE = "metrics.json"
SELECTION_FILE = "selection.json"
ROC_PNG = "roc_target.png"
TSNE_PNG = "tsne_features.png"
MODEL_FORMAT = "anrl-ray-model-v1"
SPLIT_CHOICES = ("test", "dev", "train", "all")

# --------------------------------------------------------------------------- loading


def load_model(checkpoint_path: str | Path) -> tuple[ANRLNet, TrialConfig, dict[str, Any]]:
    """The network of a checkpoint, in eval mode on the CPU, with its config and the raw state.

    Args:
        checkpoint_path: a ``best/`` folder, a ``checkpoint_epochNNNN/`` folder, or a
            ``checkpoint.pt`` file. A folder holding only ``model.safetensors`` +
            ``model_config.json`` + ``config.json`` (a deployed ``best/``) works too; the
            returned state is then ``{"format": MODEL_FORMAT, "model_config": ...}``.

    Raises:
        UserError: missing or foreign checkpoint, or weights that do not fit the config.
    """
    from anrl_ray.trial import CHECKPOINT_FILE, build_learner, load_checkpoint

    path = Path(checkpoint_path)
    if path.is_dir() and not (path / CHECKPOINT_FILE).is_file() and (path / MODEL_FILE).is_file():
        return _load_exported(path)
    if not path.exists():
        raise UserError(
            f"checkpoint {path} not found: pass an experiment's best/ folder, a checkpoint_epochNNNN/ folder "
            f"or a {CHECKPOINT_FILE} file"
        )
    state = load_checkpoint(path)
    try:
        cfg = make_config(state["config"], source=f"{path} (config)")
    except KeyError:
        raise UserError(f"{path}: checkpoint has no 'config' entry; it was not written by anrl-ray train/search") from None
    # build_learner seeds torch; keep the caller's RNG untouched
    with torch.random.fork_rng(devices=[]):
        learner = build_learner(cfg)
    try:
        learner.load_state_dict(state["learner"], strict=True)  # "model.*" + "centres.*"
    except (KeyError, RuntimeError) as e:
        raise UserError(f"{path}: the weights do not match the network its config describes ({e})") from e
    model = learner.model.eval()
    return model, cfg, state


def _load_exported(folder: Path) -> tuple[ANRLNet, TrialConfig, dict[str, Any]]:
    from safetensors.torch import load_file

    mc_path, cfg_path = folder / MODEL_CONFIG, folder / "config.json"
    for p in (mc_path, cfg_path):
        if not p.is_file():
            raise UserError(f"{folder} holds {MODEL_FILE} but not {p.name}; re-export it with `anrl-ray best EXP`")
    model_config = _read_json(mc_path)
    cfg = make_config(_read_json(cfg_path), source=str(cfg_path))
    model = build_model(**model_config["build_kwargs"])
    try:
        model.load_state_dict(load_file(folder / MODEL_FILE), strict=True)
    except RuntimeError as e:
        raise UserError(f"{folder / MODEL_FILE} does not match {mc_path} build_kwargs ({e})") from e
    return model.eval(), cfg, {"format": MODEL_FORMAT, "model_config": model_config}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e})") from e


def exported_threshold(checkpoint_path: str | Path) -> tuple[float | None, str | None]:
    """The decision threshold stored beside a checkpoint, and where it came from.

    ``best/metrics.json`` → ``"threshold"``; a trial's ``checkpoint_epochNNNN/metrics.json`` →
    its record's source-validation EER threshold. (None, None) when neither is there.
    """
    path = Path(checkpoint_path)
    folder = path if path.is_dir() else path.parent
    m_path = folder / METRICS_FILE
    if m_path.is_file():
        m = _read_json(m_path)
        if m.get("threshold") is not None:
            return float(m["threshold"]), f"{m_path} (source-validation EER threshold of the exported epoch)"
        thr = (m.get("record") or {}).get("thresholds", {}).get("source_val_eer")
        if thr is not None:
            return float(thr), f"{m_path} (this epoch's source-validation EER threshold)"
    mc_path = folder / MODEL_CONFIG
    if mc_path.is_file():
        thr = _read_json(mc_path).get("threshold")
        if thr is not None:
            return float(thr), f"{mc_path} (source-validation EER threshold of the exported epoch)"
    return None, None


# --------------------------------------------------------------------------- scoring (single process)


@dataclass
class Scored:
    """Frame-level scores (and optionally pooled features) of one or more dataset splits."""

    scores: list[float] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    video_ids: list[str] = field(default_factory=list)  # "domain/video_id", as the trials
    domains: list[str] = field(default_factory=list)
    features: list[np.ndarray] = field(default_factory=list)  # (B, C) blocks

    def feature_matrix(self) -> np.ndarray:
        return np.concatenate(self.features) if self.features else np.zeros((0, 0), np.float32)


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
def score_images(model: ANRLNet, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(B, C, H, W)`` float32 inputs -> (P(spoof) ``(B,)``, pooled features ``(B, F)``), on the model's device."""
    device = next(model.parameters()).device
    out = model(torch.from_numpy(images).to(device))
    p = torch.softmax(out.logits.float(), dim=1)[:, SPOOF]
    return p.cpu().numpy(), out.feature.float().mean(dim=(2, 3)).cpu().numpy()


def score_split(
    model: ANRLNet,
    cfg: TrialConfig,
    data_root: str | Path,
    domain: str,
    split: str,
    *,
    batch_size: int = 64,
    label: str | None = None,
    keep_features: bool = False,
    into: Scored | None = None,
    max_frames: int | None = None,
) -> Scored:
    """Score every crop of ``domain``'s ``split`` (frame level) with ``model`` on its device.

    Args:
        label: the name stored in ``Scored.domains`` (default ``domain``), e.g. "M (target)".
        into: append to this instead of a new :class:`Scored`.
        max_frames: score about this many crops at most (every n-th row; manifest counts).

    Raises:
        UserError: missing domain or an empty split.
    """
    from anrl_ray.data.transforms import FASTransform

    tf = FASTransform(cfg.img_size, cfg.in_channels, augment=False)
    out = into if into is not None else Scored()
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


def score_metrics(scored: Scored, threshold: float | None, what: str) -> dict[str, Any]:
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


# --------------------------------------------------------------------------- export


def _trial_dirs(trials_root: Path) -> dict[str, Path]:
    """Trial name (as ``collect_records`` keys it) -> the folder of its records and checkpoints."""
    from anrl_ray.records import read_records
    from anrl_ray.trial import RECORDS_FILE

    out: dict[str, Path] = {}
    for path in sorted(trials_root.rglob(RECORDS_FILE)):
        if "checkpoint" in path.parent.name:
            continue
        recs = read_records(path)
        if recs:
            out[recs[0].get("trial") or path.parent.name] = path.parent
    return out


def _compared(runs: Mapping[str, Sequence[Mapping[str, Any]]], method: str) -> dict[str, int]:
    full = {n: r for n, r in runs.items() if r and not r[0].get("holdout")}
    if method == "lodo":
        scores = lodo_scores(runs)
        return {
            "configurations_compared": len(scores),
            "epochs_compared": sum(len(v) for v in scores.values()),
            "holdout_runs": sum(1 for r in runs.values() if r and r[0].get("holdout")),
            "full_runs": len(full),
        }
    return {"trials_compared": len(full), "epochs_compared": sum(len(r) for r in full.values())}


def _sentence(sel: Selection, compared: Mapping[str, int], threshold: float) -> str:
    rec = sel.record
    metric = "HTER at its EER" if rec["config"].get("selection_metric", "hter") == "hter" else "1 - AUC"
    thr = (
        f" The decision threshold {threshold:.4f} is that epoch's EER threshold on its source validation videos."
    )
    if sel.method == "source_val":
        return (
            f"Selected by source validation: among {compared['trials_compared']} trial(s) trained on all sources "
            f"({compared['epochs_compared']} epoch records), trial {sel.trial} at epoch {sel.epoch} has the lowest "
            f"video-level {metric} ({sel.score:.4f}) on the held-out subjects (dev split) of the source domains "
            f"{', '.join(rec['sources'])}; no target data was used." + thr
        )
    if sel.method == "lodo":
        return (
            f"Selected by leave-one-source-domain-out validation: among {compared['configurations_compared']} "
            f"configuration(s) with a holdout run for every source ({compared['epochs_compared']} epochs), the "
            f"configuration of trial {sel.trial} at epoch {sel.epoch} has the lowest mean held-out-domain "
            f"{metric} ({sel.score:.4f}); the weights are that configuration's run on all sources at that epoch; "
            "no target data was used." + thr
        )
    return (
        f"ORACLE selection (an upper bound, NOT a result): among {compared['trials_compared']} trial(s) "
        f"({compared['epochs_compared']} epoch records), trial {sel.trial} at epoch {sel.epoch} has the best "
        f"TARGET-TEST AUC ({-sel.score:.4f}), as the reference code selects; it looked at the target test data, "
        "so every target number of this model is optimistic." + thr
    )


def _oracle_column(run: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    o = select_epoch_oracle(run)
    t = o.record["target_metrics"]
    return {
        "note": "UPPER BOUND: this trial's epoch with the best target-test AUC (selection on test data)",
        "epoch": o.epoch,
        "target_hter@target_eer": t["hter_eer"],
        "target_hter@source_val_threshold": t["hter"],
        "target_auc": t["auc"],
    }


def export_best(
    exp_dir: str | Path,
    method: str = "source_val",
    *,
    plots: bool = True,
    data_root: str | Path | None = None,
) -> Path:
    """Select from ``EXP/trials`` records and write ``EXP/best/`` (replaced atomically); returns its path.

    Then, with ``plots``, scores the target test split and the source dev splits with the
    exported model and writes ``EXP/plots/roc_target.png`` and ``tsne_features.png``. Plots
    that cannot be made (data root gone, one class only) are skipped with a warning; the
    export itself stands.

    Args:
        exp_dir: the experiment folder.
        method: ``source_val``, ``lodo`` or ``oracle`` (oracle = upper bound, labelled so).
        data_root: data for the plots (default: the trials' ``data_root``).

    Raises:
        UserError: no records, nothing selectable, or the selected epoch's checkpoint is gone.
    """
    from safetensors.torch import save_file

    from anrl_ray.records import collect_records
    from anrl_ray.trial import CHECKPOINT_FILE, checkpoint_dir_name

    exp_dir = Path(exp_dir)
    trials_root = exp_dir / TRIALS_DIR
    if method not in METHODS:
        raise UserError(f"--selection {method!r}: choose one of {', '.join(METHODS)}")
    if not trials_root.is_dir():
        raise UserError(f"{exp_dir} is not an experiment folder: {trials_root} is missing (run `anrl-ray search` first)")
    runs = collect_records(trials_root)
    if not runs:
        raise UserError(f"{trials_root} holds no records.jsonl with any record: no trial finished an epoch")
    try:
        sel = select(runs, method)
    except ValueError as e:
        raise UserError(f"{exp_dir}: cannot select by {method}: {e}") from e

    trial_dir = _trial_dirs(trials_root).get(sel.trial)
    if trial_dir is None:
        raise UserError(f"{trials_root}: no folder holds the records of the selected trial {sel.trial!r}")
    ckpt_dir = trial_dir / checkpoint_dir_name(sel.epoch)
    if not (ckpt_dir / CHECKPOINT_FILE).is_file():
        kept = sorted(p.name.removeprefix("checkpoint_epoch") for p in trial_dir.glob("checkpoint_epoch*"))
        kept_txt = ", ".join(str(int(k)) for k in kept if k.isdigit()) or "none"
        raise UserError(
            f"the selected checkpoint is gone: {ckpt_dir / CHECKPOINT_FILE} does not exist (trial {sel.trial} kept "
            f"checkpoints for epochs: {kept_txt}; checkpoint retention, --keep-checkpoints). Its metrics are still in "
            f"the records (see leaderboard.md). To export weights, retrain this configuration (config in "
            f"{trial_dir / 'records.jsonl'}) or re-run the search keeping all checkpoints."
        )
    model, cfg, state = load_model(ckpt_dir)
    if int(state["epoch"]) != sel.epoch:
        raise UserError(f"{ckpt_dir / CHECKPOINT_FILE} holds epoch {state['epoch']}, not the selected epoch {sel.epoch}")

    threshold = float(sel.record["thresholds"]["source_val_eer"])
    compared = _compared(runs, method)
    sentence = _sentence(sel, compared, threshold)
    full_run = runs.get(sel.trial) or [sel.record]
    selection = {
        "method": method,
        "upper_bound": method == "oracle",
        "trial": sel.trial,
        "epoch": sel.epoch,
        "score": sel.score,
        "score_meaning": {
            "oracle": "target-test AUC, negated (lower is better)",
            "lodo": f"mean held-out-source-domain {cfg.selection_metric} objective (lower is better)",
        }.get(method, f"source-validation {cfg.selection_metric} objective (lower is better)"),
        **compared,
        "how": sentence,
        "checkpoint_source": str(ckpt_dir),
        "exported": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    metrics_doc = {
        "selection": method,
        "threshold": threshold,
        "threshold_source": "EER threshold on the source validation videos at the selected epoch",
        "summary": sel.summary(),
        "oracle": _oracle_column(full_run),
        "record": sel.record,
    }
    model_config = {
        "format": MODEL_FORMAT,
        "architecture": "ANRLNet",
        "build_kwargs": dict(model.config),
        "input": {
            "img_size": cfg.img_size,
            "in_channels": cfg.in_channels,
            "channels": "R, G, B, H, S, V (OpenCV 8-bit HSV of the same crop)" if cfg.in_channels == 6 else "R, G, B",
            "normalisation": "each channel: (x / 255 - 0.5) / 0.5",
            "transform": f"anrl_ray.data.transforms.FASTransform({cfg.img_size}, {cfg.in_channels}, augment=False)",
        },
        "output": "ANRLOutput(logits (B, 2), depth (B, 1, s, s), feature (B, C, s, s)); score = softmax(logits)[:, 1]",
        "labels": {str(LIVE): "live", str(SPOOF): "spoof"},
        "decision": "spoof when P(spoof) >= threshold",
        "threshold": threshold,
        "protocol": cfg.protocol,
        "trial": sel.trial,
        "epoch": sel.epoch,
        "selection": method,
    }

    best = exp_dir / BEST_DIR
    tmp = exp_dir / f".{BEST_DIR}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        weights = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(weights, tmp / MODEL_FILE, metadata={"format": MODEL_FORMAT})
        _write_json(tmp / MODEL_CONFIG, model_config)
        shutil.copy2(ckpt_dir / CHECKPOINT_FILE, tmp / CHECKPOINT_FILE)
        cfg.save(tmp / "config.json")
        _write_json(tmp / METRICS_FILE, metrics_doc)
        _write_json(tmp / SELECTION_FILE, selection)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # publish: the old best/ is moved aside only once the new one is complete
    if best.exists():
        old = exp_dir / f".{BEST_DIR}.old-{os.getpid()}"
        best.rename(old)
        tmp.rename(best)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(best)

    if plots:
        try:
            write_best_plots(exp_dir, data_root=data_root)
        except UserError as e:
            warnings.warn(f"plots of the best model skipped: {e}")
    return best


def _write_json(path: Path, obj: Any) -> None:
    from anrl_ray.records import _clean

    path.write_text(json.dumps(_clean(obj), indent=2, sort_keys=True))


def write_best_plots(
    exp_dir: str | Path,
    data_root: str | Path | None = None,
    batch_size: int = 64,
    tsne_frames_per_source: int = 500,
) -> list[Path]:
    """ROC (target test, video level) and t-SNE (source dev + target test) of ``EXP/best/``.

    Every target test crop is scored (the ROC is video level); each source dev split only up to
    ``tsne_frames_per_source`` crops (the t-SNE subsamples anyway). Uses CUDA when present.

    Raises:
        UserError: best/ or the data is missing.
    """
    from anrl_ray.report import _message_png, plot_roc, plot_tsne

    exp_dir = Path(exp_dir)
    best = exp_dir / BEST_DIR
    model, cfg, _ = load_model(best)
    model.to(default_device())
    threshold, _src = exported_threshold(best)
    root = Path(data_root or cfg.data_root)
    if not root.is_dir():
        raise UserError(f"data root {root} (from best/config.json) not found; pass data_root= to write the plots")
    sel = _read_json(best / SELECTION_FILE)
    synthetic = _is_synthetic(root, cfg.target)
    tag = " [synthetic data]" if synthetic else ""

    target = score_split(model, cfg, root, cfg.target, "test", batch_size=batch_size, label=f"{cfg.target} (target test)",
                         keep_features=True)
    pooled = Scored()
    for d in cfg.sources:
        try:
            score_split(model, cfg, root, d, "dev", batch_size=batch_size, label=f"{d} (dev)", keep_features=True,
                        into=pooled, max_frames=tsne_frames_per_source)
        except UserError as e:  # an empty dev split only thins the t-SNE; say so
            warnings.warn(f"t-SNE: source {d} left out: {e}")
    plots = exp_dir / PLOTS_DIR
    plots.mkdir(parents=True, exist_ok=True)
    roc_path = plots / ROC_PNG
    title = (f"{cfg.protocol}: target {cfg.target} test (video level){tag}\n"
             f"{sel['method']} selection, trial {sel['trial']} epoch {sel['epoch']}")
    v_s, v_y, _ = metrics.video_level(target.scores, target.labels, target.video_ids)
    try:
        plot_roc(v_s, v_y, roc_path, title, threshold=threshold)
    except ValueError as e:
        warnings.warn(f"{roc_path.name}: {e}")
        _message_png(roc_path, "target ROC", f"cannot draw the ROC of {cfg.target} test: {e}")
    feats = np.concatenate([pooled.feature_matrix(), target.feature_matrix()]) if pooled.features else target.feature_matrix()
    tsne_path = plot_tsne(
        feats,
        pooled.domains + target.domains,
        pooled.labels + target.labels,
        plots / TSNE_PNG,
        title=f"{cfg.protocol}: pooled features, sources (dev) + target (test){tag}",
    )
    return [roc_path, tsne_path]


def _is_synthetic(data_root: Path, domain: str) -> bool:
    m = data_root / domain / "manifest.json"
    try:
        return m.is_file() and json.loads(m.read_text()).get("converter") == "synthetic"
    except json.JSONDecodeError:
        return False


# --------------------------------------------------------------------------- CLI


def _best_cli(args: argparse.Namespace) -> int:
    from anrl_ray.report import write_report

    exp = Path(args.experiment)
    if not exp.is_dir():
        raise UserError(f"EXPERIMENT_DIR {exp}: no such folder (an experiment folder, e.g. runs/OCI_M-20261128-120000)")
    method = args.selection
    if method is None:
        search = exp / "search.json"
        method = (_read_json(search).get("selection") if search.is_file() else None) or "source_val"
    if method == "oracle":
        print(
            "WARNING: --selection oracle picks the epoch with the best TARGET-TEST AUC. It is an upper bound that "
            "uses the test domain, not a result; best/ will be labelled as such.",
            file=sys.stderr,
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        best = export_best(exp, method, plots=not args.no_plots)
        report = write_report(exp, method)
    for w in caught:
        print(f"note: {w.message}", file=sys.stderr)
    summary = _read_json(best / METRICS_FILE)["summary"]
    sel = _read_json(best / SELECTION_FILE)
    print(json.dumps({**summary, "oracle_upper_bound": _read_json(best / METRICS_FILE)["oracle"]}, indent=2))
    print(sel["how"])
    print(f"leaderboard: {report['leaderboard_md']}")
    figures = [p for p in (exp / PLOTS_DIR / ROC_PNG, exp / PLOTS_DIR / TSNE_PNG) if p.is_file()] + list(report["plots"])
    if figures:
        print("plots: " + ", ".join(str(p) for p in figures))
    print(f"best: {best}")
    return 0


def _check_threshold(value: float | None) -> None:
    if value is not None and not np.isfinite(value):
        raise UserError(f"--threshold {value}: must be a finite number (a P(spoof) cut, e.g. 0.5)")


def _evaluate_cli(args: argparse.Namespace) -> int:
    _check_threshold(args.threshold)
    model, cfg, state = load_model(args.checkpoint)
    model.to(default_device(args.device))
    check_domain(args.data, args.domain)
    if args.threshold is not None:
        threshold, source = args.threshold, "--threshold"
    else:
        threshold, source = exported_threshold(args.checkpoint)
    scored = score_split(model, cfg, args.data, args.domain, args.split, batch_size=args.batch_size)
    result = {
        "checkpoint": str(args.checkpoint),
        "trial_protocol": cfg.protocol,
        "epoch": state.get("epoch"),
        "data": str(Path(args.data).resolve()),
        "domain": args.domain,
        "split": args.split,
        "threshold": threshold,
        "threshold_source": source,
        **score_metrics(scored, threshold, f"{args.domain} {args.split}"),
        "notes": (
            "label 0 live / 1 spoof, score P(spoof), spoof when score >= threshold. hter/apcer/bpcer/acer/acc: at "
            "'threshold'" + ("" if threshold is not None else " (none available: pass --threshold)")
            + "; hter_eer/eer: at this data's own EER threshold (uses these labels: optimistic)."
        ),
    }
    if _is_synthetic(Path(args.data), args.domain):
        result["warning"] = "synthetic data: not comparable with results on the real datasets"
    print(json.dumps(result, indent=2))
    return 0


def _predict_cli(args: argparse.Namespace) -> int:
    from anrl_ray.data.transforms import FASTransform

    _check_threshold(args.threshold)

    model, cfg, _ = load_model(args.checkpoint)
    model.to(default_device(args.device))
    if args.threshold is not None:
        threshold = args.threshold
    else:
        threshold, _ = exported_threshold(args.checkpoint)
        if threshold is None:
            raise UserError(
                f"{args.checkpoint}: no decision threshold found (best/{METRICS_FILE} 'threshold' or a checkpoint "
                f"folder's {METRICS_FILE}); re-export with `anrl-ray best EXP` or pass --threshold T"
            )
    tf = FASTransform(cfg.img_size, cfg.in_channels, augment=False)
    inputs = []
    for name in args.images:
        path = Path(name)
        if not path.is_file():
            raise UserError(f"image {path} not found")
        try:
            x, _ = tf(path.read_bytes(), None, LIVE)
        except (ValueError, OSError) as e:
            raise UserError(f"image {path} is not a readable JPEG/PNG face crop ({e})") from e
        inputs.append(x)
    for start in range(0, len(inputs), args.batch_size):
        p, _ = score_images(model, np.stack(inputs[start : start + args.batch_size]))
        for name, score in zip(args.images[start : start + args.batch_size], p):
            print(f"{name}\t{score:.6f}\t{'spoof' if score >= threshold else 'live'}")
    return 0


def register_cli(sub) -> None:
    p = sub.add_parser("best", help="re-select the best trial/epoch from an experiment's records and export it to EXP/best/")
    p.add_argument("experiment", metavar="EXPERIMENT_DIR")
    p.add_argument("--selection", choices=METHODS, default=None,
                   help="source_val or lodo (default: the search's own); oracle = upper bound using target data")
    p.add_argument("--no-plots", action="store_true", help="skip the ROC and t-SNE plots (no data needed)")
    p.set_defaults(func=_best_cli)

    p = sub.add_parser("evaluate", help="score a dataset domain with a checkpoint; JSON metrics at video and frame level")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="best/ folder, checkpoint_epochNNNN/ folder or checkpoint.pt")
    p.add_argument("--data", required=True, help="converted data root (DIR/O, DIR/C, ...)")
    p.add_argument("--domain", required=True, help="domain folder under --data, e.g. M")
    p.add_argument("--split", choices=SPLIT_CHOICES, default="test", help="default test")
    p.add_argument("--threshold", type=float, default=None, help="decision threshold (default: the exported one)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="default: CUDA when present")
    p.set_defaults(func=_evaluate_cli)

    p = sub.add_parser("predict", help="P(spoof) of face crops: path<TAB>score<TAB>live|spoof")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="best/ folder, checkpoint_epochNNNN/ folder or checkpoint.pt")
    p.add_argument("images", metavar="IMAGES", nargs="+", help="face crop image files (JPEG/PNG)")
    p.add_argument("--threshold", type=float, default=None, help="decision threshold (default: the exported one)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="default: CUDA when present")
    p.set_defaults(func=_predict_cli)
