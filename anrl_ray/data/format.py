"""On-disk dataset format: one folder per domain dataset, Parquet shards plus a manifest.

Layout of a data root (what ``--data DIR`` points at)::

    DIR/O/manifest.json  DIR/O/part-00000.parquet ...   (OULU-NPU)
    DIR/C/...            (CASIA-FASD)
    DIR/I/...            (Replay-Attack)
    DIR/M/...            (MSU-MFSD)

One row per face crop (see ``SCHEMA``). ``manifest.json`` is written last, and the
whole folder is built under a temporary name and renamed into place only when it is
complete, so an interrupted conversion never leaves a folder that looks finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from anrl_ray.errors import UserError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
REPORT = "conversion_report.json"
SPLITS = ("train", "dev", "test")
ATTACK_TYPES = ("live", "print", "replay", "mask", "cut")

SCHEMA = pa.schema(
    [
        pa.field("image", pa.binary(), nullable=False),  # encoded JPEG or PNG bytes (RGB)
        pa.field("image_format", pa.string(), nullable=False),  # "jpeg" | "png"
        pa.field("depth", pa.binary(), nullable=True),  # 8-bit grayscale PNG, live only; null = none
        pa.field("label", pa.int8(), nullable=False),  # 0 live, 1 spoof
        pa.field("attack_type", pa.string(), nullable=False),  # one of ATTACK_TYPES
        pa.field("domain", pa.string(), nullable=False),  # "O", "C", "I", "M", ...
        pa.field("subject_id", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),  # unique within the dataset
        pa.field("frame_index", pa.int32(), nullable=False),
        pa.field("split", pa.string(), nullable=False),  # one of SPLITS
        pa.field("source_path", pa.string(), nullable=False),
    ]
)


class DatasetFormatError(UserError):
    """A dataset folder is missing, incomplete, or of another schema version."""


@dataclass
class DatasetWriter:
    """Writes one domain dataset folder atomically.

    Usage::

        with DatasetWriter(out_dir, domain="O", converter="oulu", converter_args={...}) as w:
            w.add(image=jpeg_bytes, image_format="jpeg", depth=png_or_None, label=0,
                  attack_type="live", subject_id="12", video_id="1_1_12_1", frame_index=0,
                  split="train", source_path="Train_files/1_1_12_1.avi")
            w.fail("Train_files/bad.avi", "unreadable video")   # counted in the report
        # on success: out_dir/manifest.json + shards + conversion_report.json exist;
        # on an exception: out_dir is untouched (an existing dataset is never lost).
    """

    out_dir: Path
    domain: str
    converter: str
    converter_args: Mapping[str, Any] = field(default_factory=dict)
    shard_max_rows: int = 2048
    shard_max_bytes: int = 64 * 1024 * 1024
    overwrite: bool = False

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        if self.out_dir.exists() and not self.overwrite:
            raise FileExistsError(
                f"{self.out_dir} already exists; pass --overwrite to replace it or choose another --out"
            )
        self._tmp = self.out_dir.with_name(f".{self.out_dir.name}.partial-{os.getpid()}")
        self._rows: dict[str, list] = {f.name: [] for f in SCHEMA}
        self._bytes = 0
        self._shards: list[dict[str, Any]] = []
        self._counts: Counter = Counter()
        self._failures: list[dict[str, str]] = []
        self._videos: dict[str, tuple[int, str]] = {}
        self._started = time.time()

    def __enter__(self) -> "DatasetWriter":
        if self._tmp.exists():
            shutil.rmtree(self._tmp)
        self._tmp.mkdir(parents=True)
        return self

    def add(self, **row: Any) -> None:
        """Append one face crop; fields as in ``SCHEMA`` (``domain`` is filled in)."""
        row.setdefault("domain", self.domain)
        missing = [f.name for f in SCHEMA if f.name not in row and f.name != "depth"]
        unknown = sorted(set(row) - set(SCHEMA.names))
        if missing or unknown:
            raise ValueError(f"DatasetWriter.add: missing fields {missing}, unknown fields {unknown}")
        if row["label"] not in (0, 1):
            raise ValueError(f"label must be 0 (live) or 1 (spoof), got {row['label']!r} for {row['source_path']}")
        if row["split"] not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {row['split']!r} for {row['source_path']}")
        if (row["label"] == 0) != (row["attack_type"] == "live"):
            raise ValueError(f"label {row['label']} contradicts attack_type {row['attack_type']!r} for {row['source_path']}")
        if row["image_format"] not in ("jpeg", "png"):
            raise ValueError(f"image_format must be 'jpeg' or 'png', got {row['image_format']!r}")
        prev = self._videos.setdefault(row["video_id"], (row["label"], row["split"]))
        if prev != (row["label"], row["split"]):
            raise ValueError(f"video {row['video_id']!r} mixes labels or splits ({prev} vs {(row['label'], row['split'])})")
        row.setdefault("depth", None)
        for name in SCHEMA.names:
            self._rows[name].append(row[name])
        self._bytes += len(row["image"]) + len(row["depth"] or b"")
        self._counts[(row["split"], int(row["label"]), row["attack_type"])] += 1
        if len(self._rows["image"]) >= self.shard_max_rows or self._bytes >= self.shard_max_bytes:
            self._flush()

    def fail(self, source_path: str, reason: str) -> None:
        """Record an input that could not be converted (listed in the conversion report)."""
        self._failures.append({"source_path": str(source_path), "reason": reason})

    def _flush(self) -> None:
        if not self._rows["image"]:
            return
        name = f"part-{len(self._shards):05d}.parquet"
        table = pa.Table.from_pydict(self._rows, schema=SCHEMA)
        pq.write_table(table, self._tmp / name, compression="zstd")
        path = self._tmp / name
        self._shards.append({"file": name, "rows": table.num_rows, "bytes": path.stat().st_size, "sha256": file_sha256(path)})
        self._rows = {f.name: [] for f in SCHEMA}
        self._bytes = 0

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            return
        self._flush()
        if not self._shards:
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise DatasetFormatError(
                f"no face crop was converted for {self.out_dir} ({len(self._failures)} inputs failed); "
                f"check --root and the failures: {self._failures[:5]}"
            )
        counts: dict[str, dict[str, dict[str, int]]] = {}
        for (split, label, attack), n in sorted(self._counts.items()):
            counts.setdefault(split, {}).setdefault("live" if label == 0 else "spoof", {})[attack] = n
        report = {
            "converted_rows": sum(s["rows"] for s in self._shards),
            "failed_inputs": len(self._failures),
            "failures": self._failures,
            "seconds": round(time.time() - self._started, 2),
        }
        (self._tmp / REPORT).write_text(json.dumps(report, indent=2))
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "domain": self.domain,
            "converter": self.converter,
            "converter_args": {k: _jsonable(v) for k, v in self.converter_args.items()},
            "num_rows": report["converted_rows"],
            "num_videos": len(self._videos),
            "counts": counts,
            "failed_inputs": len(self._failures),
            "shards": self._shards,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        # The manifest is the last file written; the rename below publishes the folder.
        (self._tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        if self.out_dir.exists():
            old = self.out_dir.with_name(f".{self.out_dir.name}.old-{os.getpid()}")
            self.out_dir.rename(old)
            self._tmp.rename(self.out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            self.out_dir.parent.mkdir(parents=True, exist_ok=True)
            self._tmp.rename(self.out_dir)

    @property
    def failures(self) -> list[dict[str, str]]:
        return list(self._failures)


def parse_manifest(dataset_dir: str | Path) -> dict[str, Any]:
    """Load a dataset folder's manifest and check its structure (not the shard files).

    Raises:
        DatasetFormatError: the manifest is missing, not JSON, of another schema version, or lacks
            ``shards`` / ``counts`` (or they have the wrong form); the message names the file and the fix.
    """
    dataset_dir = Path(dataset_dir)
    path = dataset_dir / MANIFEST
    redo = f"re-convert it (`anrl-ray convert DATASET ... --out {dataset_dir.parent} --overwrite`)"
    if not path.is_file():
        raise DatasetFormatError(
            f"{path} not found: {dataset_dir} is not a converted dataset (or its conversion did not finish); "
            "create it with `anrl-ray convert ...`"
        )
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetFormatError(f"{path} is not valid JSON ({e}): the file is damaged or truncated; {redo}") from e
    if not isinstance(manifest, dict):
        raise DatasetFormatError(f"{path}: expected a JSON object, got {type(manifest).__name__}; {redo}")
    missing = [k for k in ("schema_version", "shards", "counts") if k not in manifest]
    if missing:
        raise DatasetFormatError(
            f"{path}: missing key(s) {', '.join(map(repr, missing))}: not a complete anrl-ray manifest; {redo}"
        )
    version = manifest["schema_version"]
    if version != SCHEMA_VERSION:
        raise DatasetFormatError(
            f"{path}: schema_version {version!r}, this anrl-ray reads {SCHEMA_VERSION}; "
            "re-convert the dataset with this version of `anrl-ray convert`"
        )
    shards = manifest["shards"]
    if not isinstance(shards, list) or not shards or not all(
        isinstance(s, dict) and isinstance(s.get("file"), str) and isinstance(s.get("rows"), int)
        and isinstance(s.get("sha256"), str) and isinstance(s.get("bytes", 0), int)
        for s in shards
    ):
        raise DatasetFormatError(f"{path}: 'shards' must be a non-empty list of {{file, rows, bytes, sha256}} entries; {redo}")
    counts = manifest["counts"]
    if not isinstance(counts, dict) or not all(
        isinstance(per, dict) and all(
            isinstance(attacks, dict) and all(isinstance(n, int) for n in attacks.values()) for attacks in per.values()
        )
        for per in counts.values()
    ):
        raise DatasetFormatError(f"{path}: 'counts' must map split -> live/spoof -> attack type -> rows; {redo}")
    return manifest


def read_manifest(dataset_dir: str | Path) -> dict[str, Any]:
    """Load and check a dataset folder's manifest (:func:`parse_manifest`) and that its shard files exist."""
    dataset_dir = Path(dataset_dir)
    manifest = parse_manifest(dataset_dir)
    for shard in manifest["shards"]:
        if not (dataset_dir / shard["file"]).is_file():
            raise DatasetFormatError(
                f"{dataset_dir / shard['file']} listed in {dataset_dir / MANIFEST} is missing; re-run the conversion"
            )
    return manifest


