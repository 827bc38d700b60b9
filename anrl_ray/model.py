"""ANRL network: AdaNorm conv blocks, multi-scale feature extractor, classifier and depth heads.

Reproduces the reference ``Framework`` (Tencent/TFace, ANRL ``models/framework.py``) at
``width=1``, ``gate_tau=1``; see docs/ANRL.md. Additions: a channel width
multiplier, a gate temperature ``tau`` and the ``instance`` / ``mix`` normalisations of the
paper's ablation. Module names are our own; :func:`load_tface_state_dict` and
:func:`to_tface_state_dict` translate to and from the reference's key names.
timm CNN backbones with AdaNorm: ``anrl_ray.backbones`` (built by ``anrl_ray.factory.create_model``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NORMS = ("adaptive", "batch", "instance", "mix")
ATTENTIONS = ("1layer", "2layer")

# Reference channel counts at width 1.
_STEM = 64
_STAGE = (128, 196)  # the two inner conv blocks of every down stage
_STAGE_OUT = 128  # output of every down stage; feature = 3 * 128 = 384 channels
_CLS = (128, 256, 512)
_DEPTH = (128, 64)


class ANRLOutput(NamedTuple):
    """What :class:`ANRLNet` returns.

    Attributes:
        logits: ``(B, 2)`` class logits (index 1 = spoof).
        depth: ``(B, 1, s, s)`` pseudo-depth map, ``s = H // 8``.
        feature: ``(B, C, s, s)`` multi-scale feature, ``C = 3 * round(128 * width)``.
    """

    logits: Tensor
    depth: Tensor
    feature: Tensor


def scaled_channels(channels: int, width: float) -> int:
    """Channel count ``channels`` scaled by ``width`` (round half up, at least 1)."""
    return max(1, int(channels * width + 0.5))


class AdaNorm(nn.Module):
    """Normalisation layer: BN, IN, fixed 0.5/0.5 mix, or the adaptive (gated) combination.

    In ``adaptive`` mode, ``gate = sigmoid(A(z) / tau)`` with ``z`` the global average of the
    conv output and ``A`` the attention net, and ``out = gate * BN(x) + (1 - gate) * IN(x)``.

    Args:
        channels: number of channels ``C``.
        mode: one of ``NORMS``.
        attention: ``"1layer"`` (``Linear(C, C)``) or ``"2layer"``
            (``Linear(C, C//16+1) -> ReLU -> Linear(C//16+1, C)``); used in adaptive mode only.
        gate_tau: gate temperature (1.0 = the reference).
    """

    def __init__(self, channels: int, mode: str = "adaptive", attention: str = "1layer",
                 gate_tau: float = 1.0) -> None:
        super().__init__()
        if mode not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {mode!r}")
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
        if not gate_tau > 0:
            raise ValueError(f"gate_tau must be > 0, got {gate_tau!r}")
        self.mode = mode
        self.gate_tau = float(gate_tau)
        if mode != "instance":
            self.bn = nn.BatchNorm2d(channels)
        if mode != "batch":
            self.inorm = nn.InstanceNorm2d(channels, affine=True)
        if mode == "adaptive":
            if attention == "1layer":
                self.attention = nn.Sequential(nn.Linear(channels, channels))
            else:
                hidden = channels // 16 + 1
                self.attention = nn.Sequential(
                    nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels)
                )

    def gate(self, x: Tensor) -> Tensor:
        """Per-sample, per-channel BN weight ``(B, C)`` for the conv output ``x`` ``(B, C, H, W)``."""
        z = F.adaptive_avg_pool2d(x, 1).flatten(1)  # (B, C)
        a = self.attention(z)  # (B, C)
        if self.gate_tau != 1.0:
            a = a / self.gate_tau
        return torch.sigmoid(a)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C, H, W)
        if self.mode == "batch":
            return self.bn(x)
        if self.mode == "instance":
            return self.inorm(x)
        x_bn = self.bn(x)
        x_in = self.inorm(x)
        if self.mode == "mix":
            return 0.5 * x_bn + 0.5 * x_in
        g = self.gate(x)[:, :, None, None]  # (B, C, 1, 1)
        return g * x_bn + (1 - g) * x_in


class ConvBlock(nn.Module):
    """3x3 conv (bias, kaiming-normal weight) -> :class:`AdaNorm` -> ReLU."""

    def __init__(self, in_ch: int, out_ch: int, norm: str = "batch", attention: str = "1layer",
                 gate_tau: float = 1.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, bias=True)
        self.norm = AdaNorm(out_ch, norm, attention, gate_tau)
        nn.init.kaiming_normal_(self.conv.weight, a=0, mode="fan_in")  # as the reference

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.norm(self.conv(x)))


class DownStage(nn.Module):
    """Three conv blocks (in -> 128w -> 196w -> out) then a 2x2 max-pool."""

    def __init__(self, in_ch: int, out_ch: int, width: float, **norm_kw: object) -> None:
        super().__init__()
        c1, c2 = (scaled_channels(c, width) for c in _STAGE)
        self.blocks = nn.Sequential(
            ConvBlock(in_ch, c1, **norm_kw), ConvBlock(c1, c2, **norm_kw), ConvBlock(c2, out_ch, **norm_kw)
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(self.blocks(x), 2)


class FeatureExtractor(nn.Module):
    """Stem + three down stages; returns the concat of the 1/2, 1/4, 1/8 scale features at 1/8."""

    def __init__(self, in_channels: int, width: float, **norm_kw: object) -> None:
        super().__init__()
        stem = scaled_channels(_STEM, width)
        out = scaled_channels(_STAGE_OUT, width)
        self.inc = ConvBlock(in_channels, stem, **norm_kw)
        self.down1 = DownStage(stem, out, width, **norm_kw)
        self.down2 = DownStage(out, out, width, **norm_kw)
        self.down3 = DownStage(out, out, width, **norm_kw)
        self.out_channels = 3 * out

    def forward(self, x: Tensor) -> Tensor:  # (B, Cin, H, W) -> (B, 3*out, H/8, W/8)
        dx2 = self.down1(self.inc(x))  # (B, out, H/2, W/2)
        dx3 = self.down2(dx2)  # (B, out, H/4, W/4)
        dx4 = self.down3(dx3)  # (B, out, H/8, W/8)
        s = dx4.shape[-2:]  # the reference hard-codes 32 (= 256 / 8)
        return torch.cat([F.adaptive_avg_pool2d(dx2, s), F.adaptive_avg_pool2d(dx3, s), dx4], 1)


class Classifier(nn.Module):
    """BN conv blocks C -> 128w, pool, -> 256w, pool, -> 512w, global average pool, Linear(512w, 2)."""

    def __init__(self, in_ch: int, width: float) -> None:
        super().__init__()
        c1, c2, c3 = (scaled_channels(c, width) for c in _CLS)
        self.blocks = nn.ModuleList([ConvBlock(in_ch, c1), ConvBlock(c1, c2), ConvBlock(c2, c3)])
        self.fc = nn.Linear(c3, 2)
        nn.init.kaiming_normal_(self.fc.weight, a=0, mode="fan_in")
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, s, s) -> (B, 2)
        # ceil_mode: identical to the reference's floor pooling whenever s is divisible by 4
        # (s = 32 at 256 px), and keeps small inputs (s = 1, 2, 3, ...) from pooling to nothing.
        x = F.max_pool2d(self.blocks[0](x), 2, ceil_mode=True)  # (B, 128w, s/2, s/2)
        x = F.max_pool2d(self.blocks[1](x), 2, ceil_mode=True)  # (B, 256w, s/4, s/4)
        x = self.blocks[2](x)  # (B, 512w, s/4, s/4)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class DepthHead(nn.Module):
    """BN conv blocks C -> 128w -> 64w -> 1 at the feature resolution (ReLU output, >= 0)."""

    def __init__(self, in_ch: int, width: float) -> None:
        super().__init__()
        c1, c2 = (scaled_channels(c, width) for c in _DEPTH)
        self.blocks = nn.Sequential(ConvBlock(in_ch, c1), ConvBlock(c1, c2), ConvBlock(c2, 1))

    def forward(self, x: Tensor) -> Tensor:  # (B, C, s, s) -> (B, 1, s, s)
        return self.blocks(x)


class ANRLNet(nn.Module):
    """The ANRL network (reference ``Framework``). Build it with :func:`build_model`.

    Attributes:
        config: the keyword arguments it was built with (for checkpoints).
        feature_channels: channels ``C`` of ``ANRLOutput.feature``.
    """

    def __init__(self, *, in_channels: int = 6, width: float = 1.0, norm: str = "adaptive",
                 attention: str = "1layer", gate_tau: float = 1.0) -> None:
        super().__init__()
        if not (isinstance(in_channels, int) and in_channels > 0):
            raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
        if not width > 0:
            raise ValueError(f"width must be > 0, got {width!r}")
        self.config = dict(in_channels=in_channels, width=float(width), norm=norm,
                           attention=attention, gate_tau=float(gate_tau))
        self.extractor = FeatureExtractor(in_channels, width, norm=norm, attention=attention,
                                          gate_tau=gate_tau)
        self.feature_channels = self.extractor.out_channels
        self.classifier = Classifier(self.feature_channels, width)
        self.depth_head = DepthHead(self.feature_channels, width)

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, Cin, H, W)`` -> feature ``(B, C, H/8, W/8)``; H and W must be divisible by 8."""
        if x.dim() != 4 or x.shape[-1] % 8 or x.shape[-2] % 8:
            raise ValueError(f"expected input (B, C, H, W) with H, W divisible by 8, got {tuple(x.shape)}")
        return self.extractor(x)

    def forward_head(self, feature: Tensor) -> tuple[Tensor, Tensor]:
        """Feature ``(B, C, s, s)`` -> (logits ``(B, 2)``, depth ``(B, 1, s, s)``)."""
        return self.classifier(feature), self.depth_head(feature)

    def forward(self, x: Tensor) -> ANRLOutput:
        feature = self.forward_features(x)
        logits, depth = self.forward_head(feature)
        return ANRLOutput(logits, depth, feature)

    def attention_parameter_names(self) -> list[str]:
        """Names (as in ``named_parameters()``) of the extractor's attention-net parameters.

        These are the inner-loop (meta-learned) parameters; empty unless ``norm="adaptive"``.
        """
        return [n for n, _ in self.named_parameters()
                if n.startswith("extractor.") and ".norm.attention." in n]


def build_model(*, in_channels: int = 6, width: float = 1.0, norm: str = "adaptive", attention: str = "1layer",
                gate_tau: float = 1.0) -> ANRLNet:
    """Build an :class:`ANRLNet` (timm backbones: :func:`anrl_ray.factory.create_model`).

    ``build_model(**model.config)`` rebuilds the network this returns.

    Args:
        in_channels: input channels (6 = RGB + HSV as the reference).
        width: channel multiplier (1.0 = the reference's 4.4 M-parameter network).
        norm: extractor normalisation, one of ``"adaptive"`` (AdaNorm), ``"batch"``,
            ``"instance"``, ``"mix"`` (fixed 0.5 BN + 0.5 IN). ANRL's heads always use BN.
        attention: AdaNorm attention net, ``"1layer"`` or ``"2layer"``.
        gate_tau: AdaNorm gate temperature, ``gate = sigmoid(A(z) / tau)``.

    Returns:
        The network; any input with H, W divisible by 8 works.
    """
    return ANRLNet(in_channels=in_channels, width=width, norm=norm, attention=attention, gate_tau=gate_tau)


# ----------------------------------------------------------------------------------------
# Reference (TFace) key names <-> ours.
# Reference: FeatExtractor.inc.{conv,BN,IN,AttentionNet[_fc1|_fc2]}.*,
#            FeatExtractor.down{1,2,3}.conv_block{1,2,3}.*, Classifier.conv_block{1,2,3}.*,
#            Classifier.fc.*, DepthEstmator.conv_block{1,2,3}.*
_TO_OURS = [
    (re.compile(r"^FeatExtractor\."), "extractor."),
    (re.compile(r"^Classifier\."), "classifier."),
    (re.compile(r"^DepthEstmator\."), "depth_head."),
    (re.compile(r"\.conv_block([123])\."), lambda m: f".blocks.{int(m.group(1)) - 1}."),
    (re.compile(r"\.BN\."), ".norm.bn."),
    (re.compile(r"\.IN\."), ".norm.inorm."),
    (re.compile(r"\.AttentionNet(_fc1)?\."), ".norm.attention.0."),
    (re.compile(r"\.AttentionNet_fc2\."), ".norm.attention.2."),
]
_TO_TFACE = [
    (re.compile(r"^extractor\."), "FeatExtractor."),
    (re.compile(r"^classifier\."), "Classifier."),
    (re.compile(r"^depth_head\."), "DepthEstmator."),
    (re.compile(r"\.blocks\.([012])\."), lambda m: f".conv_block{int(m.group(1)) + 1}."),
    (re.compile(r"\.norm\.bn\."), ".BN."),
    (re.compile(r"\.norm\.inorm\."), ".IN."),
    (re.compile(r"\.norm\.attention\.2\."), ".AttentionNet_fc2."),
]


def _rename(key: str, rules: list) -> str:
    for pattern, repl in rules:
        key = pattern.sub(repl, key)
    return key


def tface_key(key: str, attention: str = "1layer") -> str:
    """Our parameter/buffer name -> the reference ``Framework``'s name."""
    key = _rename(key, _TO_TFACE)
    first = ".AttentionNet." if attention == "1layer" else ".AttentionNet_fc1."
    return key.replace(".norm.attention.0.", first)


def to_tface_state_dict(model: ANRLNet) -> dict[str, Tensor]:
    """``model.state_dict()`` under the reference ``Framework``'s key names."""
    att = model.config["attention"]
    return {tface_key(k, att): v for k, v in model.state_dict().items()}


# (our key of a conv weight, its width-1 output channels): to infer the width multiplier.
_WIDTH_PROBES = [
    ("extractor.inc.conv.weight", _STEM),
    ("extractor.down1.blocks.1.conv.weight", _STAGE[1]),
    ("extractor.down1.blocks.0.conv.weight", _STAGE[0]),
    ("classifier.blocks.2.conv.weight", _CLS[2]),
    ("classifier.blocks.1.conv.weight", _CLS[1]),
]


def _infer_config(sd: Mapping[str, Tensor]) -> dict:
    """Best guess of build kwargs from a state dict in our naming."""
    cfg: dict = {}
    stem = sd.get("extractor.inc.conv.weight")
    if isinstance(stem, Tensor) and stem.dim() == 4:
        cfg["in_channels"] = int(stem.shape[1])
    ext = [k for k in sd if k.startswith("extractor.")]
    has = lambda s: any(s in k for k in ext)  # noqa: E731
    if has(".norm.attention."):
        cfg["norm"] = "adaptive"
        cfg["attention"] = "2layer" if has(".norm.attention.2.") else "1layer"
    elif has(".norm.bn.") and has(".norm.inorm."):
        cfg["norm"] = "mix"
    elif has(".norm.inorm."):
        cfg["norm"] = "instance"
    elif has(".norm.bn."):
        cfg["norm"] = "batch"
    return cfg


def _shape_table(**kwargs: object) -> dict[str, torch.Size]:
    with torch.device("meta"):
        model = build_model(**kwargs)
    return {k: v.shape for k, v in model.state_dict().items()}


def load_tface_state_dict(state_dict: Mapping[str, object], **build_kwargs: object) -> ANRLNet:
    """Build an :class:`ANRLNet` from a reference ``Framework`` state dict (or one of ours).

    Accepts keys with or without a ``module.`` prefix (DDP) and a ``{"state_dict": ...}``
    checkpoint wrapper. ``in_channels``, ``norm``, ``attention`` and ``width`` are inferred
    from the keys and shapes unless given in ``build_kwargs``; ``gate_tau`` is not stored in
    weights (default 1.0, the reference).

    Raises:
        ValueError: when keys are missing or unexpected, or shapes differ (strict); the
            message lists them in the naming the input used.
    """
    if isinstance(state_dict, Mapping) and isinstance(state_dict.get("state_dict"), Mapping):
        state_dict = state_dict["state_dict"]
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"expected a state dict (mapping of name -> tensor), got {type(state_dict).__name__}")
    ours: dict[str, Tensor] = {}
    original: dict[str, str] = {}  # our key -> key as given (for error messages)
    for key, value in state_dict.items():
        bare = key[len("module."):] if key.startswith("module.") else key
        new = _rename(bare, _TO_OURS)
        ours[new] = value
        original[new] = key
    tface_naming = any(k.removeprefix("module.").split(".")[0] in ("FeatExtractor", "Classifier", "DepthEstmator")
                       for k in original.values())

    kwargs = {**_infer_config(ours), **build_kwargs}
    if "width" not in kwargs:
        exact = [ours[k].shape[0] / base for k, base in _WIDTH_PROBES
                 if isinstance(ours.get(k), Tensor) and ours[k].dim() == 4]
        # Prefer the shortest decimal (0.2 rather than 13/64) among widths giving the same shapes.
        candidates = [c for c in [round(w, digits) for digits in (2, 3, 4) for w in exact] + exact if c > 0]
        kwargs["width"] = 1.0
        for w in candidates:  # the first width that reproduces every shape
            if all(ours.get(k) is None or not isinstance(ours[k], Tensor) or ours[k].shape == s
                   for k, s in _shape_table(**{**kwargs, "width": w}).items()):
                kwargs["width"] = w
                break
        else:
            if candidates:
                kwargs["width"] = candidates[0]
    model = build_model(**kwargs)

    expected = model.state_dict()
    att = model.config["attention"]
    show = (lambda k: tface_key(k, att)) if tface_naming else (lambda k: k)
    missing = sorted(show(k) for k in expected if k not in ours)
    unexpected = sorted(original[k] for k in ours if k not in expected)
    bad_shape = sorted(
        f"{original[k]}: got {tuple(ours[k].shape) if isinstance(ours[k], Tensor) else type(ours[k]).__name__}"
        f", expected {tuple(v.shape)}"
        for k, v in expected.items()
        if k in ours and not (isinstance(ours[k], Tensor) and ours[k].shape == v.shape)
    )
    if missing or unexpected or bad_shape:
        raise ValueError(
            f"state dict does not match ANRLNet({', '.join(f'{k}={v!r}' for k, v in model.config.items())}):"
            f"\n  missing keys: {missing}\n  unexpected keys: {unexpected}\n  shape mismatches: {bad_shape}"
        )
    model.load_state_dict(ours, strict=True)
    return model
