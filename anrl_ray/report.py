"""Experiment report: leaderboard (Markdown + CSV) and the figures (ROC, t-SNE, Optuna).

Everything here is a function of the per-epoch records (``anrl_ray.records``) or of scores
handed in; nothing retrains. Numbers are fractions in the CSV and percentages in the Markdown.
Every target number is labelled with how its epoch was selected: the ``oracle_*`` columns
(best target-test AUC per trial, as the reference code selects) are an upper bound that looks
at the test domain, never a result.
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from anrl_ray.selection import METHODS, Run, lodo_scores, select_epoch_oracle, select_epoch_source_val

# Hyperparameters shown in the leaderboard (read from each record's resolved config).
HPARAMS = ("w_depth", "w_idcl", "w_icsl", "meta_step_size", "lr", "weight_decay", "gate_tau", "attention", "meta_mode")

# Leaderboard columns in order; the CSV has exactly these, the Markdown a readable subset.
SELECTED = (
    "epoch",
    "selection_score",
    "val_hter_eer",
    "val_auc",
    "target_hter@source_val_threshold",
    "target_hter@target_eer",
    "target_auc",
    "target_tpr@fpr=1%",
    "threshold",
)
ORACLE = ("oracle_epoch", "oracle_target_hter@target_eer", "oracle_target_auc")
COLUMNS = ("rank", "trial", "selection", *SELECTED, *ORACLE, *HPARAMS, "epochs_recorded")

TRIALS_DIR = "trials"
SEARCH_FILE = "search.json"
LEADERBOARD_MD = "leaderboard.md"
LEADERBOARD_CSV = "leaderboard.csv"


# --------------------------------------------------------------------------- leaderboard


def _selected_columns(record: Mapping[str, Any], score: float | None) -> dict[str, Any]:
    """The SELECTED columns of one record (None everywhere when no epoch is selected)."""
    if record is None:
        return {k: None for k in SELECTED}
    t = record["target_metrics"]
    return {
        "epoch": int(record["epoch"]),
        "selection_score": score,
        "val_hter_eer": record["val"]["hter_eer"],
        "val_auc": record["val"]["auc"],
        "target_hter@source_val_threshold": t["hter"],
        "target_hter@target_eer": t["hter_eer"],
        "target_auc": t["auc"],
        "target_tpr@fpr=1%": t["tpr@fpr=1%"],
        "threshold": record["thresholds"]["source_val_eer"],
    }


def leaderboard(runs: Mapping[str, Run], method: str = "source_val") -> list[dict[str, Any]]:
    """One row per full run (records without ``holdout``), best first by ``method``'s score.

    Per trial: the epoch ``method`` selects and its score (lower is better), validation and
    target metrics at that epoch (target HTER at the source-validation threshold, and at the
    target's own EER: the literature's number), the ``oracle_*`` upper bound (the trial's
    best-target-AUC epoch) and the key hyperparameters. Under ``lodo`` a trial whose
    configuration lacks a complete set of holdout runs has no selected epoch (empty columns,
    listed last).

    Raises:
        ValueError: unknown ``method``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown selection method {method!r}; choose one of {', '.join(METHODS)}")
    lodo = lodo_scores(runs) if method == "lodo" else {}
    rows = []
    for name, run in runs.items():
        if not run or run[0].get("holdout"):
            continue
        if method == "source_val":
            s = select_epoch_source_val(run)
            rec, score = s.record, s.score
        elif method == "oracle":
            s = select_epoch_oracle(run)
            rec, score = s.record, s.score
        else:
            per_epoch = lodo.get(run[0].get("group") or name, {})
            by_epoch = {int(r["epoch"]): r for r in run}
            cands = [(sc, e) for e, sc in per_epoch.items() if e in by_epoch]
            rec, score = (None, None)
            if cands:
                score, epoch = min(cands)
                rec = by_epoch[epoch]
        oracle = select_epoch_oracle(run).record
        cfg = run[-1].get("config", {})
        rows.append(
            {
                "trial": name,
                "selection": method,
                **_selected_columns(rec, None if score is None else float(score)),
                "oracle_epoch": int(oracle["epoch"]),
                "oracle_target_hter@target_eer": oracle["target_metrics"]["hter_eer"],
                "oracle_target_auc": oracle["target_metrics"]["auc"],
                **{k: cfg.get(k) for k in HPARAMS},
                "epochs_recorded": len(run),
            }
        )

    def key(row):
        sc = row["selection_score"]
        missing = sc is None or not math.isfinite(sc)
        # ties as in anrl_ray.selection: higher source-validation AUC first (source data only)
        val_auc = row.get("val_auc")
        return (missing, sc if not missing else 0.0, -(val_auc or 0.0), row["trial"])

    rows.sort(key=key)
    for i, row in enumerate(rows, 1):
        row["rank"] = i
    return [{c: row.get(c) for c in COLUMNS} for row in rows]


