import optuna
import pytest

from anrl_ray.config import make_config
from anrl_ray.errors import UserError
from anrl_ray.space import load_space, parse_space, shipped_spaces

REQUIRED = {"w_depth", "w_idcl", "w_icsl", "meta_step_size", "lr", "weight_decay", "gate_tau", "attention", "meta_mode"}


@pytest.mark.parametrize("path", shipped_spaces(), ids=lambda p: p.name)
def test_every_shipped_space_loads_and_samples(path):
    space = load_space(path)
    assert REQUIRED <= {p.name for p in space.params}
    defaults = space.defaults()
    # the defaults are the reference values
    assert defaults["w_depth"] == 0.1 and defaults["w_idcl"] == 0.001 and defaults["meta_step_size"] == 1e-4
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    fn = space.define_by_run()
    for _ in range(5):
        trial = study.ask()
        fn(trial)
        make_config({**space.fixed, **trial.params})  # every sample is a valid config
        study.tell(trial, 0.0)


def test_shipped_spaces_exist():
    assert {p.stem for p in shipped_spaces()} >= {"anrl", "anrl_limited"}


def _space(**param):
    return {"params": {"lr": {"default": 1e-4, "distribution": "loguniform", "low": 1e-5, "high": 1e-2}, **param}}


@pytest.mark.parametrize(
    "param, match",
    [
        ({"w_foo": {"default": 1, "distribution": "uniform", "low": 0, "high": 2}}, "'w_foo'.*not a config key"),
        ({"w_depth": {"default": 0.1, "distribution": "normal", "low": 0, "high": 1}}, "'w_depth'.*distribution"),
        ({"w_depth": {"default": 5.0, "distribution": "uniform", "low": 0, "high": 1}}, "'w_depth'.*outside"),
        ({"w_depth": {"default": 0.1, "distribution": "loguniform", "low": 0, "high": 1}}, "'w_depth'.*low > 0"),
        ({"w_depth": {"distribution": "uniform", "low": 0, "high": 1}}, "'w_depth'.*default"),
        ({"attention": {"default": "3layer", "distribution": "choice", "choices": ["1layer"]}}, "'attention'.*not among"),
        ({"norm": {"default": "layer", "distribution": "choice", "choices": ["layer"]}}, "norm"),
        ({"w_depth": {"default": 0.1, "distribution": "uniform", "low": 0, "high": 1, "condition": {"zzz": [1]}}}, "'w_depth'.*condition"),
        ({"w_depth": {"default": 0.1, "distribution": "uniform", "low": 1, "high": 0}}, "low < high"),
    ],
)
def test_malformed_space_names_the_parameter(param, match):
    with pytest.raises(UserError, match=match):
        parse_space(_space(**param), "bad.yaml")


def test_condition_skips_inactive_parameter():
    space = parse_space(
        {
            "params": {
                "meta_mode": {"default": "erm", "distribution": "choice", "choices": ["erm"]},
                "meta_step_size": {"default": 1e-4, "distribution": "loguniform", "low": 1e-5, "high": 1e-2,
                                   "condition": {"meta_mode": ["maml"]}},
            }
        }
    )
    assert space.defaults() == {"meta_mode": "erm"}
    study = optuna.create_study()
    trial = study.ask()
    space.define_by_run()(trial)
    assert set(trial.params) == {"meta_mode"}


def test_invalid_yaml_file(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("params: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_space(path)
    with pytest.raises(UserError, match="shipped spaces"):
        load_space(tmp_path / "missing.yaml")


def test_space_function_pickles():
    """Tune checkpoints the Optuna searcher by pickling its define-by-run space."""
    import pickle

    fn = pickle.loads(pickle.dumps(load_space("anrl").define_by_run()))
    trial = optuna.create_study().ask()
    fn(trial)
    assert "w_depth" in trial.params


@pytest.mark.parametrize(
    "block, message",
    [
        ({"default": "1layer", "distribution": "choice", "choices": ["1layer", "3layer"]}, "value '3layer'"),
        ({"default": 1e-4, "distribution": "uniform", "low": -1.0, "high": 1e-3}, "value -1.0"),
        ({"default": 1e-4, "distribution": "uniform", "low": 1e-5, "high": 1e-3, "step": 0}, "step must be a positive"),
        ({"default": 1e-4, "distribution": "loguniform", "low": 1e-5, "high": 1e-3, "step": 1e-5}, "takes no step"),
        ({"default": 1e-4, "distribution": "uniform", "low": 1e-5, "high": float("inf")}, "finite"),
    ],
)
def test_every_value_of_a_param_is_checked_not_only_the_default(block, message):
    name = "attention" if block["distribution"] == "choice" else "lr"
    with pytest.raises(UserError, match=message) as err:
        parse_space({"params": {name: block}}, "bad.yaml")
    assert "bad.yaml" in str(err.value) and name in str(err.value)


def test_bad_space_file_exits_2_before_any_trial(tmp_path, capsys):
    from anrl_ray.cli.run import search_main

    bad = tmp_path / "bad.yaml"
    bad.write_text("params:\n  attention: {default: 1layer, distribution: choice, choices: [1layer, 3layer]}\n")
    assert search_main(["--space", str(bad), "--storage", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "3layer" in err and str(bad) in err
    assert not (tmp_path / "runs").exists()
