#!/usr/bin/env bash
# CI step: does a stock Debian bookworm install p2pci with the project's own steps?
#
# Builds a bookworm rootfs with mmdebstrap holding python3, python3-venv, make, git and
# ca-certificates and nothing else (Debian's own Python 3.11.2, no compiler), copies the
# committed tree into it, and inside a chroot:
#   1. as a non-root user, `make venv` must stop with exit 2 and print one `apt-get install` line;
#   2. as root, `make venv` installs the missing Debian packages (a compiler, libgmp-dev,
#      python3-dev: libp2p 0.8.1 pins fastecdsa 2.3.2, which compiles) and the locked PyPI versions;
#   3. `.venv/bin/p2pci --help` runs, and `make unit` passes.
# PyPI and the Debian mirror are reached over the host network. The host's CA bundle and pip
# settings that matter (PIP_CERT, PIP_INDEX_URL, PIP_DEFAULT_TIMEOUT, proxies) are passed in, so
# the chroot reaches PyPI exactly as the host does; the host's local wheel directories are not.
# Needs root and mmdebstrap. STOCK_KEEP=1 keeps the rootfs for a look afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
suite=${STOCK_SUITE:-bookworm}
[ "$(id -u)" = 0 ] || { echo "ci-stock-debian: needs root (chroot, mmdebstrap)" >&2; exit 2; }

root=$(mktemp -d /tmp/p2pci-stock.XXXXXX)
mounted=()
cleanup() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done
  if [ "${STOCK_KEEP:-}" = 1 ]; then echo "ci-stock-debian: rootfs kept in $root" >&2; else rm -rf --one-file-system "$root"; fi
}
trap cleanup EXIT

t0=$(date +%s)
echo "== stock-debian: mmdebstrap $suite (python3 python3-venv make git ca-certificates)"
mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,make,git,ca-certificates \
  "$suite" "$root"
echo "== stock-debian: rootfs ready in $(($(date +%s) - t0)) s: $(chroot "$root" python3 --version)"
if chroot "$root" sh -c 'command -v gcc || command -v cc' >/dev/null; then
  echo "ci-stock-debian: the stock rootfs has a compiler; the test would prove nothing" >&2; exit 1
fi

# The committed tree (what a clone gives), owned by an ordinary user.
mkdir -p "$root/src"
git archive --format=tar HEAD | tar -x -C "$root/src"
chroot "$root" useradd --create-home --uid 4242 newcomer
chroot "$root" chown -R newcomer: /src

# Network and trust as on the host.
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
ca=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
cp -L "$ca" "$root/usr/local/share/host-ca.crt"
for d in proc sys dev; do
  mount --rbind "/$d" "$root/$d"; mount --make-rslave "$root/$d"; mounted+=("$root/$d")
done
envs=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
      PIP_CERT=/usr/local/share/host-ca.crt REQUESTS_CA_BUNDLE=/usr/local/share/host-ca.crt
      SSL_CERT_FILE=/usr/local/share/host-ca.crt PIP_DISABLE_PIP_VERSION_CHECK=1
      PIP_DEFAULT_TIMEOUT="${PIP_DEFAULT_TIMEOUT:-180}")
for v in PIP_INDEX_URL http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
  if [ -n "${!v:-}" ]; then envs+=("$v=${!v}"); fi
done
in_root() { chroot "$root" env -i "${envs[@]}" "$@"; }

echo "== stock-debian: as a non-root user, make venv must name the packages and stop"
set +e
out=$(in_root su newcomer -s /bin/sh -c 'cd /src && make venv' 2>&1)
rc=$?
set -e
printf '%s\n' "$out" | sed 's/^/   | /'
if [ $rc -eq 0 ] || ! printf '%s\n' "$out" | grep -q '^  apt-get install -y --no-install-recommends .*libgmp-dev'; then
  echo "ci-stock-debian: non-root make venv should stop with the apt-get line (rc=$rc)" >&2; exit 1
fi
[ ! -e "$root/src/.venv" ] || { echo "ci-stock-debian: non-root make venv went on anyway" >&2; exit 1; }

t1=$(date +%s)
echo "== stock-debian: as root, make venv (installs what it needs)"
in_root sh -c 'cd /src && make venv'
echo "== stock-debian: make venv took $(($(date +%s) - t1)) s"
in_root sh -c 'cd /src && .venv/bin/p2pci --help' | head -5
t2=$(date +%s)
echo "== stock-debian: make unit"
in_root sh -c 'cd /src && make unit PYTEST_ARGS="-p no:cacheprovider"'
echo "== stock-debian: unit tests took $(($(date +%s) - t2)) s; whole step $(($(date +%s) - t0)) s"
