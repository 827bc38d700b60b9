"""The Optuna study of an experiment: its storage, heartbeats, and what a --resume may continue.

A driver records a heartbeat for every RUNNING trial of its study; a --resume after the driver
died fails those trials through Optuna's public API (``fail_stale_trials``) and replaces them. The
settings that define an experiment must match on --resume (``compare_settings``); resources may
change. A study URL's password is never written anywhere (``masked_url``).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from anrl_ray.console import say
from anrl_ray.errors import UserError
from anrl_ray.experiment import STUDY_NAME, Experiment, records_path
from anrl_ray.records import append_record, collect_states, end_record

HEARTBEAT_SECONDS = 5  # the driver marks its RUNNING Optuna trials alive this often
STALE_SECONDS = 15  # a RUNNING trial without a heartbeat for this long belonged to a dead driver

# Settings that define an experiment: a --resume that changes one is refused unless --force.
RESUME_KEYS = ("protocol", "selection", "space_params", "profile", "base_config", "searcher", "scheduler", "seed")
# Resources may change between runs of one experiment (another cluster): not compared.
RESOURCE_KEYS = ("data_root", "num_workers", "cpus_per_worker", "gpus_per_worker", "placement")


def study_storage(exp: Experiment):
    """The Optuna RDB storage of the experiment, with heartbeats (a dead driver's trials can be told apart)."""
    import optuna

    return optuna.storages.RDBStorage(exp.study_url, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=STALE_SECONDS)


def _running_trial_ids(storage, study_name: str) -> list[int]:
    import optuna

    study_id = storage.get_study_id_from_name(study_name)
    running = storage.get_all_trials(study_id, deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    return [storage.get_trial_id_from_study_id_trial_number(study_id, t.number) for t in running]


class Heartbeat:
    """A driver thread that records a heartbeat for every RUNNING trial of the study (Optuna's public API)."""

    def __init__(self, exp: Experiment) -> None:
        self.exp, self.stop = exp, threading.Event()
        self.thread = threading.Thread(target=self._run, name="optuna-heartbeat", daemon=True)

    def _run(self) -> None:
        storage = study_storage(self.exp)
        while not self.stop.wait(HEARTBEAT_SECONDS / 2):
            try:
                for trial_id in _running_trial_ids(storage, STUDY_NAME):
                    storage.record_heartbeat(trial_id)
            except Exception:  # noqa: BLE001  the study may not exist yet; try again next beat
                continue

    def __enter__(self) -> "Heartbeat":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def fail_interrupted(exp: Experiment) -> tuple[int, int]:
    """Fail the study's trials a dead driver left RUNNING; returns (trials failed, trials in the study).

    Waits until their heartbeats are stale, then ``optuna.storages.fail_stale_trials``; a trial
    that died before its first heartbeat is failed with ``study.tell`` (we hold the experiment's
    lock, so no live driver owns it). Their runs get an "interrupted" record.
    """
    import optuna

    if exp.study_url.startswith("sqlite:") and not exp.study_db.exists():
        return 0, 0
    storage = study_storage(exp)
    try:
        study = optuna.load_study(study_name=STUDY_NAME, storage=storage)
    except KeyError:
        return 0, 0
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    if running:
        say(f"resume: {len(running)} trial(s) of a previous driver are still RUNNING in the study; waiting up to "
              f"{STALE_SECONDS} s for their heartbeats to go stale")
        time.sleep(STALE_SECONDS + 1)
        optuna.storages.fail_stale_trials(study)
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    exp.pull()  # an experiment at a URI: its runs' records, mirrored
    states = collect_states(exp.trials) if exp.trials.is_dir() else {}
    # runs that never said how they ended, including those that died before their first epoch record
    started = {p.name for p in exp.trials.iterdir() if p.is_dir()} if exp.trials.is_dir() else set()
    for name in sorted(started | set(states)):
        if states.get(name, {"state": "unfinished"})["state"] == "unfinished":
            append_record(records_path(exp.run_location(name)), end_record("interrupted", name, "the search driver stopped "
                                                                      "before this trial finished; replaced on --resume"))
    return len(running), len(study.trials)


def finished_trials(exp: Experiment) -> int:
    """Completed (or early-stopped) trials already in the experiment's Optuna study (0 if none)."""
    import optuna

    if exp.study_url.startswith("sqlite:") and not exp.study_db.exists():
        return 0
    try:
        study = optuna.load_study(study_name=STUDY_NAME, storage=study_storage(exp))
    except KeyError:
        return 0
    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)))


def masked_url(url: str) -> str:
    """A storage URL with its password replaced (search.json and logs never hold secrets)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def resolve_study(exp: Experiment, requested: str | None, resume: bool) -> str:
    """The Optuna storage URL to use, checked now (a URL that cannot be reached is exit 2, before any trial).

    Default: SQLite in the experiment folder. ``--study-storage`` takes any Optuna RDB URL, e.g.
    ``postgresql://user@host:5432/db`` (a password is better given in PGPASSWORD than in the URL:
    it is never written to search.json).
    """
    import optuna

    recorded = exp.settings().get("optuna_storage") if resume else None
    url = requested or recorded or f"sqlite:///{exp.study_db}"
    if "***" in url:
        raise UserError(f"--resume: the study storage {url} was recorded without its password; pass --study-storage "
                        "again (or put the password in PGPASSWORD)")
    try:
        optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=STALE_SECONDS)
    except Exception as e:  # noqa: BLE001  driver missing, server down, bad credentials, bad URL
        raise UserError(f"--study-storage {masked_url(url)}: cannot open it ({type(e).__name__}: "
                        f"{str(e).strip().splitlines()[0][:300]}); check the URL, the server and the credentials") from None
    exp.use_study(url)
    return url


def compare_settings(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The RESUME_KEYS whose values differ between an experiment's settings and a --resume's."""
    diffs = []
    for key in RESUME_KEYS:
        if key not in old:
            continue
        a, b = old[key], json.loads(json.dumps(new[key]))
        if key == "base_config":  # the data may have moved and the resources changed; the rest must match
            a, b = ({k: v for k, v in x.items() if k not in RESOURCE_KEYS} for x in (a, b))
            keys = sorted(set(a) | set(b))
            diffs += [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]
        elif a != b:
            diffs.append(f"{key}: {a!r} -> {b!r}")
    return diffs


STUDY_EXPORT = "study_trials.csv"


def export_study(exp: Experiment) -> Path:
    """The study's trials (number, state, value, params, user attributes, times) as CSV in the
    experiment folder: the record of a study kept beside the driver (S3 storage, no --study-storage)."""
    import optuna

    study = optuna.load_study(study_name=STUDY_NAME, storage=study_storage(exp))
    out = exp.path / STUDY_EXPORT
    study.trials_dataframe().to_csv(out, index=False)
    return out
