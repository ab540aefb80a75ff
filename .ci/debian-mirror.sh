#!/usr/bin/env bash
# Print the Debian mirror this machine's apt sources name (not its security or third-party ones);
# no mirror's name is written in the repository. Used by every stand-in image builder in .ci/.
set -euo pipefail
mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
  | grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -1 | tr -d ' ' | sed 's#/$##' || true)
if [ -z "$mirror" ]; then
  echo "no Debian mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d/" >&2
  exit 1
fi
echo "$mirror"
