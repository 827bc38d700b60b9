"""ANRL losses against hand computations on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from anrl_ray.losses import ClassCentres, LossWeights, centre_distance, domain_losses
from anrl_ray.model import ANRLOutput

torch.set_num_threads(1)


def _output(feature_means: list[list[float]], logits: list[list[float]], depth: float = 0.5) -> ANRLOutput:
    """An ANRLOutput whose pooled features are exactly ``feature_means`` ``(B, C)``."""
    f = torch.tensor(feature_means)[:, :, None, None].expand(-1, -1, 2, 2).clone()  # (B, C, 2, 2)
    b = f.shape[0]
    return ANRLOutput(torch.tensor(logits), torch.full((b, 1, 2, 2), depth), f)


def test_centres_start_at_one_update_and_reset() -> None:
    c = ClassCentres(3, 2, momentum=0.9)
    assert torch.equal(c.live, torch.ones(3, 2)) and torch.equal(c.spoof, torch.ones(3, 2))
    assert set(c.state_dict()) == {"live", "spoof"}
    live = torch.tensor([[2.0, 4.0], [4.0, 0.0]], requires_grad=True)  # mean (3, 2)
    spoof = torch.tensor([[0.0, 0.0], [-2.0, 2.0]])  # mean (-1, 1)
    c.update(1, live, spoof)
    torch.testing.assert_close(c.live[1], torch.tensor([0.9 + 0.3, 0.9 + 0.2]))
    torch.testing.assert_close(c.spoof[1], torch.tensor([0.9 - 0.1, 0.9 + 0.1]))
    assert torch.equal(c.live[0], torch.ones(2)) and torch.equal(c.live[2], torch.ones(2))
    assert not c.live.requires_grad
    c.update(1, live, spoof)  # second EMA step: 0.9 * 1.2 + 0.1 * 3
    torch.testing.assert_close(c.live[1, 0], torch.tensor(0.9 * 1.2 + 0.3))
    c.reset()
    assert torch.equal(c.live, torch.ones(3, 2)) and torch.equal(c.spoof, torch.ones(3, 2))


def test_centre_distance_is_mean_square() -> None:
    f = torch.tensor([[1.0, 2.0], [3.0, 5.0]])
    c = torch.tensor([1.0, 1.0])
    assert centre_distance(f, c).item() == pytest.approx((0 + 1 + 4 + 16) / 4)


def test_domain_losses_by_hand() -> None:
    # Domain 0 of 3, C = 2, 2 live then 2 spoof.
    centres = ClassCentres(3, 2)
    centres.live[1] = torch.tensor([0.0, 2.0])
    centres.live[2] = torch.tensor([3.0, 1.0])
    feats = [[1.0, 3.0], [3.0, 1.0], [0.0, 0.0], [2.0, -2.0]]
    logits = [[2.0, 0.0], [0.0, 1.0], [0.5, 0.5], [-1.0, 1.0]]
    labels = torch.tensor([0, 0, 1, 1])
    target = torch.zeros(4, 1, 2, 2)
    target[:2] = 1.0
    w = LossWeights(cls=1.0, depth=0.1, idcl=0.5, icsl=0.25)
    out = domain_losses(_output(feats, logits), labels, target, 0, centres, w)

    # cross entropy
    def ce(z: list[float], y: int) -> float:
        return -z[y] + math.log(sum(math.exp(v) for v in z))

    cls = sum(ce(z, int(y)) for z, y in zip(logits, labels)) / 4
    # depth: prediction 0.5 everywhere; target 1 (live) or 0 (spoof)
    depth = 0.25
    # centres are updated FIRST: live mean (2, 2), spoof mean (1, -1)
    c_live0 = [0.9 * 1 + 0.1 * 2, 0.9 * 1 + 0.1 * 2]  # (1.1, 1.1)
    c_spoof0 = [0.9 * 1 + 0.1 * 1, 0.9 * 1 - 0.1 * 1]  # (1.0, 0.8)

    def dist(fs: list[list[float]], c: list[float]) -> float:
        return sum((f[i] - c[i]) ** 2 for f in fs for i in range(2)) / (2 * len(fs))

    live, spoof = feats[:2], feats[2:]
    own = dist(live, c_live0)
    idcl = (dist(live, [0.0, 2.0]) + dist(live, [3.0, 1.0])) / 2 - own
    icsl = own - dist(live, c_spoof0) - dist(spoof, c_live0)
    assert out["cls"].item() == pytest.approx(cls, rel=1e-6)
    assert out["depth"].item() == pytest.approx(depth, rel=1e-6)
    assert out["idcl"].item() == pytest.approx(idcl, rel=1e-5)
    assert out["icsl"].item() == pytest.approx(icsl, rel=1e-5)
    total = cls + 0.1 * depth + 0.5 * idcl + 0.25 * icsl
    assert out["total"].item() == pytest.approx(total, rel=1e-5)
    torch.testing.assert_close(centres.live[0], torch.tensor(c_live0))
    torch.testing.assert_close(centres.spoof[0], torch.tensor(c_spoof0))
    torch.testing.assert_close(centres.live[1], torch.tensor([0.0, 2.0]))  # others untouched


def test_idcl_divides_by_number_of_other_domains() -> None:
    feats = [[1.0, 1.0], [1.0, 1.0], [0.0, 0.0], [0.0, 0.0]]
    logits = [[0.0, 0.0]] * 4
    labels = torch.tensor([0, 0, 1, 1])
    target = torch.zeros(4, 1, 2, 2)
    for d in (2, 4):
        centres = ClassCentres(d, 2)
        centres.live[1:] = 3.0  # every other domain's live centre at distance 4
        out = domain_losses(_output(feats, logits), labels, target, 0, centres, LossWeights())
        assert out["idcl"].item() == pytest.approx(4.0 - 0.0)  # mean over others - own (own = 0)
    single = ClassCentres(1, 2)
    out = domain_losses(_output(feats, logits), labels, target, 0, single, LossWeights())
    assert out["idcl"].item() == 0.0


def test_gradients_flow_to_features_not_centres() -> None:
    centres = ClassCentres(2, 3)
    f = torch.randn(4, 3, 2, 2, requires_grad=True)
    out = ANRLOutput(torch.randn(4, 2, requires_grad=True), torch.rand(4, 1, 2, 2, requires_grad=True), f)
    res = domain_losses(out, torch.tensor([0, 0, 1, 1]), torch.zeros(4, 1, 2, 2), 1, centres, LossWeights())
    res["total"].backward()
    assert f.grad is not None and f.grad.abs().sum() > 0
    # ICSL/IDCL are pure feature terms: with zero cls/depth weight only they move features
    f2 = f.detach().clone().requires_grad_()
    out2 = ANRLOutput(out.logits, out.depth, f2)
    r = domain_losses(out2, torch.tensor([0, 0, 1, 1]), torch.zeros(4, 1, 2, 2), 1, centres,
                      LossWeights(cls=0.0, depth=0.0, idcl=1.0, icsl=0.0))
    r["total"].backward()
    assert f2.grad.abs().sum() > 0


def test_odd_batch_rejected() -> None:
    centres = ClassCentres(2, 2)
    out = _output([[1.0, 1.0]] * 3, [[0.0, 0.0]] * 3)
    with pytest.raises(ValueError, match="even"):
        domain_losses(out, torch.tensor([0, 1, 1]), torch.zeros(3, 1, 2, 2), 0, centres, LossWeights())
    with pytest.raises(ValueError, match="out of range"):
        domain_losses(_output([[1.0, 1.0]] * 2, [[0.0, 0.0]] * 2), torch.tensor([0, 1]),
                      torch.zeros(2, 1, 2, 2), 5, centres, LossWeights())
