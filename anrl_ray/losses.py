"""ANRL losses for one domain's batch: cross entropy, depth MSE, IDCL, ICSL, and the class centres.

Follows the reference ``train.py`` (``compute_losses``) exactly, including its order: the
domain's centres are updated with the current batch FIRST, and the (detached, updated)
centres then enter IDCL and ICSL. See docs/ANRL.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from anrl_ray.model import ANRLOutput


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms (reference values as defaults)."""

    cls: float = 1.0
    depth: float = 0.1
    idcl: float = 0.001
    icsl: float = 0.001


class ClassCentres(nn.Module):
    """Per-domain live and spoof feature centres (EMA of pooled features), stored as buffers.

    Buffers ``live`` and ``spoof`` are ``(num_domains, channels)`` and start at all ones, as
    the reference does at every epoch start (call :meth:`reset` there).

    Args:
        num_domains: number of source domains.
        channels: pooled feature size ``C``.
        momentum: EMA momentum ``m``: ``c <- m * c + (1 - m) * mean(features)``.
    """

    live: Tensor
    spoof: Tensor

    def __init__(self, num_domains: int, channels: int, momentum: float = 0.9) -> None:
        super().__init__()
        if num_domains < 1 or channels < 1:
            raise ValueError(f"need num_domains >= 1 and channels >= 1, got {num_domains}, {channels}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
        self.num_domains = num_domains
        self.momentum = float(momentum)
        self.register_buffer("live", torch.ones(num_domains, channels))
        self.register_buffer("spoof", torch.ones(num_domains, channels))

    def reset(self) -> None:
        """Set every centre to all ones."""
        self.live.fill_(1.0)
        self.spoof.fill_(1.0)

    @torch.no_grad()
    def update(self, domain: int, live_feat: Tensor, spoof_feat: Tensor) -> None:
        """EMA update of ``domain``'s centres with pooled features ``(n, C)`` (detached)."""
        m = self.momentum
        # Same expression order as the reference: c * 0.9 + mean * 0.1.
        self.live[domain] = self.live[domain] * m + live_feat.detach().mean(0).to(self.live) * (1 - m)
        self.spoof[domain] = self.spoof[domain] * m + spoof_feat.detach().mean(0).to(self.spoof) * (1 - m)


def centre_distance(feat: Tensor, centre: Tensor) -> Tensor:
    """Mean over samples and channels of ``(f - c)^2``; ``feat`` ``(n, C)``, ``centre`` ``(C,)``."""
    return (feat - centre).pow(2).mean()


def domain_losses(out: ANRLOutput, labels: Tensor, depth_target: Tensor, domain: int,
                  centres: ClassCentres, weights: LossWeights) -> dict[str, Tensor]:
    """All ANRL losses for one domain's batch, and the EMA update of that domain's centres.

    The batch must be laid out as the reference does: the first half live, the second half
    spoof (``n_live = B // 2``). The centres are updated with this batch before IDCL/ICSL are
    computed (reference order); centres enter the losses detached.

    IDCL = mean over the other domains k of dist(F_live, c_live[k]) - dist(F_live, c_live[d])
    (the reference divides by a hard-coded 2 = the number of other domains with 3 sources; with
    one domain only, IDCL is 0). ICSL = dist(F_live, c_live[d]) - dist(F_live, c_spoof[d])
    - dist(F_spoof, c_live[d]).

    Args:
        out: model output for the batch (logits ``(B, 2)``, depth ``(B, 1, s, s)``, feature ``(B, C, s, s)``).
        labels: ``(B,)`` int64, 0 = live, 1 = spoof.
        depth_target: ``(B, 1, s, s)`` (or ``(B, s, s)``), zeros for spoof.
        domain: index of the batch's source domain in ``centres``.
        centres: the class centres (updated in place).
        weights: loss weights.

    Returns:
        ``{"cls", "depth", "idcl", "icsl", "total"}`` scalar tensors; ``total`` is the weighted sum.
    """
    b = out.logits.shape[0]
    if b < 2 or b % 2:
        raise ValueError(f"a domain batch must hold B live then B spoof samples (even size), got {b}")
    if not 0 <= domain < centres.num_domains:
        raise ValueError(f"domain {domain} out of range for {centres.num_domains} centres")
    cls = F.cross_entropy(out.logits, labels)
    depth = F.mse_loss(out.depth, depth_target.reshape(out.depth.shape))

    n_live = b // 2
    pooled = F.adaptive_avg_pool2d(out.feature, 1).flatten(1)  # (B, C)
    live, spoof = pooled[:n_live], pooled[n_live:]  # (n, C) each
    centres.update(domain, live, spoof)
    c_live = centres.live.detach().clone()  # (D, C); clone: later updates are in place
    c_spoof = centres.spoof.detach().clone()

    own = centre_distance(live, c_live[domain])
    others = [centre_distance(live, c_live[k]) for k in range(centres.num_domains) if k != domain]
    idcl = sum(others) / len(others) - own if others else torch.zeros_like(own)
    icsl = own - centre_distance(live, c_spoof[domain]) - centre_distance(spoof, c_live[domain])

    total = weights.cls * cls + weights.depth * depth + weights.idcl * idcl + weights.icsl * icsl
    return {"cls": cls, "depth": depth, "idcl": idcl, "icsl": icsl, "total": total}
