#!/usr/bin/env bash
# Builds (once) a minimal Debian root holding one Slurm release's binary packages, for the
# releases Debian 12 does not ship. Usage: build-root.sh SUITE DIR   (SUITE: trixie | sid)
# The root is cached: a finished one carries a stamp file and is reused as it is.
set -euo pipefail
suite=$1 dir=$2
stamp="$dir/.maxwell-root-ready"
# A root from before jobs needed Python (@task.maxwell runs functions with the root's python3) is rebuilt.
if [ -f "$stamp" ] && [ -x "$dir/usr/bin/python3" ]; then
  echo "build-root: $suite root cached at $dir ($(cat "$stamp"))"
  exit 0
fi
rm -rf "$dir" "$dir.partial"
mkdir -p "$(dirname "$dir")"
echo "build-root: making a $suite root with Slurm in $dir (about a minute)"
mmdebstrap --mode=root --variant=apt --format=directory \
  --aptopt='Acquire::Check-Valid-Until "false"' \
  --include=slurmctld,slurmd,slurmdbd,slurmrestd,slurm-client,slurm-wlm-jwt-plugin,slurm-wlm-mysql-plugin,slurm-wlm-basic-plugins,python3 \
  "$suite" "$dir.partial" \
  "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $suite main" \
  >"$dir.log" 2>&1 || { echo "build-root: mmdebstrap for $suite failed, see $dir.log" >&2; tail -20 "$dir.log" >&2; exit 1; }
# Drop apt lists and caches: they are a third of the root and never used again.
rm -rf "$dir.partial/var/lib/apt/lists/"* "$dir.partial/var/cache/apt/"*
mv "$dir.partial" "$dir"
chroot "$dir" dpkg-query -W -f='${Version}' slurmctld >"$stamp"
echo "build-root: $suite root ready: Slurm $(cat "$stamp")"
