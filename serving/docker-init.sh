#!/bin/sh
# The stack's first step (Compose service `init`, run as root, then as `app`):
#  1. let the app user write the bind-mounted data/ and artifacts/, whoever owns them on the host
#     (root in CI, uid 1000 on a laptop), without taking them from that owner: POSIX ACLs grant
#     the app user (and, for new files, the folder's owner) read/write; where the filesystem has
#     no ACLs, the folders are given to the app user instead;
#  2. as the app user: build the reference data and train the first model if they are missing
#     (`ctloop init` reuses what exists).
set -eu

for dir in "$DATA_DIR" "$ARTIFACTS_DIR"; do
  mkdir -p "$dir"
  owner=$(stat -c %u "$dir")
  if setfacl -R -m u:app:rwX -m d:u:app:rwX -m "d:u:${owner}:rwX" -m d:m::rwX "$dir" 2>/dev/null; then
    echo "{\"event\": \"init_permissions\", \"dir\": \"$dir\", \"owner\": $owner, \"method\": \"acl\"}"
  else
    chown -R app:app "$dir"
    echo "{\"event\": \"init_permissions\", \"dir\": \"$dir\", \"owner\": $owner, \"method\": \"chown\"}"
  fi
done

exec setpriv --reuid=app --regid=app --init-groups python -m ctloop init
