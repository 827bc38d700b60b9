"""Cluster launcher configs: offline checks of cluster.yaml (AWS) and cluster.local.yaml, and (slow)
the real `ray up` / job / `ray down` round trip of scripts/cluster_smoke.sh on this machine."""

import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ["cluster.yaml", "cluster.local.yaml"]
SMOKE = ROOT / "scripts" / "cluster_smoke.sh"
# GPUs per instance of the worker types cluster.yaml may use (extend when adding a type).
GPUS_PER_INSTANCE = {"g5.xlarge": 1, "g5.2xlarge": 1, "g5.12xlarge": 4, "g5.48xlarge": 8, "g6.2xlarge": 1,
                     "g6.12xlarge": 4, "p4d.24xlarge": 8}


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def start_commands(cfg: dict) -> list[str]:
    return [c for c in cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"] if "ray start" in c]


def option(cmd: str, name: str) -> str | None:
    m = re.search(rf"{name}=(\S+)", cmd)
    return m.group(1) if m else None


@pytest.mark.parametrize("name", CONFIGS)
def test_config_validates_offline(name):
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = load(name)
    validate_config(prepare_config(cfg))  # raises on misspelled keys / wrong types / unknown node types
    if cfg["provider"]["type"] != "local":
        assert cfg["head_node_type"] in cfg["available_node_types"]


@pytest.mark.parametrize("name", CONFIGS)
def test_dashboard_binds_to_localhost_only(name):
    heads = [c for c in load(name)["head_start_ray_commands"] if "ray start" in c]
    assert len(heads) == 1
    assert "--dashboard-host=127.0.0.1" in heads[0]


@pytest.mark.parametrize("name", CONFIGS)
def test_every_ray_start_runs_with_token_auth(name):
    cfg = load(name)
    cmds = start_commands(cfg)
    assert len(cmds) == 2  # head and worker
    for cmd in cmds:
        env = cmd.split("ray start")[0]  # the environment assignments before the command
        assert re.search(r"(^|\s)RAY_AUTH_MODE=token(\s|$)", env), f"{name}: no RAY_AUTH_MODE=token in: {cmd}"
        assert "RAY_AUTH_MODE=disabled" not in cmd
    # The token reaches the nodes through file_mounts, from a file outside the repository.
    token_mounts = {node: local for node, local in cfg["file_mounts"].items() if "token" in node or node.endswith("auth_token")}
    assert len(token_mounts) == 1, cfg["file_mounts"]
    (node_path, local_path), = token_mounts.items()
    assert local_path.startswith("~/.ray/"), f"the token must come from outside the repository, got {local_path}"
    for cmd in cmds:
        path = option(cmd, "RAY_AUTH_TOKEN_PATH")
        # Ray's default token file on the node, or the mounted file named explicitly
        expected = "~/.ray/auth_token" if path is None else path.replace("$HOME", "~")
        assert expected == node_path, (cmd, node_path)


@pytest.mark.parametrize("name", CONFIGS)
def test_uploads_are_limited_to_the_code(name, tmp_path):
    """rsync with the config's rsync_exclude / rsync_filter (built as Ray's SSH command runner builds
    them) over a repository-like tree: only code arrives."""
    if shutil.which("rsync") is None:
        pytest.skip("rsync not installed (bash scripts/ci_services.sh installs it)")
    cfg = load(name)
    for needed in (".venv", "runs", "wandb", ".git", "__pycache__", ".cache"):
        assert needed in cfg["rsync_exclude"], f"{name}: rsync_exclude lacks {needed}"
    assert ".gitignore" in cfg["rsync_filter"]
    assert cfg["file_mounts"].get("~/anrl-ray") == "."

    src = tmp_path / "repo"
    code = ["run_search.py", "anrl_ray/__init__.py", "anrl_ray/data/pipeline.py", "search_spaces/anrl.yaml", ".gitignore"]
    junk = [".venv/bin/python", ".git/HEAD", "runs/OCI_M-1/best/model.safetensors", "wandb/run-1/files/x",
            "anrl_ray/__pycache__/model.cpython-311.pyc", ".cache/anrl_ray/x.parquet", "anrl_ray.egg-info/PKG-INFO",
            "anrl_ray/data/__pycache__/a.pyc", "notes.local", "scratch/big.bin"]
    for rel in code + junk:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text("x")
    (src / ".gitignore").write_text("*.local\n/scratch/\n")
    args = [a for p in cfg["rsync_exclude"] for a in ("--exclude", p)]
    args += [a for f in cfg["rsync_filter"] for a in ("--filter", f"dir-merge,- {f}")]
    dst = tmp_path / "node"
    subprocess.run(["rsync", "-a", *args, f"{src}/", str(dst)], check=True)
    arrived = sorted(str(p.relative_to(dst)) for p in dst.rglob("*") if p.is_file())
    assert arrived == sorted(code)


def test_aws_security_group_opens_ssh_from_one_cidr_only():
    cfg = load("cluster.yaml")
    sg = cfg["provider"]["security_group"]
    assert sg["GroupName"]
    perms = sg["IpPermissions"]
    assert len(perms) == 1, "only SSH may be open from outside the cluster"
    (perm,) = perms
    assert (perm["IpProtocol"], perm["FromPort"], perm["ToPort"]) == ("tcp", 22, 22)
    assert not perm.get("Ipv6Ranges") and not perm.get("PrefixListIds") and not perm.get("UserIdGroupPairs")
    assert perm["IpRanges"]
    for r in perm["IpRanges"]:
        net = ipaddress.ip_network(r["CidrIp"])  # raises on a malformed CIDR
        assert net.prefixlen >= 16, f"{r['CidrIp']} is too wide for SSH (use your address /32)"
    # No node type brings its own groups: the named group above is the one every node gets.
    for name, node_type in cfg["available_node_types"].items():
        assert "SecurityGroupIds" not in node_type["node_config"], name


def test_aws_has_cpu_head_and_autoscaling_single_and_multi_gpu_workers():
    cfg = load("cluster.yaml")
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]["node_config"]["InstanceType"]
    assert head not in GPUS_PER_INSTANCE, f"the head {head} should be a CPU instance"
    workers = {n: t for n, t in types.items() if n != cfg["head_node_type"]}
    gpus = {GPUS_PER_INSTANCE[t["node_config"]["InstanceType"]] for t in workers.values()}
    assert 1 in gpus and max(gpus) > 1, gpus
    for name, t in workers.items():
        assert t["min_workers"] == 0 and t["max_workers"] >= 1, name  # scale from zero on demand
    assert cfg["max_workers"] >= max(t["max_workers"] for t in workers.values())


