#!/usr/bin/env bash
# Make `kubectl` (1.32, the version k8s/ is validated for) answer on this machine: it renders the
# kustomize overlays offline in make test (tests/k8s). No cluster is needed or started.
#
# Debian trixie packages kubectl 1.32 as a static binary; like .ci/docker.sh does for Compose,
# this fetches the .deb from the Debian mirror this machine's apt sources name (never written
# here) and unpacks it with dpkg -x into /usr/local/bin. A kubectl already on PATH is kept if it
# is 1.32.
set -euo pipefail

log() { printf '\n== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
WANT="v1.32."

if command -v kubectl >/dev/null 2>&1 && kubectl version --client 2>/dev/null | grep -q "Client Version: $WANT"; then
  log "kubectl present: $(kubectl version --client | head -1)"
  exit 0
fi

need=()
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v xz >/dev/null 2>&1 || need+=(xz-utils)
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

log "kubectl from Debian trixie's kubectl package"
mirror=$(bash "$(dirname "$0")/debian-mirror.sh")
arch=$(dpkg --print-architecture)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
curl -fsSL "$mirror/dists/trixie/main/binary-$arch/Packages.xz" | xz -dc > "$work/Packages"
deb=$(awk '/^Package: kubectl$/{found=1} found && /^Filename:/{print $2; exit}' "$work/Packages")
[ -n "$deb" ] || { echo "kubectl is not in trixie's package list at $mirror" >&2; exit 1; }
curl -fsSL -o "$work/kubectl.deb" "$mirror/$deb"
dpkg -x "$work/kubectl.deb" "$work/root"
binary=$(find "$work/root" -type f -name kubectl -perm -u+x | head -1)
[ -n "$binary" ] || { echo "no kubectl binary in $deb" >&2; exit 1; }
$SUDO install -D -m 0755 "$binary" /usr/local/bin/kubectl
hash -r
/usr/local/bin/kubectl version --client | grep -q "Client Version: $WANT" \
  || { echo "trixie's kubectl is not 1.32: $(/usr/local/bin/kubectl version --client)" >&2; exit 1; }
log "$(/usr/local/bin/kubectl version --client | head -1)"
