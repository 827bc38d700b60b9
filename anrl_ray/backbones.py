"""timm CNN backbones for ANRL: every BatchNorm becomes an :class:`~anrl_ray.model.AdaNorm`.

``anrl_ray.factory.create_model(backbone="resnet18", ...)`` wraps a timm CNN so that it returns
:class:`~anrl_ray.model.ANRLOutput` like :class:`~anrl_ray.model.ANRLNet` does:

- the timm network is created with ``pretrained=False`` (nothing is ever downloaded),
  ``in_chans=in_channels`` and a 2-class head; local weights (``pretrained_path``) are loaded
  into it before the norm swap;
- the network's ``forward_features`` chain is cut after its last stage at stride 8. The part
  up to there is the feature extractor: ``forward_features`` returns its map (``feature``,
  ``(B, C, H/8, W/8)``, the map IDCL/ICSL and the class centres pool). ``forward_head`` runs
  the remaining stages and timm's own classifier head (global pool + linear, as SSDG/SSAN use
  ResNet-18) for ``logits``, and ANRL's depth head on ``feature`` for ``depth``;
- every ``BatchNorm2d`` of the extractor (and timm's ``BatchNormAct2d``, keeping its
  activation) is replaced by an ``AdaNorm`` of the requested mode whose BN is the original BN
  (weights and running statistics copied) and whose IN affine starts from the BN affine; the
  gate nets of these layers are the meta step's inner-loop parameters. As in ANRL, where the
  heads use plain BN, the later stages keep their BatchNorm: their maps are 2x2 and 1x1 at the
  CPU profile's 32 px, where instance norm is undefined (one value per channel).

``width`` scales only the depth head (the layers this wrapper adds); the timm network keeps
its own channel counts. Supported: any timm CNN with BatchNorm layers, a stride-8 feature
map, and a ``forward_features`` that is a plain chain of its child modules (ResNets,
EfficientNets, MobileNets, RegNets, DenseNets, VGG-BN, ...); :func:`backbone_problem` says
why a name is refused.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from anrl_ray.model import AdaNorm, ANRLOutput, DepthHead

FEATURE_STRIDE = 8
WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
# Top-level children from which a timm model's forward_head starts (not part of forward_features).
_HEAD_NAMES = ("global_pool", "head", "fc", "classifier", "pre_logits", "head_drop", "flatten")

log = logging.getLogger(__name__)


class AdaNormAct(nn.Module):
    """AdaNorm -> dropout -> activation: the replacement of timm's ``BatchNormAct2d``."""

    def __init__(self, norm: AdaNorm, drop: nn.Module, act: nn.Module) -> None:
        super().__init__()
        self.norm = norm
        self.drop = drop
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.drop(self.norm(x)))


def _adanorm_from(bn: nn.BatchNorm2d, norm: str, attention: str, gate_tau: float) -> AdaNorm:
    """An AdaNorm whose BN is a plain copy of ``bn`` (weights, statistics, eps, momentum)."""
    ada = AdaNorm(bn.num_features, norm, attention, gate_tau)
    if hasattr(ada, "bn"):
        plain = nn.BatchNorm2d(bn.num_features, eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                               track_running_stats=bn.track_running_stats)
        plain.load_state_dict({k: v for k, v in bn.state_dict().items() if k in plain.state_dict()})
        ada.bn = plain
    if hasattr(ada, "inorm") and bn.affine:
        with torch.no_grad():
            ada.inorm.weight.copy_(bn.weight)
            ada.inorm.bias.copy_(bn.bias)
    if bn.weight is not None:
        ada.to(device=bn.weight.device, dtype=bn.weight.dtype)
    return ada


def batchnorm_layers(module: nn.Module, within: tuple[str, ...] | None = None) -> list[tuple[str, nn.Module]]:
    """(name, layer) of the ``BatchNorm2d`` / ``BatchNormAct2d`` layers at or under ``within``."""
    from timm.layers import BatchNormAct2d

    return [(name, m) for name, m in module.named_modules()
            if name and type(m) in (nn.BatchNorm2d, BatchNormAct2d)
            and (within is None or any(name == w or name.startswith(w + ".") for w in within))]


def swap_batchnorm(module: nn.Module, *, norm: str = "adaptive", attention: str = "1layer",
                   gate_tau: float = 1.0, within: tuple[str, ...] | None = None) -> int:
    """Replace every ``BatchNorm2d`` / ``BatchNormAct2d`` inside ``module`` by AdaNorm, in place.

    Args:
        module: the network.
        norm, attention, gate_tau: the AdaNorm settings.
        within: only layers at or under these submodule names (None = everywhere).

    Returns:
        The number of layers replaced.
    """
    from timm.layers import BatchNormAct2d

    targets = batchnorm_layers(module, within)
    for name, bn in targets:
        new: nn.Module = _adanorm_from(bn, norm, attention, gate_tau)
        if isinstance(bn, BatchNormAct2d):
            new = AdaNormAct(new, bn.drop, bn.act)
        parent_name, _, child = name.rpartition(".")
        setattr(module.get_submodule(parent_name) if parent_name else module, child, new)
    return len(targets)