def test_local_config_stays_on_loopback_and_matches_the_smoke_script():
    cfg = load("cluster.local.yaml")
    assert cfg["provider"] == {"type": "local", "head_ip": "127.0.0.1", "worker_ips": []}
    (head,) = [c for c in cfg["head_start_ray_commands"] if "ray start" in c]
    assert option(head, "--node-ip-address") == "127.0.0.1"
    assert option(head, "--temp-dir"), "the head needs its own Ray temp dir (else a plain ray.init() joins it)"
    script = SMOKE.read_text()
    pinned = {"GCS_PORT": "--port", "DASHBOARD_PORT": "--dashboard-port", "AGENT_PORT": "--dashboard-agent-listen-port",
              "CLIENT_PORT": "--ray-client-server-port"}
    for var, flag in pinned.items():
        m = re.search(rf"\b{var}=(\d+)", script)
        assert m and option(head, flag) == m.group(1), f"{var} in {SMOKE.name} != {flag} in cluster.local.yaml"
    assert option(cfg["worker_start_ray_commands"][-1], "--address") == f"$RAY_HEAD_IP:{option(head, '--port')}"
    assert cfg["auth"]["ssh_private_key"] == "~/.ssh/anrl_ray_local_ed25519"  # the smoke script rewrites this path


@pytest.mark.parametrize("name", CONFIGS)
def test_config_holds_no_secrets(name):
    text = (ROOT / name).read_text()
    for word in ("aws_secret", "api_key=", "password", "wandb_api_key=", "begin openssh private key"):
        assert word not in text.lower()
    assert not re.search(r"\b[0-9a-f]{40,}\b", text), "something that looks like a token"


def _ensure_ssh_server() -> None:
    if Path("/usr/sbin/sshd").exists() and shutil.which("rsync"):
        return
    if os.geteuid() != 0:
        pytest.skip("openssh-server/rsync missing and not root: cannot install them (bash scripts/ci_services.sh)")
    r = subprocess.run(["bash", str(ROOT / "scripts" / "ci_services.sh")], capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        pytest.skip(f"could not install openssh-server/rsync: {r.stderr.strip()[-400:]}")


@pytest.mark.slow
def test_cluster_smoke_ray_up_job_fetch_down(tmp_path):
    """The whole AWS walkthrough on this machine: ray up, dashboard tunnel, token refusals, a tiny
    search as a Ray job, best/ fetched with ray rsync-down, ray down (4-9 min on 2 busy cores)."""
    _ensure_ssh_server()
    env = {**os.environ, "ANRL_VENV": sys.prefix}
    t0 = time.monotonic()
    proc = subprocess.Popen(["bash", str(SMOKE), str(tmp_path)], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = proc.communicate(timeout=1500)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the script's trap tears the cluster down
        out, _ = proc.communicate(timeout=300)
        pytest.fail(f"cluster_smoke.sh timed out after 1500 s:\n{out[-4000:]}")
    wall = time.monotonic() - t0
    print(out[-3000:])
    print(f"cluster_smoke.sh wall time: {wall:.0f} s")
    if proc.returncode == 77:
        pytest.skip(next((line for line in out.splitlines() if "SKIP" in line), "cluster_smoke.sh: machine cannot host it"))
    assert proc.returncode == 0, out[-6000:]
    assert "cluster_smoke: PASSED" in out
    assert "job submission without-token: refused" in out and "job submission with-wrong-token: refused" in out
    assert "not this cluster" in out  # a plain ray.init() did not join the smoke cluster
    best = tmp_path / "best"
    assert (best / "model.safetensors").stat().st_size > 0
    selection = json.loads((best / "selection.json").read_text())
    assert selection
    assert (tmp_path / "logs" / "ray_up.log").is_file()
