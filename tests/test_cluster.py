from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_cluster_yaml_validates_offline():
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    validate_config(prepare_config(cfg))  # raises on misspelled keys / wrong types / unknown node types
    assert cfg["head_node_type"] in cfg["available_node_types"]
    # the dashboard binds to localhost only
    assert all("--dashboard-host=127.0.0.1" in c for c in cfg["head_start_ray_commands"] if "ray start" in c)


def test_cluster_yaml_holds_no_secrets():
    text = (ROOT / "cluster.yaml").read_text().lower()
    for word in ("aws_secret", "api_key=", "password", "wandb_api_key="):
        assert word not in text
