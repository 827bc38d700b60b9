"""The end of an experiment: leaderboard (Markdown + CSV), ``best/``, figures, in one :func:`finish`.

The search, ``anrl-ray best`` and the re-evaluation all call :func:`finish`. Everything here is
a function of the per-epoch records (``anrl_ray.records``); every choice of an epoch or a trial
is asked of ``anrl_ray.selection``; nothing retrains. Numbers are fractions in the CSV and percentages in the Markdown.
Every target number is labelled with how its epoch was selected: the ``oracle_*`` columns
(best target-test AUC per trial, as the reference code selects) are an upper bound that looks
at the test domain, never a result.
"""

from __future__ import annotations

import csv
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from anrl_ray.errors import UserError
from anrl_ray.experiment import STUDY_NAME, Experiment
from anrl_ray.records import collect_records, collect_states, read_records
from anrl_ray.selection import METHODS, Run, lodo_scores, select_epoch_oracle, select_run

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
    "target_hter_ci95",
    "target_auc_ci95",
    "target_apcer_max",
    "target_acer_iso",
    "threshold",
)
ORACLE = ("oracle_epoch", "oracle_target_hter@target_eer", "oracle_target_auc")
COLUMNS = ("rank", "trial", "status", "selection", *SELECTED, *ORACLE, *HPARAMS, "epochs_recorded")



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
        "target_hter_ci95": t.get("target_hter_ci95"),
        "target_auc_ci95": t.get("target_auc_ci95"),
        "target_apcer_max": t.get("apcer_max"),
        "target_acer_iso": t.get("acer_iso"),
        "threshold": record["thresholds"]["source_val_eer"],
    }


