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

An experiment stored at a URI (``--storage s3://bucket/prefix``, see ``anrl_ray.storage``) has the
same layout there; the search driver keeps a local mirror of the files it writes or reads
(``storage.scratch_dir``: the SQLite study, logs, the records it ranks, the checkpoint it exports)
and uploads what it wrote (:meth:`Experiment.push`). Trials write their records and checkpoints
straight to the URI.

A run folder holds ``records.jsonl`` (one record per epoch, see ``anrl_ray.records``) and one
``checkpoint_epochNNNN/`` per epoch (its contents: ``anrl_ray.checkpoint``).
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from anrl_ray import storage
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


def records_path(run_dir: str | Path) -> Path | str:
    """The records file of a run folder (or of a checkpoint folder, which carries a copy); a URI stays a string."""
    if storage.is_uri(run_dir):
        return storage.join(run_dir, RECORDS_FILE)
    return Path(run_dir) / RECORDS_FILE


def is_checkpoint_dir(path: str | Path) -> bool:
    return Path(path).name.startswith(CHECKPOINT_PREFIX)


class Experiment:
    """Names and simple I/O of one experiment folder.

    Args:
        path: the experiment folder (``--storage``/``--name``), created lazily by the writers.
    """

    def __init__(self, path: str | Path) -> None:
        self.remote: str | None = None  # the URI of an experiment kept in an object store
        if storage.is_uri(path):
            self.remote = str(path).rstrip("/")
            path = storage.scratch_dir(self.remote)
        self.path = Path(path).resolve()
        self._study_url: str | None = None

    @classmethod
    def at(cls, root: str | Path, name: str) -> "Experiment":
        """The experiment ``name`` under ``--storage`` ``root`` (a folder or a URI)."""
        return cls(storage.join(str(root), name) if storage.is_uri(root) else Path(root).resolve() / name)

    def __repr__(self) -> str:
        return f"Experiment({self.location!r})"

    @property
    def location(self) -> str:
        """Where the experiment lives: its URI, or its folder."""
        return self.remote or str(self.path)

    @property
    def name(self) -> str:
        return storage.basename(self.location)

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
        """The (local) folder of one Ray Train run of this experiment (a mirror of it when stored at a URI)."""
        return self.trials / name

    @property
    def trials_location(self) -> str:
        """Where the trials write: ``LOCATION/trials`` (a URI for an experiment in an object store)."""
        return storage.join(self.location, self.trials.name)

    def run_location(self, name: str) -> str:
        return storage.join(self.trials_location, name)

    @property
    def tune_location(self) -> str:
        return storage.join(self.location, self.tune.name)

    # ---- an experiment stored at a URI: the driver's mirror
    def pull(self) -> "Experiment":
        """Refresh the local mirror from the URI: search.json, the study when this machine has none,
        and every run's records (checkpoints are fetched one by one, see :meth:`fetch`)."""
        if not self.remote:
            return self
        self.path.mkdir(parents=True, exist_ok=True)
        for name in (self.search_json.name, self.study_db.name):
            src = storage.join(self.remote, name)
            if (name == self.search_json.name or not (self.path / name).exists()) and storage.is_file(src):
                storage.download(src, self.path / name)
        for run in storage.list_names(self.trials_location):
            src = records_path(self.run_location(run))
            if storage.is_file(src):
                storage.download(src, records_path(self.run_dir(run)))
        return self

    def fetch(self, local: Path) -> Path:
        """Make a file or folder of the mirror present (downloaded from the URI when missing); returns it."""
        local = Path(local)
        if self.remote and not local.exists():
            src = storage.join(self.remote, *local.relative_to(self.path).parts)
            if storage.exists(src):
                storage.download(src, local)
        return local

    def push(self) -> None:
        """Upload what the driver wrote (everything in the mirror but the runs, which trials write to
        the URI themselves, and the driver's lock)."""
        if self.remote and self.path.is_dir():
            storage.upload(self.path, self.remote, exclude=(self.trials.name, self.lock_file.name))

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
        if self.remote:
            return bool(storage.list_names(self.remote))
        return self.path.is_dir() and any(p.name != self.lock_file.name for p in self.path.iterdir())

    def require(self) -> "Experiment":
        """Self, when this is an experiment folder; else a UserError saying what is missing."""
        if self.remote:
            storage.check_reachable(self.remote, "EXPERIMENT")
            if not storage.list_names(self.trials_location):
                raise UserError(f"{self.remote} is not an experiment: {self.trials_location} holds nothing "
                                "(run `anrl-ray search` first)")
            self.pull()
            self.trials.mkdir(parents=True, exist_ok=True)
            return self
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
        if self.remote:  # at once: a crashed driver leaves a resumable experiment at the URI
            storage.write_text(storage.join(self.remote, self.search_json.name), self.search_json.read_text())

    def run_records_files(self, root: Path | None = None) -> list[Path]:
        """Every run's records file below ``root`` (default: the trials folder); checkpoint copies excluded."""
        root = self.trials if root is None else root
        return [p for p in sorted(root.rglob(RECORDS_FILE)) if not is_checkpoint_dir(p.parent)]
