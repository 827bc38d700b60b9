import json

import pytest

from anrl_ray.config import PROFILES, TrialConfig, load_config, make_config, parse_overrides
from anrl_ray.errors import UserError
from anrl_ray.protocols import PROTOCOLS, get_protocol


def test_defaults_are_reference_values():
    cfg = TrialConfig()
    assert (cfg.w_depth, cfg.w_idcl, cfg.w_icsl, cfg.meta_step_size) == (0.1, 0.001, 0.001, 1e-4)
    assert (cfg.img_size, cfg.in_channels, cfg.norm, cfg.meta_mode) == (256, 6, "adaptive", "maml")


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 0.001\nnorm: batch\nepochs: 3\n")
    cfg = load_config(path, ["lr=2e-3", "bf16=true"], profile="cpu")
    assert cfg.lr == 2e-3 and cfg.norm == "batch" and cfg.epochs == 3 and cfg.bf16 is True
    assert cfg.img_size == PROFILES["cpu"]["img_size"]


def test_unknown_key_is_named_with_suggestion(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("w_dept: 0.3\n")
    with pytest.raises(UserError, match=r"unknown config key 'w_dept'.*w_depth"):
        load_config(path)


@pytest.mark.parametrize(
    "override, match",
    [("epochs=2.5", "epochs"), ("lr=fast", "lr"), ("bf16=maybe", "bf16"), ("norm=layer", "norm"), ("img_size=30", "img_size")],
)
def test_wrong_types_and_values_are_refused(override, match):
    with pytest.raises(UserError, match=match):
        load_config(None, [override])


def test_override_syntax():
    assert parse_overrides(["a=1", "b = x"]) == {"a": "1", "b": "x"}
    with pytest.raises(UserError, match="key=value"):
        parse_overrides(["lr"])


def test_round_trip_and_frozen(tmp_path):
    cfg = make_config({"protocol": "MI_C", "gate_tau": 2.0})
    cfg.save(tmp_path / "config.json")
    again = make_config(json.loads((tmp_path / "config.json").read_text()))
    assert again == cfg
    with pytest.raises(Exception):
        cfg.lr = 1.0  # frozen
    assert cfg.sources == ("M", "I") and cfg.target == "C"


def test_holdout_removes_a_source():
    cfg = make_config({"protocol": "OCI_M", "holdout": "C"})
    assert cfg.sources == ("O", "I")
    with pytest.raises(UserError, match="holdout"):
        make_config({"protocol": "OCI_M", "holdout": "M"})
    with pytest.raises(UserError, match="3 sources"):
        make_config({"protocol": "MI_C", "holdout": "M"})


def test_protocols():
    assert set(PROTOCOLS) == {"OCI_M", "OMI_C", "OCM_I", "ICM_O", "MI_C", "MI_O"}
    for name, p in PROTOCOLS.items():
        assert p.target not in p.sources and name.endswith("_" + p.target)
    with pytest.raises(UserError, match="OCI_M"):
        get_protocol("OCI-M")


@pytest.mark.parametrize("key, value", [("lr", "inf"), ("gate_tau", float("inf")), ("w_depth", "nan"), ("meta_step_size", "-inf")])
def test_non_finite_values_refused_up_front(key, value):
    with pytest.raises(UserError, match=f"{key}.*finite"):
        make_config({key: value})


def test_meta_mode_and_interleave_are_separate_switches():
    from anrl_ray.factory import build_learner

    for mode in ("maml", "reference"):
        for interleave in (False, True):
            cfg = make_config({"meta_mode": mode, "interleave_meta_train": interleave, "width": 0.25})
            learner = build_learner(cfg)
            assert (learner.mode, learner.interleave_meta_train) == (mode, interleave)
    assert make_config({}).interleave_meta_train is False  # the default (maml) is unchanged
