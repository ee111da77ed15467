#!/bin/sh
# Replays every trace of tests/data through the entrowatchd of BUILD_DIR and
# the reference rules of rules.py; prints the side-by-side table and exits
# non-zero when acceptance fails (see side_by_side.py).
# Usage: bench/detection/run.sh BUILD_DIR [--only NAME...]
set -eu
if [ $# -lt 1 ]; then
  echo "usage: $0 BUILD_DIR [--only NAME...]" >&2
  exit 2
fi
build=$1
shift
here=$(dirname "$0")
exec /usr/bin/python3 "$here/side_by_side.py" --daemon "$build/src/daemon/entrowatchd" "$@"
