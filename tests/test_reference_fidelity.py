"""Numerical fidelity to the reference ANRL code (Tencent/TFace), run only where it is present.

Set ``ANRL_TFACE_DIR`` to a local TFace checkout (its ``security/`` folder is enough; e.g.
``git archive HEAD security/common security/tasks/Face-Anti-Spoofing/ANRL | tar -x -C DIR``).
Nothing of the reference is copied into this repository: it is imported from there, here only.

Checks:
(a) ``load_tface_state_dict`` on a reference ``Framework``'s state dict gives the reference's
    forward (logits, depth, feature; eval and train mode; BN and AdaNorm 1layer/2layer)
    within 1e-5, and the same BN running statistics after a train-mode forward.
(b) One ``reference``-mode ``MetaLearner`` step with plain SGD changes every parameter and BN
    buffer as the reference's own ``ANRLTask.train`` (train.py, called with a stub task
    object) does for the same weights, batch and domain order.

Work-arounds, in this file only: stub modules for the reference's unused imports that are not
installed (loguru, easydict, omegaconf); the reference pools its multi-scale features to a
hard-coded 32x32 (256 px input), so at the small test size its ``F.adaptive_avg_pool2d`` target
32 is redirected to ``size // 8``; a 256 px eval forward is also checked unpatched.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import os
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from anrl_ray.meta import MetaLearner
from anrl_ray.model import load_tface_state_dict, to_tface_state_dict

torch.set_num_threads(1)

_ROOT = Path(os.environ.get("ANRL_TFACE_DIR", "/nonexistent"))
_SECURITY = _ROOT / "security"
_ANRL = _SECURITY / "tasks" / "Face-Anti-Spoofing" / "ANRL"

pytestmark = [
    pytest.mark.skipif(
        not (_ANRL / "models" / "framework.py").is_file(),
        reason="reference code not available: set ANRL_TFACE_DIR to a local Tencent/TFace checkout "
        "(containing security/tasks/Face-Anti-Spoofing/ANRL and security/common)",
    ),
    pytest.mark.filterwarnings("ignore:.*kaiming_normal.*:FutureWarning"),  # the reference's init
]

SIZE = 32  # input px; feature maps 4x4
TOL = 1e-5


class _PoolShim:
    """Stands in for ``torch.nn.functional`` inside the reference's framework.py."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __getattr__(self, name: str) -> object:
        return getattr(F, name)

    def adaptive_avg_pool2d(self, x: torch.Tensor, output_size: object) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x, self.size if output_size == 32 else output_size)


@pytest.fixture(scope="module")
def ref() -> Iterator[types.SimpleNamespace]:
    """The reference modules, imported from ANRL_TFACE_DIR; sys.modules/sys.path restored after."""
    saved_modules, saved_path = dict(sys.modules), list(sys.path)
    for name, attrs in {"loguru": {"logger": None}, "easydict": {"EasyDict": dict},
                        "omegaconf": {"OmegaConf": object}}.items():
        try:
            importlib.import_module(name)
        except ImportError:
            stub = types.ModuleType(name)
            stub.__dict__.update(attrs)
            sys.modules[name] = stub
    # generic top-level names used by the reference: make sure we get ITS modules
    for name in [m for m in sys.modules if m.split(".")[0] in ("models", "common", "datasets")]:
        del sys.modules[name]
    sys.path[:0] = [str(_ANRL), str(_SECURITY)]
    try:
        framework = importlib.import_module("models.framework")
        losses = importlib.import_module("common.losses")
        spec = importlib.util.spec_from_file_location("tface_anrl_train", _ANRL / "train.py")
        train = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(train)
        yield types.SimpleNamespace(framework=framework, losses=losses, train=train)
    finally:
        for name in [m for m in sys.modules if m not in saved_modules]:
            del sys.modules[name]
        sys.modules.update(saved_modules)
        sys.path[:] = saved_path