def experiment_info(exp_dir: str | Path) -> dict[str, Any]:
    """Protocol, data root, Optuna study and whether the data is the synthetic benchmark.

    Read from ``EXP/search.json``; where that is missing or incomplete, from the first record
    under ``EXP/trials``. ``synthetic`` is True when any domain manifest of the protocol says
    ``converter == "synthetic"``; None when the data root cannot be read.
    """
    exp_dir = Path(exp_dir)
    info: dict[str, Any] = {}
    search = exp_dir / SEARCH_FILE
    if search.is_file():
        try:
            info.update(json.loads(search.read_text()))
        except json.JSONDecodeError as e:
            warnings.warn(f"{search} is not valid JSON ({e}); reading the protocol from the records instead")
    if not info.get("protocol") or not info.get("data_root"):
        from anrl_ray.records import read_records

        for path in sorted((exp_dir / TRIALS_DIR).rglob("records.jsonl")):
            recs = read_records(path)
            if recs:
                cfg = recs[0].get("config", {})
                info.setdefault("protocol", cfg.get("protocol") or recs[0].get("protocol"))
                info.setdefault("data_root", cfg.get("data_root"))
                break
    info["synthetic"] = _is_synthetic(info.get("data_root"), info.get("protocol"))
    return info


def _is_synthetic(data_root: str | None, protocol: str | None) -> bool | None:
    if not data_root:
        return None
    from anrl_ray.protocols import PROTOCOLS

    root = Path(data_root)
    proto = PROTOCOLS.get(protocol or "")
    if proto is not None:
        domains = [*proto.sources, proto.target]
    else:
        domains = [p.name for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
    seen = False
    for d in domains:
        manifest = root / d / "manifest.json"
        if manifest.is_file():
            seen = True
            try:
                if json.loads(manifest.read_text()).get("converter") == "synthetic":
                    return True
            except json.JSONDecodeError:
                continue
    return False if seen else None


def _fmt(value: Any, column: str) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        if column in ("selection_score", "threshold") or column in HPARAMS:
            return f"{value:.4g}"
        return f"{100 * value:.2f}"  # HTER / AUC / TPR as percentages
    return str(value)


_MD_HEADERS = {
    "rank": "#",
    "trial": "trial",
    "epoch": "epoch",
    "selection_score": "sel. score",
    "val_hter_eer": "val HTER",
    "val_auc": "val AUC",
    "target_hter@source_val_threshold": "**target HTER** @src-val thr",
    "target_hter@target_eer": "target HTER @tgt EER",
    "target_auc": "target AUC",
    "target_tpr@fpr=1%": "TPR@FPR=1%",
    "oracle_epoch": "oracle epoch",
    "oracle_target_hter@target_eer": "oracle HTER @tgt EER",
    "oracle_target_auc": "oracle AUC",
}


def leaderboard_markdown(rows: Sequence[Mapping[str, Any]], method: str, info: Mapping[str, Any]) -> str:
    """The Markdown text of ``EXP/leaderboard.md`` (header, warnings, table, column notes)."""
    protocol = info.get("protocol") or "unknown"
    lines = [f"# Leaderboard: {protocol}", ""]
    if info.get("synthetic"):
        lines += [
            "> **WARNING: synthetic data.** These numbers come from the generated synthetic benchmark, "
            "not from OULU-NPU / CASIA-FASD / Replay-Attack / MSU-MFSD. They are NOT comparable with "
            "the paper's table and say nothing about real face anti-spoofing performance.",
            "",
        ]
    lines += [f"- Protocol: **{protocol}**"]
    if info.get("data_root"):
        lines += [f"- Data: `{info['data_root']}`"]
    lines += [f"- Selection method: **{method}**: {_METHOD_TEXT[method]}"]
    if method == "oracle":
        lines += [
            "",
            "> **The selection itself is the oracle: every target number in this table is an upper bound "
            "obtained by looking at the target test data.**",
        ]
    lines += [f"- Trials: {len(rows)}", ""]
    cols = [c for c in _MD_HEADERS] + list(HPARAMS)
    lines.append("| " + " | ".join(_MD_HEADERS.get(c, c) for c in cols) + " |")
    lines.append("|" + "|".join("---:" if c not in ("trial", "attention", "meta_mode") else "---" for c in cols) + "|")
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c), c) for c in cols) + " |")
    lines += [
        "",
        "HTER, AUC and TPR in %, video level. *target HTER @src-val thr*: at the threshold chosen on "
        "source validation data (what a deployed model would see). *target HTER @tgt EER*: at the "
        "target's own EER threshold (the number the literature reports; it peeks at the target labels).",
        "The **oracle** columns (each trial's best-target-AUC epoch, as the reference code selects) are "
        "an UPPER BOUND that uses target test data for selection; never report them as results.",
        "*sel. score*: the selection objective, lower is better.",
        "",
    ]
    return "\n".join(lines)


