#!/usr/bin/env bash
# Make the `postgres` image that k8s/overlays/production pins exist locally.
#
# CI machines cannot pull from a registry. This builds a stand-in from Debian bookworm's
# PostgreSQL of the same major version (Debian's minor release may differ from the tag's) the way
# .ci/prometheus-images.sh builds its stand-ins, laid out like the upstream image: the postgres
# user and group 999, the server's programs on PATH, PGDATA=/var/lib/postgresql/data, the socket
# in /var/run/postgresql, listen_addresses = '*' in the sample configuration that initdb copies,
# and an entrypoint that honours POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_PASSWORD_FILE,
# POSTGRES_DB and PGDATA (.ci/postgres-entrypoint.sh); then `docker import` under the upstream
# name. Only tests/k8s's Docker run of the production overlay uses it. On a normal machine the
# real image is pulled and none of this runs.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

# The pin, read from the manifest so that it is written once.
IMAGE=$(grep -oE 'postgres:[0-9]+\.[0-9]+-bookworm' k8s/overlays/production/postgres.yaml | head -1)
[ -n "$IMAGE" ] || { echo "no postgres:MAJOR.MINOR-bookworm image in k8s/overlays/production/postgres.yaml"; exit 1; }
MAJOR=${IMAGE#postgres:}
MAJOR=${MAJOR%%.*}

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "$IMAGE present"
  exit 0
elif docker pull -q "$IMAGE" >/dev/null 2>&1; then
  log "$IMAGE pulled"
  exit 0
fi

command -v debootstrap >/dev/null 2>&1 || {
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
}

log "building a stand-in for $IMAGE from Debian bookworm's postgresql-$MAJOR"
mirror=$(bash .ci/debian-mirror.sh)
rootfs=$(mktemp -d)
trap '$SUDO rm -rf "$rootfs"' EXIT
# debootstrap starts no daemon; Debian's own cluster (15/main) is created and removed below: the
# entrypoint makes the one the image runs, in PGDATA.
$SUDO debootstrap --variant=minbase --include="postgresql-$MAJOR" bookworm "$rootfs" "$mirror" >/dev/null
$SUDO chroot "$rootfs" sh -e -c "
  if getent passwd 999 >/dev/null || getent group 999 >/dev/null; then
    echo 'uid or gid 999 is taken in the stand-in' >&2; exit 1
  fi
  old_uid=\$(id -u postgres); old_gid=\$(id -g postgres)
  groupmod --gid 999 postgres
  usermod --uid 999 --gid 999 postgres
  find / -xdev -uid \"\$old_uid\" -exec chown -h postgres '{}' +
  find / -xdev -gid \"\$old_gid\" -exec chgrp -h postgres '{}' +
  rm -rf /var/lib/postgresql/$MAJOR /etc/postgresql/$MAJOR /var/log/postgresql/*.log
  sed -ri \"s!^#?(listen_addresses)\\s*=\\s*\\S+.*!\\1 = '*'!\" /usr/share/postgresql/$MAJOR/postgresql.conf.sample
  grep -q \"^listen_addresses = '\\*'\" /usr/share/postgresql/$MAJOR/postgresql.conf.sample
  mkdir -p /var/lib/postgresql/data /var/run/postgresql
  chown postgres:postgres /var/lib/postgresql /var/lib/postgresql/data /var/run/postgresql
  chmod 1777 /var/lib/postgresql/data
  chmod 3777 /var/run/postgresql
  rm -rf /usr/share/doc/* /usr/share/man/* /var/lib/apt/lists/* /var/cache/apt/*
"
$SUDO install -m 0755 .ci/postgres-entrypoint.sh "$rootfs/usr/local/bin/docker-entrypoint.sh"

# The server is the major version the pin names, or the stand-in would lie.
version=$($SUDO chroot "$rootfs" "/usr/lib/postgresql/$MAJOR/bin/postgres" --version)
case "$version" in *"PostgreSQL) $MAJOR."*) ;; *) echo "stand-in is not PostgreSQL $MAJOR: $version"; exit 1;; esac

$SUDO tar -C "$rootfs" -c . | docker import \
  --change "ENV PATH=/usr/lib/postgresql/$MAJOR/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --change 'ENV PGDATA=/var/lib/postgresql/data' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'VOLUME ["/var/lib/postgresql/data"]' \
  --change 'EXPOSE 5432' \
  --change 'ENTRYPOINT ["docker-entrypoint.sh"]' \
  --change 'CMD ["postgres"]' \
  - "$IMAGE" >/dev/null
log "$IMAGE stand-in built ($version): $(docker image inspect -f '{{.Size}}' "$IMAGE" | numfmt --to=iec)"
