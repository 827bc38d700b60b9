#!/usr/bin/env bash
# Bring up cluster.local.yaml for real on this machine and run a tiny search on it, the way a
# newcomer runs cluster.yaml on AWS (docs/CLUSTER.md):
#   sshd on 127.0.0.1:22 (throwaway keys) -> ray up -> dashboard over an SSH tunnel
#   -> ray job submit refused without the cluster token, accepted with it -> a tiny search
#   -> fetch best/ with ray rsync-down -> ray down.
#
# Usage: bash scripts/cluster_smoke.sh [OUT_DIR]      (default OUT_DIR: runs/cluster-smoke)
#   OUT_DIR/best   the fetched best/ (model.safetensors, selection.json, ...)
#   OUT_DIR/logs   ray up / job / ray down output
# Needs root, openssh-server, rsync and iproute2 (bash scripts/ci_services.sh installs them),
# util-linux's unshare, and .venv (bash scripts/setup.sh). Exit 0: passed; 77: this machine cannot
# host the test (reason on stderr); anything else: failed.
#
# Isolation from everything else on the machine (other Ray instances, the user's files):
# - the "laptop" side (ray CLI) and the "node" side (sshd sessions) get throwaway HOMEs under a
#   temp dir: ~/.ssh/authorized_keys, ~/.ray/auth_token and ~/ray_bootstrap_* of the real HOME
#   are never written (checked at exit);
# - sshd, and so the whole head node, runs in its own PID namespace: `ray stop`, which `ray up`
#   and `ray down` run on the head and which stops every Ray process it can see, sees only the
#   node's; killing the namespace at exit kills whatever the node left running;
# - the head has its own Ray temp dir, so /tmp/ray/ray_current_cluster is not written and a plain
#   ray.init() elsewhere does not join this cluster (checked while it is up).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$REPO/runs/cluster-smoke}
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
cd "$REPO"
VENV=${ANRL_VENV:-$REPO/.venv}
PY=$VENV/bin/python
RAY=$VENV/bin/ray
CONFIG=cluster.local.yaml   # run as a copy that differs only in two launching-side paths (below)
# Pinned in cluster.local.yaml; TUNNEL_PORT is the launching side's end of `ray dashboard`.
GCS_PORT=6390 DASHBOARD_PORT=8290 TUNNEL_PORT=8291 AGENT_PORT=29390 CLIENT_PORT=6391
SEARCH_NAME=smoke

say() { echo "cluster_smoke: $*"; }
skip() { echo "cluster_smoke: SKIP: $*" >&2; exit 77; }
die() { echo "cluster_smoke: FAIL: $*" >&2; exit 1; }

now_ms() { date +%s%3N; }
T_START=$(now_ms) PHASE="" PHASE_T0=0
end_phase() {
  if [ -n "$PHASE" ]; then
    local dt=$(( $(now_ms) - PHASE_T0 ))
    printf 'cluster_smoke: phase %-16s %4d.%d s\n' "$PHASE" $((dt / 1000)) $((dt % 1000 / 100))
  fi
  PHASE=""
}
begin() { end_phase; PHASE=$1; PHASE_T0=$(now_ms); }

# ---------------------------------------------------------------- can this machine host it?
[ "$(id -u)" -eq 0 ] || skip "needs root (an SSH server on port 22 that lets root in, a PID namespace)"
[ -x /usr/sbin/sshd ] || skip "no /usr/sbin/sshd: run 'bash scripts/ci_services.sh' (installs openssh-server, rsync)"
command -v rsync >/dev/null || skip "no rsync: run 'bash scripts/ci_services.sh'"
command -v ss >/dev/null || skip "no ss (iproute2): run 'bash scripts/ci_services.sh'"
command -v ssh-keygen >/dev/null || skip "no ssh-keygen (openssh-client)"
unshare --pid --fork --mount-proc true 2>/dev/null || skip "cannot create a PID namespace (unshare --pid)"
[ -x "$RAY" ] || die "$RAY not found: run 'bash scripts/setup.sh' first (or set ANRL_VENV)"

