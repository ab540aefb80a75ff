#!/usr/bin/env bash
# Make `prom/prometheus` and `prom/alertmanager` exist locally, at the tags docker-compose.yml pins.
#
# CI machines cannot pull from a registry. Debian bookworm packages the same programs at the same
# versions (prometheus 2.42.0, prometheus-alertmanager 0.25.0); this builds stand-ins from them the
# way .ci/docker.sh builds python:3.11-slim: debootstrap a minimal bookworm with the packages, lay
# it out like the upstream images (/bin/prometheus, /bin/alertmanager, data in /prometheus and
# /alertmanager owned by nobody, run as nobody), and `docker import` it under the upstream names.
# docker-compose.yml gives each program's path and flags, so both images run the same command.
# On a normal machine the real images are pulled and none of this runs.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

# The pins, read from docker-compose.yml so that they are written once.
PROMETHEUS=$(grep -oE 'prom/prometheus:v[0-9.]+' docker-compose.yml | head -1)
ALERTMANAGER=$(grep -oE 'prom/alertmanager:v[0-9.]+' docker-compose.yml | head -1)

missing=()
for image in "$PROMETHEUS" "$ALERTMANAGER"; do
  if docker image inspect "$image" >/dev/null 2>&1; then
    log "$image present"
  elif docker pull -q "$image" >/dev/null 2>&1; then
    log "$image pulled"
  else
    missing+=("$image")
  fi
done
[ ${#missing[@]} -gt 0 ] || exit 0

command -v debootstrap >/dev/null 2>&1 || {
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
}

log "building stand-ins for ${missing[*]} from Debian bookworm's packages"
mirror=$(bash .ci/debian-mirror.sh)
rootfs=$(mktemp -d)
trap '$SUDO rm -rf "$rootfs"' EXIT
# wget: the health checks' probe (the upstream images have busybox's).
$SUDO debootstrap --variant=minbase --include=prometheus,prometheus-alertmanager,wget \
  bookworm "$rootfs" "$mirror" >/dev/null
$SUDO sh -e -c "
  cd '$rootfs'
  ln -sf prometheus-alertmanager usr/bin/alertmanager      # /bin is /usr/bin (merged /usr)
  mkdir -p prometheus alertmanager etc/alertmanager
  cp etc/prometheus/alertmanager.yml etc/alertmanager/alertmanager.yml
  chown 65534:65534 prometheus alertmanager
  rm -rf usr/share/doc/* usr/share/man/* var/lib/apt/lists/* var/cache/apt/*
"
# Both programs were checked: the versions the pins name, or the stand-in would lie.
prom_version=$($SUDO chroot "$rootfs" /bin/prometheus --version 2>&1 | head -1)
am_version=$($SUDO chroot "$rootfs" /bin/alertmanager --version 2>&1 | head -1)
case "$prom_version" in *"version ${PROMETHEUS##*:v}"*) ;; *) echo "stand-in is not ${PROMETHEUS}: $prom_version"; exit 1;; esac
case "$am_version" in *"version ${ALERTMANAGER##*:v}"*) ;; *) echo "stand-in is not ${ALERTMANAGER}: $am_version"; exit 1;; esac

common=(--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' --change 'USER nobody')
for image in "${missing[@]}"; do
  case "$image" in
    prom/prometheus:*)
      $SUDO tar -C "$rootfs" -c . | docker import "${common[@]}" \
        --change 'WORKDIR /prometheus' --change 'EXPOSE 9090' --change 'VOLUME ["/prometheus"]' \
        --change 'ENTRYPOINT ["/bin/prometheus"]' \
        --change 'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]' \
        - "$image" >/dev/null ;;
    prom/alertmanager:*)
      $SUDO tar -C "$rootfs" -c . | docker import "${common[@]}" \
        --change 'WORKDIR /alertmanager' --change 'EXPOSE 9093' --change 'VOLUME ["/alertmanager"]' \
        --change 'ENTRYPOINT ["/bin/alertmanager"]' \
        --change 'CMD ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"]' \
        - "$image" >/dev/null ;;
  esac
  log "$image stand-in built: $(docker image inspect -f '{{.Size}}' "$image" | numfmt --to=iec)"
done
