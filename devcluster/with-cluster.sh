#!/usr/bin/env bash
# Runs a command with the local Maxwell up. If this script brought the cluster up, it takes it
# down again when the command ends, pass or fail; a cluster that was already up stays up.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
started=0
if ! python3 "$here/cluster.py" is-up; then
  started=1
  trap 'python3 "$here/cluster.py" down' EXIT
  python3 "$here/cluster.py" up || exit $?
fi
"$@"