def leaderboard(
    runs: Mapping[str, Run], method: str = "source_val", states: Mapping[str, Mapping[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """One row per full run (records without ``holdout``), best first by ``method``'s score.

    Per trial: the epoch ``method`` selects and its score (lower is better), validation and
    target metrics at that epoch (target HTER at the source-validation threshold, and at the
    target's own EER: the literature's number), the ``oracle_*`` upper bound (the trial's
    best-target-AUC epoch) and the key hyperparameters. Under ``lodo`` a trial whose
    configuration lacks a complete set of holdout runs has no selected epoch (empty columns,
    listed last). ``states`` (``records.collect_states``) labels each row with how its run
    ended and adds, unranked and last, the runs that failed, diverged or were interrupted
    (never selectable, so absent from ``runs``).

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
        sel = select_run(run, method, lodo)
        rec, score = (sel.record, sel.score) if sel is not None else (None, None)
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
    states = states or {}
    for row in rows:
        row["status"] = states.get(row["trial"], {}).get("state", "unfinished")
    for name, st in sorted(states.items()):
        if name not in runs and st["state"] in ("failed", "diverged", "interrupted") and "-holdout" not in name:
            rows.append({"trial": name, "selection": method, "epochs_recorded": st.get("epochs", 0),
                         "status": " ".join(f"{st['state']}: {st.get('reason', '')}".split())[:200]})
    return [{c: row.get(c) for c in COLUMNS} for row in rows]


def experiment_info(exp: Experiment) -> dict[str, Any]:
    """Protocol, data root, Optuna study and whether the data is the synthetic benchmark.

    Read from ``search.json``; where that is missing or incomplete, from the first record under
    the trials folder. ``synthetic`` is True when any domain of the protocol is the synthetic
    benchmark; None when the data root cannot be read.
    """
    info: dict[str, Any] = {}
    try:
        info.update(exp.settings())
    except UserError as e:
        warnings.warn(f"{e}; reading the protocol from the records instead")
    if not info.get("protocol") or not info.get("data_root"):
        for path in exp.run_records_files():
            recs = read_records(path)
            if recs:
                cfg = recs[0].get("config", {})
                info.setdefault("protocol", cfg.get("protocol") or recs[0].get("protocol"))
                info.setdefault("data_root", cfg.get("data_root"))
                break
    info["synthetic"] = _is_synthetic(info.get("data_root"), info.get("protocol"))
    return info


def _is_synthetic(data_root: str | None, protocol: str | None) -> bool | None:
    from anrl_ray.data.format import MANIFEST
    from anrl_ray.protocols import PROTOCOLS
    from anrl_ray.scoring import is_synthetic

    if not data_root:
        return None
    root = Path(data_root)
    proto = PROTOCOLS.get(protocol or "")
    if proto is not None:
        domains = [*proto.sources, proto.target]
    else:
        domains = [p.name for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
    present = [d for d in domains if (root / d / MANIFEST).is_file()]
    if not present:
        return None
    return any(is_synthetic(root, d) for d in present)


def _fmt(value: Any, column: str) -> str:
    if value is None:
        return "–"
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        return f"{100 * value[0]:.1f}–{100 * value[1]:.1f}"  # a 95 % interval, in %
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
    "status": "status",
    "epoch": "epoch",
    "selection_score": "sel. score",
    "val_hter_eer": "val HTER",
    "val_auc": "val AUC",
    "target_hter@source_val_threshold": "**target HTER** @src-val thr",
    "target_hter@target_eer": "target HTER @tgt EER",
    "target_auc": "target AUC",
    "target_tpr@fpr=1%": "TPR@FPR=1%",
    "target_hter_ci95": "target HTER 95% CI",
    "target_auc_ci95": "target AUC 95% CI",
    "target_acer_iso": "ACER (ISO, worst PAI)",
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
    lines.append("|" + "|".join("---:" if c not in ("trial", "status", "attention", "meta_mode") else "---" for c in cols) + "|")
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c), c) for c in cols) + " |")
    lines += [
        "",
        "HTER, AUC and TPR in %, video level. *target HTER @src-val thr*: at the threshold chosen on "
        "source validation data (what a deployed model would see). *target HTER @tgt EER*: at the "
        "target's own EER threshold (the number the literature reports; it peeks at the target labels).",
        "The **oracle** columns (each trial's best-target-AUC epoch, as the reference code selects) are "
        "an UPPER BOUND that uses target test data for selection; never report them as results.",
        "*sel. score*: the selection objective, lower is better. *95% CI*: bootstrap over target videos "
        "(1000 resamples, stratified by label). *ACER (ISO, worst PAI)*: (max APCER over attack types + "
        "BPCER) / 2 at the source-val threshold, as ISO/IEC 30107-3 defines it.",
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


def write_leaderboard(exp_dir: str | Path | Experiment, rows: Sequence[Mapping[str, Any]], method: str) -> tuple[Path, Path]:
    """Write ``leaderboard.md`` and ``leaderboard.csv`` of an experiment; returns their paths."""
    exp = exp_dir if isinstance(exp_dir, Experiment) else Experiment(exp_dir)
    if method not in METHODS:
        raise ValueError(f"unknown selection method {method!r}; choose one of {', '.join(METHODS)}")
    info = experiment_info(exp)
    md_path, csv_path = exp.leaderboard_md, exp.leaderboard_csv
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


# --------------------------------------------------------------------------- the end of an experiment


@dataclass
class Finished:
    """What :func:`finish` wrote."""

    leaderboard_md: Path
    leaderboard_csv: Path
    rows: list[dict[str, Any]]
    best: Path | None = None
    best_error: str | None = None  # why best/ was not exported
    plots: list[Path] = field(default_factory=list)

    def top_lines(self, top: int = 5) -> list[str]:
        """The leaderboard's header and first ``top`` table rows."""
        lines = self.leaderboard_md.read_text().splitlines()
        start = next((i for i, line in enumerate(lines) if line.startswith("|")), 0)
        return lines[: start + 2 + top]


def finish(
    exp_dir: str | Path | Experiment,
    method: str = "source_val",
    *,
    export: bool = True,
    plots: bool = True,
    data_root: str | Path | None = None,
) -> Finished:
    """Leaderboard (md + csv), ``best/`` (with ``export``), figures (with ``plots``) of an experiment.

    Raises:
        UserError: not an experiment folder, no trial wrote a record, unknown method.
    """
    from anrl_ray.export import ROC_PNG, TSNE_PNG, export_best
    from anrl_ray.plots import plot_optuna

    exp = (exp_dir if isinstance(exp_dir, Experiment) else Experiment(exp_dir)).require()
    if method not in METHODS:
        raise UserError(f"--selection {method!r}: choose one of {', '.join(METHODS)}")
    runs = collect_records(exp.trials)
    states = collect_states(exp.trials)
    if not runs:
        failed = "; ".join(f"{n}: {s['state']} {s['reason']}" for n, s in states.items() if s["state"] != "unfinished")
        raise UserError(f"{exp.trials} holds no selectable run with an epoch record: no trial finished an epoch"
                        + (f" ({failed[:1000]})" if failed else ""))
    rows = leaderboard(runs, method, states)
    md, csv_path = write_leaderboard(exp, rows, method)
    out = Finished(md, csv_path, rows)
    if export:
        try:
            out.best = export_best(exp, method, plots=plots, data_root=data_root, runs=runs)
        except UserError as e:  # e.g. the selected epoch's checkpoint was not kept (--keep-checkpoints)
            out.best_error = str(e)
        if out.best is not None and plots:
            out.plots += [p for p in (exp.plots / ROC_PNG, exp.plots / TSNE_PNG) if p.is_file()]
    if plots:
        info = experiment_info(exp)
        if info.get("study_name") or exp.study_db.is_file():
            out.plots += plot_optuna(exp.study_url, info.get("study_name") or STUDY_NAME, exp.plots)
    return out
