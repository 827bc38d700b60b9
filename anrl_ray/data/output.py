"""Where a conversion writes: dataset names, the overwrite rule, stale partial folders.

Every converter writes one dataset folder ``OUT/<name>`` through
:class:`anrl_ray.data.format.DatasetWriter`, which builds it as ``OUT/.<name>.partial-<PID>``
and renames it into place once complete. The checks here run before a writer is created:

* :func:`check_dataset_name`: ``<name>`` is a plain folder name (no ``/``, ``..`` or empty
  name that would put the dataset somewhere else).
* :func:`check_replaceable`: ``--overwrite`` replaces only a folder that holds a dataset
  manifest; any other existing folder is user data and is refused, untouched.
* :func:`remove_stale_partials`: partial folders of processes that no longer run (killed
  with SIGKILL, out of memory) are removed. The PID test is local to this machine: two
  machines converting into one shared folder at the same time are not supported.
* :func:`sigterm_raises`: SIGTERM unwinds like Ctrl-C, so the writer removes its own partial
  folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import threading
from pathlib import Path
from typing import Iterator

from anrl_ray.data.format import MANIFEST, REPORT
from anrl_ray.errors import UserError

DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")
PARTIAL_NAME = re.compile(r"\.(.+)\.partial-([0-9]+)")
# What DatasetWriter puts in a partial folder; a folder with anything else is not removed.
_WRITER_FILE = re.compile(rf"part-[0-9]+\.parquet|{re.escape(MANIFEST)}|{re.escape(REPORT)}")


def check_dataset_name(name: str, option: str = "--domain") -> str:
    """Return ``name`` if it is a plain dataset (folder) name, else raise UserError naming ``option``."""
    if not isinstance(name, str) or not DATASET_NAME.fullmatch(name):
        raise UserError(
            f"{option} {name!r} is not a plain dataset name: it becomes the folder OUT/<name>, so use letters, "
            "digits, '_', '.' and '-', starting with a letter or digit (e.g. O, C, I, M or oulu_p1)"
        )
    return name


def is_dataset_dir(path: Path) -> bool:
    """Whether ``path`` is a folder holding a dataset manifest of this format (any schema version)."""
    try:
        manifest = json.loads((Path(path) / MANIFEST).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(manifest, dict) and "schema_version" in manifest and "shards" in manifest


def check_replaceable(out_dir: Path, *, overwrite: bool) -> None:
    """Refuse to write ``out_dir`` if it exists, unless ``overwrite`` and it is a dataset folder.

    Raises:
        UserError: ``out_dir`` exists and ``overwrite`` is off, or it exists and is not a
            dataset folder (never replaced: it may hold the user's own files).
    """
    out_dir = Path(out_dir)
    if not out_dir.exists() and not out_dir.is_symlink():
        return
    if not overwrite:
        raise UserError(f"{out_dir} already exists; pass --overwrite to replace it or choose another --out")
    if not is_dataset_dir(out_dir):
        raise UserError(
            f"--overwrite: {out_dir} exists but is not an anrl-ray dataset (no valid {MANIFEST}), so it is not "
            "replaced and was left as it is; move it away or choose another --out (or --domain)"
        )


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (one of another user counts as running)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def remove_stale_partials(root: Path) -> list[Path]:
    """Remove ``root/.<name>.partial-<PID>`` folders whose PID no longer runs; return them.

    Only folders that hold nothing but what DatasetWriter writes (shards, report, manifest)
    are removed; a partial folder of a running process is left alone.
    """
    root = Path(root)
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for entry in sorted(root.iterdir()):
        m = PARTIAL_NAME.fullmatch(entry.name)
        if not m or entry.is_symlink() or not entry.is_dir() or pid_alive(int(m.group(2))):
            continue
        if all(f.is_file() and not f.is_symlink() and _WRITER_FILE.fullmatch(f.name) for f in entry.iterdir()):
            shutil.rmtree(entry)
            removed.append(entry)
    return removed


def prepare_output(out_dir: Path, *, overwrite: bool) -> Path:
    """All checks before a converter writes ``out_dir``: name, overwrite rule, stale partials."""
    out_dir = Path(out_dir)
    check_dataset_name(out_dir.name, "output folder")
    check_replaceable(out_dir, overwrite=overwrite)
    remove_stale_partials(out_dir.parent)
    return out_dir


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM (a scheduler or ``kill``) raises SystemExit like Ctrl-C raises
    KeyboardInterrupt, so DatasetWriter removes its partial folder instead of leaving it behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
