"""What a person sees while a search runs, and where everything else goes.

Console (stdout), by default: a header, Tune's progress table, one line per finished trial-epoch,
one line per finished trial, then the leaderboard's top rows and the path of ``best/`` last.
Everything else (Ray's, Ray Data's, Ray Train workers', Optuna's and W&B's logs, Python warnings)
goes to log files in the experiment's ``logs/`` folder; ``--verbose`` shows it live as well.
"""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

# Loggers of the libraries under the search; their records go to EXP/logs/driver.log.
LIBRARY_LOGGERS = ("ray", "optuna", "wandb", "urllib3", "filelock", "py.warnings", "timm", "torch")
# stdout lines from Ray's internals (raylet warnings the driver relays, Tune's pointer to its temp
# folder): to the log unless --verbose.
_INTERNAL_LINE = re.compile(r"^(\(raylet\)|\(pid=|\(\w+ pid=|To visualize your results with TensorBoard)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class _FilteredStdout(io.TextIOBase):
    """stdout that sends Ray-internal lines to a log file and everything else to the terminal."""

    def __init__(self, out, log) -> None:
        self.out, self.log, self.buf = out, log, ""

    def write(self, text: str) -> int:
        self.buf += text
        while "\n" in self.buf:
            line, self.buf = self.buf.split("\n", 1)
            target = self.log if _INTERNAL_LINE.match(_ANSI.sub("", line)) else self.out
            target.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        if self.buf and not _INTERNAL_LINE.match(_ANSI.sub("", self.buf)):
            self.out.write(self.buf)
            self.buf = ""
        self.out.flush()
        self.log.flush()

    def isatty(self) -> bool:
        try:
            return self.out.isatty()
        except ValueError:  # the wrapped stream was closed (interpreter shutdown)
            return False

    def fileno(self) -> int:
        return self.out.fileno()


def say(line: str = "") -> None:
    """One line on the console (stdout, flushed)."""
    print(line, flush=True)


class Console:
    """Routes library logs to ``logs/driver.log``; ``verbose`` keeps them on the console too.

    Args:
        log_dir: the experiment's ``logs/`` folder.
        verbose: also show library logs and Ray workers' output live.
    """

    def __init__(self, log_dir: Path, verbose: bool = False) -> None:
        self.log_dir, self.verbose = Path(log_dir), verbose
        self._handler: logging.Handler | None = None
        self._saved: list[tuple[logging.Logger, list[logging.Handler], int, bool]] = []

    def __enter__(self) -> "Console":
        import optuna
        import ray  # noqa: F401  imported first: Ray installs its log handlers at import

        self.log_dir.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("WANDB_SILENT", "true")
        self._stdout, self._stderr_fd = None, None
        if not self.verbose:
            optuna.logging.disable_default_handler()
            # Ray's C++ core logs straight to file descriptor 2: that goes to a file for the search
            sys.stderr.flush()
            self._stderr_fd = os.dup(2)
            self._err_file = open(self.log_dir / "stderr.log", "a")
            os.dup2(self._err_file.fileno(), 2)
            self._stdout = sys.stdout
            self._internal = open(self.log_dir / "ray_console.log", "a")
            sys.stdout = _FilteredStdout(self._stdout, self._internal)
        self._handler = logging.FileHandler(self.log_dir / "driver.log")
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.captureWarnings(True)
        for name in LIBRARY_LOGGERS:
            logger = logging.getLogger(name)
            self._saved.append((logger, list(logger.handlers), logger.level, logger.propagate))
            if not self.verbose:
                for h in list(logger.handlers):
                    if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                        logger.removeHandler(h)
                logger.propagate = False
            logger.addHandler(self._handler)
            if logger.level == logging.NOTSET or logger.level > logging.INFO:
                logger.setLevel(logging.INFO)
        if not self.verbose:
            warnings.simplefilter("default")  # warnings -> py.warnings logger -> the file
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._stdout is not None:
            sys.stdout.flush()
            sys.stdout = self._stdout
            self._internal.close()
        if self._stderr_fd is not None:
            sys.stderr.flush()
            os.dup2(self._stderr_fd, 2)
            os.close(self._stderr_fd)
            self._err_file.close()
        if not self.verbose:
            import optuna

            optuna.logging.enable_default_handler()
        for logger, handlers, level, propagate in self._saved:
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate
        logging.captureWarnings(False)
        if self._handler is not None:
            self._handler.close()

    def keep_ray_logs(self) -> Path | None:
        """Copy this Ray session's log folder (workers, Ray Data, Train) into ``logs/ray``."""
        try:
            import ray

            # no public API names the session folder (ray 2.60); a local driver's node knows it
            session = Path(ray._private.worker._global_node.get_session_dir_path())
        except Exception:  # noqa: BLE001  Ray not started, or its layout changed: nothing to keep
            return None
        src, dest = session / "logs", self.log_dir / "ray"
        if not src.is_dir():
            return None
        shutil.copytree(src, dest, dirs_exist_ok=True, ignore_dangling_symlinks=True,
                        ignore=shutil.ignore_patterns("*.sock", "*.pid"))
        return dest


def progress_callback(epochs: int):
    """A Tune callback printing one line per finished trial-epoch and one per finished trial."""
    from ray import tune

    started = time.time()

    def pct(x: Any) -> str:
        return "  -  " if x is None else f"{100 * float(x):5.1f}"

    class Progress(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            say(f"[{_clock(started)}] {trial}  epoch {int(result.get('epoch', -1)) + 1}/{epochs}  "
                f"source-val HTER {pct(result.get('val_hter_eer'))} AUC {pct(result.get('val_auc'))}  "
                f"target AUC {pct(result.get('target_auc'))}  objective {result.get('objective', float('nan')):.4f}")

        def on_trial_complete(self, iteration, trials, trial, **info):
            last = trial.last_result or {}
            done = int(last.get("epoch", -1)) + 1
            how = "finished" if done >= epochs else f"stopped early by the scheduler after {done}/{epochs} epochs"
            say(f"[{_clock(started)}] {trial} {how}; best source-val objective {last.get('objective', float('nan')):.4f}")

        def on_trial_error(self, iteration, trials, trial, **info):
            say(f"[{_clock(started)}] {trial} FAILED (its records and logs say why)")

    return Progress()


def _clock(started: float) -> str:
    s = int(time.time() - started)
    return f"{s // 3600:d}:{s // 60 % 60:02d}:{s % 60:02d}"


def is_tty() -> bool:
    return sys.stdout.isatty()
