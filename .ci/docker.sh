#!/usr/bin/env bash
# Make a Docker engine answer on this machine, with Compose v2, and make `python:3.11-slim`
# exist locally.
#
# CI machines have no running engine and cannot pull from a registry. This installs Debian's
# docker.io, adds the Compose v2 CLI plugin (`docker compose`, what the README tells users to run)
# from Debian trixie's docker-compose package when it is missing, starts dockerd, and, only when
# the base image is missing, builds a stand-in for python:3.11-slim with debootstrap (Debian
# bookworm's Python is 3.11 too). The stand-in trusts this machine's CA bundle so that pip inside
# `docker build` reaches PyPI. The project's Dockerfiles know nothing of this: on a normal machine
# the real image is pulled. No mirror's name is written here: it is read from apt's sources.
set -euo pipefail

log() { printf '\n== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

# The Debian mirror this machine's apt sources name (not its security or third-party ones).
mirror=$(bash "$(dirname "$0")/debian-mirror.sh")

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v xz >/dev/null 2>&1 || need+=(xz-utils)
command -v curl >/dev/null 2>&1 || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  log "apt-get install ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! docker compose version >/dev/null 2>&1; then
  log "Compose v2 CLI plugin from Debian trixie's docker-compose package"
  arch=$(dpkg --print-architecture)
  work=$(mktemp -d)
  curl -fsSL "$mirror/dists/trixie/main/binary-$arch/Packages.xz" | xz -dc > "$work/Packages"
  deb=$(awk '/^Package: docker-compose$/{found=1} found && /^Filename:/{print $2; exit}' "$work/Packages")
  [ -n "$deb" ] || { echo "docker-compose is not in trixie's package list at $mirror" >&2; exit 1; }
  curl -fsSL -o "$work/compose.deb" "$mirror/$deb"
  dpkg -x "$work/compose.deb" "$work/root"
  $SUDO install -D -m 0755 "$work/root/usr/libexec/docker/cli-plugins/docker-compose" \
    /usr/local/lib/docker/cli-plugins/docker-compose
  rm -rf "$work"
fi
docker compose version

if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  $SUDO sh -c 'nohup dockerd >/var/log/dockerd.log 2>&1 &'
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { tail -50 /var/log/dockerd.log; echo "dockerd did not start"; exit 1; }
fi

BASE=python:3.11-slim
if docker image inspect "$BASE" >/dev/null 2>&1; then
  log "$BASE present"
  exit 0
fi
if docker pull -q "$BASE" >/dev/null 2>&1; then
  log "$BASE pulled"
  exit 0
fi

log "building a stand-in for $BASE with debootstrap"
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
$SUDO debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
  bookworm "$rootfs" "$mirror" >/dev/null
rm -f "$rootfs"/usr/lib/python3.11/EXTERNALLY-MANAGED
ln -sf python3 "$rootfs/usr/bin/python"
ln -sf pip3 "$rootfs/usr/bin/pip"
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
# The stand-in's pip uses this machine's index settings and trusts its CA bundle.
mkdir -p "$rootfs/etc"
{
  echo "[global]"
  echo "cert = /etc/ssl/certs/ca-certificates.crt"
  echo "disable-pip-version-check = true"
} > "$rootfs/etc/pip.conf"
$SUDO tar -C "$rootfs" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  - "$BASE" >/dev/null
log "$BASE stand-in built: $(docker image inspect -f '{{.Size}}' "$BASE" | numfmt --to=iec)"
