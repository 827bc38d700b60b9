"""Multi-seed re-evaluation of the best configurations: the final table of a search.

The top K configurations (by the search's selection method) are re-trained with S fresh seeds
each; every re-run is selected by source validation (never the target) and the table reports,
per configuration, the mean and the standard error of the mean (SEM = sample standard deviation
with ddof=1, divided by sqrt(S)) of the target metrics over seeds.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from anrl_ray.config import make_config
from anrl_ray.experiment import Experiment, records_path
from anrl_ray.records import collect_records, read_records
from anrl_ray.report import leaderboard
from anrl_ray.selection import select_epoch_source_val

METRICS = (
    ("target_hter@source_val_threshold", "target HTER @ source-val thr"),
    ("target_hter@target_eer", "target HTER @ own EER"),
    ("target_auc", "target AUC"),
    ("target_tpr@fpr=1%", "target TPR@FPR=1%"),
)


def mean_sem(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (ddof=1); SEM is nan for a single value."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def reevaluate(exp_dir: str | Path, *, top_k: int, seeds: int, selection: str = "source_val") -> Path:
    """Re-train the top ``top_k`` configurations with ``seeds`` fresh seeds; write reeval.{md,csv}."""
    from anrl_ray.trial import run_trial

    exp = Experiment(exp_dir)
    runs = collect_records(exp.trials)
    rows = leaderboard(runs, method=selection)[:top_k]
    table = []
    for rank, row in enumerate(rows):
        trial = row["trial"]
        cfg = make_config(runs[trial][0]["config"])
        results: dict[str, list[float]] = {k: [] for k, _ in METRICS}
        for i in range(seeds):
            seed = 1000 + 100 * rank + i  # fresh seeds, disjoint from the search's
            name = f"reeval-{trial}-seed{seed}"
            out = exp.reeval
            if not records_path(out / name).exists():
                result = run_trial(cfg.replace(seed=seed), storage_path=str(out), name=name)
                if result.error:
                    raise RuntimeError(f"re-evaluation run {name} failed: {result.error}")
            summary = select_epoch_source_val(read_records(records_path(out / name))).summary()
            for key, _ in METRICS:
                results[key].append(float(summary[key]))
        entry: dict[str, Any] = {"trial": trial, "seeds": seeds, "protocol": cfg.protocol}
        for key, _ in METRICS:
            entry[key + "_mean"], entry[key + "_sem"] = mean_sem(results[key])
        table.append(entry)

    md = [
        f"# Multi-seed re-evaluation ({seeds} fresh seeds per configuration)",
        "",
        "Each run selected by source validation; mean ± standard error of the mean (ddof=1) over seeds.",
        "",
        "| trial | " + " | ".join(label for _, label in METRICS) + " |",
        "|---" * (len(METRICS) + 1) + "|",
    ]
    for e in table:
        cells = [f"{e[k + '_mean']:.4f} ± {e[k + '_sem']:.4f}" for k, _ in METRICS]
        md.append(f"| {e['trial']} | " + " | ".join(cells) + " |")
    exp.reeval_table("md").write_text("\n".join(md) + "\n")
    with open(exp.reeval_table("csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]) if table else ["trial"])
        w.writeheader()
        w.writerows(table)
    exp.reeval_table("json").write_text(json.dumps(table, indent=2))
    print("\n".join(md))
    return exp.reeval_table("md")
