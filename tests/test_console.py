"""The console a person reads: header, Tune's table, one line per trial-epoch and per trial,
the leaderboard's top rows, and the path of best/ last; Ray's internals go to EXP/logs."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# lines that come from Ray's / Ray Data's / Train workers' / W&B's internals, never from us or Tune's table
INTERNAL = re.compile(r"\((raylet|pid=|RayTrainWorker|TrainController|SplitCoordinator|_WandbLoggingActor)|"
                      r"INFO worker\.py|core_worker\.cc|Traceback|DeprecationWarning|Execution plan|"
                      r"authentication_token|wandb:|ConnectionResetError")


@pytest.mark.slow
def test_console_shape_of_a_tiny_search(tiny_data, tmp_path):
    exp = tmp_path / "runs" / "console"
    argv = [sys.executable, str(ROOT / "run_search.py"), "--data", tiny_data, "--storage", str(tmp_path / "runs"),
            "--name", "console", "--num-samples", "2", "--profile", "cpu", "--epochs", "2", "--workers-per-trial", "1",
            "--scheduler", "none", "--set", "max_steps_per_epoch=2"]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=1200, cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    lines = [line for line in (res.stdout + res.stderr).splitlines() if line.strip()]
    assert lines[0].startswith("anrl-ray search console: protocol OCI_M")
    assert lines[-1] == f"best trial exported to: {exp / 'best'}"
    noisy = [line for line in lines if INTERNAL.search(line)]
    assert not noisy, noisy[:5]
    epochs = [line for line in lines if re.search(r"trial_\w+  epoch \d/2  source-val HTER", line)]
    assert len(epochs) == 4  # 2 trials x 2 epochs, one line each
    assert sum(bool(re.search(r"trial_\w+ finished;", line)) for line in lines) == 2
    assert any(line.startswith("| 1 | trial_") for line in lines)  # the leaderboard's top rows
    assert any("Trial status:" in line for line in lines)  # Tune's progress table
    # everything else went to files in the experiment
    assert (exp / "logs" / "driver.log").is_file() and (exp / "logs" / "ray").is_dir()
    # TensorBoard event files and Tune's analysis load from the experiment folder
    assert list((exp / "tune").rglob("events.out.tfevents.*"))
    from ray.tune import ExperimentAnalysis

    (tune_dir,) = [p for p in (exp / "tune").iterdir() if p.is_dir()]
    analysis = ExperimentAnalysis(str(tune_dir))
    frames = analysis.trial_dataframes
    assert len(frames) == 2 and all("val_auc" in df.columns and len(df) == 2 for df in frames.values())
    from anrl_ray.search import tune_results

    grid = tune_results(exp)
    assert len(grid) == 2 and "val_auc" in grid.get_dataframe().columns