# One smoke run at a time on this machine (port 22 and the pinned Ray ports are machine-wide).
exec 9>/tmp/anrl-ray-cluster-smoke.lock
flock -w 1200 9 || die "another cluster_smoke.sh still holds /tmp/anrl-ray-cluster-smoke.lock after 20 min"

port_free() {
  "$PY" - "$1" <<'EOF'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
}
port_free 22 || skip "127.0.0.1:22 is taken (a system sshd?): the test needs its own SSH server there"
for p in $GCS_PORT $DASHBOARD_PORT $TUNNEL_PORT $AGENT_PORT $CLIENT_PORT; do
  port_free "$p" || die "port $p on 127.0.0.1 is in use: a leftover anrl-ray-local cluster? ($CONFIG pins it)"
done

# ---------------------------------------------------------------- state and cleanup
REAL_HOME=$HOME
WORK=$(mktemp -d /tmp/anrl-smoke.XXXXXX)   # short: Ray's socket paths under it must stay < 108 chars
chmod 700 "$WORK"
LAPTOP=$WORK/laptop NODE=$WORK/node SSHD_DIR=$WORK/sshd LOGS=$WORK/logs
# stranger: a HOME with no token (refusal checks); elsewhere: another program's HOME (plain ray.init)
mkdir -p "$LAPTOP/.ssh" "$LAPTOP/.ray" "$LAPTOP/tmp" "$NODE" "$SSHD_DIR" "$LOGS" "$WORK/stranger" "$WORK/elsewhere"
UNSHARE_PID="" SSHD_PID="" TUNNEL_PID="" CHILD="" CLUSTER_UP=0

# The user's files this run must not change: back them up, restore them if they changed.
GUARDED=("$REAL_HOME/.ssh/authorized_keys" "$REAL_HOME/.ray/auth_token" "$REAL_HOME/ray_bootstrap_config.yaml" "$REAL_HOME/ray_bootstrap_key.pem")
mkdir -p "$WORK/backup"
for i in "${!GUARDED[@]}"; do
  f=${GUARDED[$i]}
  if [ -e "$f" ]; then cp -p "$f" "$WORK/backup/$i"; fi
done
restore_guarded() {
  local i f changed=0
  for i in "${!GUARDED[@]}"; do
    f=${GUARDED[$i]}
    if [ -e "$WORK/backup/$i" ]; then
      if ! cmp -s "$f" "$WORK/backup/$i"; then cp -p "$WORK/backup/$i" "$f"; changed=1; echo "cluster_smoke: restored $f" >&2; fi
    elif [ -e "$f" ]; then
      rm -f "$f"; changed=1; echo "cluster_smoke: removed $f (it did not exist before)" >&2
    fi
  done
  return $changed
}

# The ray CLI as the launching side ("laptop") runs it: its own HOME and temp dir.
LENV=(env -u RAY_ADDRESS -u RAY_API_SERVER_ADDRESS -u RAY_AUTH_MODE -u RAY_AUTH_TOKEN -u RAY_AUTH_TOKEN_PATH
      HOME="$LAPTOP" TMPDIR="$LAPTOP/tmp" RAY_USAGE_STATS_ENABLED=0 PATH="$VENV/bin:$PATH")
