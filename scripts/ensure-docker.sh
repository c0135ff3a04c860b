#!/usr/bin/env bash
# Make sure a Docker engine answers. When none does and we are root, install
# Debian's docker.io (if dockerd is missing) and start dockerd in the background.
set -euo pipefail
if docker version >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "p2pci: no Docker engine answers and we are not root: start Docker (or add yourself to the docker group) and retry." >&2
  exit 2
fi
if ! command -v dockerd >/dev/null 2>&1; then
  echo "p2pci: installing Debian's docker.io ..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends docker.io >/dev/null
fi
echo "p2pci: starting dockerd in the background (log: /var/log/p2pci-dockerd.log) ..." >&2
nohup dockerd >/var/log/p2pci-dockerd.log 2>&1 &
for _ in $(seq 1 60); do
  if docker version >/dev/null 2>&1; then exit 0; fi
  sleep 1
done
echo "p2pci: dockerd did not answer within 60 s; see /var/log/p2pci-dockerd.log" >&2
exit 2
