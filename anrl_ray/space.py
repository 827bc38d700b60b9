"""Search spaces as data: ``anrl_ray/search_spaces/*.yaml`` (shipped with the package) -> a validated space -> an Optuna define-by-run function.

File format (one block per parameter; ``default`` is the reference value and runs as the first trial)::

    name: anrl
    description: ...
    fixed:                      # optional: config keys fixed for every trial
      norm: adaptive
    params:
      w_depth:     {default: 0.1, distribution: loguniform, low: 0.01, high: 1.0}
      batch_per_class: {default: 5, distribution: int, low: 2, high: 8, step: 1}
      attention:   {default: 1layer, distribution: choice, choices: [1layer, 2layer]}
      meta_step_size:
        default: 1.0e-4
        distribution: loguniform
        low: 1.0e-5
        high: 1.0e-2
        condition: {meta_mode: [maml, reference]}   # sampled only when meta_mode is one of these

Every parameter must be a config key (``anrl_ray.config.TrialConfig``). A malformed space is
refused before any trial starts, with an error naming the file, the parameter and the problem.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from anrl_ray.config import FIELDS, make_config
from anrl_ray.errors import UserError

DISTRIBUTIONS = ("loguniform", "uniform", "int", "choice")
SPACES_DIR = Path(__file__).resolve().parent / "search_spaces"  # package data (top-level search_spaces/ links here)


@dataclass(frozen=True)
class Param:
    name: str
    distribution: str
    default: Any
    low: float | None = None
    high: float | None = None
    step: int | None = None
    choices: tuple = ()
    condition: Mapping[str, tuple] = field(default_factory=dict)

    def active(self, values: Mapping[str, Any]) -> bool:
        return all(values.get(k) in allowed for k, allowed in self.condition.items())

    def suggest(self, trial) -> Any:
        """Sample this parameter from an Optuna trial."""
        if self.distribution == "loguniform":
            return trial.suggest_float(self.name, self.low, self.high, log=True)
        if self.distribution == "uniform":
            return trial.suggest_float(self.name, self.low, self.high, step=self.step)
        if self.distribution == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=self.step or 1)
        return trial.suggest_categorical(self.name, list(self.choices))


@dataclass(frozen=True)
class SearchSpace:
    name: str
    description: str
    params: tuple[Param, ...]
    fixed: Mapping[str, Any]
    path: str = ""

    def defaults(self) -> dict[str, Any]:
        """The reference point: every active parameter at its default (run as the first trial)."""
        values: dict[str, Any] = {}
        for p in self.params:
            if p.active(values):
                values[p.name] = p.default
        return values

    def define_by_run(self) -> "DefineByRun":
        """Optuna define-by-run function: conditional parameters are sampled only when active."""
        return DefineByRun(self.params)

    def describe(self) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in vars(p).items() if v not in (None, (), {})} for p in self.params
        ]


@dataclass(frozen=True)
class DefineByRun:
    """A picklable Optuna define-by-run space (Tune checkpoints its searcher by pickling it)."""

    params: tuple[Param, ...]

    def __call__(self, trial) -> None:
        values: dict[str, Any] = {}
        for p in self.params:
            if p.active(values):
                values[p.name] = p.suggest(trial)


def _err(path: str, name: str, msg: str) -> UserError:
    return UserError(f"search space {path}: parameter {name!r}: {msg}")


def _parse_param(path: str, name: str, spec: Any, seen: list[str]) -> Param:
    if name not in FIELDS:
        raise _err(path, name, "is not a config key (see anrl_ray/config.py TrialConfig)")
    if not isinstance(spec, dict):
        raise _err(path, name, "must be a mapping with 'default' and 'distribution'")
    allowed = {"default", "distribution", "low", "high", "step", "choices", "condition"}
    unknown = set(spec) - allowed
    if unknown:
        raise _err(path, name, f"unknown field(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    dist = spec.get("distribution")
    if dist not in DISTRIBUTIONS:
        raise _err(path, name, f"distribution must be one of {DISTRIBUTIONS}, got {dist!r}")
    if "default" not in spec:
        raise _err(path, name, "needs a 'default' (the reference value, run as the first trial)")
    default = spec["default"]
    cond_raw = spec.get("condition") or {}
    if not isinstance(cond_raw, dict):
        raise _err(path, name, "condition must be a mapping {other_param: [allowed values]}")
    condition = {}
    for k, v in cond_raw.items():
        if k not in seen:
            raise _err(path, name, f"condition on {k!r}, which is not a parameter declared above it")
        condition[k] = tuple(v) if isinstance(v, list) else (v,)
    if dist == "choice":
        choices = spec.get("choices")
        if not isinstance(choices, list) or len(choices) < 1:
            raise _err(path, name, "a choice needs a non-empty list 'choices'")
        if default not in choices:
            raise _err(path, name, f"default {default!r} is not among choices {choices}")
        return Param(name, dist, default, choices=tuple(choices), condition=condition)
    low, high = spec.get("low"), spec.get("high")
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (low, high, default)):
        raise _err(path, name, f"{dist} needs numeric 'low', 'high' and 'default' (got {low!r}, {high!r}, {default!r})")
    if not low < high:
        raise _err(path, name, f"needs low < high, got low={low}, high={high}")
    if not low <= default <= high:
        raise _err(path, name, f"default {default} is outside [{low}, {high}]")
    if dist == "loguniform" and low <= 0:
        raise _err(path, name, f"loguniform needs low > 0, got {low}")
    if not all(math.isfinite(x) for x in (low, high, default)):
        raise _err(path, name, f"low, high and default must be finite numbers, got {low!r}, {high!r}, {default!r}")
    if dist == "int" and not all(float(x).is_integer() for x in (low, high, default)):
        raise _err(path, name, "int needs integer low, high and default")
    step = spec.get("step")
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, (int, float)) or not math.isfinite(step) or step <= 0:
            raise _err(path, name, f"step must be a positive number, got {step!r}")
        if dist == "loguniform":
            raise _err(path, name, "loguniform takes no step (Optuna samples it continuously); remove 'step'")
        if dist == "int" and not float(step).is_integer():
            raise _err(path, name, f"int needs an integer step, got {step!r}")
        if step > high - low:
            raise _err(path, name, f"step {step} is larger than the range high - low = {high - low}")
    return Param(name, dist, default, float(low) if dist != "int" else int(low), float(high) if dist != "int" else int(high),
                 step=spec.get("step"), condition=condition)


def parse_space(data: Any, path: str = "<space>") -> SearchSpace:
    """Validate a loaded YAML document into a SearchSpace (UserError on any problem)."""
    if not isinstance(data, dict):
        raise UserError(f"search space {path}: must be a mapping with 'params'")
    unknown = set(data) - {"name", "description", "fixed", "params"}
    if unknown:
        raise UserError(f"search space {path}: unknown top-level key(s) {sorted(unknown)}; allowed: name, description, fixed, params")
    raw = data.get("params")
    if not isinstance(raw, dict) or not raw:
        raise UserError(f"search space {path}: 'params' must be a non-empty mapping of parameter blocks")
    params: list[Param] = []
    for name, spec in raw.items():
        params.append(_parse_param(path, str(name), spec, [p.name for p in params]))
    fixed = data.get("fixed") or {}
    if not isinstance(fixed, dict):
        raise UserError(f"search space {path}: 'fixed' must be a mapping of config keys")
    clash = set(fixed) & {p.name for p in params}
    if clash:
        raise UserError(f"search space {path}: {sorted(clash)} are both fixed and searched")
    space = SearchSpace(str(data.get("name", Path(path).stem)), str(data.get("description", "")), tuple(params), dict(fixed), path)
    # every value a trial can draw must make a valid config: each choice and both bounds, not only the default
    base = {**space.fixed, **space.defaults()}
    for p in space.params:
        for value in p.choices if p.distribution == "choice" else (p.low, p.high):
            try:
                make_config({**base, p.name: value}, source=f"search space {path}")
            except UserError as e:
                raise _err(path, p.name, f"value {value!r} is not a valid config value ({e})") from None
    try:
        make_config(base, source=f"search space {path}")
    except UserError as e:
        raise UserError(str(e)) from None
    return space


def load_space(path_or_name: str | Path) -> SearchSpace:
    """Load a space from a YAML path, or by name from the shipped ``search_spaces/`` folder."""
    path = Path(path_or_name)
    if not path.is_file():
        candidate = SPACES_DIR / f"{path_or_name}.yaml"
        if candidate.is_file():
            path = candidate
        else:
            shipped = ", ".join(sorted(p.stem for p in SPACES_DIR.glob("*.yaml")))
            raise UserError(f"search space {path_or_name}: no such file (shipped spaces: {shipped})")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"search space {path}: not valid YAML: {e}") from e
    return parse_space(data, str(path))


def shipped_spaces() -> list[Path]:
    """The YAML files of the spaces installed with the package."""
    return sorted(SPACES_DIR.glob("*.yaml"))


def shipped_space_names() -> list[str]:
    return [p.stem for p in shipped_spaces()]
