"""The experiment folder: every name in it is spelled here and nowhere else.

::

    EXP/search.json             settings of the search (and of every resume)
    EXP/optuna.db               the Optuna study (SQLite; optuna-dashboard sqlite:///EXP/optuna.db)
    EXP/trials/<run>/           one Ray Train run: records.jsonl + checkpoint_epochNNNN/
    EXP/tune/                   Ray Tune's own experiment state
    EXP/leaderboard.{md,csv}    trials by the selection objective
    EXP/best/                   the selected model (see anrl_ray.checkpoint)
    EXP/plots/                  figures of the best model and of the study
    EXP/reeval/ + reeval.{md,csv,json}   multi-seed re-evaluation
    EXP/logs/                   driver.log (libraries, warnings) and ray/ (workers, Ray Data, Train)

A run folder holds ``records.jsonl`` (one record per epoch, see ``anrl_ray.records``) and one
``checkpoint_epochNNNN/`` per epoch (its contents: ``anrl_ray.checkpoint``).
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from anrl_ray.errors import UserError

RECORDS_FILE = "records.jsonl"
CHECKPOINT_PREFIX = "checkpoint_epoch"
STUDY_NAME = "anrl"


def checkpoint_dir_name(epoch: int) -> str:
    """Folder name of an epoch's checkpoint inside its run folder: ``RUN/checkpoint_epoch0003``."""
    return f"{CHECKPOINT_PREFIX}{epoch:04d}"


def checkpoint_epochs(run_dir: str | Path) -> list[int]:
    """Epochs with a checkpoint folder in a run folder, ascending."""
    names = (p.name.removeprefix(CHECKPOINT_PREFIX) for p in Path(run_dir).glob(f"{CHECKPOINT_PREFIX}[0-9]*"))
    return sorted(int(n) for n in names if n.isdigit())


def latest_epoch(run_dir: str | Path) -> int | None:
    """The last epoch with a checkpoint in a run folder, or None."""
    epochs = checkpoint_epochs(run_dir)
    return epochs[-1] if epochs else None


def records_path(run_dir: str | Path) -> Path:
    """The records file of a run folder (or of a checkpoint folder, which carries a copy)."""
    return Path(run_dir) / RECORDS_FILE


def is_checkpoint_dir(path: str | Path) -> bool:
    return Path(path).name.startswith(CHECKPOINT_PREFIX)


class Experiment:
    """Names and simple I/O of one experiment folder.

    Args:
        path: the experiment folder (``--storage``/``--name``), created lazily by the writers.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).resolve()
        self._study_url: str | None = None

    def __repr__(self) -> str:
        return f"Experiment({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.name

    # ---- names
    @property
    def search_json(self) -> Path:
        return self.path / "search.json"

    @property
    def study_db(self) -> Path:
        return self.path / "optuna.db"

    @property
    def study_url(self) -> str:
        """The Optuna storage URL of the study: the one in use, else the one search.json records, else
        the local SQLite file."""
        if self._study_url:
            return self._study_url
        url = self.settings().get("optuna_storage") if self.search_json.is_file() else None
        return url or f"sqlite:///{self.study_db}"

    def use_study(self, url: str) -> None:
        """Use this Optuna storage URL (``--study-storage``) instead of the recorded one."""
        self._study_url = url

    @property
    def trials(self) -> Path:
        return self.path / "trials"

    @property
    def tune(self) -> Path:
        return self.path / "tune"

    @property
    def best(self) -> Path:
        return self.path / "best"

    @property
    def plots(self) -> Path:
        return self.path / "plots"

    @property
    def leaderboard_md(self) -> Path:
        return self.path / "leaderboard.md"

    @property
    def leaderboard_csv(self) -> Path:
        return self.path / "leaderboard.csv"

    @property
    def reeval(self) -> Path:
        return self.path / "reeval"

    def reeval_table(self, suffix: str) -> Path:
        """``reeval.md`` / ``reeval.csv`` / ``reeval.json``."""
        return self.path / f"reeval.{suffix}"

    @property
    def wandb(self) -> Path:
        return self.path / "wandb"

    @property
    def logs(self) -> Path:
        """Ray's, the trials' and the libraries' logs (the console shows only progress and results)."""
        return self.path / "logs"

    def run_dir(self, name: str) -> Path:
        """The folder of one Ray Train run of this experiment."""
        return self.trials / name

    def scratch(self, tag: str) -> Path:
        """A hidden sibling folder for building something before an atomic rename (e.g. best/)."""
        return self.path / f".{tag}-{os.getpid()}"

    @property
    def lock_file(self) -> Path:
        return self.path / ".driver.lock"

    @contextmanager
    def driver_lock(self) -> Iterator[None]:
        """Hold the experiment for this driver; a second driver gets a UserError naming the holder.

        An OS file lock (flock): released by the kernel when the holder exits, even on kill -9.
        """
        import fcntl
        import socket

        self.path.mkdir(parents=True, exist_ok=True)
        f = open(self.lock_file, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise UserError(f"{self.path} is in use by another search driver ({holder}); wait for it to finish, "
                            "or stop it before --resume") from None
        try:
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
            f.flush()
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
            f.close()

    # ---- state
    def exists(self) -> bool:
        return self.path.is_dir() and any(p.name != self.lock_file.name for p in self.path.iterdir())

    def require(self) -> "Experiment":
        """Self, when this is an experiment folder; else a UserError saying what is missing."""
        if not self.path.is_dir():
            raise UserError(f"EXPERIMENT_DIR {self.path}: no such folder (an experiment folder, e.g. runs/OCI_M-20261128-120000)")
        if not self.trials.is_dir():
            raise UserError(f"{self.path} is not an experiment folder: {self.trials} is missing (run `anrl-ray search` first)")
        return self

    def settings(self) -> dict[str, Any]:
        """``search.json`` as a dict ({} when absent)."""
        if not self.search_json.is_file():
            return {}
        try:
            return json.loads(self.search_json.read_text())
        except json.JSONDecodeError as e:
            raise UserError(f"{self.search_json} is not valid JSON ({e}); restore it or start a new experiment") from e

    def write_settings(self, settings: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.search_json.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(settings, indent=2))
        tmp.replace(self.search_json)

    def run_records_files(self, root: Path | None = None) -> list[Path]:
        """Every run's records file below ``root`` (default: the trials folder); checkpoint copies excluded."""
        root = self.trials if root is None else root
        return [p for p in sorted(root.rglob(RECORDS_FILE)) if not is_checkpoint_dir(p.parent)]
