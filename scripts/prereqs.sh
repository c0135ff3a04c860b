#!/usr/bin/env bash
# The Debian packages a step needs, installed by name when we are root.
#
#   scripts/prereqs.sh venv   # build the venv: python3-venv, a C compiler, libgmp-dev, python3-dev
#                             # (libp2p 0.8.1 pins fastecdsa 2.3.2, which has no wheel and compiles)
#   scripts/prereqs.sh run    # make demo / make test: + docker.io, busybox-static (the image build
#                             # copies the static busybox), mmdebstrap, diffoscope, iproute2
#   scripts/prereqs.sh ci     # .ci/run: + git, ca-certificates, iptables (namespace tests),
#                             # nodejs and npm (the interop client; any Node >= 20 on PATH will do)
#
# Root: says what it installs, then `apt-get install`s exactly the missing packages.
# Not root: prints the one `apt-get install` line to run and exits 2.
# Not Debian (no dpkg-query): checks nothing and says so (P2PCI_SKIP_PREREQS=1 does the same).
set -euo pipefail

step=${1:-venv}
case "$step" in
  venv) pkgs=(python3-venv python3-dev gcc libc6-dev libgmp-dev make) ;;
  run) pkgs=(python3-venv python3-dev gcc libc6-dev libgmp-dev make
             docker.io busybox-static mmdebstrap diffoscope iproute2) ;;
  ci) pkgs=(python3-venv python3-dev gcc libc6-dev libgmp-dev make
            docker.io busybox-static mmdebstrap diffoscope iproute2 git ca-certificates
            iptables nodejs npm) ;;  # iptables: the namespace tests; nodejs, npm: tests/interop
  *) echo "usage: $0 venv|run|ci" >&2; exit 2 ;;
esac

if [ "${P2PCI_SKIP_PREREQS:-}" = 1 ]; then exit 0; fi
if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "p2pci: not a Debian system: not checking packages; needed (Debian names): ${pkgs[*]}" >&2
  exit 0
fi

missing=()
for p in "${pkgs[@]}"; do
  # A Docker engine from elsewhere (docker-ce) is as good as Debian's docker.io.
  if [ "$p" = docker.io ] && { command -v dockerd >/dev/null 2>&1 || docker version >/dev/null 2>&1; }; then
    continue
  fi
  # A Node.js from elsewhere (NodeSource's nodejs bundles npm, and conflicts with Debian's npm).
  if [ "$p" = nodejs ] && command -v node >/dev/null 2>&1; then continue; fi
  if [ "$p" = npm ] && command -v npm >/dev/null 2>&1; then continue; fi
  if ! dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi

line="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" != 0 ]; then
  echo "p2pci: missing Debian packages (step: $step). Run as root, then retry:" >&2
  echo "  $line" >&2
  exit 2
fi
echo "p2pci: installing Debian packages (step: $step): ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "p2pci: installed ${missing[*]}" >&2
