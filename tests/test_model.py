"""ANRLNet: shapes, gate temperature, reference-key loading."""

from __future__ import annotations

import pytest
import torch

from anrl_ray.model import (
    ANRLNet,
    ANRLOutput,
    AdaNorm,
    build_model,
    load_tface_state_dict,
    scaled_channels,
    to_tface_state_dict,
)

torch.set_num_threads(1)


def _randomise(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BN/IN affine params and running stats, so eval mode tests something."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith("running_mean") or (".bn." in name or ".inorm." in name) and t.is_floating_point():
                shift = 1.0 if name.endswith("weight") else 0.0
                t.copy_(torch.randn(t.shape, generator=g) * 0.2 + shift)


@pytest.mark.parametrize("norm", ["adaptive", "batch", "instance", "mix"])
@pytest.mark.parametrize("attention", ["1layer", "2layer"])
def test_shapes_every_variant(norm: str, attention: str) -> None:
    torch.manual_seed(0)
    model = build_model(in_channels=3, width=0.125, norm=norm, attention=attention)
    out = model(torch.randn(2, 3, 16, 16))
    assert isinstance(out, ANRLOutput)
    c = 3 * scaled_channels(128, 0.125)
    assert model.feature_channels == c == 48
    assert out.logits.shape == (2, 2)
    assert out.depth.shape == (2, 1, 2, 2)
    assert out.feature.shape == (2, c, 2, 2)
    assert (out.depth >= 0).all()  # ReLU output, as the reference
    names = model.attention_parameter_names()
    if norm == "adaptive":
        per_block = 2 if attention == "1layer" else 4  # weight+bias per Linear
        assert len(names) == 10 * per_block  # inc + 3 stages x 3 blocks
        assert all(n.startswith("extractor.") for n in names)
    else:
        assert names == []


@pytest.mark.parametrize("size", [8, 24, 32, 48])
@pytest.mark.parametrize("in_channels", [1, 6])
def test_shapes_sizes_and_channels(size: int, in_channels: int) -> None:
    model = build_model(in_channels=in_channels, width=0.25)
    out = model(torch.randn(2, in_channels, size, size))
    s = size // 8
    assert out.logits.shape == (2, 2)
    assert out.depth.shape == (2, 1, s, s)
    assert out.feature.shape == (2, 96, s, s)


def test_config_and_bad_args() -> None:
    model = build_model(width=0.25, norm="mix", attention="2layer", gate_tau=2.0)
    assert model.config == dict(in_channels=6, width=0.25, norm="mix", attention="2layer", gate_tau=2.0)
    assert isinstance(build_model(**model.config), ANRLNet)
    with pytest.raises(ValueError, match="norm"):
        build_model(norm="group")
    with pytest.raises(ValueError, match="attention"):
        build_model(attention="3layer")
    with pytest.raises(ValueError, match="gate_tau"):
        build_model(gate_tau=0.0)
    with pytest.raises(ValueError, match="divisible by 8"):
        build_model(width=0.125)(torch.randn(1, 6, 20, 20))


def test_width_one_matches_reference_size() -> None:
    with torch.device("meta"):
        model = build_model()
    n = sum(p.numel() for p in model.parameters())
    assert 4.3e6 < n < 4.5e6  # "4.4 M parameters" (ANRL.md)
    assert model.feature_channels == 384


def test_gate_temperature() -> None:
    torch.manual_seed(0)
    norm = AdaNorm(8, "adaptive", "1layer", gate_tau=1.0)
    hot = AdaNorm(8, "adaptive", "1layer", gate_tau=3.0)
    hot.load_state_dict(norm.state_dict())
    x = torch.randn(4, 8, 5, 5)
    logits = norm.attention(x.mean((2, 3)))
    torch.testing.assert_close(norm.gate(x), torch.sigmoid(logits))
    torch.testing.assert_close(hot.gate(x), torch.sigmoid(logits / 3.0))
    assert not torch.allclose(norm.gate(x), hot.gate(x))
    # and it reaches the network output
    a = build_model(width=0.125, gate_tau=1.0)
    b = build_model(width=0.125, gate_tau=0.25)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 6, 16, 16)
    assert not torch.allclose(a(x).feature, b(x).feature)


