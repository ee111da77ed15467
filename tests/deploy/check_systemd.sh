#!/usr/bin/env bash
# systemd-analyze verify of deploy/systemd/entrowatchd.service. verify exits 0
# on many warnings (unknown keys, bad values are "ignored"), so its stderr is
# inspected too: any line about our unit fails the check. ExecStart is pointed
# at an executable that exists here (verify checks it), keeping every other
# line as shipped. Usage: check_systemd.sh UNIT [DAEMON_BINARY]
set -euo pipefail
unit=$1
binary=${2:-}
[ -x "$binary" ] || binary=/bin/true
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed "s|^ExecStart=/usr/bin/entrowatchd|ExecStart=$binary|" "$unit" > "$work/entrowatchd.service"
grep -q "^ExecStart=$binary " "$work/entrowatchd.service"
rc=0
systemd-analyze verify "$work/entrowatchd.service" 2> "$work/stderr" || rc=$?
# Lines about the container (no PID 1 systemd) or other units are not ours.
if grep -E "entrowatchd\.service|$work" "$work/stderr"; then
  echo "systemd-analyze verify reported problems in the unit (above)"
  exit 1
fi
if [ "$rc" -ne 0 ]; then
  cat "$work/stderr"
  echo "systemd-analyze verify exited $rc"
  exit 1
fi
echo "systemd-analyze verify: OK ($(grep -c '^[A-Za-z]' "$unit") settings, stderr clean for the unit)"
