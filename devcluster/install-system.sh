#!/usr/bin/env bash
# Installs the Debian packages the local Maxwell needs. Idempotent: skips apt when all are present.
set -euo pipefail
PKGS=(slurmctld slurmd slurmdbd slurmrestd slurm-client slurm-wlm-jwt-plugin slurm-wlm-mysql-plugin
      munge mariadb-server nginx-light mmdebstrap debian-archive-keyring openssl curl ca-certificates)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-system: all Debian packages present"
  exit 0
fi
echo "install-system: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
