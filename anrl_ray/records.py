"""Per-epoch records: one self-describing JSON line per evaluation.

Every record carries its epoch, per-domain metrics, thresholds, losses, the resolved config,
seeds and code version, so model selection and tables are pure functions of the records and
can be recomputed offline (``anrl-ray best``) without retraining.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable


def _clean(x: Any) -> Any:
    """JSON-safe copy: NaN/inf become None, numpy scalars become Python numbers."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def append_record(path: str | Path, record: dict[str, Any]) -> None:
    """Append one record as a JSON line and fsync it (a crash never corrupts earlier lines)."""
    line = json.dumps(_clean(record), sort_keys=True)
    with open(path, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Read a records file; a torn last line (crash mid-write) is ignored, any other bad line is an error."""
    path = Path(path)
    lines = path.read_text().splitlines()
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines) - 1:
                break
            raise ValueError(f"{path}:{i + 1}: not a JSON record ({e})") from e
    return out


def collect_records(root: str | Path, filename: str = "records.jsonl") -> dict[str, list[dict[str, Any]]]:
    """All records files below ``root``, keyed by the trial name stored in them (else their folder)."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(Path(root).rglob(filename)):
        if "checkpoint" in path.parent.name:  # copies inside checkpoints
            continue
        recs = read_records(path)
        if recs:
            runs[recs[0].get("trial") or path.parent.name] = recs
    return runs


def write_records(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    """Write records to a new file atomically (temp file + rename)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(json.dumps(_clean(r), sort_keys=True) + "\n" for r in records))
    tmp.replace(path)