_METHOD_TEXT = {
    "source_val": "per trial, the epoch with the best score on held-out source subjects (dev split); "
    "no target data is used",
    "lodo": "per configuration, the epoch with the best mean score on a held-out source domain over "
    "leave-one-source-out runs; no target data is used",
    "oracle": "per trial, the epoch with the best target-test AUC (the reference code's selection; "
    "an upper bound, not a result)",
}


def write_leaderboard(exp_dir: str | Path, rows: Sequence[Mapping[str, Any]], method: str) -> tuple[Path, Path]:
    """Write ``EXP/leaderboard.md`` and ``EXP/leaderboard.csv``; returns their paths."""
    exp_dir = Path(exp_dir)
    if method not in METHODS:
        raise ValueError(f"unknown selection method {method!r}; choose one of {', '.join(METHODS)}")
    info = experiment_info(exp_dir)
    md_path, csv_path = exp_dir / LEADERBOARD_MD, exp_dir / LEADERBOARD_CSV
    tmp = md_path.with_suffix(".md.tmp")
    tmp.write_text(leaderboard_markdown(rows, method, info))
    tmp.replace(md_path)
    tmp = csv_path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(COLUMNS))
        w.writeheader()
        for row in rows:
            w.writerow({c: "" if row.get(c) is None else row.get(c) for c in COLUMNS})
    tmp.replace(csv_path)
    return md_path, csv_path


# --------------------------------------------------------------------------- figures


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display; safe to call repeatedly
    import matplotlib.pyplot as plt

    return plt