def shard_paths(dataset_dir: str | Path) -> list[str]:
    """Absolute paths of a dataset's Parquet shards, in manifest order."""
    dataset_dir = Path(dataset_dir).resolve()
    return [str(dataset_dir / s["file"]) for s in read_manifest(dataset_dir)["shards"]]


def domain_dir(data_root: str | Path, domain: str) -> Path:
    """The folder of one domain under a data root, checked."""
    path = Path(data_root) / domain
    read_manifest(path)
    return path


def verify_checksums(dataset_dir: str | Path) -> list[str]:
    """Names of the shards whose sha256 no longer matches the manifest (empty if all match).

    Hashes every shard on every call; :func:`anrl_ray.data.checks.check_data_root` caches verdicts.
    """
    dataset_dir = Path(dataset_dir)
    return [s["file"] for s in read_manifest(dataset_dir)["shards"] if file_sha256(dataset_dir / s["file"]) != s["sha256"]]


def iter_rows(dataset_dir: str | Path, columns: Iterable[str] | None = None):
    """Yield rows as dicts (small datasets, tests and converters; training uses Ray Data)."""
    for path in shard_paths(dataset_dir):
        table = pq.read_table(path, columns=list(columns) if columns else None)
        yield from table.to_pylist()


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _jsonable(v: Any) -> Any:
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return str(v)
