#!/bin/sh
# The stack's first step (Compose service `init`, run as root with only the capabilities this
# needs, then as `app`):
#  1. let the app user write the bind-mounted data/, artifacts/ and secrets/, whoever owns them on
#     the host (root in CI, uid 1000 on a laptop), without taking them from that owner: POSIX
#     ACLs grant the app user (and, for new files, the folder's owner) access; where the
#     filesystem has no ACLs, the folders are given to the app user instead;
#  2. as the app user: generate the secrets that are missing (API token, dashboard secret, Grafana
#     admin password; a value set in .env wins over the file), then let Grafana's user read its
#     password;
#  3. as the app user: build the reference data and train the first model if they are missing
#     (`ctloop init` reuses what exists).
set -eu

as_app() { setpriv --reuid=app --regid=app --init-groups "$@"; }

for dir in "$DATA_DIR" "$ARTIFACTS_DIR" "$SECRETS_DIR"; do
  mkdir -p "$dir"
  owner=$(stat -c %u "$dir")
  others=""  # secrets: nobody else, not even to list the folder
  [ "$dir" = "$SECRETS_DIR" ] && others="-m o::- -m d:o::-"
  # shellcheck disable=SC2086
  if setfacl -R -m u:app:rwX -m d:u:app:rwX -m "d:u:${owner}:rwX" -m d:m::rwX $others "$dir" 2>/dev/null; then
    echo "{\"event\": \"init_permissions\", \"dir\": \"$dir\", \"owner\": $owner, \"method\": \"acl\"}"
  else
    chown -R app:app "$dir"
    [ "$dir" = "$SECRETS_DIR" ] && chmod 0750 "$dir"
    echo "{\"event\": \"init_permissions\", \"dir\": \"$dir\", \"owner\": $owner, \"method\": \"chown\"}"
  fi
done

as_app python -m ctloop secrets
grafana_password="$SECRETS_DIR/grafana_admin_password"
# A password chosen in .env replaces the generated one (Grafana reads it when it first starts).
if [ -n "${GRAFANA_ADMIN_PASSWORD:-}" ]; then
  printf '%s\n' "$GRAFANA_ADMIN_PASSWORD" | as_app tee "$grafana_password" >/dev/null
fi
setfacl -m "u:${GRAFANA_UID:-472}:r" "$grafana_password" 2>/dev/null \
  || chown "${GRAFANA_UID:-472}" "$grafana_password"
setfacl -m "u:${GRAFANA_UID:-472}:x" "$SECRETS_DIR" 2>/dev/null || chmod o+x "$SECRETS_DIR"

exec setpriv --reuid=app --regid=app --init-groups python -m ctloop init
