"""The Optuna study in PostgreSQL (what a cluster uses): a throwaway server on 127.0.0.1, started and
stopped by the test; a search and a --resume against it; a URL that cannot be reached is exit 2."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from anrl_ray.cli.run import search_main

TINY = ["--profile", "cpu", "--epochs", "1", "--workers-per-trial", "1", "--scheduler", "none", "--wandb", "off",
        "--set", "max_steps_per_epoch=2"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(*cmd: str) -> subprocess.CompletedProcess:
    run_as = [] if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--"]  # PostgreSQL refuses to run as root
    return subprocess.run([*run_as, *cmd], capture_output=True, text=True, timeout=120)


@pytest.fixture
def postgres_url():
    if not (shutil.which("initdb") and shutil.which("pg_ctl")):
        pytest.skip("PostgreSQL's initdb/pg_ctl are not installed (Debian package postgresql)")
    base = Path(tempfile.mkdtemp(prefix="anrl-pg-"))
    base.chmod(0o755)
    data = base / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(data, "postgres")
    port = _free_port()
    res = _as_postgres("initdb", "-D", str(data), "-A", "trust", "-U", "anrl")
    assert res.returncode == 0, res.stderr
    res = _as_postgres("pg_ctl", "-D", str(data), "-l", str(base / "server.log"), "-w", "-o",
                       f"-p {port} -k {base} -c listen_addresses=127.0.0.1", "start")
    assert res.returncode == 0, res.stderr + (base / "server.log").read_text()
    try:
        yield f"postgresql://anrl@127.0.0.1:{port}/postgres"
    finally:
        _as_postgres("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


def test_unreachable_study_storage_exits_2_before_any_trial(tiny_data, tmp_path, capsys):
    url = f"postgresql://anrl:hunter2@127.0.0.1:{_free_port()}/postgres"
    argv = ["--data", tiny_data, "--storage", str(tmp_path), "--name", "X", "--study-storage", url, *TINY]
    t0 = time.time()
    assert search_main(argv) == 2
    err = capsys.readouterr().err
    assert "--study-storage postgresql://anrl:***@127.0.0.1" in err and "hunter2" not in err
    assert not (tmp_path / "X" / "trials").exists() and time.time() - t0 < 120


@pytest.mark.slow
def test_search_and_resume_with_the_study_in_postgres(postgres_url, tiny_data, tmp_path):
    import json

    import optuna

    argv = ["--data", tiny_data, "--storage", str(tmp_path), "--name", "PG", "--study-storage", postgres_url,
            "--num-samples", "1", *TINY]
    assert search_main(argv) == 0
    settings = json.loads((tmp_path / "PG" / "search.json").read_text())
    assert settings["optuna_storage"] == postgres_url and not (tmp_path / "PG" / "optuna.db").exists()
    study = optuna.load_study(study_name="anrl", storage=postgres_url)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE]
    # resume: the URL comes from search.json; the study goes on in PostgreSQL
    argv = [a for a in argv if a not in ("--study-storage", postgres_url)]
    assert search_main([*argv[: argv.index("--num-samples")], "--num-samples", "2", *TINY, "--resume"]) == 0
    study = optuna.load_study(study_name="anrl", storage=postgres_url)
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) == 2
    assert (tmp_path / "PG" / "best" / "selection.json").is_file()
