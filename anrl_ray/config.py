"""One typed, frozen config per trial: defaults -> profile -> YAML file -> key=value overrides.

The resolved config is validated here (unknown keys and wrong types are refused, naming the
key), written as ``config.json`` next to every checkpoint and sent to the tracker.
Defaults are the reference ANRL values (``docs/ANRL.md``; optimiser as in the sister
method IADG: Adam, lr 1e-4, wd 1e-5, step decay x0.1 every 10 epochs, 5 per domain and class).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

from anrl_ray.errors import UserError
from anrl_ray.protocols import PROTOCOLS

CHOICES: dict[str, tuple[str, ...]] = {
    "norm": ("adaptive", "batch", "instance", "mix"),
    "attention": ("1layer", "2layer"),
    "meta_mode": ("maml", "reference", "erm"),
    "optimizer": ("adam", "adamw", "sgd"),
    "scheduler": ("step", "cosine", "none"),
    "selection_metric": ("hter", "auc"),
    "placement": ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"),
    "protocol": tuple(PROTOCOLS),
}


@dataclass(frozen=True)
class TrialConfig:
    """Everything one ANRL trial needs. Field comments give units and the reference value."""

    # data / protocol
    protocol: str = "OCI_M"
    data_root: str = ""  # folder with one converted dataset per domain (DIR/O, DIR/C, ...)
    holdout: str = ""  # leave-one-source-out run: train without this source, validate on it (selection "lodo")
    # network
    img_size: int = 256  # input H = W, divisible by 8; depth map is img_size/8 (32 at 256)
    in_channels: int = 6  # 6 = RGB+HSV (reference), 3 = RGB
    width: float = 1.0  # channel multiplier (1.0 = reference widths 64/128/196/...)
    norm: str = "adaptive"  # adaptive (AdaNorm) | batch | instance | mix (paper ablations)
    attention: str = "1layer"  # AdaNorm gate net: 1layer Linear(C,C) | 2layer bottleneck
    gate_tau: float = 1.0  # gate = sigmoid(A(z) / tau); 1.0 = reference
    # (backbones) anrl = the reference network | a timm CNN (resnet18, resnet50, efficientnet_b0, ...)
    # with AdaNorm up to stride 8; for a timm backbone, width scales only the depth head
    backbone: str = "anrl"
    pretrained_path: str = ""  # timm backbones: local .pt/.pth/.safetensors timm state dict ("" = random init)
    # losses (reference weights)
    w_cls: float = 1.0
    w_depth: float = 0.1
    w_idcl: float = 0.001  # inter-domain compatible loss
    w_icsl: float = 0.001  # inter-class separable loss
    centre_momentum: float = 0.9  # class centre EMA: c <- m c + (1-m) mean(feat)
    # meta-learning
    meta_mode: str = "maml"  # maml (identity path kept) | reference (detached quirk) | erm (no meta step)
    meta_step_size: float = 1e-4  # inner-loop lr alpha on the AdaNorm gate nets
    interleave_meta_train: bool = False  # the reference's interleaved meta-train batching (independent of meta_mode)
    # optimisation
    optimizer: str = "adam"
    lr: float = 1e-4
    weight_decay: float = 1e-5
    momentum: float = 0.9  # sgd only
    scheduler: str = "step"
    decay_epochs: int = 10  # step scheduler period
    decay_rate: float = 0.1
    warmup_epochs: int = 0
    epochs: int = 50
    batch_per_class: int = 5  # per domain and class and worker: a step sees D * 2 * B images per worker
    steps_per_epoch: int = 0  # 0 = reference rule: min(#live, #spoof) / (B * world size)
    max_steps_per_epoch: int = 0  # 0 = no cap; CPU profiles cap epochs
    grad_clip: float = 0.0  # 0 = off (reference: off)
    # evaluation and selection
    eval_batch_size: int = 64
    selection_metric: str = "hter"  # source-validation metric the search optimises (video level)
    # runtime
    seed: int = 0
    num_workers: int = 2  # Ray Train workers (DDP ranks)
    cpus_per_worker: float = 0.5
    gpus_per_worker: float = 0.0
    placement: str = "PACK"  # Ray placement of a trial's workers: PACK (fewest nodes) or SPREAD (across nodes)
    bf16: bool = False  # bf16 autocast (GPU only)
    deterministic: bool = True  # torch deterministic algorithms (CPU runs repeat exactly)

    @property
    def sources(self) -> tuple[str, ...]:
        src = PROTOCOLS[self.protocol].sources
        return tuple(d for d in src if d != self.holdout)

    @property
    def target(self) -> str:
        return PROTOCOLS[self.protocol].target

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))

    def replace(self, **changes: Any) -> "TrialConfig":
        return make_config({**self.to_dict(), **changes})


# Hardware profiles: what a machine can afford. "cpu" keeps a whole search on 2 CPU cores
# in minutes (64x fewer pixels, 1/16 of the multiply-adds per pixel); "full" is the paper's size.
PROFILES: dict[str, dict[str, Any]] = {
    "full": {"bf16": True},  # bf16 autocast takes effect on CUDA only
    "cpu": {
        "img_size": 32,
        "width": 0.25,
        "batch_per_class": 4,
        "epochs": 4,
        "decay_epochs": 3,
        "max_steps_per_epoch": 12,
        "lr": 1e-3,
        "eval_batch_size": 128,
    },
}

FIELDS = {f.name: f for f in fields(TrialConfig)}


def _coerce(key: str, value: Any, source: str) -> Any:
    """Convert a YAML / CLI value to the field's type, or raise a UserError naming the key."""
    if key not in FIELDS:
        close = difflib.get_close_matches(key, FIELDS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known keys: {', '.join(sorted(FIELDS))}"
        raise UserError(f"{source}: unknown config key {key!r}{hint}")
    typ = FIELDS[key].type
    try:
        if typ == "bool":
            if isinstance(value, str):
                low = value.strip().lower()
                if low not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return low in ("true", "1", "yes")
            if not isinstance(value, (bool, int)):
                raise ValueError(value)
            return bool(value)
        if typ == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if typ == "float":
            if isinstance(value, bool):
                raise ValueError(value)
            number = float(value)
            if not math.isfinite(number):  # lr=inf, gate_tau=nan, ...: refused up front, never trained
                raise UserError(f"{source}: config key {key!r} must be a finite number, got {value!r}")
            return number
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ValueError(value)
        return str(value)
    except UserError:
        raise
    except (TypeError, ValueError):
        raise UserError(f"{source}: config key {key!r} must be of type {typ}, got {value!r}") from None


def _validate(cfg: TrialConfig) -> None:
    for key, allowed in CHOICES.items():
        if getattr(cfg, key) not in allowed:
            raise UserError(f"config key {key!r} must be one of {', '.join(allowed)}, got {getattr(cfg, key)!r}")
    checks = [
        (cfg.img_size >= 8 and cfg.img_size % 8 == 0, "img_size", "a positive multiple of 8"),
        (cfg.in_channels in (3, 6), "in_channels", "3 (RGB) or 6 (RGB+HSV)"),
        (cfg.width > 0, "width", "> 0"),
        (cfg.gate_tau > 0, "gate_tau", "> 0"),
        (cfg.lr > 0, "lr", "> 0"),
        (cfg.meta_step_size >= 0, "meta_step_size", ">= 0"),
        (cfg.weight_decay >= 0, "weight_decay", ">= 0"),
        (0 <= cfg.centre_momentum < 1, "centre_momentum", "in [0, 1)"),
        (cfg.epochs >= 1, "epochs", ">= 1"),
        (cfg.batch_per_class >= 1, "batch_per_class", ">= 1"),
        (cfg.num_workers >= 1, "num_workers", ">= 1"),
        (cfg.cpus_per_worker >= 0 and cfg.gpus_per_worker >= 0, "cpus_per_worker/gpus_per_worker", ">= 0"),
        (min(cfg.w_cls, cfg.w_depth, cfg.w_idcl, cfg.w_icsl) >= 0, "w_*", "loss weights >= 0"),
    ]
    for ok, key, want in checks:
        if not ok:
            raise UserError(f"config key {key!r} must be {want}, got {getattr(cfg, key, None)!r}")
    _validate_backbone(cfg)
    if cfg.holdout:
        src = PROTOCOLS[cfg.protocol].sources
        if cfg.holdout not in src:
            raise UserError(f"config key 'holdout' must be one of the sources of {cfg.protocol} {src}, got {cfg.holdout!r}")
        if len(src) < 3:
            raise UserError(f"leave-one-source-out needs >= 3 sources; {cfg.protocol} has {len(src)}")


# (backbones) ---------------------------------------------------------------------------
def _validate_backbone(cfg: TrialConfig) -> None:
    """``backbone``: "anrl" or a supported timm CNN; ``pretrained_path``: an existing local file."""
    if cfg.backbone != "anrl":
        from anrl_ray.backbones import backbone_problem  # imports timm: only for timm backbones

        problem = backbone_problem(cfg.backbone)
        if problem:
            raise UserError(f"config key 'backbone': {problem}; use 'anrl' or e.g. resnet18, resnet50, efficientnet_b0")
    if cfg.pretrained_path:
        if cfg.backbone == "anrl":
            raise UserError("config key 'pretrained_path' is for timm backbones (e.g. backbone=resnet18); "
                            "unset it for backbone 'anrl'")
        path = Path(cfg.pretrained_path)
        if not path.is_file():
            raise UserError(f"config key 'pretrained_path': {path} is not a file; pass a local timm state dict "
                            "(.pt, .pth, .bin or .safetensors; nothing is downloaded)")
        if path.suffix not in (".pt", ".pth", ".bin", ".safetensors"):
            raise UserError(f"config key 'pretrained_path': {path} must end in .pt, .pth, .bin or .safetensors")
# ---------------------------------------------------------------------------------------


def make_config(values: Mapping[str, Any], source: str = "config") -> TrialConfig:
    """Build and validate a config from a flat mapping (unknown keys refused)."""
    cfg = TrialConfig(**{k: _coerce(k, v, source) for k, v in values.items()})
    _validate(cfg)
    return cfg


def parse_overrides(items: list[str] | None) -> dict[str, str]:
    """``["lr=1e-3", "norm=batch"]`` -> dict; a malformed item is a UserError."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"override {item!r} is not of the form key=value (e.g. lr=1e-3)")
        out[key.strip()] = value.strip()
    return out


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | Mapping[str, Any] | None = None,
    profile: str = "full",
    base: Mapping[str, Any] | None = None,
) -> TrialConfig:
    """Resolve defaults -> profile -> ``base`` -> YAML file -> overrides into one frozen config."""
    if profile not in PROFILES:
        raise UserError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    values: dict[str, Any] = dict(PROFILES[profile])
    values.update(base or {})
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"config file {path} not found")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise UserError(f"config file {path} is not valid YAML: {e}") from e
        if not isinstance(loaded, dict):
            raise UserError(f"config file {path} must hold a mapping of key: value, got {type(loaded).__name__}")
        for k, v in loaded.items():
            values[k] = _coerce(str(k), v, str(path))
    if isinstance(overrides, Mapping):
        values.update(overrides)
    else:
        values.update(parse_overrides(overrides))
    return make_config(values, source=str(path) if path else "overrides")


def default_profile() -> str:
    """``full`` where a CUDA device is present, else ``cpu``."""
    import torch

    return "full" if torch.cuda.is_available() else "cpu"