def test_adanorm_is_the_documented_mix() -> None:
    torch.manual_seed(0)
    layer = AdaNorm(6, "adaptive", "2layer")
    x = torch.randn(3, 6, 4, 4)
    g = layer.gate(x)[:, :, None, None]
    torch.testing.assert_close(layer(x), g * layer.bn(x) + (1 - g) * layer.inorm(x))
    mix = AdaNorm(6, "mix")
    torch.testing.assert_close(mix(x), 0.5 * mix.bn(x) + 0.5 * mix.inorm(x))


@pytest.mark.parametrize("norm,attention", [("adaptive", "1layer"), ("adaptive", "2layer"), ("batch", "1layer"),
                                            ("instance", "1layer"), ("mix", "1layer")])
@pytest.mark.parametrize("width", [0.125, 0.2])
def test_tface_round_trip(norm: str, attention: str, width: float) -> None:
    torch.manual_seed(1)
    model = build_model(in_channels=3, width=width, norm=norm, attention=attention)
    _randomise(model)
    ref_sd = to_tface_state_dict(model)
    assert any(k.startswith("FeatExtractor.down1.conv_block2.") for k in ref_sd)
    if norm == "adaptive":
        key = "AttentionNet." if attention == "1layer" else "AttentionNet_fc2."
        assert any(key in k for k in ref_sd)
    loaded = load_tface_state_dict(ref_sd)
    assert loaded.config == model.config
    x = torch.randn(2, 3, 16, 16)
    for mode in (False, True):
        model.train(mode)
        loaded.train(mode)
        a, b = model(x), loaded(x)
        for t, u in zip(a, b):
            torch.testing.assert_close(t, u, rtol=0, atol=0)


def test_prefix_and_wrapper() -> None:
    model = build_model(width=0.125, attention="2layer")
    sd = to_tface_state_dict(model)
    x = torch.randn(2, 6, 16, 16)
    model.eval()
    for variant in ({"module." + k: v for k, v in sd.items()}, {"state_dict": sd, "epoch": 3},
                    {"state_dict": {"module." + k: v for k, v in sd.items()}}, model.state_dict()):
        loaded = load_tface_state_dict(variant).eval()
        assert loaded.config["attention"] == "2layer"
        torch.testing.assert_close(loaded(x).logits, model(x).logits, rtol=0, atol=0)


def test_explicit_build_kwargs_override() -> None:
    model = build_model(width=0.125)
    loaded = load_tface_state_dict(to_tface_state_dict(model), gate_tau=2.0)
    assert loaded.config["gate_tau"] == 2.0


def test_load_errors_name_the_keys() -> None:
    sd = to_tface_state_dict(build_model(width=0.125))
    missing = dict(sd)
    del missing["FeatExtractor.down2.conv_block3.BN.running_var"]
    with pytest.raises(ValueError, match=r"missing keys: \['FeatExtractor.down2.conv_block3.BN.running_var'\]"):
        load_tface_state_dict(missing)

    extra = dict(sd)
    extra["FeatExtractor.inc.gate_weight"] = torch.zeros(8)
    with pytest.raises(ValueError, match=r"unexpected keys: \['FeatExtractor.inc.gate_weight'\]"):
        load_tface_state_dict(extra)

    renamed = dict(sd)
    renamed["Classifier.fc2.weight"] = renamed.pop("Classifier.fc.weight")
    with pytest.raises(ValueError) as err:
        load_tface_state_dict(renamed)
    assert "Classifier.fc.weight" in str(err.value) and "Classifier.fc2.weight" in str(err.value)

    shaped = dict(sd)
    shaped["Classifier.fc.weight"] = torch.zeros(3, 64)
    with pytest.raises(ValueError, match="Classifier.fc.weight: got \\(3, 64\\)"):
        load_tface_state_dict(shaped)

    with pytest.raises(ValueError, match="state dict"):
        load_tface_state_dict([1, 2, 3])  # type: ignore[arg-type]