@pytest.fixture()
def small_input(ref: types.SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ref.framework, "F", _PoolShim(SIZE // 8))


def _randomise(module: nn.Module, seed: int) -> None:
    """Non-default norm affine params, running stats and attention weights (so eval mode and the
    gate are exercised)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith("running_mean") or ".BN." in name or ".IN." in name:
                t.copy_(torch.randn(t.shape, generator=g) * 0.2 + (1.0 if name.endswith("weight") else 0.0))
            elif "AttentionNet" in name:
                t.copy_(torch.randn(t.shape, generator=g) * 0.3)


def _framework(ref: types.SimpleNamespace, adanorm: bool, attention: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = ref.framework.Framework(in_ch=6, mid_ch=384, AdapNorm=adanorm, AdapNorm_attention_flag=attention)
    _randomise(net, seed + 1)
    return net


VARIANTS = [(True, "1layer"), (True, "2layer"), (False, "1layer")]


@pytest.mark.parametrize("adanorm,attention", VARIANTS, ids=["adanorm-1layer", "adanorm-2layer", "bn"])
def test_forward_matches_reference(ref: types.SimpleNamespace, small_input: None, adanorm: bool,
                                   attention: str) -> None:
    theirs = _framework(ref, adanorm, attention)
    ours = load_tface_state_dict(theirs.state_dict())
    assert ours.config["norm"] == ("adaptive" if adanorm else "batch")
    assert ours.config["attention"] == attention and ours.config["width"] == 1.0
    x = torch.randn(4, 6, SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    for train in (False, True):
        theirs.train(train)
        ours.train(train)
        with torch.no_grad():
            logits, depth, feat = theirs(x)
            out = ours(x)
        assert (out.logits - logits).abs().max() <= TOL
        assert (out.depth - depth).abs().max() <= TOL
        assert (out.feature - feat).abs().max() <= TOL
    # the train-mode forward updated BN running stats identically
    mine = to_tface_state_dict(ours)
    for k, v in theirs.state_dict().items():
        assert (mine[k].double() - v.double()).abs().max() <= TOL, k


def test_forward_matches_reference_at_256px(ref: types.SimpleNamespace) -> None:
    """The reference's own size, its hard-coded 32x32 pooling unpatched (eval, one image)."""
    theirs = _framework(ref, True, "1layer").eval()
    ours = load_tface_state_dict({"state_dict": {"module." + k: v for k, v in theirs.state_dict().items()}}).eval()
    x = torch.randn(1, 6, 256, 256, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        logits, depth, feat = theirs(x)
        out = ours(x)
    assert out.depth.shape == (1, 1, 32, 32) and out.feature.shape == (1, 384, 32, 32)
    assert (out.logits - logits).abs().max() <= TOL
    assert (out.depth - depth).abs().max() <= TOL
    assert (out.feature - feat).abs().max() <= TOL


# ------------------------------------------------------------------------------- meta step
B = 2  # per domain and class
ORDER = [2, 0, 1]  # meta-train domains 2, 0; meta-test domain 1
LR = 0.5
ALPHA = 0.5  # large, so the second-order path is visible in the parameter change


class _DDPLike(nn.Module):
    """What train.py expects of ``self.model``: a wrapper with ``.module``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor, param: dict | None = None) -> tuple:
        return self.module(x, param)


def _domain_data(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    s = SIZE // 8
    return {
        "live": torch.randn(3, B, 6, SIZE, SIZE, generator=g),
        "spoof": torch.randn(3, B, 6, SIZE, SIZE, generator=g) * 0.5 + 0.3,
        "depth": torch.rand(3, B, s, s, generator=g),
    }


def _reference_step(ref: types.SimpleNamespace, framework: nn.Module, data: dict[str, torch.Tensor],
                    monkeypatch: pytest.MonkeyPatch) -> None:
    """One iteration of the reference's ANRLTask.train (its own code) on one batch."""
    # the reference dataloader yields (images [B, 3 domains, C, H, W], labels [B, 3], depth [B, 3, s, s])
    pos = (data["live"].transpose(0, 1), torch.zeros(B, 3), data["depth"].transpose(0, 1))
    neg = (data["spoof"].transpose(0, 1), torch.ones(B, 3), torch.zeros_like(data["depth"]).transpose(0, 1))
    task = object.__new__(ref.train.ANRLTask)
    ns = types.SimpleNamespace
    task.cfg = ns(train=ns(metasize=2, meta_step_size=ALPHA, print_interval=1),
                  loss_2=ns(weight=0.1), loss_3=ns(domain_weight=0.001, discri_weight=0.001),
                  distributed=False, local_rank=1)  # local_rank != 0: no logging / wandb
    task.model = _DDPLike(framework)
    task.device = torch.device("cpu")
    task.epoch_size = 1
    task.dg_train_pos, task.dg_train_neg = [pos], [neg]
    task.criterion = nn.CrossEntropyLoss(reduction="mean")
    task.criterion_2 = nn.MSELoss(reduction="mean")
    task.criterion_3 = ref.losses.EuclideanLoss(reduction="mean")
    task.optimizer = torch.optim.SGD(framework.parameters(), lr=LR)
    fixed_order = types.SimpleNamespace(shuffle=lambda lst: lst.__setitem__(slice(None), ORDER))
    monkeypatch.setattr(ref.train, "random", fixed_order)  # train.py shuffles the domain order
    task.train(0)


def _our_step(framework_state: dict, data: dict[str, torch.Tensor], mode: str, interleave: bool | None) -> dict:
    learner = MetaLearner(load_tface_state_dict(framework_state), 3, mode=mode, meta_step_size=ALPHA,
                          interleave_meta_train=interleave)
    learner.train()
    images = torch.cat([torch.cat([data["live"][d], data["spoof"][d]]) for d in range(3)])  # (3*2B, 6, H, W)
    labels = torch.tensor(([0] * B + [1] * B) * 3)
    depth = torch.cat([torch.cat([data["depth"][d], torch.zeros_like(data["depth"][d])]) for d in range(3)])
    opt = torch.optim.SGD(learner.parameters(), lr=LR)
    loss, _ = learner(images, labels, depth[:, None], ORDER)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return to_tface_state_dict(learner.model)


def _max_rel_delta_error(before: dict, after_ref: dict, after_ours: dict) -> tuple[float, float]:
    """(max |ours - ref| over float params and buffers, max parameter change |ref - before| of
    the attention nets)."""
    err, scale = 0.0, 0.0
    for k, v in after_ref.items():
        if not v.is_floating_point():
            assert torch.equal(after_ours[k], v), k
            continue
        err = max(err, (after_ours[k].double() - v.double()).abs().max().item())
        if "AttentionNet" in k:
            scale = max(scale, (v.double() - before[k].double()).abs().max().item())
    return err, scale


@pytest.mark.parametrize("attention", ["1layer", "2layer"])
def test_reference_meta_step_matches(ref: types.SimpleNamespace, small_input: None,
                                     monkeypatch: pytest.MonkeyPatch, attention: str) -> None:
    framework = _framework(ref, True, attention, seed=3)
    before = copy.deepcopy(framework.state_dict())
    data = _domain_data(seed=4)

    _reference_step(ref, framework, data, monkeypatch)
    after_ref = framework.state_dict()
    assert (after_ref["FeatExtractor.inc.conv.weight"] != before["FeatExtractor.inc.conv.weight"]).any()

    ours = _our_step(before, data, "reference", None)
    err, scale = _max_rel_delta_error(before, after_ref, ours)
    print(f"\n[{attention}] reference-mode step vs TFace train.py: max |diff| {err:.3e} "
          f"(largest attention-net parameter change {scale:.3e})")
    assert scale > 1e-2
    assert err <= TOL

    # the check has power: the maml identity path, or per-domain meta-train batches, differ
    for mode, interleave in (("maml", True), ("reference", False)):
        other = _our_step(before, data, mode, interleave)
        err_other, _ = _max_rel_delta_error(before, after_ref, other)
        print(f"[{attention}] control mode={mode} interleave={interleave}: max |diff| {err_other:.3e}")
        assert err_other > 100 * TOL
