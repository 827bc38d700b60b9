"""Data checks: a data root verified before Ray starts, and decode failures counted while training.

:func:`check_data_root` is what an entry point calls before it starts Ray: it reads the
manifest of every domain a run needs, checks that every needed split holds both classes, and
that every shard file is present with the size and sha256 the manifest gives. All problems are
collected and raised together as one :class:`~anrl_ray.data.format.DatasetFormatError` (a
``UserError``: exit code 2, no traceback), each naming the file and the fix.

Hashing a large data root takes a while (sha256 runs at about 1-2 GB/s per core), so each
shard's digest is hashed once and cached, keyed by the shard's absolute path, size and
``mtime_ns``, in ``$ANRL_RAY_CACHE/checksums.json`` (default ``~/.cache/anrl_ray/``). A shard
that changes on disk gets a new size or mtime and is hashed again; a damaged or unwritable
cache file is ignored.

:class:`DecodeErrors` is the per-epoch tally of rows whose image or depth bytes did not decode
(filled by :func:`anrl_ray.data.pipeline.meta_batches` and
:func:`~anrl_ray.data.pipeline.iter_eval_batches`; such rows are dropped, the trial goes on).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import pyarrow.parquet as pq

from anrl_ray.data.format import MANIFEST, SPLITS, DatasetFormatError, file_sha256, parse_manifest

log = logging.getLogger(__name__)

CACHE_FILE = "checksums.json"
CACHE_VERSION = 1
CACHE_MAX_ENTRIES = 20000  # beyond this, entries of files that no longer exist are dropped


def checksum_cache_path() -> Path:
    """The checksum cache file: ``$ANRL_RAY_CACHE/checksums.json``, else ``~/.cache/anrl_ray/checksums.json``."""
    return Path(os.environ.get("ANRL_RAY_CACHE") or Path.home() / ".cache" / "anrl_ray") / CACHE_FILE


class ChecksumCache:
    """sha256 digests of files, valid while a file keeps its size and ``mtime_ns``.

    Args:
        path: the JSON file (default :func:`checksum_cache_path`). An unreadable or malformed
            file is treated as empty; :meth:`save` writes atomically and never raises.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else checksum_cache_path()
        self.entries: dict[str, dict[str, Any]] = {}
        self.dirty = False
        try:
            data = json.loads(self.path.read_text())
            if isinstance(data, dict) and data.get("version") == CACHE_VERSION and isinstance(data.get("entries"), dict):
                self.entries = {k: v for k, v in data["entries"].items() if isinstance(v, dict)}
        except (OSError, ValueError) as e:
            if not isinstance(e, FileNotFoundError):
                log.info("ignoring the checksum cache %s (%s)", self.path, e)

    def get(self, path: Path, size: int, mtime_ns: int) -> str | None:
        """The cached digest of ``path`` if it was hashed at this size and mtime, else None."""
        e = self.entries.get(str(path))
        if e and e.get("size") == size and e.get("mtime_ns") == mtime_ns and isinstance(e.get("sha256"), str):
            return e["sha256"]
        return None

    def put(self, path: Path, size: int, mtime_ns: int, sha256: str) -> None:
        self.entries[str(path)] = {"size": size, "mtime_ns": mtime_ns, "sha256": sha256}
        self.dirty = True

    def save(self) -> None:
        """Write the cache (temporary file + rename); failures are logged, never raised."""
        if not self.dirty:
            return
        if len(self.entries) > CACHE_MAX_ENTRIES:
            self.entries = {k: v for k, v in self.entries.items() if os.path.exists(k)}
        tmp = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{CACHE_FILE}.", suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                json.dump({"version": CACHE_VERSION, "entries": self.entries}, f)
            os.replace(tmp, self.path)
            self.dirty = False
        except OSError as e:
            log.warning("could not write the checksum cache %s (%s); shards will be hashed again next time", self.path, e)
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)


def _reconvert(domain_dir: Path, manifest: Mapping[str, Any] | None) -> str:
    name = (manifest or {}).get("converter") or "DATASET"
    extra = f" --domains {domain_dir.name}" if name == "synthetic" else " ..."
    return f"re-convert it: `anrl-ray convert {name}{extra} --out {domain_dir.parent} --overwrite`"