def _message_png(path: Path, title: str, message: str) -> Path:
    """A PNG that says why a figure could not be drawn (a report never crashes on a figure)."""
    import textwrap

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.axis("off")
    ax.text(0.5, 0.6, title, ha="center", va="center", fontsize=12, weight="bold")
    ax.text(0.5, 0.35, textwrap.fill(message, 70), ha="center", va="center", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_roc(
    scores: Sequence[float] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    path: str | Path,
    title: str,
    threshold: float | None = None,
) -> Path:
    """ROC of one score set (spoof = positive), AUC and EER in the legend.

    Args:
        scores: ``(N,)`` P(spoof), normally video-level target scores.
        labels: ``(N,)`` 0 live / 1 spoof.
        path: PNG to write.
        title: figure title.
        threshold: the operating threshold (e.g. source-validation EER); marked on the curve with
            its APCER / BPCER.
    """
    from sklearn.metrics import roc_curve

    from anrl_ray import SPOOF, metrics

    path = Path(path)
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    m = metrics.evaluate_scores(s, y, threshold=threshold)
    fpr, tpr, _ = roc_curve(y, s, pos_label=SPOOF)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr, lw=2, label=f"ROC (AUC {100 * m['auc']:.2f} %)")
    ax.plot([0, 1], [0, 1], ls=":", c="grey", lw=1)
    ax.plot([0, 1], [1, 0], ls="--", c="lightgrey", lw=1)
    ax.scatter([m["eer"]], [1 - m["eer"]], marker="s", c="grey", zorder=3, label=f"EER {100 * m['eer']:.2f} %")
    if threshold is not None:
        op_fpr, op_tpr = m["bpcer"], 1 - m["apcer"]
        ax.scatter([op_fpr], [op_tpr], marker="*", s=160, c="red", zorder=4,
                   label=f"source-val threshold {threshold:.3f}\nHTER {100 * m['hter']:.2f} % "
                         f"(APCER {100 * m['apcer']:.1f}, BPCER {100 * m['bpcer']:.1f})")
    ax.set_xlabel("FPR = BPCER (live rejected)")
    ax.set_ylabel("TPR = 1 - APCER (spoof detected)")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_tsne(
    features: np.ndarray,
    domains: Sequence[str],
    labels: Sequence[int],
    path: str | Path,
    title: str = "t-SNE of pooled features",
    max_points: int = 2000,
    seed: int = 0,
) -> Path:
    """t-SNE (sklearn) of pooled features: colour = domain, marker = live (o) / spoof (x).

    Args:
        features: ``(N, C)`` pooled features.
        domains: ``(N,)`` domain name of each sample (e.g. "O", "C", "I", "M (target)").
        labels: ``(N,)`` 0 live / 1 spoof.
        path: PNG to write.
        max_points: a fixed-seed subsample above this size (t-SNE is quadratic-ish).
    """
    from sklearn.manifold import TSNE

    path = Path(path)
    x = np.asarray(features, dtype=np.float32).reshape(len(features), -1)
    dom = np.asarray(domains).astype(str)
    y = np.asarray(labels).astype(int)
    if not (len(x) == len(dom) == len(y)):
        raise ValueError(f"features, domains and labels differ in length: {len(x)}, {len(dom)}, {len(y)}")
    if len(x) < 5:
        return _message_png(path, title, f"only {len(x)} samples: too few for a t-SNE (need at least 5)")
    rng = np.random.default_rng(seed)
    if len(x) > max_points:
        idx = np.sort(rng.choice(len(x), max_points, replace=False))
        x, dom, y = x[idx], dom[idx], y[idx]
    perplexity = float(min(30.0, max(1.0, (len(x) - 1) / 3)))
    emb = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    colours = plt.get_cmap("tab10")
    for i, d in enumerate(sorted(set(dom))):
        for lab, marker, name in ((0, "o", "live"), (1, "x", "spoof")):
            sel = (dom == d) & (y == lab)
            if sel.any():
                ax.scatter(emb[sel, 0], emb[sel, 1], s=12, marker=marker, color=colours(i % 10),
                           facecolors="none" if marker == "o" else None, label=f"{d} {name}", alpha=0.8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, markerscale=1.5, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


OPTUNA_FIGURES = ("optuna_importances.png", "optuna_history.png")


def plot_optuna(storage_url: str, study_name: str, out_dir: str | Path) -> list[Path]:
    """Optuna's parameter importances and optimisation history as PNGs in ``out_dir``.

    Never raises on a study that cannot be drawn (missing storage, fewer than 2 completed
    trials, importances failing, e.g. on a constant objective): the PNG then states why, and a
    warning is issued. Returns the two paths (``OPTUNA_FIGURES``).
    """
    import optuna

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    imp_path, hist_path = (out_dir / n for n in OPTUNA_FIGURES)
    plt = _pyplot()

    def fail(path: Path, title: str, why: str) -> Path:
        warnings.warn(f"{path.name}: {why}")
        return _message_png(path, title, why)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=study_name, storage=storage_url)
    except Exception as e:  # noqa: BLE001  missing file/study: the figure says so
        why = f"cannot load Optuna study {study_name!r} from {storage_url}: {type(e).__name__}: {e}"
        return [fail(imp_path, "parameter importances", why), fail(hist_path, "optimisation history", why)]
    done = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if len(done) < 2:
        why = f"study {study_name!r} has {len(done)} completed trial(s); these figures need at least 2"
        return [fail(imp_path, "parameter importances", why), fail(hist_path, "optimisation history", why)]

    from optuna.visualization import matplotlib as ovm

    out = []
    for path, title, draw in (
        (imp_path, "parameter importances", ovm.plot_param_importances),
        (hist_path, "optimisation history", ovm.plot_optimization_history),
    ):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                ax = draw(study)
            ax = ax.flat[0] if isinstance(ax, np.ndarray) else ax
            fig = ax.figure
            fig.set_size_inches(7, 4.5)
            fig.tight_layout()
            fig.savefig(path, dpi=100)
            plt.close(fig)
            out.append(path)
        except Exception as e:  # noqa: BLE001  e.g. importances on a constant objective
            plt.close("all")
            out.append(fail(path, title, f"Optuna could not draw it: {type(e).__name__}: {e}"))
    return out


def optuna_storage(exp_dir: str | Path, info: Mapping[str, Any] | None = None) -> tuple[str, str] | None:
    """(storage URL, study name) of an experiment's Optuna study, or None when it has none."""
    exp_dir = Path(exp_dir)
    info = info if info is not None else experiment_info(exp_dir)
    name = info.get("study_name")
    url = info.get("optuna_storage") or info.get("storage")
    if not url and (exp_dir / "optuna.db").is_file():
        url = f"sqlite:///{(exp_dir / 'optuna.db').resolve()}"
    return (url, name) if url and name else None


def write_report(exp_dir: str | Path, method: str = "source_val") -> dict[str, Any]:
    """Leaderboard (md + csv) and the Optuna figures of an experiment; returns the written paths."""
    from anrl_ray.records import collect_records

    exp_dir = Path(exp_dir)
    runs = collect_records(exp_dir / TRIALS_DIR)
    rows = leaderboard(runs, method)
    md, csv_path = write_leaderboard(exp_dir, rows, method)
    out: dict[str, Any] = {"leaderboard_md": md, "leaderboard_csv": csv_path, "plots": []}
    study = optuna_storage(exp_dir)
    if study is not None:
        out["plots"] = plot_optuna(study[0], study[1], exp_dir / "plots")
    return out
