"""Experiment storage: a local folder, or any URI that ``pyarrow.fs`` opens (``s3://bucket/prefix``,
``gs://...``, ``hdfs://...``).

A location is a string: a local path, or a URI (it contains ``://``; ``pathlib.Path`` would fold
its ``//``, so URIs never become ``Path`` objects). Trials write their records straight to the
location and Ray Train / Ray Tune persist checkpoints and their state there through the same
``pyarrow`` filesystem. Object stores have no append: appending a line rewrites the (small) object,
which is safe because every records file has one writer at a time (rank 0 of its run, then the
search driver once the run has ended).

S3-compatible servers (MinIO, Ceph, moto): ``--storage-endpoint URL`` or the AWS SDK's own
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``; credentials come from the usual AWS sources
(environment, ``~/.aws``, instance profile) of every node and are never written by anrl-ray.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
from pathlib import Path
from typing import Iterable

from anrl_ray.errors import UserError

ENDPOINT_VARS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
# not secret: handed to every Ray worker so that they open the same store (credentials are not)
SHARED_VARS = (*ENDPOINT_VARS, "AWS_DEFAULT_REGION", "AWS_REGION")


def is_uri(location: str | os.PathLike) -> bool:
    return "://" in str(location)


def configure(endpoint: str | None) -> None:
    """Use an S3-compatible endpoint (``--storage-endpoint``) in this process and the Ray workers it starts."""
    if endpoint:
        if "://" not in endpoint:
            raise UserError(f"--storage-endpoint {endpoint}: give a URL, e.g. http://127.0.0.1:9000")
        os.environ["AWS_ENDPOINT_URL_S3"] = endpoint


def shared_env() -> dict[str, str]:
    """The storage settings Ray workers need (endpoint, region; never credentials)."""
    return {k: os.environ[k] for k in SHARED_VARS if os.environ.get(k)}


def join(location: str | os.PathLike, *parts: str) -> str:
    location = str(location)
    if is_uri(location):
        return posixpath.join(location.rstrip("/"), *parts)
    return os.path.join(location, *parts)


def parent(location: str) -> str:
    return posixpath.dirname(location.rstrip("/")) if is_uri(location) else os.path.dirname(location)


def basename(location: str | os.PathLike) -> str:
    return posixpath.basename(str(location).rstrip("/"))


def filesystem(location: str | os.PathLike):
    """``(pyarrow filesystem, path inside it)`` of a location."""
    import pyarrow.fs as pafs

    location = str(location)
    if not is_uri(location):
        return pafs.LocalFileSystem(), os.path.abspath(location)
    try:
        return pafs.FileSystem.from_uri(location)
    except Exception as e:  # noqa: BLE001  pyarrow raises ArrowInvalid/OSError/... for bad URIs
        raise UserError(f"{location}: not a storage location pyarrow can open ({type(e).__name__}: {e}); "
                        "give a folder or a URI such as s3://bucket/prefix") from e


def _info(location: str):
    fs, path = filesystem(location)
    return fs.get_file_info(path)


def exists(location: str | os.PathLike) -> bool:
    location = str(location)
    if not is_uri(location):
        return os.path.exists(location)
    import pyarrow.fs as pafs

    return _info(location).type != pafs.FileType.NotFound


def is_file(location: str | os.PathLike) -> bool:
    location = str(location)
    if not is_uri(location):
        return os.path.isfile(location)
    import pyarrow.fs as pafs

    return _info(location).type == pafs.FileType.File


def makedirs(location: str | os.PathLike) -> None:
    """Create a folder (object stores have none: nothing to do there)."""
    if not is_uri(location):
        os.makedirs(location, exist_ok=True)


def read_bytes(location: str | os.PathLike) -> bytes:
    location = str(location)
    if not is_uri(location):
        return Path(location).read_bytes()
    fs, path = filesystem(location)
    with fs.open_input_stream(path) as f:
        return f.read()


def read_text(location: str | os.PathLike) -> str:
    return read_bytes(location).decode()


def write_text(location: str | os.PathLike, text: str) -> None:
    """Replace a file whole (local: written beside it, then renamed; an object store's put is atomic)."""
    location = str(location)
    if not is_uri(location):
        tmp = f"{location}.tmp-{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, location)
        return
    fs, path = filesystem(location)
    with fs.open_output_stream(path) as f:
        f.write(text.encode())


def append_text(location: str | os.PathLike, text: str) -> None:
    """Append to a file and make it durable (local: fsync; object store: the object is rewritten)."""
    location = str(location)
    if not is_uri(location):
        with open(location, "a") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        return
    old = read_text(location) if exists(location) else ""
    write_text(location, old + text)


def list_names(location: str | os.PathLike) -> list[str]:
    """Names directly inside a folder ([] when it does not exist)."""
    import pyarrow.fs as pafs

    fs, path = filesystem(location)
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return sorted(posixpath.basename(i.path.rstrip("/")) for i in infos)


def download(location: str, local: str | os.PathLike) -> Path:
    """Copy a remote folder (or file) to a local path; returns the local path."""
    import pyarrow.fs as pafs

    fs, path = filesystem(location)
    local = Path(local)
    if fs.get_file_info(path).type == pafs.FileType.File:
        local.parent.mkdir(parents=True, exist_ok=True)
        pafs.copy_files(path, str(local), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    else:
        local.mkdir(parents=True, exist_ok=True)
        pafs.copy_files(path, str(local), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    return local


def upload(local: str | os.PathLike, location: str, exclude: Iterable[str] = ()) -> None:
    """Copy a local folder's files to a location (top-level names in ``exclude`` are left out)."""
    import pyarrow.fs as pafs

    fs, path = filesystem(location)
    local = Path(local)
    skip = set(exclude)
    for item in sorted(local.iterdir()) if local.is_dir() else []:
        if item.name in skip:
            continue
        dest = posixpath.join(path, item.name)
        if item.is_dir():
            pafs.copy_files(str(item), dest, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
        else:
            with open(item, "rb") as src, fs.open_output_stream(dest) as out:
                out.write(src.read())


def check_reachable(location: str, option: str = "--storage") -> None:
    """Fail at once (UserError, exit 2) when a storage URI cannot be reached or written.

    Writes and deletes a small probe object under the location: a missing bucket, a wrong endpoint
    or missing credentials show here, before any trial runs.
    """
    if not is_uri(location):
        return
    probe = join(location, f".anrl-ray-probe-{os.getpid()}")
    try:
        fs, path = filesystem(probe)
        with fs.open_output_stream(path) as f:
            f.write(b"ok")
        fs.delete_file(path)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001  OSError from the store: say which URI and why
        endpoint = next((os.environ[k] for k in ENDPOINT_VARS if os.environ.get(k)), None)
        raise UserError(
            f"{option} {location}: cannot write there ({type(e).__name__}: {str(e).splitlines()[0][:300]}); check the "
            f"bucket, the endpoint{f' ({endpoint})' if endpoint else ''} (--storage-endpoint / AWS_ENDPOINT_URL_S3) "
            "and the AWS credentials of this machine") from None


def scratch_dir(location: str) -> Path:
    """The driver's local folder for an experiment stored at a URI (the Optuna study, logs, files being
    built); the same URI always maps to the same folder, so ``--resume`` on this machine finds it."""
    root = Path(os.environ.get("ANRL_RAY_SCRATCH") or Path(os.environ.get("ANRL_RAY_CACHE") or Path.home() / ".cache" / "anrl_ray")
                / "experiments")
    tag = re.sub(r"[^A-Za-z0-9._-]+", "_", location.split("://", 1)[1]).strip("_")[-80:]
    return root / f"{tag}-{hashlib.sha256(location.encode()).hexdigest()[:10]}"