def _hash(item: tuple[Path, int, int]) -> str | OSError:
    try:
        return file_sha256(item[0])
    except OSError as e:
        return e


def _split_rows(manifest: Mapping[str, Any], split: str) -> tuple[int, int]:
    per = manifest["counts"].get(split, {})
    return sum(per.get("live", {}).values()), sum(per.get("spoof", {}).values())


def check_data_root(
    data_root: str | Path,
    needs: Mapping[str, Sequence[str]],
    *,
    verify_checksums: bool = True,
    cache: ChecksumCache | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Check a data root before any trial runs; raise one error listing every problem found.

    Args:
        data_root: the folder ``--data`` points at (one converted dataset per domain).
        needs: domain -> splits it must provide, each with >= 1 live and >= 1 spoof row,
            e.g. ``{"O": ["train", "dev"], "C": ["train", "dev"], "M": ["test"]}``.
        verify_checksums: hash the shards (cached) and compare with the manifests; sizes are
            compared either way (manifests written before sizes were recorded skip that).
        cache: digest cache (default: the user cache, :func:`checksum_cache_path`).
        workers: threads hashing shards in parallel (default ``min(4, cpu count)``).

    Returns:
        ``{"data_root", "domains": {d: {"rows": {split: {"live", "spoof"}}, "shards", "bytes"}},
        "shards_checked", "hashed", "cache_hits", "seconds"}``.

    Raises:
        DatasetFormatError: first line a summary, then one line per problem (file + fix).
    """
    t0 = time.time()
    root = Path(data_root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetFormatError(f"--data {data_root}: no such folder; point it at a data root made by `anrl-ray convert`")
    if not needs:
        raise DatasetFormatError("no domains to check: the protocol names no source or target domain")
    problems: list[str] = []
    domains: dict[str, dict[str, Any]] = {}
    to_hash: list[tuple[Path, str, int, int, Path, Mapping[str, Any]]] = []
    for d, splits in needs.items():
        splits = [splits] if isinstance(splits, str) else list(splits)
        ddir = root / d
        if not ddir.is_dir():
            have = sorted(p.name for p in root.iterdir() if (p / MANIFEST).is_file())
            problems.append(
                f"domain {d!r}: folder {ddir} not found (data root holds: {', '.join(have) or 'none'}); "
                f"convert it: `anrl-ray convert DATASET ... --out {root}`"
            )
            continue
        try:
            manifest = parse_manifest(ddir)
        except DatasetFormatError as e:
            problems.append(str(e))
            continue
        mpath = ddir / MANIFEST
        if manifest.get("domain", d) != d:
            problems.append(
                f"{mpath}: folder {d}/ holds domain {manifest['domain']!r}; rename the folder to "
                f"{manifest['domain']}/ or {_reconvert(ddir, manifest)}"
            )
        rows: dict[str, dict[str, int]] = {}
        for split in splits:
            if split not in SPLITS:
                problems.append(f"domain {d!r}: unknown split {split!r} (splits are {', '.join(SPLITS)})")
                continue
            live, spoof = _split_rows(manifest, split)
            rows[split] = {"live": live, "spoof": spoof}
            if live == 0 or spoof == 0:
                problems.append(
                    f"{mpath}: split {split!r} has {live} live and {spoof} spoof rows; this run needs both classes "
                    f"there: use a protocol that does not need {d}/{split}, or {_reconvert(ddir, manifest)} "
                    "from a complete copy of the raw dataset"
                )
        total = sum(n for per in manifest["counts"].values() for cls in per.values() for n in cls.values())
        in_shards = sum(s["rows"] for s in manifest["shards"])
        if total != in_shards:
            problems.append(f"{mpath}: 'counts' add up to {total} rows, 'shards' to {in_shards}; {_reconvert(ddir, manifest)}")
        nbytes = 0
        for s in manifest["shards"]:
            path = ddir / s["file"]
            try:
                st = path.stat()
            except OSError:
                problems.append(f"{path} (listed in {mpath}) is missing; restore it or {_reconvert(ddir, manifest)}")
                continue
            nbytes += st.st_size
            if "bytes" in s and st.st_size != s["bytes"]:
                problems.append(
                    f"{path}: {st.st_size} bytes, {mpath} says {s['bytes']} (truncated or replaced); "
                    f"restore it or {_reconvert(ddir, manifest)}"
                )
            elif verify_checksums:
                to_hash.append((path, s["sha256"], st.st_size, st.st_mtime_ns, ddir, manifest))
        domains[d] = {"rows": rows, "shards": len(manifest["shards"]), "bytes": nbytes}

    hashed = hits = 0
    if to_hash:
        cache = cache if cache is not None else ChecksumCache()
        digests: dict[Path, str] = {}
        todo = []
        for path, _, size, mtime, _, _ in to_hash:
            got = cache.get(path, size, mtime)
            if got is None:
                todo.append((path, size, mtime))
            else:
                digests[path] = got
        hits = len(to_hash) - len(todo)
        with ThreadPoolExecutor(max_workers=max(1, workers or min(4, os.cpu_count() or 1))) as pool:
            for (path, size, mtime), digest in zip(todo, pool.map(_hash, todo)):
                if isinstance(digest, OSError):
                    problems.append(f"{path}: cannot be read ({digest}); check its permissions or restore it")
                    continue
                digests[path] = digest
                cache.put(path, size, mtime, digest)
        hashed = len(todo)
        cache.save()
        for path, want, _, _, ddir, manifest in to_hash:
            if path in digests and digests[path] != want:
                problems.append(
                    f"{path}: sha256 {digests[path][:16]}... differs from {ddir / MANIFEST} ({want[:16]}...): "
                    f"the file is damaged; restore it or {_reconvert(ddir, manifest)}"
                )
    if problems:
        head = f"data root {root}: {len(problems)} problem(s) found before starting (nothing was run):"
        raise DatasetFormatError("\n".join([head, *(f"  - {p}" for p in problems)]))
    return {
        "data_root": str(root),
        "domains": domains,
        "shards_checked": len(to_hash),
        "hashed": hashed,
        "cache_hits": hits,
        "seconds": round(time.time() - t0, 3),
    }


@dataclass
class DecodeErrors:
    """Rows dropped because their image (or depth) bytes did not decode, for one epoch / one pass.

    Attributes:
        count: failed rows seen by this consumer.
        examples: the first ``max_examples`` of them as ``"O/part-00003.parquet#17: reason"``.
    """

    max_examples: int = 20
    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, failure: str) -> None:
        """Count one failed row (``failure``: ``"shard#row: reason"``)."""
        self.count += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(failure)

    def update(self, other: "DecodeErrors | Mapping[str, Any]") -> None:
        """Add another tally (e.g. another worker's :meth:`as_dict`, gathered to rank 0)."""
        if isinstance(other, DecodeErrors):
            other = other.as_dict()
        self.count += int(other.get("decode_failures", 0))
        room = self.max_examples - len(self.examples)
        self.examples.extend(list(other.get("decode_failure_examples", []))[: max(0, room)])

    def as_dict(self) -> dict[str, Any]:
        """``{"decode_failures": count, "decode_failure_examples": [...]}`` (JSON-ready, for records)."""
        return {"decode_failures": self.count, "decode_failure_examples": list(self.examples)}


def row_name(path: str, video_id: str, frame_index: int) -> str:
    """``"O/part-00003.parquet#17"``: a row named by its shard (domain folder / file) and index in it.

    For rows that failed to decode (rare): finds the row by ``(video_id, frame_index)`` in the
    shard's id columns; ``#?`` when the shard cannot be read from here.
    """
    p = Path(path)
    name = f"{p.parent.name}/{p.name}" if path else "?"
    try:
        index = _row_index(path, p.stat().st_mtime_ns).get((video_id, frame_index))
    except (OSError, ValueError):
        index = None
    return f"{name}#{'?' if index is None else index}"


@functools.lru_cache(maxsize=8)
def _row_index(path: str, mtime_ns: int) -> dict[tuple[str, int], int]:
    ids = pq.read_table(path, columns=["video_id", "frame_index"])
    return {(v, f): i for i, (v, f) in enumerate(zip(ids["video_id"].to_pylist(), ids["frame_index"].to_pylist()))}
