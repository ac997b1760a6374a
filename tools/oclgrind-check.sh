#!/bin/sh
# Runs a test under oclgrind (the `oclgrind` meson test setup) and fails it
# when oclgrind reports anything: oclgrind itself exits with the program's
# status even after reporting out-of-bounds accesses, races or uninitialised
# reads, so its log decides.
log=$(mktemp "${TMPDIR:-/tmp}/m2pt-oclgrind.XXXXXX") || exit 1
oclgrind --data-races --uninitialized --log "$log" "$@"
rc=$?
if [ -s "$log" ]; then
  echo "oclgrind reported:" >&2
  cat "$log" >&2
  [ "$rc" -eq 0 ] && rc=1
fi
rm -f "$log"
exit "$rc"
