"""Figures of an experiment: target ROC, t-SNE of pooled features, Optuna importances and history.

A figure that cannot be drawn (too few samples, one class, a study without completed trials)
becomes a PNG that says why: a report never crashes on a figure.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display; safe to call repeatedly
    import matplotlib.pyplot as plt

    return plt


def message_png(path: Path, title: str, message: str) -> Path:
    """A PNG that says why a figure could not be drawn (a report never crashes on a figure)."""
    import textwrap

    plt = pyplot()
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
    plt = pyplot()
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
        return message_png(path, title, f"only {len(x)} samples: too few for a t-SNE (need at least 5)")
    rng = np.random.default_rng(seed)
    if len(x) > max_points:
        idx = np.sort(rng.choice(len(x), max_points, replace=False))
        x, dom, y = x[idx], dom[idx], y[idx]
    perplexity = float(min(30.0, max(1.0, (len(x) - 1) / 3)))
    emb = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    plt = pyplot()
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
    plt = pyplot()

    def fail(path: Path, title: str, why: str) -> Path:
        warnings.warn(f"{path.name}: {why}")
        return message_png(path, title, why)

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
