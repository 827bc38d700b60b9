"""timm backbones with AdaNorm: shapes, gate parameters, the meta step, rebuild, local weights, config."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from anrl_ray.backbones import AdaNormAct, TimmANRLNet, backbone_problem
from anrl_ray.config import load_config
from anrl_ray.errors import UserError
from anrl_ray.meta import MetaLearner
from anrl_ray.factory import create_model as build_model
from anrl_ray.model import AdaNorm, ANRLNet

torch.set_num_threads(1)

SIZE = 32  # the CPU profile's input size: the stride-8 map is 4x4
BACKBONES = ["anrl", "resnet18", "resnet50", "efficientnet_b0"]
FEATURE_CHANNELS = {"anrl": 3 * 32, "resnet18": 128, "resnet50": 512, "efficientnet_b0": 40}


def _build(backbone: str, in_channels: int = 6, seed: int = 0, **kw: object) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(backbone=backbone, in_channels=in_channels, width=0.25, **kw)


def _batch(d: int, b: int, size: int = SIZE, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(d * 2 * b, 6, size, size, generator=g)
    y = torch.tensor(([0] * b + [1] * b) * d)
    depth = torch.rand(d * 2 * b, 1, size // 8, size // 8, generator=g) * (y == 0).float()[:, None, None, None]
    return x, y, depth


@pytest.mark.parametrize("in_channels", [6, 3])
@pytest.mark.parametrize("backbone", BACKBONES)
def test_output_shapes(backbone: str, in_channels: int) -> None:
    model = _build(backbone, in_channels)
    out = model(torch.randn(2, in_channels, SIZE, SIZE))
    c = FEATURE_CHANNELS[backbone]
    assert model.feature_channels == c
    assert out.logits.shape == (2, 2) and out.depth.shape == (2, 1, 4, 4) and out.feature.shape == (2, c, 4, 4)
    assert (out.depth >= 0).all()  # ANRL's depth head ends in ReLU
    # forward = forward_head(forward_features) (eval: BN statistics are not updated)
    model.eval()
    x = torch.randn(3, in_channels, 48, 48)
    feature = model.forward_features(x)
    logits, depth = model.forward_head(feature)
    full = model(x)
    assert feature.shape == (3, c, 6, 6) and depth.shape == (3, 1, 6, 6)
    torch.testing.assert_close(full.logits, logits)
    with pytest.raises(ValueError, match="divisible by 8"):
        model(torch.randn(1, in_channels, 20, 20))


@pytest.mark.parametrize("backbone", BACKBONES[1:])
def test_adanorm_up_to_stride_8_and_gate_parameters(backbone: str) -> None:
    model = _build(backbone)
    assert isinstance(model, TimmANRLNet)
    names = model.attention_parameter_names()
    assert names
    gates = {f"{m_name}.attention.{p_name}" for m_name, m in model.named_modules() if isinstance(m, AdaNorm)
             and hasattr(m, "attention") for p_name, _ in m.attention.named_parameters()}
    assert set(names) == gates  # every gate-net parameter, and nothing else
    assert all(n.startswith("backbone.") for n in names)
    lower = [m for n in model.lower for m in model.backbone.get_submodule(n).modules()]
    upper = [m for n in model.upper for m in model.backbone.get_submodule(n).modules()]
    inner = {id(m.bn) for m in lower if isinstance(m, AdaNorm) and hasattr(m, "bn")}
    assert not any(type(m) is nn.BatchNorm2d and id(m) not in inner for m in lower)  # every extractor BN swapped
    assert sum(isinstance(m, AdaNorm) for m in lower) == len(names) // 2  # 1layer: weight + bias each
    assert not any(isinstance(m, AdaNorm) for m in upper)  # later stages keep BN, like ANRL's heads
    if backbone == "efficientnet_b0":  # timm's BatchNormAct2d -> AdaNorm + its activation
        stem = model.backbone.bn1
        assert isinstance(stem, AdaNormAct) and isinstance(stem.act, nn.SiLU)


def test_norm_modes_for_timm_backbones() -> None:
    batch = _build("resnet18", norm="batch")
    assert batch.attention_parameter_names() == []
    assert batch.backbone.bn1.mode == "batch"
    two = _build("resnet18", attention="2layer", gate_tau=2.0)
    assert isinstance(two.backbone.bn1.attention[2], nn.Linear) and two.backbone.bn1.gate_tau == 2.0


@pytest.mark.parametrize("backbone", BACKBONES)
def test_one_maml_meta_step(backbone: str) -> None:
    model = _build(backbone)
    learner = MetaLearner(model, 3, mode="maml", meta_step_size=1e-3).train()
    x, y, depth = _batch(3, 2)
    loss, logs = learner(x, y, depth, [2, 0, 1])
    assert torch.isfinite(loss) and logs["test/total"] > 0
    loss.backward()
    params = dict(model.named_parameters())
    grads = [params[n].grad for n in model.attention_parameter_names()]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
    assert all(p.grad is not None for p in model.parameters())  # every layer is on the loss's path


@pytest.mark.parametrize("backbone", BACKBONES)
def test_rebuild_from_config_round_trip(backbone: str) -> None:
    model = _build(backbone, in_channels=3)
    with torch.no_grad():  # move BN statistics and weights away from their init
        model.train()(torch.randn(4, 3, SIZE, SIZE))
    rebuilt = build_model(**model.config)
    assert type(rebuilt) is type(model) and rebuilt.config == model.config
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 3, SIZE, SIZE)
    for a, b in zip(model.eval()(x), rebuilt.eval()(x)):
        torch.testing.assert_close(a, b)
    if backbone == "anrl":
        assert isinstance(model, ANRLNet) and "backbone" not in model.config  # unchanged for old checkpoints
    else:
        assert model.config["backbone"] == backbone and "pretrained_path" not in model.config


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_pretrained_path_adapts_first_conv_and_copies_batchnorm(tmp_path, suffix: str) -> None:
    import timm

    torch.manual_seed(3)
    source = timm.create_model("resnet18", pretrained=False, in_chans=3)  # 1000-class ImageNet layout
    with torch.no_grad():
        for m in source.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_()
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    sd = source.state_dict()
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".pt":
        torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, path)  # wrapper + DDP prefix
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))

    model = _build("resnet18", in_channels=6, pretrained_path=str(path))
    report = model.pretrained_report
    assert report["adapted"] == ["conv1.weight"]
    assert sorted(s.split()[0] for s in report["skipped"]) == ["fc.bias", "fc.weight"]
    assert report["missing"] == ["fc.weight", "fc.bias"] and report["unexpected"] == []
    w = model.backbone.conv1.weight  # (64, 6, 7, 7): RGB weights repeated for HSV, scaled 3/6
    torch.testing.assert_close(w[:, :3], sd["conv1.weight"] * 0.5)
    torch.testing.assert_close(w[:, 3:], sd["conv1.weight"] * 0.5)
    for name in ("bn1", "layer1.0.bn1", "layer2.0.downsample.1"):  # swapped: BN copied into AdaNorm
        ada = model.backbone.get_submodule(name)
        assert isinstance(ada, AdaNorm)
        for key in ("weight", "bias", "running_mean", "running_var"):
            torch.testing.assert_close(getattr(ada.bn, key), sd[f"{name}.{key}"])
        torch.testing.assert_close(ada.inorm.weight, sd[f"{name}.weight"])  # IN affine starts from BN's
    kept = model.backbone.layer3[0].bn1  # later stage: plain BN, loaded as is
    assert type(kept) is nn.BatchNorm2d
    torch.testing.assert_close(kept.running_var, sd["layer3.0.bn1.running_var"])
    torch.testing.assert_close(model.backbone.layer4[1].conv2.weight, sd["layer4.1.conv2.weight"])
    # build_model(**config) rebuilds it without the file; weights come from the state dict
    rebuilt = build_model(**model.config)
    rebuilt.load_state_dict(model.state_dict(), strict=True)


def test_pretrained_path_errors(tmp_path) -> None:
    foreign = tmp_path / "foreign.pt"
    torch.save({"not.a.resnet.key": torch.zeros(3)}, foreign)
    with pytest.raises(ValueError, match="none of its 1 tensors fits"):
        _build("resnet18", pretrained_path=str(foreign))
    npz = tmp_path / "w.npz"
    npz.write_bytes(b"")
    with pytest.raises(ValueError, match="expected one of"):
        _build("resnet18", pretrained_path=str(npz))
    with pytest.raises(ValueError, match="pretrained_path is for timm backbones"):
        build_model(pretrained_path=str(foreign))


def test_unsupported_backbones_are_refused() -> None:
    assert backbone_problem("resnet18") is None and backbone_problem("efficientnet_b0") is None
    assert "did you mean resnet18" in backbone_problem("resnet_18")
    assert "no BatchNorm" in backbone_problem("convnext_atto")  # LayerNorm only: no gates to learn
    assert "stride 8" in backbone_problem("vit_tiny_patch16_224")
    with pytest.raises(ValueError, match="nor a timm model name"):
        build_model(backbone="resnet_18")


def test_config_backbone_and_pretrained_path(tmp_path) -> None:
    cfg = load_config(None, {"backbone": "resnet18"}, profile="cpu")
    assert cfg.backbone == "resnet18" and cfg.pretrained_path == ""
    assert load_config(None, {}, profile="cpu").backbone == "anrl"
    with pytest.raises(UserError, match="'backbone'.*did you mean resnet18"):
        load_config(None, {"backbone": "resnet_18"}, profile="cpu")
    with pytest.raises(UserError, match="'backbone'.*no BatchNorm"):
        load_config(None, ["backbone=convnext_atto"], profile="cpu")
    with pytest.raises(UserError, match="'pretrained_path'.*is not a file"):
        load_config(None, {"backbone": "resnet18", "pretrained_path": str(tmp_path / "missing.pt")})
    weights = tmp_path / "w.pt"
    torch.save({}, weights)
    assert load_config(None, {"backbone": "resnet18", "pretrained_path": str(weights)}).pretrained_path == str(weights)
    with pytest.raises(UserError, match="'pretrained_path' is for timm backbones"):
        load_config(None, {"pretrained_path": str(weights)})
    wrong = tmp_path / "w.npz"
    wrong.write_bytes(b"")
    with pytest.raises(UserError, match=r"must end in \.pt"):
        load_config(None, {"backbone": "resnet18", "pretrained_path": str(wrong)})


@pytest.mark.integration
def test_tiny_trial_with_resnet18(tiny_data, ray_local, tmp_path) -> None:
    """One epoch of a real Ray Train trial (2 DDP workers) with a timm ResNet-18 backbone."""
    from anrl_ray.checkpoint import load_checkpoint
    from anrl_ray.experiment import RECORDS_FILE
    from anrl_ray.records import read_records
    from anrl_ray.trial import run_trial

    base = {"protocol": "OCI_M", "data_root": tiny_data, "num_workers": 2}
    cfg = load_config(None, {"backbone": "resnet18", "epochs": 1, "batch_per_class": 2, "max_steps_per_epoch": 2,
                             "eval_batch_size": 64}, profile="cpu", base=base)
    result = run_trial(cfg, storage_path=str(tmp_path), name="resnet18")
    assert result.error is None, result.error
    (rec,) = read_records(tmp_path / "resnet18" / RECORDS_FILE)
    assert rec["config"]["backbone"] == "resnet18" and rec["steps_per_epoch"] == 2
    assert 0.0 <= rec["val"]["auc"] <= 1.0
    a, b = rec["rank_param_checksums"]  # DDP kept both ranks identical through the meta step
    assert a == pytest.approx(b, rel=0, abs=1e-9)
    state = load_checkpoint(tmp_path / "resnet18" / "checkpoint_epoch0000")
    assert state["model_config"]["backbone"] == "resnet18"
    model = build_model(**state["model_config"])
    model.load_state_dict({k.removeprefix("model."): v for k, v in state["learner"].items()
                           if k.startswith("model.")}, strict=True)
