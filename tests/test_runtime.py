"""Runtime: a local Ray listens on loopback only (every service, every process of its tree)."""

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.integration

# A child process: start the project's local Ray, run a task (so a worker exists), then list the
# listening TCP sockets of every process in its tree from /proc (no psutil, no ss needed).
_PROBE = textwrap.dedent(
    """
    import json, os, time
    from anrl_ray.runtime import init_ray, quiet_environment
    quiet_environment()
    init_ray(None, num_cpus=1)
    import ray

    @ray.remote
    def f():
        return os.getpid()

    ray.get(f.remote())
    time.sleep(2)

    def tree(root):
        kids = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
                except OSError:
                    continue
                kids.setdefault(ppid, []).append(int(d))
        out, todo = set(), [root]
        while todo:
            p = todo.pop()
            out.add(p)
            todo += kids.get(p, [])
        return out

    def listening():
        socks = {}
        for fam in ("tcp", "tcp6"):
            for line in open(f"/proc/net/{fam}").read().splitlines()[1:]:
                parts = line.split()
                if parts[3] == "0A":  # LISTEN
                    socks[parts[9]] = parts[1]
        return socks

    socks, found = listening(), []
    for pid in tree(os.getpid()):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            name = open(f"/proc/{pid}/comm").read().strip()
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inode = link[8:-1]
                if inode in socks:
                    found.append([name, socks[inode]])
    print("SOCKETS " + json.dumps(found))
    ray.shutdown()
    """
)

_LOOPBACK = {
    "0100007F",  # 127.0.0.1 (tcp, little-endian hex)
    "0000000000000000FFFF00000100007F",  # ::ffff:127.0.0.1 (tcp6)
    "00000000000000000000000001000000",  # ::1
}


def test_local_ray_listens_on_loopback_only():
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    res = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=240, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    import json

    line = next(x for x in res.stdout.splitlines() if x.startswith("SOCKETS "))
    found = json.loads(line[len("SOCKETS "):])
    names = {n for n, _ in found}
    assert {"gcs_server", "raylet"} <= names, found  # the probe saw Ray's own servers
    wide = [(n, addr) for n, addr in found if addr.rsplit(":", 1)[0] not in _LOOPBACK]
    assert not wide, f"listening beyond loopback: {wide}"