TOKEN_FILE=$LAPTOP/.ray/anrl-ray-local.token
AUTHED=("${LENV[@]}" RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$TOKEN_FILE")
API=http://127.0.0.1:$TUNNEL_PORT

# Run a command in its own process group, output to a log; `wait` lets a signal stop the script
# at once, and cleanup kills the group.
run_logged() {  # LOG CMD...
  local log=$1 rc=0
  shift
  setsid "$@" </dev/null >"$log" 2>&1 &
  CHILD=$!
  wait "$CHILD" || rc=$?
  CHILD=""
  return "$rc"
}

show_tail() { echo "---- last lines of $1" >&2; tail -n "${2:-40}" "$1" >&2 || true; echo "----" >&2; }

# Ray processes living in the node's PID namespace (empty once the node is stopped).
node_ray_procs() {
  [ -n "$SSHD_PID" ] || return 0
  "$PY" - "$SSHD_PID" <<'EOF'
import os, sys
try:
    target = os.readlink(f"/proc/{sys.argv[1]}/ns/pid")
except OSError:
    sys.exit(0)
keys = ("gcs_server", "raylet", "ray::", "default_worker", "dashboard", "monitor.py", "log_monitor",
        "runtime_env", "ray_client_server", "run_search.py")
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        if os.readlink(f"/proc/{pid}/ns/pid") != target:
            continue
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        continue
    if any(k in cmd for k in keys):
        print(pid, cmd[:120])
EOF
}

# TCP sockets the node's processes listen on, as "ADDRESS:PORT" lines.
node_listeners() {
  "$PY" - "$SSHD_PID" <<'EOF'
import os, re, subprocess, sys
target = os.readlink(f"/proc/{sys.argv[1]}/ns/pid")
pids = set()
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        if os.readlink(f"/proc/{pid}/ns/pid") == target:
            pids.add(pid)
    except OSError:
        pass
seen = set()
for line in subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout.splitlines():
    cols = line.split()  # State Recv-Q Send-Q Local:Port Peer:Port users:(("name",pid=N,fd=M),...)
    if len(cols) >= 6 and set(re.findall(r"pid=(\d+)", cols[5])) & pids:
        seen.add(cols[3].replace("*:", "0.0.0.0:"))
print("\n".join(sorted(seen)))
EOF
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  begin cleanup
  if [ -n "$CHILD" ]; then kill -TERM -- "-$CHILD" 2>/dev/null; wait "$CHILD" 2>/dev/null; fi
  if [ -n "$TUNNEL_PID" ]; then kill -TERM -- "-$TUNNEL_PID" 2>/dev/null; wait "$TUNNEL_PID" 2>/dev/null; fi
  if [ "$CLUSTER_UP" = 1 ]; then
    run_logged "$LOGS/ray_down_cleanup.log" timeout 180 "${LENV[@]}" "$RAY" down -y "$RUN_CONFIG" \
      || echo "cluster_smoke: ray down in cleanup failed (see logs/ray_down_cleanup.log)" >&2
  fi
  if [ -n "$UNSHARE_PID" ]; then
    # unshare --kill-child: its sshd (PID 1 of the node's namespace) dies with it, and the kernel
    # then kills every process left in the namespace (Ray's head processes included).
    kill -TERM "$UNSHARE_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$UNSHARE_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$UNSHARE_PID" 2>/dev/null
    wait "$UNSHARE_PID" 2>/dev/null
    for _ in $(seq 50); do [ -z "$(node_ray_procs)" ] && break; sleep 0.1; done
    if [ -n "$(node_ray_procs)" ]; then echo "cluster_smoke: node processes still alive:" >&2; node_ray_procs >&2; rc=1; fi
  fi
  restore_guarded || { echo "cluster_smoke: FAIL: files of the real HOME were changed (restored)" >&2; rc=1; }
  cp "$SSHD_DIR/sshd.log" "$LOGS/" 2>/dev/null
  rm -rf "$OUT/logs"; cp -r "$LOGS" "$OUT/logs" 2>/dev/null
  if [ "${ANRL_SMOKE_KEEP:-0}" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
  end_phase
  local dt=$(( $(now_ms) - T_START ))
  printf 'cluster_smoke: total %d.%d s, exit %d\n' $((dt / 1000)) $((dt % 1000 / 100)) "$rc"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- 1. keys, token, node image
begin prepare
ssh-keygen -q -t ed25519 -N '' -C anrl-smoke-host -f "$SSHD_DIR/host_key"
ssh-keygen -q -t ed25519 -N '' -C anrl-smoke-client -f "$LAPTOP/.ssh/anrl_ray_local_ed25519"
cp "$LAPTOP/.ssh/anrl_ray_local_ed25519.pub" "$SSHD_DIR/authorized_keys"
# The cluster token: 256 random bits, made the way docs/CLUSTER.md says, readable by the owner only.
(umask 077 && "$PY" -c "import secrets; print(secrets.token_hex(32))" >"$TOKEN_FILE")
# The node's "image": what an AMI would provide. The login shell puts the environment on PATH
# and shares the benchmark cache of the real user (generated once, ~12 s).
cat >"$NODE/.profile" <<EOF
export PATH="$VENV/bin:\$PATH"
export ANRL_RAY_CACHE="${ANRL_RAY_CACHE:-$REAL_HOME/.cache/anrl_ray}"
export RAY_USAGE_STATS_ENABLED=0 RAY_DATA_DISABLE_PROGRESS_BARS=1
# the node's own /tmp: the head's autoscaler keeps the local provider's state in \$TMPDIR/ray
export TMPDIR="$NODE/tmp"
EOF
mkdir -p "$NODE/tmp"
: >"$NODE/.bashrc"
cat >"$SSHD_DIR/sshd_config" <<EOF
# Throwaway SSH server for cluster_smoke.sh: loopback only, key-only, its own host key.
Port 22
ListenAddress 127.0.0.1
HostKey $SSHD_DIR/host_key
PidFile $SSHD_DIR/sshd.pid
AuthorizedKeysFile $SSHD_DIR/authorized_keys
# the temp dir lives under /tmp (world-writable), which StrictModes would refuse
StrictModes no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
X11Forwarding no
AllowAgentForwarding no
AllowTcpForwarding local
# the node's HOME: ray up's ~/anrl-ray, ~/ray_bootstrap_*, ~/.ray land here, not in $REAL_HOME
SetEnv HOME=$NODE
Subsystem sftp internal-sftp
EOF

# ssh reads `-i ~/...` from the passwd HOME (/root), not $HOME, so the launcher gets a copy of
# cluster.local.yaml whose key and token paths point into the throwaway laptop HOME; the rest of
# the file is used as it is (checked).
RUN_CONFIG=$WORK/$CONFIG
"$PY" - "$CONFIG" "$RUN_CONFIG" "$LAPTOP/.ssh/anrl_ray_local_ed25519" "$TOKEN_FILE" <<'EOF'
import copy, sys
import yaml
src, dst, key, token = sys.argv[1:]
cfg = yaml.safe_load(open(src))
run = copy.deepcopy(cfg)
assert run["auth"]["ssh_private_key"] == "~/.ssh/anrl_ray_local_ed25519", run["auth"]
run["auth"]["ssh_private_key"] = key
mounts = [k for k, v in run["file_mounts"].items() if v == "~/.ray/anrl-ray-local.token"]
assert len(mounts) == 1, run["file_mounts"]
run["file_mounts"][mounts[0]] = token
changed = {k for k in cfg if cfg[k] != run[k]}
assert changed == {"auth", "file_mounts"}, changed
yaml.safe_dump(run, open(dst, "w"), sort_keys=False)
EOF

# ---------------------------------------------------------------- 2. sshd in a PID namespace
begin sshd
mkdir -p /run/sshd   # privilege-separation dir that Debian's sshd expects
/usr/sbin/sshd -t -f "$SSHD_DIR/sshd_config" || die "sshd rejects $SSHD_DIR/sshd_config"
unshare --pid --fork --mount-proc --kill-child /usr/sbin/sshd -D -f "$SSHD_DIR/sshd_config" -E "$SSHD_DIR/sshd.log" &
UNSHARE_PID=$!
SSH=(ssh -i "$LAPTOP/.ssh/anrl_ray_local_ed25519" -o IdentitiesOnly=yes -o BatchMode=yes
     -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR root@127.0.0.1)
for _ in $(seq 100); do
  if "${SSH[@]}" true 2>/dev/null; then break; fi
  kill -0 "$UNSHARE_PID" 2>/dev/null || { show_tail "$SSHD_DIR/sshd.log"; skip "sshd did not start"; }
  sleep 0.1
done
"${SSH[@]}" true || { show_tail "$SSHD_DIR/sshd.log"; skip "sshd on 127.0.0.1:22 does not let the throwaway key in"; }
SSHD_PID=$(cat "/proc/$UNSHARE_PID/task/$UNSHARE_PID/children" | awk '{print $1}')
[ -n "$SSHD_PID" ] || die "could not find sshd's PID (child of unshare $UNSHARE_PID)"
node_home=$("${SSH[@]}" 'bash --login -c "echo \$HOME"' 2>/dev/null)
[ "$node_home" = "$NODE" ] || die "the node's login shell has HOME=$node_home, expected $NODE"
say "sshd up on 127.0.0.1:22 (host PID $SSHD_PID, own PID namespace), node HOME $NODE"

# ---------------------------------------------------------------- 3. ray up
begin "ray up"
CLUSTER_UP=1
run_logged "$LOGS/ray_up.log" "${LENV[@]}" "$RAY" up -y --no-config-cache --disable-usage-stats "$RUN_CONFIG" \
  || { show_tail "$LOGS/ray_up.log"; die "ray up failed"; }
# Uploads are limited to the code: the excludes of cluster.local.yaml held.
[ -f "$NODE/anrl-ray/run_search.py" ] || die "ray up did not sync the code to ~/anrl-ray"
leaked=$(cd "$NODE/anrl-ray" && find . \( -name .venv -o -name .git -o -name runs -o -name wandb \
          -o -name __pycache__ -o -name '*.egg-info' \) -print | head -5)
[ -z "$leaked" ] || die "ray up uploaded what rsync_exclude should keep out: $leaked"
[ "$(stat -c %a "$NODE/.ray/anrl-ray-node.token")" = 600 ] || die "the node's token file is not mode 600"
say "ray up done; code synced without .venv/.git/runs/wandb/caches; token on the node (mode 600)"

# What listens where: the dashboard on loopback only; Ray 2.60 has no bind-address option for
# the GCS, raylet and agents (they take every interface), which is what token auth guards.
node_listeners >"$LOGS/listeners.txt"
grep -qx "127.0.0.1:$DASHBOARD_PORT" "$LOGS/listeners.txt" || { cat "$LOGS/listeners.txt" >&2; die "the dashboard does not listen on 127.0.0.1:$DASHBOARD_PORT"; }
if grep -E ":$DASHBOARD_PORT\$" "$LOGS/listeners.txt" | grep -qvx "127.0.0.1:$DASHBOARD_PORT"; then
  die "the dashboard listens beyond loopback: $(grep -E ":$DASHBOARD_PORT\$" "$LOGS/listeners.txt" | tr '\n' ' ')"
fi
say "dashboard on 127.0.0.1 only; beyond loopback (token-protected): $(grep -vE '^(127\.|\[?::1)' "$LOGS/listeners.txt" | tr '\n' ' ')"

# The head wrote its address into its own temp dir, not /tmp/ray: a plain ray.init() elsewhere
# on this machine starts its own Ray instead of joining this cluster.
[ -f "$NODE/ray-tmp/ray_current_cluster" ] || die "no ray_current_cluster in the head's temp dir $NODE/ray-tmp"
if grep -qs ":$GCS_PORT\$" /tmp/ray/ray_current_cluster; then die "/tmp/ray/ray_current_cluster points at this cluster"; fi
joined=$(env -u RAY_ADDRESS -u RAY_API_SERVER_ADDRESS HOME="$WORK/elsewhere" timeout 120 "$PY" -c '
import ray
ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
print(ray.get_runtime_context().gcs_address)
ray.shutdown()' 2>"$LOGS/plain_ray_init.log" | tail -n 1) || { show_tail "$LOGS/plain_ray_init.log"; die "plain ray.init() failed"; }
case "$joined" in
  *":$GCS_PORT") die "a plain ray.init() joined the smoke cluster ($joined)" ;;
  "") die "a plain ray.init() printed no GCS address" ;;
esac
say "a plain ray.init() elsewhere started its own Ray ($joined), not this cluster (127.0.0.1:$GCS_PORT)"

# ---------------------------------------------------------------- 4. dashboard over SSH
begin tunnel
setsid "${LENV[@]}" "$RAY" dashboard --no-config-cache --port "$TUNNEL_PORT" --remote-port "$DASHBOARD_PORT" "$RUN_CONFIG" \
  </dev/null >"$LOGS/ray_dashboard.log" 2>&1 &
TUNNEL_PID=$!
for _ in $(seq 150); do
  code=$(curl -s -o /dev/null -w '%{http_code}' "$API/api/version" || true)
  [ "$code" != 000 ] && break
  kill -0 "$TUNNEL_PID" 2>/dev/null || { show_tail "$LOGS/ray_dashboard.log"; die "ray dashboard (SSH tunnel) exited"; }
  sleep 0.2
done
[ "$code" != 000 ] || { show_tail "$LOGS/ray_dashboard.log"; die "no dashboard at $API through the SSH tunnel"; }
say "dashboard reached through the SSH tunnel at $API (HTTP $code for an unauthenticated GET)"

# ---------------------------------------------------------------- 5. token auth
begin "token auth"
refused() {  # $1 = label, rest = env assignments; asserts that a job submission is refused
  local label=$1; shift
  local log=$LOGS/submit_$label.log
  if env -u RAY_ADDRESS -u RAY_API_SERVER_ADDRESS -u RAY_AUTH_MODE -u RAY_AUTH_TOKEN -u RAY_AUTH_TOKEN_PATH HOME="$WORK/stranger" TMPDIR="$LAPTOP/tmp" "$@" \
       timeout 120 "$RAY" job submit --address "$API" --no-wait -- echo should-not-run >"$log" 2>&1; then
    show_tail "$log"; die "a job submission $label was accepted"
  fi
  grep -qiE "authenticat|unauthori|401|403" "$log" || { show_tail "$log"; die "submission $label failed, but not for lack of authentication"; }
  say "job submission $label: refused ($(grep -oiE -m1 'missing authentication token|invalid authentication token|unauthori[sz]ed|authentication[a-z ]*' "$log" | head -1))"
}
WRONG_TOKEN=$("$PY" -c 'import secrets; print(secrets.token_hex(32))')
refused without-token
refused with-wrong-token RAY_AUTH_MODE=token RAY_AUTH_TOKEN="$WRONG_TOKEN"
# The GCS (what ray.init(address=...) and every worker talk to) refuses a wrong token too.
if env -u RAY_ADDRESS -u RAY_AUTH_TOKEN_PATH HOME="$WORK/stranger" RAY_AUTH_MODE=token RAY_AUTH_TOKEN="$WRONG_TOKEN" \
     timeout 120 "$PY" -c "import ray; ray.init(address='127.0.0.1:$GCS_PORT', log_to_driver=False); print('connected')" \
     >"$LOGS/gcs_wrong_token.log" 2>&1; then
  show_tail "$LOGS/gcs_wrong_token.log"; die "ray.init() with a wrong token connected to the GCS"
fi
grep -qiE "authenticat|unauthenticated" "$LOGS/gcs_wrong_token.log" \
  || { show_tail "$LOGS/gcs_wrong_token.log"; die "ray.init() with a wrong token failed, but not for lack of authentication"; }
say "ray.init() against the GCS with a wrong token: refused"
"${AUTHED[@]}" "$RAY" job list --address "$API" >"$LOGS/job_list.log" 2>&1 \
  || { show_tail "$LOGS/job_list.log"; die "ray job list with the cluster token failed"; }
say "ray job list with the cluster token: accepted"

# ---------------------------------------------------------------- 6. the search, as a job
begin "search job"
JOB_ID=anrl-smoke-$(date +%Y%m%d-%H%M%S)
submit_rc=0
run_logged "$LOGS/job.log" "${AUTHED[@]}" "$RAY" job submit --address "$API" --submission-id "$JOB_ID" --working-dir . -- \
  python run_search.py --protocol OCI_M --num-samples 1 --epochs 1 --set max_steps_per_epoch=2 \
  --workers-per-trial 1 --cpus-per-worker 0.5 --scheduler none --wandb off \
  --storage "$NODE/runs" --name "$SEARCH_NAME" --address auto || submit_rc=$?
status=$("${AUTHED[@]}" "$RAY" job status --address "$API" "$JOB_ID" 2>&1 | tail -n 3 || true)
echo "$status" >>"$LOGS/job.log"
if ! { [ "$submit_rc" -eq 0 ] && echo "$status" | grep -qiE "SUCCEEDED|succeeded"; }; then
  show_tail "$LOGS/job.log" 60
  if grep -q "running low on memory" "$LOGS/job.log"; then
    die "the search job failed: Ray's memory monitor killed its workers (machine memory above 95%; other processes?)"
  fi
  die "the search job did not succeed (ray job submit exit $submit_rc)"
fi
grep -E "best trial exported to|leaderboard:" "$LOGS/job.log" | sed 's/^/cluster_smoke:   job: /' || true
say "job $JOB_ID SUCCEEDED"

begin watch
# Watching from the laptop: `ray exec` runs `ray status` on the head (the token is on the node).
run_logged "$LOGS/ray_status.log" "${LENV[@]}" "$RAY" exec "$RUN_CONFIG" \
  'RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$HOME/.ray/anrl-ray-node.token ray status --address 127.0.0.1:'"$GCS_PORT" \
  || { show_tail "$LOGS/ray_status.log"; die "ray exec ... ray status on the head failed"; }
grep -q "Resources" "$LOGS/ray_status.log" || { show_tail "$LOGS/ray_status.log"; die "ray status printed no resources"; }
say "ray exec ... ray status on the head: $(grep -m1 -oE '[0-9.]+ ?CPU' "$LOGS/ray_status.log" | head -1) in the cluster"

# ---------------------------------------------------------------- 7. fetch best/
begin "fetch best"
rm -rf "$OUT/best"
run_logged "$LOGS/rsync_down.log" "${LENV[@]}" "$RAY" rsync-down "$RUN_CONFIG" \
  "$NODE/runs/$SEARCH_NAME/best/" "$OUT/best/" || { show_tail "$LOGS/rsync_down.log"; die "ray rsync-down of best/ failed"; }
for f in model.safetensors selection.json; do
  [ -s "$OUT/best/$f" ] || die "fetched best/ lacks $f"
done
"$PY" -c "import json, sys; json.load(open(sys.argv[1]))" "$OUT/best/selection.json" || die "best/selection.json is not JSON"
say "fetched best/ to $OUT/best: $(cd "$OUT/best" && ls | tr '\n' ' ')"

# ---------------------------------------------------------------- 8. ray down
begin "ray down"
kill -TERM -- "-$TUNNEL_PID" 2>/dev/null || true
wait "$TUNNEL_PID" 2>/dev/null || true
TUNNEL_PID=""
run_logged "$LOGS/ray_down.log" "${LENV[@]}" "$RAY" down -y "$RUN_CONFIG" || { show_tail "$LOGS/ray_down.log"; die "ray down failed"; }
CLUSTER_UP=0
for _ in $(seq 100); do [ -z "$(node_ray_procs)" ] && break; sleep 0.2; done
left=$(node_ray_procs)
[ -z "$left" ] || die "ray down left Ray processes running on the node: $left"
say "ray down stopped the head's Ray processes"
end_phase
say "PASSED"
