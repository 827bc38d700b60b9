"""On-disk model formats: the training checkpoint and the exported model bundle.

A training checkpoint folder (``RUN/checkpoint_epochNNNN/``, written by the training loop)::

    checkpoint.pt     learner (network + EMA class centres), optimiser, scheduler, RNG, config
    config.json       the resolved TrialConfig
    metrics.json      the epoch's reported metrics and its record
    records.jsonl     the run's records up to this epoch (a resumed run starts from them)

The exported bundle (``EXP/best/``, written by ``anrl_ray.export``)::

    model.safetensors    network weights only (ANRLNet state dict)
    model_config.json    how to build the network and feed it; the decision threshold
    checkpoint.pt        the full training checkpoint of the selected epoch
    config.json          the resolved TrialConfig
    metrics.json         the selected record, its summary, the oracle column, the threshold
    selection.json       method, trial, epoch, score, what was compared, in one sentence

Everything is loaded with ``torch.load(weights_only=True)`` or safetensors: no pickle code runs.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from anrl_ray.config import TrialConfig, make_config
from anrl_ray.errors import UserError
from anrl_ray.model import ANRLNet
from anrl_ray.records import clean_json

CHECKPOINT_FILE = "checkpoint.pt"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
MODEL_FILE = "model.safetensors"
MODEL_CONFIG = "model_config.json"
SELECTION_FILE = "selection.json"
CHECKPOINT_FORMAT = "anrl-ray-checkpoint-v1"
MODEL_FORMAT = "anrl-ray-model-v1"


# --------------------------------------------------------------------------- JSON helpers


def read_json(path: str | Path) -> dict[str, Any]:
    """A JSON file as a dict; a UserError naming the file when it is not valid JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e})") from e


def write_json(path: str | Path, obj: Any) -> None:
    Path(path).write_text(json.dumps(clean_json(obj), indent=2, sort_keys=True))


