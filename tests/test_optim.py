"""anrl_ray.optim builds what timm's factories build (checked against timm itself), without importing timm."""

import subprocess
import sys

import pytest
import torch

from anrl_ray.config import load_config
from anrl_ray.factory import build_learner, build_optimizer
from anrl_ray.optim import create_optimizer, create_scheduler


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.LazyLinear(2))


def _net():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 2, 1, bias=False))
    net[0].weight.requires_grad_(False)  # frozen parameters stay out of every group, as in timm
    return net


class WithNoDecayList(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Conv2d(3, 4, 3)
        self.pos = torch.nn.Parameter(torch.zeros(1, 4, 2, 2))

    def no_weight_decay(self):
        return {"pos"}


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
@pytest.mark.parametrize("weight_decay", [0.0, 5e-4])
@pytest.mark.parametrize("make", [_net, WithNoDecayList])
def test_optimizer_is_timms(name, weight_decay, make):
    from timm.optim import create_optimizer_v2

    model = make()
    ours = create_optimizer(model, name, lr=3e-3, weight_decay=weight_decay, momentum=0.8)
    theirs = create_optimizer_v2(model, opt=name, lr=3e-3, weight_decay=weight_decay, momentum=0.8)
    assert type(ours) is type(theirs)
    assert len(ours.param_groups) == len(theirs.param_groups)
    for a, b in zip(ours.param_groups, theirs.param_groups):
        assert [id(p) for p in a["params"]] == [id(p) for p in b["params"]]
        assert {k: v for k, v in a.items() if k != "params"} == {k: v for k, v in b.items() if k != "params"}
    if weight_decay:
        decayed = {id(p) for g in ours.param_groups if g["weight_decay"] for p in g["params"]}
        assert decayed and all(p.ndim > 1 for g in ours.param_groups if g["weight_decay"] for p in g["params"])
        if make is WithNoDecayList:
            assert id(model.pos) not in decayed


@pytest.mark.parametrize("sched", ["step", "cosine", "none"])
@pytest.mark.parametrize("warmup", [0, 3])
def test_schedule_is_timms_at_every_epoch(sched, warmup):
    from timm.scheduler import create_scheduler_v2

    epochs, lr = 12, 0.01
    opt_a = torch.optim.Adam(_net().parameters(), lr=lr)
    opt_b = torch.optim.Adam(_net().parameters(), lr=lr)
    kwargs = dict(decay_epochs=4, decay_rate=0.5, warmup_epochs=warmup)
    ours = create_scheduler(opt_a, sched, epochs=epochs, warmup_lr=lr * 0.1, **kwargs)
    if sched == "none":
        assert ours is None
        return
    theirs, _ = create_scheduler_v2(opt_b, sched=sched, num_epochs=epochs, warmup_lr=lr * 0.1, **kwargs)
    seen = [opt_a.param_groups[0]["lr"]]
    assert seen[0] == opt_b.param_groups[0]["lr"]  # the rate of epoch 0, set on creation (warm-up's start)
    for epoch in range(1, epochs + 3):
        ours.step(epoch)
        theirs.step(epoch)
        assert opt_a.param_groups[0]["lr"] == opt_b.param_groups[0]["lr"], (sched, warmup, epoch)
        seen.append(opt_a.param_groups[0]["lr"])
    assert len(set(seen)) > 2  # the schedule moved
    # a checkpoint's scheduler state loads both ways (an older checkpoint holds timm's)
    fresh = create_scheduler(torch.optim.Adam(_net().parameters(), lr=1.0), sched, epochs=epochs, warmup_lr=0.1, **kwargs)
    fresh.load_state_dict(theirs.state_dict())
    assert fresh.lrs(5) == theirs._get_lr(5)
    theirs.load_state_dict(ours.state_dict())
    assert theirs._get_lr(7) == ours.lrs(7)


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="optimizer 'lamb'"):
        create_optimizer(_model(), "lamb", lr=1e-3, weight_decay=0.0, momentum=0.9)
    with pytest.raises(ValueError, match="scheduler 'poly'"):
        create_scheduler(torch.optim.Adam(_net().parameters()), "poly", epochs=3, decay_epochs=1, decay_rate=0.5,
                         warmup_epochs=0, warmup_lr=0.0)


def test_a_trial_builds_its_optimizer_without_importing_timm():
    """timm's import is ~2 s of CPU in every Ray Train worker; the default network never needs it."""
    code = (
        "import sys; from anrl_ray.config import load_config; from anrl_ray.factory import build_learner, build_optimizer;"
        "cfg = load_config(None, {'img_size': 16, 'width': 0.125}, profile='cpu');"
        "opt, sched = build_optimizer(cfg, build_learner(cfg)); assert sched is not None;"
        "print('timm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_build_optimizer_matches_timm_for_the_anrl_learner():
    from timm.optim import create_optimizer_v2

    cfg = load_config(None, {"img_size": 16, "width": 0.125, "weight_decay": 5e-4, "optimizer": "adamw"}, profile="cpu")
    learner = build_learner(cfg)
    ours, _ = build_optimizer(cfg, learner)
    theirs = create_optimizer_v2(learner, opt="adamw", lr=cfg.lr, weight_decay=5e-4, momentum=cfg.momentum)
    assert [[id(p) for p in g["params"]] for g in ours.param_groups] == [[id(p) for p in g["params"]] for g in theirs.param_groups]
