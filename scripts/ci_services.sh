#!/usr/bin/env bash
# Install the Debian packages that the cluster smoke test (scripts/cluster_smoke.sh) needs:
# an SSH server for Ray's `local` provider, rsync for the launcher's file mounts, ss (iproute2).
# Idempotent and quiet: a no-op (well under a second) when everything is there.
# PostgreSQL's initdb/pg_ctl come with these machines; this script only reports where they are.
# Usage: bash scripts/ci_services.sh        (root, or sudo without a password)
set -euo pipefail

missing=()
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v rsync >/dev/null 2>&1 || missing+=(rsync)
command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
command -v ss >/dev/null 2>&1 || missing+=(iproute2)   # the smoke test lists the node's listening ports

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    echo "ci_services: need root (or passwordless sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  echo "ci_services: installing ${missing[*]}" >&2
  log=$(mktemp)
  # --no-install-recommends: no extra daemons. No init system runs here, so nothing starts
  # sshd on port 22 of every address: the smoke test starts its own, on 127.0.0.1 only.
  if ! { "${SUDO[@]}" apt-get update -qq && \
         "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "ci_services: apt-get failed (output above)" >&2
    exit 1
  fi
  rm -f "$log"
fi

if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "ci_services: note: PostgreSQL's initdb not found (not needed by the cluster smoke test)" >&2
fi