def publish_folder(tmp: Path, dest: Path) -> Path:
    """Move a fully written folder ``tmp`` to ``dest``; an old ``dest`` is moved aside only once ``tmp`` is complete."""
    if dest.exists():
        old = dest.parent / f".{dest.name}.old-{os.getpid()}"
        dest.rename(old)
        tmp.rename(dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(dest)
    return dest


# --------------------------------------------------------------------------- training checkpoint


def save_checkpoint(path: Path, learner: torch.nn.Module, optimizer, scheduler, epoch: int, gen_states, cfg: TrialConfig) -> None:
    """Full training state as plain tensors/containers, loadable with ``torch.load(weights_only=True)``."""
    state = {
        "format": CHECKPOINT_FORMAT,
        "epoch": epoch,  # last finished epoch (0-based)
        "learner": learner.state_dict(),  # network + EMA class centres
        "model_config": dict(learner.model.config),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else {},
        "domain_order_rng": gen_states,  # one torch.Generator state per rank
        "torch_rng": torch.get_rng_state(),
        "config": cfg.to_dict(),
    }
    torch.save(state, path)


def write_checkpoint_folder(
    folder: Path, learner: torch.nn.Module, optimizer, scheduler, epoch: int, gen_states, cfg: TrialConfig,
    metrics: dict[str, Any], records_file: Path | None,
) -> None:
    """Everything of one epoch's checkpoint folder (see the module docstring)."""
    save_checkpoint(folder / CHECKPOINT_FILE, learner, optimizer, scheduler, epoch, gen_states, cfg)
    cfg.save(folder / CONFIG_FILE)
    (folder / METRICS_FILE).write_text(json.dumps(clean_json(metrics), indent=2))
    if records_file is not None and records_file.is_file():
        shutil.copyfile(records_file, folder / records_file.name)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file or folder safely (``weights_only=True``)."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found (expected a folder with {CHECKPOINT_FILE} or the file itself)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  truncated, corrupt, or not a torch file: say which file
        raise UserError(f"{path} cannot be read as a checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                        "it is damaged or not an anrl-ray checkpoint: re-export it or use another epoch's") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not an anrl-ray checkpoint (format tag missing)")
    return state


# --------------------------------------------------------------------------- models


def load_model(checkpoint_path: str | Path) -> tuple[ANRLNet, TrialConfig, dict[str, Any]]:
    """The network of a checkpoint, in eval mode on the CPU, with its config and the raw state.

    Args:
        checkpoint_path: a ``best/`` folder, a ``checkpoint_epochNNNN/`` folder, or a
            ``checkpoint.pt`` file. A folder holding only ``model.safetensors`` +
            ``model_config.json`` + ``config.json`` (a deployed ``best/``) works too; the
            returned state is then ``{"format": MODEL_FORMAT, "model_config": ...}``.

    Raises:
        UserError: missing or foreign checkpoint, or weights that do not fit the config.
    """
    from anrl_ray.factory import build_learner

    path = Path(checkpoint_path)
    if path.is_dir() and not (path / CHECKPOINT_FILE).is_file() and (path / MODEL_FILE).is_file():
        return _load_exported(path)
    if not path.exists():
        raise UserError(
            f"checkpoint {path} not found: pass an experiment's best/ folder, a checkpoint_epochNNNN/ folder "
            f"or a {CHECKPOINT_FILE} file"
        )
    state = load_checkpoint(path)
    try:
        # the weights are in the state: a pretrained_path file need not exist where the checkpoint is loaded
        cfg = make_config({**state["config"], "pretrained_path": ""}, source=f"{path} (config)")
    except KeyError:
        raise UserError(f"{path}: checkpoint has no 'config' entry; it was not written by anrl-ray train/search") from None
    # build_learner seeds torch; keep the caller's RNG untouched
    with torch.random.fork_rng(devices=[]):
        learner = build_learner(cfg)
    try:
        learner.load_state_dict(state["learner"], strict=True)  # "model.*" + "centres.*"
    except (KeyError, RuntimeError) as e:
        raise UserError(f"{path}: the weights do not match the network its config describes ({e})") from e
    return learner.model.eval(), cfg, state


def _load_exported(folder: Path) -> tuple[ANRLNet, TrialConfig, dict[str, Any]]:
    from safetensors.torch import load_file

    from anrl_ray.factory import create_model

    mc_path, cfg_path = folder / MODEL_CONFIG, folder / CONFIG_FILE
    for p in (mc_path, cfg_path):
        if not p.is_file():
            raise UserError(f"{folder} holds {MODEL_FILE} but not {p.name}; re-export it with `anrl-ray best EXP`")
    model_config = read_json(mc_path)
    cfg = make_config({**read_json(cfg_path), "pretrained_path": ""}, source=str(cfg_path))
    model = create_model(**model_config["build_kwargs"])
    try:
        model.load_state_dict(load_file(folder / MODEL_FILE), strict=True)
    except RuntimeError as e:
        raise UserError(f"{folder / MODEL_FILE} does not match {mc_path} build_kwargs ({e})") from e
    return model.eval(), cfg, {"format": MODEL_FORMAT, "model_config": model_config}


def model_card(model: ANRLNet, cfg: TrialConfig, threshold: float, **selected: Any) -> dict[str, Any]:
    """``model_config.json``: how to rebuild the network, feed it and read its output."""
    from anrl_ray import LIVE, SPOOF

    return {
        "format": MODEL_FORMAT,
        "architecture": type(model).__name__,
        "build_kwargs": dict(model.config),
        "input": {
            "img_size": cfg.img_size,
            "in_channels": cfg.in_channels,
            "channels": "R, G, B, H, S, V (OpenCV 8-bit HSV of the same crop)" if cfg.in_channels == 6 else "R, G, B",
            "normalisation": "each channel: (x / 255 - 0.5) / 0.5",
            "transform": f"anrl_ray.data.transforms.FASTransform({cfg.img_size}, {cfg.in_channels}, augment=False)",
        },
        "output": "ANRLOutput(logits (B, 2), depth (B, 1, s, s), feature (B, C, s, s)); score = softmax(logits)[:, 1]",
        "labels": {str(LIVE): "live", str(SPOOF): "spoof"},
        "decision": "spoof when P(spoof) >= threshold",
        "threshold": threshold,
        "protocol": cfg.protocol,
        **selected,
    }


def write_bundle(
    dest: Path, scratch: Path, model: ANRLNet, cfg: TrialConfig, checkpoint_file: Path, *,
    card: dict[str, Any], metrics: dict[str, Any], selection: dict[str, Any],
) -> Path:
    """Write the exported bundle into ``scratch`` then publish it as ``dest`` (atomic replace)."""
    from safetensors.torch import save_file

    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    try:
        weights = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(weights, scratch / MODEL_FILE, metadata={"format": MODEL_FORMAT})
        write_json(scratch / MODEL_CONFIG, card)
        shutil.copy2(checkpoint_file, scratch / CHECKPOINT_FILE)
        cfg.save(scratch / CONFIG_FILE)
        write_json(scratch / METRICS_FILE, metrics)
        write_json(scratch / SELECTION_FILE, selection)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return publish_folder(scratch, dest)


def exported_threshold(checkpoint_path: str | Path) -> tuple[float | None, str | None]:
    """The decision threshold stored beside a checkpoint, and where it came from.

    ``best/metrics.json`` -> ``"threshold"``; a trial's ``checkpoint_epochNNNN/metrics.json`` ->
    its record's source-validation EER threshold. (None, None) when neither is there.
    """
    path = Path(checkpoint_path)
    folder = path if path.is_dir() else path.parent
    m_path = folder / METRICS_FILE
    if m_path.is_file():
        m = read_json(m_path)
        if m.get("threshold") is not None:
            return float(m["threshold"]), f"{m_path} (source-validation EER threshold of the exported epoch)"
        thr = (m.get("record") or {}).get("thresholds", {}).get("source_val_eer")
        if thr is not None:
            return float(thr), f"{m_path} (this epoch's source-validation EER threshold)"
    mc_path = folder / MODEL_CONFIG
    if mc_path.is_file():
        thr = read_json(mc_path).get("threshold")
        if thr is not None:
            return float(thr), f"{mc_path} (source-validation EER threshold of the exported epoch)"
    return None, None
