"""The selected model, exported and used: ``EXP/best/`` and the evaluation of a checkpoint.

``export_best`` re-selects from the records (no retraining; ``anrl_ray.selection``), copies the
chosen epoch's checkpoint and writes the bundle a user of the model needs (its files:
``anrl_ray.checkpoint``). ``write_best_plots`` draws the target ROC and the t-SNE of ``best/``.
``evaluate_checkpoint`` backs ``anrl-ray evaluate``; ``anrl-ray predict`` is :mod:`anrl_ray.predict`.

Scoring here is a plain single process (no Ray, no DDP): ``anrl_ray.scoring``.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from anrl_ray import metrics
from anrl_ray.checkpoint import (
    CHECKPOINT_FILE,
    SELECTION_FILE,
    exported_threshold,
    load_model,
    model_card,
    read_json,
    write_bundle,
)
from anrl_ray.errors import UserError
from anrl_ray.experiment import RECORDS_FILE, Experiment, checkpoint_dir_name, checkpoint_epochs
from anrl_ray.plots import message_png, plot_roc, plot_tsne
from anrl_ray.records import collect_records, run_folders
from anrl_ray.scoring import Scores, check_domain, default_device, is_synthetic, score_metrics, score_split
from anrl_ray.selection import METHODS, SCORE_MEANING, compared, describe, oracle_column, select

ROC_PNG = "roc_target.png"
TSNE_PNG = "tsne_features.png"


def export_best(
    exp_dir: str | Path | Experiment,
    method: str = "source_val",
    *,
    plots: bool = True,
    data_root: str | Path | None = None,
    runs: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> Path:
    """Select from the experiment's records and write its ``best/`` (replaced atomically); returns its path.

    Then, with ``plots``, scores the target test split and the source dev splits with the
    exported model and writes ``plots/roc_target.png`` and ``tsne_features.png``. Plots that
    cannot be made (data root gone, one class only) are skipped with a warning; the export stands.

    Args:
        exp_dir: the experiment folder.
        method: ``source_val``, ``lodo`` or ``oracle`` (oracle = upper bound, labelled so).
        data_root: data for the plots (default: the trials' ``data_root``).
        runs: the records already collected (default: read them).

    Raises:
        UserError: no records, nothing selectable, or the selected epoch's checkpoint is gone.
    """
    exp = (exp_dir if isinstance(exp_dir, Experiment) else Experiment(exp_dir)).require()
    if method not in METHODS:
        raise UserError(f"--selection {method!r}: choose one of {', '.join(METHODS)}")
    runs = collect_records(exp.trials) if runs is None else runs
    if not runs:
        raise UserError(f"{exp.trials} holds no records.jsonl with any record: no trial finished an epoch")
    try:
        sel = select(runs, method)
    except ValueError as e:
        raise UserError(f"{exp.path}: cannot select by {method}: {e}") from e

    trial_dir = run_folders(exp.trials).get(sel.trial)
    if trial_dir is None:
        raise UserError(f"{exp.trials}: no folder holds the records of the selected trial {sel.trial!r}")
    ckpt_dir = exp.fetch(trial_dir / checkpoint_dir_name(sel.epoch))  # downloaded when the experiment is at a URI
    if not (ckpt_dir / CHECKPOINT_FILE).is_file():
        kept = ", ".join(str(e) for e in checkpoint_epochs(trial_dir)) or "none"
        raise UserError(
            f"the selected checkpoint is gone: {ckpt_dir / CHECKPOINT_FILE} does not exist (trial {sel.trial} kept "
            f"checkpoints for epochs: {kept}; checkpoint retention, --keep-checkpoints). Its metrics are still in "
            f"the records (see leaderboard.md). To export weights, retrain this configuration (config in "
            f"{trial_dir / RECORDS_FILE}) or re-run the search keeping all checkpoints."
        )
    model, cfg, state = load_model(ckpt_dir)
    if int(state["epoch"]) != sel.epoch:
        raise UserError(f"{ckpt_dir / CHECKPOINT_FILE} holds epoch {state['epoch']}, not the selected epoch {sel.epoch}")

    threshold = float(sel.record["thresholds"]["source_val_eer"])
    counts = compared(runs, method)
    selection = {
        "method": method,
        "upper_bound": method == "oracle",
        "trial": sel.trial,
        "epoch": sel.epoch,
        "score": sel.score,
        "score_meaning": SCORE_MEANING[method].format(metric=cfg.selection_metric),
        **counts,
        "how": describe(sel, counts, threshold),
        "checkpoint_source": str(ckpt_dir),
        "exported": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    metrics_doc = {
        "selection": method,
        "threshold": threshold,
        "threshold_source": "EER threshold on the source validation videos at the selected epoch",
        "summary": sel.summary(),
        "oracle": oracle_column(runs.get(sel.trial) or [sel.record]),
        "record": sel.record,
    }
    card = model_card(model, cfg, threshold, trial=sel.trial, epoch=sel.epoch, selection=method)
    best = write_bundle(exp.best, exp.scratch("best.tmp"), model, cfg, ckpt_dir / CHECKPOINT_FILE,
                        card=card, metrics=metrics_doc, selection=selection)
    if plots:
        try:
            write_best_plots(exp, data_root=data_root)
        except UserError as e:
            warnings.warn(f"plots of the best model skipped: {e}")
    return best


def write_best_plots(
    exp_dir: str | Path | Experiment,
    data_root: str | Path | None = None,
    batch_size: int = 64,
    tsne_frames_per_source: int = 500,
) -> list[Path]:
    """ROC (target test, video level) and t-SNE (source dev + target test) of the experiment's ``best/``.

    Every target test crop is scored (the ROC is video level); each source dev split only up to
    ``tsne_frames_per_source`` crops (the t-SNE subsamples anyway). Uses CUDA when present.

    Raises:
        UserError: best/ or the data is missing.
    """
    exp = exp_dir if isinstance(exp_dir, Experiment) else Experiment(exp_dir)
    model, cfg, _ = load_model(exp.best)
    model.to(default_device())
    threshold, _src = exported_threshold(exp.best)
    root = Path(data_root or cfg.data_root)
    if not root.is_dir():
        raise UserError(f"data root {root} (from best/config.json) not found; pass data_root= to write the plots")
    sel = read_json(exp.best / SELECTION_FILE)
    tag = " [synthetic data]" if is_synthetic(root, cfg.target) else ""

    target = score_split(model, cfg, root, cfg.target, "test", batch_size=batch_size, label=f"{cfg.target} (target test)",
                         keep_features=True)
    pooled = Scores()
    for d in cfg.sources:
        try:
            score_split(model, cfg, root, d, "dev", batch_size=batch_size, label=f"{d} (dev)", keep_features=True,
                        into=pooled, max_frames=tsne_frames_per_source)
        except UserError as e:  # an empty dev split only thins the t-SNE; say so
            warnings.warn(f"t-SNE: source {d} left out: {e}")
    exp.plots.mkdir(parents=True, exist_ok=True)
    roc_path = exp.plots / ROC_PNG
    title = (f"{cfg.protocol}: target {cfg.target} test (video level){tag}\n"
             f"{sel['method']} selection, trial {sel['trial']} epoch {sel['epoch']}")
    v_s, v_y, _ = metrics.video_level(target.scores, target.labels, target.video_ids)
    try:
        plot_roc(v_s, v_y, roc_path, title, threshold=threshold)
    except ValueError as e:
        warnings.warn(f"{roc_path.name}: {e}")
        message_png(roc_path, "target ROC", f"cannot draw the ROC of {cfg.target} test: {e}")
    feats = np.concatenate([pooled.feature_matrix(), target.feature_matrix()]) if pooled.features else target.feature_matrix()
    tsne_path = plot_tsne(
        feats,
        pooled.domains + target.domains,
        pooled.labels + target.labels,
        exp.plots / TSNE_PNG,
        title=f"{cfg.protocol}: pooled features, sources (dev) + target (test){tag}",
    )
    return [roc_path, tsne_path]


def check_threshold(value: float | None) -> None:
    if value is not None and not np.isfinite(value):
        raise UserError(f"--threshold {value}: must be a finite number (a P(spoof) cut, e.g. 0.5)")


def evaluate_checkpoint(
    checkpoint: str | Path, data_root: str | Path, domain: str, split: str = "test", *,
    threshold: float | None = None, batch_size: int = 64, device: str = "auto",
) -> dict[str, Any]:
    """Video- and frame-level metrics of a checkpoint on one split of a converted domain.

    The threshold is ``threshold`` if given, else the one exported beside the checkpoint.
    """
    check_threshold(threshold)
    model, cfg, state = load_model(checkpoint)
    model.to(default_device(device))
    check_domain(data_root, domain)
    source = "--threshold"
    if threshold is None:
        threshold, source = exported_threshold(checkpoint)
    scored = score_split(model, cfg, data_root, domain, split, batch_size=batch_size)
    result = {
        "checkpoint": str(checkpoint),
        "trial_protocol": cfg.protocol,
        "epoch": state.get("epoch"),
        "data": str(Path(data_root).resolve()),
        "domain": domain,
        "split": split,
        "threshold": threshold,
        "threshold_source": source,
        **score_metrics(scored, threshold, f"{domain} {split}"),
        "notes": (
            "label 0 live / 1 spoof, score P(spoof), spoof when score >= threshold. hter/apcer/bpcer/acer/acc: at "
            "'threshold'" + ("" if threshold is not None else " (none available: pass --threshold)")
            + "; hter_eer/eer: at this data's own EER threshold (uses these labels: optimistic)."
        ),
    }
    if is_synthetic(data_root, domain):
        result["warning"] = "synthetic data: not comparable with results on the real datasets"
    return result
