#!/usr/bin/env bash
# Runs a command with the local Maxwell up. If this script brought the cluster up, it takes it
# down again when the command ends, pass or fail; a cluster that was already up stays up, and so
# does one that is partly up (a fault test may have stopped one daemon for a moment): it is someone
# else's, and `up` only fills in what is missing.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
started=0
if python3 "$here/cluster.py" is-running; then
  python3 "$here/cluster.py" is-up || python3 "$here/cluster.py" up || exit $?
else
  started=1
  trap 'python3 "$here/cluster.py" down' EXIT
  python3 "$here/cluster.py" up || exit $?
fi
"$@"
