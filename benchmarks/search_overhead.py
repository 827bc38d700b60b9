"""Search overhead: a fixed set of trials through Ray Tune against the same trainings run one after
another in one process.

    python benchmarks/search_overhead.py [--data DIR] [--trials 4] [--epochs 2]

The configurations are drawn once (seeded) from the shipped search space; Tune runs them as Ray
Train trials (2 workers each, as the search does), the baseline runs ``trial.run_local`` on each.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import dataset, emit, quiet


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None)
    p.add_argument("--protocol", default="OCI_M")
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--workers-per-trial", type=int, default=2)
    args = p.parse_args()
    quiet()
    import optuna
    import ray
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from anrl_ray.config import load_config, make_config
    from anrl_ray.data.pipeline import share_encoded_splits
    from anrl_ray.space import load_space
    from anrl_ray.runtime import init_ray
    from anrl_ray.trial import run_local, run_trial

    data = dataset(args.data)
    space = load_space("anrl")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    configs = [space.defaults()]
    while len(configs) < args.trials:
        t = study.ask()
        space.define_by_run()(t)
        configs.append(dict(t.params))
    base = load_config(None, {"protocol": args.protocol, "data_root": data, "epochs": args.epochs,
                              "num_workers": args.workers_per_trial}, profile="cpu").to_dict()
    out = Path(tempfile.mkdtemp(prefix="anrl-search-overhead-"))
    init_ray(None)
    share_encoded_splits()  # as the search does: both the Tune trials and the baseline read the splits once

    def trainable(params):
        cfg = make_config({**base, **configs[params["i"]]})
        run_trial(cfg, storage_path=str(out / "trials"), name=f"t{params['i']}", callbacks=[TuneReportCallback()])

    t0 = time.time()
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 0, "memory": 1e8}),
        param_space={"i": tune.grid_search(list(range(len(configs))))},
        tune_config=tune.TuneConfig(max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=str(out / "tune"), name="bench", verbose=0),
    )
    grid = tuner.fit()
    tune_wall = time.time() - t0
    errors = [r.error for r in grid if r.error]
    if errors:
        raise SystemExit(f"Tune trials failed: {errors[0]}")

    t0 = time.time()
    for i, params in enumerate(configs):
        run_local(make_config({**base, **params, "num_workers": 1}), out / f"local{i}")
    local_wall = time.time() - t0
    emit({
        "trials": len(configs),
        "epochs": args.epochs,
        "tune_wall_s": round(tune_wall, 2),
        "sequential_one_process_wall_s": round(local_wall, 2),
        "overhead_per_trial_s": round((tune_wall - local_wall) / len(configs), 2),
        "ratio": round(tune_wall / local_wall, 2),
        "note": "Tune trials use Ray Train with --workers-per-trial DDP workers; the baseline is one process per config in sequence",
    })
    ray.shutdown()


if __name__ == "__main__":
    main()
