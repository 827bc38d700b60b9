"""MetaLearner: gradient paths per mode, domain counts, ERM, determinism, DDP safety."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel as DDP

from anrl_ray.losses import LossWeights, domain_losses
from anrl_ray.meta import MetaLearner
from anrl_ray.model import build_model

torch.set_num_threads(1)

SIZE = 16
WIDTH = 0.125


def _batch(d: int, b: int, seed: int, size: int = SIZE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Synthetic D-domain batch laid out domain by domain (B live, B spoof each)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(d * 2 * b, 6, size, size, generator=g)
    y = torch.tensor(([0] * b + [1] * b) * d)
    s = size // 8
    depth = torch.rand(d * 2 * b, 1, s, s, generator=g) * (y == 0).float()[:, None, None, None]
    return x, y, depth


def _learner(mode: str, d: int = 3, alpha: float = 0.5, seed: int = 0, **kw: object) -> MetaLearner:
    torch.manual_seed(seed)
    return MetaLearner(build_model(width=WIDTH, **kw), d, mode=mode, meta_step_size=alpha)


def _att_grads(learner: MetaLearner, loss: torch.Tensor) -> list[torch.Tensor]:
    params = dict(learner.model.named_parameters())
    theta = [params[n] for n in learner.model.attention_parameter_names()]
    grads = torch.autograd.grad(loss, theta, allow_unused=True, retain_graph=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(theta, grads)]


def _flat(gs: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in gs])


def test_gate_gradient_paths() -> None:
    """maml: identity + second-order path to theta_att; reference: second-order path only."""
    x, y, dep = _batch(3, 2, seed=1)
    order = [1, 2, 0]
    test = {}
    for mode in ("maml", "reference"):
        for alpha in (0.0, 0.5):
            learner = _learner(mode, alpha=alpha)
            _, test_loss, _ = learner.compute_losses(x, y, dep, order)
            test[mode, alpha] = _flat(_att_grads(learner, test_loss))

    # alpha = 0: theta' = theta (maml) or theta.detach() (reference)
    assert torch.count_nonzero(test["reference", 0.0]) == 0
    assert test["maml", 0.0].abs().sum() > 0
    # the maml identity path at alpha = 0 is the plain gradient of the meta-test loss at theta,
    # with the centres as the meta-train forwards left them
    twin = _learner("maml", alpha=0.0)
    for k in order[:-1]:
        sl = slice(k * 4, (k + 1) * 4)
        domain_losses(twin.model(x[sl]), y[sl], dep[sl], k, twin.centres, twin.weights)
    sl = slice(order[-1] * 4, (order[-1] + 1) * 4)
    direct = domain_losses(twin.model(x[sl]), y[sl], dep[sl], order[-1], twin.centres, twin.weights)["total"]
    torch.testing.assert_close(test["maml", 0.0], _flat(_att_grads(twin, direct)), rtol=1e-5, atol=1e-7)

    # alpha > 0: the second-order path reaches theta_att in both modes
    assert test["reference", 0.5].abs().sum() > 0
    assert not torch.allclose(test["maml", 0.5], test["reference", 0.5])
    assert not torch.allclose(test["maml", 0.5], test["maml", 0.0])


def test_all_parameters_get_second_order_gradients() -> None:
    """The meta-test loss also reaches non-attention weights through g (create_graph=True)."""
    x, y, dep = _batch(3, 2, seed=2)
    a0, a1 = _learner("reference", alpha=0.0), _learner("reference", alpha=0.5)
    grads = []
    for learner in (a0, a1):
        _, test_loss, _ = learner.compute_losses(x, y, dep, [0, 1, 2])
        w = learner.model.extractor.down1.blocks[0].conv.weight
        grads.append(torch.autograd.grad(test_loss, w)[0])
    assert not torch.allclose(grads[0], grads[1])


@pytest.mark.parametrize("mode", ["maml", "reference", "erm"])
@pytest.mark.parametrize("d", [2, 3])
def test_step_runs_for_any_domain_count(mode: str, d: int) -> None:
    learner = _learner(mode, d=d)
    opt = torch.optim.SGD(learner.parameters(), lr=0.01)
    x, y, dep = _batch(d, 2, seed=3)
    before = [p.detach().clone() for p in learner.parameters()]
    loss, logs = learner(x, y, dep, list(reversed(range(d))))
    assert loss.dim() == 0 and torch.isfinite(loss)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert all(isinstance(v, float) for v in logs.values())
    assert logs["loss"] == pytest.approx(loss.item())
    if mode == "erm":
        assert set(logs) == {f"train/{k}" for k in ("cls", "depth", "idcl", "icsl", "total", "acc")} | {"loss"}
    else:
        assert logs["loss"] == pytest.approx(logs["train/total"] + logs["test/total"], rel=1e-5)
    assert all(p.grad is not None for p in learner.parameters())  # all reached (DDP needs no unused)
    moved = {n for (n, p), b in zip(learner.named_parameters(), before) if not torch.equal(p.detach(), b)}
    # conv biases before a norm layer have ~0 gradient; everything else moves
    assert {"model." + n for n in learner.model.attention_parameter_names()} <= moved
    assert {"model.classifier.fc.weight", "model.depth_head.blocks.2.conv.weight"} <= moved
    assert not torch.equal(learner.centres.live, torch.ones_like(learner.centres.live))
    assert "centres.live" in learner.state_dict()


def test_erm_is_sum_of_domain_losses() -> None:
    learner = _learner("erm", d=3)
    twin = copy.deepcopy(learner)
    x, y, dep = _batch(3, 2, seed=4)
    order = [2, 0, 1]
    loss, _ = learner(x, y, dep, order)
    expected = 0.0
    for k in order:
        sl = slice(k * 4, (k + 1) * 4)
        expected = expected + domain_losses(twin.model(x[sl]), y[sl], dep[sl], k, twin.centres,
                                            LossWeights())["total"]
    torch.testing.assert_close(loss, expected)


def test_meta_modes_without_attention() -> None:
    """With plain BN there is nothing to adapt: maml = reference, both still run."""
    x, y, dep = _batch(3, 2, seed=5)
    losses = []
    for mode in ("maml", "reference"):
        learner = MetaLearner(_learner(mode, norm="batch").model, 3, mode=mode, interleave_meta_train=False)
        loss, _ = learner(x, y, dep, [0, 1, 2])
        loss.backward()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1])


def test_reference_interleaved_meta_train_batches() -> None:
    """Reference mix_pos_neg: meta-train chunks are cut batch-major from a (B, n_train) grid."""
    d, b = 3, 2
    # encode (domain, class, index) in the pixel values: 100*domain + 10*class + index
    ids = torch.tensor([100 * k + 10 * c + i for k in range(d) for c in range(2) for i in range(b)], dtype=torch.float)
    x = ids[:, None, None, None].expand(-1, 1, 8, 8)
    y = torch.tensor(([0] * b + [1] * b) * d)
    dep = ids[:, None, None, None].expand(-1, 1, 1, 1)
    chunks = MetaLearner._interleaved(x, y, dep, [2, 0], b)
    got = [(dom, xs[:, 0, 0, 0].tolist(), ys.tolist()) for dom, xs, ys, _ in chunks]
    assert got == [
        (2, [200.0, 0.0, 210.0, 10.0], [0, 0, 1, 1]),  # live b0 of domains 2, 0; spoof b0 of 2, 0
        (0, [201.0, 1.0, 211.0, 11.0], [0, 0, 1, 1]),
    ]
    assert MetaLearner(build_model(width=WIDTH), 3, mode="reference").interleave_meta_train
    assert not MetaLearner(build_model(width=WIDTH), 3, mode="maml").interleave_meta_train


def test_same_seed_same_loss_sequence() -> None:
    def run() -> list[dict[str, float]]:
        learner = _learner("maml", alpha=0.1, seed=7)
        opt = torch.optim.Adam(learner.parameters(), lr=1e-3)
        rng = torch.Generator().manual_seed(11)
        logs = []
        for step in range(3):
            order = torch.randperm(3, generator=rng).tolist()
            x, y, dep = _batch(3, 2, seed=20 + step)
            loss, log = learner(x, y, dep, order)
            opt.zero_grad()
            loss.backward()
            opt.step()
            logs.append(log)
        return logs

    first, second = run(), run()
    assert first == second
    assert first[0]["loss"] != first[2]["loss"]


def test_bad_inputs() -> None:
    learner = _learner("maml")
    x, y, dep = _batch(3, 2, seed=0)
    with pytest.raises(ValueError, match="permutation"):
        learner(x, y, dep, [0, 1, 1])
    with pytest.raises(ValueError, match="D\\*2B"):
        learner(x[:10], y[:10], dep[:10], [0, 1, 2])
    with pytest.raises(ValueError, match="disagree"):
        learner(x, y[:6], dep, [0, 1, 2])
    with pytest.raises(ValueError, match="mode"):
        MetaLearner(build_model(width=WIDTH), 3, mode="mldg")
    with pytest.raises(ValueError, match="at least 2"):
        MetaLearner(build_model(width=WIDTH), 1, mode="maml")


def test_forward_eval() -> None:
    learner = _learner("maml").eval()
    out = learner.forward_eval(torch.randn(3, 6, SIZE, SIZE))
    assert out.logits.shape == (3, 2) and not out.logits.requires_grad


# ---------------------------------------------------------------------------------- DDP
STEPS = 2


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str, mode: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        learner = _learner(mode, alpha=0.5, seed=0)  # identical init on every rank
        ddp = DDP(learner, find_unused_parameters=True, broadcast_buffers=False)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        for step in range(STEPS):
            x, y, dep = _batch(3, 2, seed=100 * rank + step)  # different data per rank
            order = [[2, 0, 1], [1, 2, 0]][rank]  # and a different domain order
            loss, _ = ddp(x, y, dep, order)
            opt.zero_grad()
            loss.backward()
            opt.step()
        torch.save({k: v.detach().clone() for k, v in learner.state_dict().items()},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["maml"])
def test_ddp_ranks_agree_and_match_mean_gradient(tmp_path: Path, mode: str) -> None:
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "store"), str(tmp_path), mode), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]

    # single process: one learner copy per rank (own BN stats and centres), mean gradient
    copies = [_learner(mode, alpha=0.5, seed=0) for _ in range(2)]
    opts = [torch.optim.SGD(c.parameters(), lr=0.1) for c in copies]
    for step in range(STEPS):
        grads = []
        for r, (c, opt) in enumerate(zip(copies, opts)):
            x, y, dep = _batch(3, 2, seed=100 * r + step)
            loss, _ = c(x, y, dep, [[2, 0, 1], [1, 2, 0]][r])
            opt.zero_grad()
            loss.backward()
            grads.append([p.grad.clone() for p in c.parameters()])
        assert not torch.allclose(_flat(grads[0]), _flat(grads[1]))  # ranks really differ
        for c, opt in zip(copies, opts):
            for p, g0, g1 in zip(c.parameters(), *grads):
                p.grad = (g0 + g1) / 2
            opt.step()

    params = [n for n, _ in copies[0].named_parameters()]
    for name in params:
        torch.testing.assert_close(ranks[0][name], ranks[1][name], rtol=0, atol=0)  # no drift
        torch.testing.assert_close(ranks[0][name], dict(copies[0].named_parameters())[name].detach(),
                                   rtol=1e-5, atol=1e-6)
    # buffers are rank-local (broadcast_buffers=False, like the reference)
    for r in range(2):
        torch.testing.assert_close(ranks[r]["centres.live"], copies[r].centres.live)
    assert not torch.allclose(ranks[0]["centres.live"], ranks[1]["centres.live"])
