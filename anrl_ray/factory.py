"""Config -> objects: the learner (network + class centres + meta step), optimiser, scheduler, seeds.

The one place that turns a :class:`~anrl_ray.config.TrialConfig` into torch objects, shared by
the training loop (``anrl_ray.trial``) and by checkpoint loading (``anrl_ray.checkpoint``).
"""

from __future__ import annotations

import random

import numpy as np
import torch

from anrl_ray.backbones import TimmANRLNet
from anrl_ray.config import TrialConfig
from anrl_ray.losses import LossWeights
from anrl_ray.meta import MetaLearner
from anrl_ray.model import ANRLNet, build_model
from anrl_ray.optim import create_optimizer, create_scheduler


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def create_model(*, backbone: str = "anrl", pretrained_path: str = "", **kwargs) -> ANRLNet | TimmANRLNet:
    """The network a config (or a saved ``model.config``) describes: ANRL's, or a timm CNN with AdaNorm.

    ``create_model(**model.config)`` rebuilds any network this returns.

    Args:
        backbone: ``"anrl"`` (the reference network) or a timm CNN name (``"resnet18"``,
            ``"resnet50"``, ``"efficientnet_b0"``, ...): its BatchNorms up to stride 8 become
            AdaNorm, feature and depth at stride 8, timm's classifier head (``anrl_ray.backbones``).
        pretrained_path: timm backbones only: a local ``.pt``/``.pth``/``.safetensors`` timm
            state dict loaded before the norm swap (never downloaded); "" = random init.
        kwargs: ``in_channels``, ``width``, ``norm``, ``attention``, ``gate_tau``
            (:func:`anrl_ray.model.build_model`).
    """
    if backbone == "anrl":
        if pretrained_path:
            raise ValueError("pretrained_path is for timm backbones; load ANRL weights with load_tface_state_dict")
        return build_model(**kwargs)
    return TimmANRLNet(backbone=backbone, pretrained_path=pretrained_path, **kwargs)


def build_learner(cfg: TrialConfig) -> MetaLearner:
    """The network + class centres + meta step, as the config says (identical on every rank for a seed)."""
    torch.manual_seed(cfg.seed)
    model = create_model(
        backbone=cfg.backbone, pretrained_path=cfg.pretrained_path, in_channels=cfg.in_channels, width=cfg.width,
        norm=cfg.norm, attention=cfg.attention, gate_tau=cfg.gate_tau,
    )
    weights = LossWeights(cls=cfg.w_cls, depth=cfg.w_depth, idcl=cfg.w_idcl, icsl=cfg.w_icsl)
    return MetaLearner(
        model,
        num_domains=len(cfg.sources),
        mode=cfg.meta_mode,
        meta_step_size=cfg.meta_step_size,
        weights=weights,
        centre_momentum=cfg.centre_momentum,
        interleave_meta_train=cfg.interleave_meta_train,  # its own switch, not implied by meta_mode
    )


def build_optimizer(cfg: TrialConfig, learner: torch.nn.Module):
    """The optimizer and epoch schedule timm's factories build (the reference wires timm's step
    scheduler), made without importing timm (:mod:`anrl_ray.optim`)."""
    optimizer = create_optimizer(learner, cfg.optimizer, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum)
    scheduler = create_scheduler(
        optimizer, cfg.scheduler, epochs=cfg.epochs, decay_epochs=cfg.decay_epochs, decay_rate=cfg.decay_rate,
        warmup_epochs=cfg.warmup_epochs, warmup_lr=cfg.lr * 0.1,
    )
    return optimizer, scheduler