def feature_split(net: nn.Module) -> tuple[list[str], list[str], int]:
    """Cut a timm model's ``forward_features`` chain after its last stride-8 stage.

    Returns:
        (module names before and including the stride-8 stage, module names after it,
        channels of the stride-8 map). Sequential containers are opened only as far as needed
        to reach the stride-8 stage.

    Raises:
        ValueError: no stride-8 feature, or the stage is not reachable as a chain step.
    """
    info = [f for f in getattr(net, "feature_info", []) if f.get("reduction") == FEATURE_STRIDE]
    if not info:
        raise ValueError(f"it has no feature map at stride {FEATURE_STRIDE} (timm feature_info)")
    target = info[-1]["module"]

    def chain(module: nn.Module, prefix: str) -> list[str]:
        steps = []
        for name, child in module.named_children():
            full = prefix + name
            if not prefix and name in _HEAD_NAMES:
                break  # forward_head starts here
            if isinstance(child, nn.Sequential) and target.startswith(full + "."):
                steps += chain(child, full + ".")
            else:
                steps.append(full)
        return steps

    steps = chain(net, "")
    if target not in steps:
        raise ValueError(f"its stride-{FEATURE_STRIDE} stage {target!r} is not a step of its forward_features chain")
    cut = steps.index(target) + 1
    return steps[:cut], steps[cut:], int(info[-1]["num_chs"])


def check_chain(net: nn.Module, steps: list[str], in_channels: int, size: int = 64) -> None:
    """Check that running ``steps`` in order reproduces ``net.forward_features`` (eval, no grad).

    Raises:
        ValueError: the outputs differ (the model's forward_features does more than chain its children).
    """
    if any(p.is_meta for p in net.parameters()):
        return
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            p = next(net.parameters())
            x = torch.randn(1, in_channels, size, size, generator=torch.Generator().manual_seed(0))
            x = x.to(device=p.device, dtype=p.dtype)
            want = net.forward_features(x)
            got = x
            for name in steps:
                got = net.get_submodule(name)(got)
    finally:
        net.train(was_training)
    if got.shape != want.shape or not torch.allclose(got, want, rtol=1e-4, atol=1e-5):
        raise ValueError("its forward_features is not a plain chain of its child modules")


@functools.lru_cache(maxsize=None)
def backbone_problem(name: str) -> str | None:
    """Why the timm model ``name`` cannot be an ANRL backbone, or None when it can.

    Builds the model once on the CPU (cached per name) and checks: a timm model name, a
    stride-8 feature map, BatchNorm layers to turn into AdaNorm, a chain-shaped forward_features.
    """
    import difflib

    import timm

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return f"{name!r} is neither 'anrl' nor a timm model name (timm.list_models()){hint}"
    try:
        net = timm.create_model(name, pretrained=False, in_chans=3, num_classes=2)
        lower, upper, _ = feature_split(net)
        if not batchnorm_layers(net, tuple(lower)):
            raise ValueError(f"it has no BatchNorm layers up to stride {FEATURE_STRIDE} to turn into AdaNorm")
        check_chain(net, lower + upper, 3)
    except Exception as e:  # noqa: BLE001 - any failure means "not supported", with its reason
        return f"timm model {name!r} is not supported as an ANRL backbone: {e}"
    return None


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a local weights file (``.safetensors``, or ``.pt``/``.pth``/``.bin`` via
    ``torch.load(weights_only=True)``); a ``{"state_dict"|"model": ...}`` wrapper and a DDP
    ``module.`` prefix are removed."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"pretrained_path {path} is not a file")
    if path.suffix not in WEIGHT_SUFFIXES:
        raise ValueError(f"pretrained_path {path}: expected one of {', '.join(WEIGHT_SUFFIXES)}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: Any = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping):
        raise ValueError(f"pretrained_path {path} holds a {type(state).__name__}, not a state dict")
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, Tensor)}


def load_pretrained(net: nn.Module, path: str | Path, in_channels: int) -> dict[str, Any]:
    """Load a local timm state dict into ``net`` (before the norm swap), non-strictly.

    A first conv saved with another input channel count (3-channel ImageNet weights into a
    6-channel RGB+HSV model) is adapted like timm does (``adapt_input_conv``: channels
    repeated, scaled by ``3 / in_channels``); other tensors whose shape differs (the 1000-class
    classifier) are skipped.

    Returns:
        ``{"path", "loaded", "adapted", "skipped", "missing", "unexpected"}`` (key lists).

    Raises:
        ValueError: unreadable file, or not one of its tensors fits ``net``.
    """
    from timm.models import adapt_input_conv

    state = read_state_dict(path)
    own = net.state_dict()
    first = f"{net.pretrained_cfg.get('first_conv', '')}.weight" if hasattr(net, "pretrained_cfg") else ""
    adapted, skipped, fitting = [], [], {}
    for key, value in state.items():
        if key in own and value.shape != own[key].shape and key == first and value.dim() == 4:
            try:
                value = adapt_input_conv(in_channels, value, base_chans=value.shape[1])
                adapted.append(key)
            except NotImplementedError:
                pass
        if key in own and value.shape != own[key].shape:
            skipped.append(f"{key} {tuple(value.shape)} != {tuple(own[key].shape)}")
        elif key in own:
            fitting[key] = value
    if not fitting:
        raise ValueError(f"pretrained_path {path}: none of its {len(state)} tensors fits the timm model "
                         f"(first keys: {list(state)[:3]})")
    result = net.load_state_dict(fitting, strict=False)
    report = {"path": str(path), "loaded": len(fitting), "adapted": adapted, "skipped": skipped,
              "missing": list(result.missing_keys), "unexpected": sorted(k for k in state if k not in own)}
    if skipped or report["missing"] or report["unexpected"]:
        log.warning("pretrained_path %s: loaded %d tensors; skipped (shape) %s; missing %s; unexpected %s",
                    path, len(fitting), skipped, report["missing"], report["unexpected"])
    return report


class TimmANRLNet(nn.Module):
    """A timm CNN with AdaNorm, returning :class:`ANRLOutput`. Build it with ``anrl_ray.factory.create_model``.

    Attributes:
        config: the keyword arguments that rebuild it (``pretrained_path`` excluded: the
            weights travel in the state dict).
        feature_channels: channels ``C`` of ``ANRLOutput.feature`` (the stride-8 stage's).
        pretrained_report: what :func:`load_pretrained` loaded, or None.
    """

    def __init__(self, *, backbone: str, in_channels: int = 6, width: float = 1.0,
                 norm: str = "adaptive", attention: str = "1layer", gate_tau: float = 1.0,
                 pretrained_path: str = "") -> None:
        super().__init__()
        import timm

        if not (isinstance(in_channels, int) and in_channels > 0):
            raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
        if not width > 0:
            raise ValueError(f"width must be > 0, got {width!r}")
        if not timm.is_model(backbone):
            raise ValueError(backbone_problem(backbone) or f"unknown timm model {backbone!r}")
        self.config = dict(backbone=backbone, in_channels=in_channels, width=float(width), norm=norm,
                           attention=attention, gate_tau=float(gate_tau))
        net = timm.create_model(backbone, pretrained=False, in_chans=in_channels, num_classes=2)
        head = net.get_classifier()
        if isinstance(head, nn.Linear):  # ANRL's fc init (timm's: uniform +-1/sqrt(2) in some families)
            nn.init.kaiming_normal_(head.weight, a=0, mode="fan_in")
            nn.init.zeros_(head.bias)
        self.pretrained_report = load_pretrained(net, pretrained_path, in_channels) if pretrained_path else None
        try:
            lower, upper, channels = feature_split(net)
            check_chain(net, lower + upper, in_channels)
        except ValueError as e:
            raise ValueError(f"timm model {backbone!r} is not supported as an ANRL backbone: {e}") from None
        if swap_batchnorm(net, norm=norm, attention=attention, gate_tau=gate_tau, within=tuple(lower)) == 0:
            raise ValueError(f"timm model {backbone!r} has no BatchNorm layers up to stride {FEATURE_STRIDE} "
                             "to turn into AdaNorm")
        self.backbone = net
        self.lower, self.upper = tuple(lower), tuple(upper)  # module names inside self.backbone
        self.feature_channels = channels
        self.depth_head = DepthHead(channels, width)

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, Cin, H, W)`` -> feature ``(B, C, H/8, W/8)``; H and W must be divisible by 8."""
        if x.dim() != 4 or x.shape[-1] % 8 or x.shape[-2] % 8:
            raise ValueError(f"expected input (B, C, H, W) with H, W divisible by 8, got {tuple(x.shape)}")
        for name in self.lower:
            x = self.backbone.get_submodule(name)(x)
        return x

    def forward_head(self, feature: Tensor) -> tuple[Tensor, Tensor]:
        """Feature ``(B, C, s, s)`` -> (logits ``(B, 2)`` via the later stages, depth ``(B, 1, s, s)``)."""
        x = feature
        for name in self.upper:
            x = self.backbone.get_submodule(name)(x)
        return self.backbone.forward_head(x), self.depth_head(feature)

    def forward(self, x: Tensor) -> ANRLOutput:
        feature = self.forward_features(x)
        logits, depth = self.forward_head(feature)
        return ANRLOutput(logits, depth, feature)

    def attention_parameter_names(self) -> list[str]:
        """Names (as in ``named_parameters()``) of the backbone's AdaNorm gate-net parameters.

        These are the inner-loop (meta-learned) parameters; empty unless ``norm="adaptive"``.
        """
        gates = tuple(f"backbone.{name}.attention." for name, m in self.backbone.named_modules()
                      if isinstance(m, AdaNorm) and hasattr(m, "attention"))
        return [n for n, _ in self.named_parameters() if n.startswith(gates)] if gates else []
