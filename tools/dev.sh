#!/usr/bin/env bash
# The developer's entry point (README "Quick start").
#   tools/dev.sh test    install what is missing, build, run the suite on the
#                        default device and again under oclgrind
#   tools/dev.sh bench   install what is missing, build, m2pt-bench --quick on
#                        every OpenCL device
#   tools/dev.sh build   install what is missing and build
# Idempotent: a second run only rebuilds what changed. Debian/Ubuntu, as root
# or a user with sudo. BUILD_DIR overrides the build directory (build/).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD_DIR:-$root/build}

packages=(
  gcc g++ pkg-config meson ninja-build python3
  ocl-icd-opencl-dev opencl-headers pocl-opencl-icd clinfo
  libclblast-dev libcmocka-dev libxxhash-dev libopenblas-dev libdnnl-dev libcjson-dev
  oclgrind clang
)

install_missing() {
  local missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
      missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "dev.sh: installing ${missing[*]}" >&2
  local sudo=()
  [ "$(id -u)" -ne 0 ] && sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}"
}

configure_and_build() {
  if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" "$root" -Dwerror=true
  fi
  meson compile -C "$build"
}

# One closing line over both runs (default device and oclgrind), read from
# meson's JSON test logs.
summarize_tests() {
  python3 - "$build/meson-logs/testlog.json" "$build/meson-logs/testlog-oclgrind.json" <<'PY'
import json, sys
counts = {"passed": 0, "failed": 0, "skipped": 0}
for path in sys.argv[1:]:
    with open(path) as f:
        for line in f:
            result = json.loads(line)["result"]
            key = "passed" if result in ("OK", "EXPECTEDFAIL") else \
                  "skipped" if result == "SKIP" else "failed"
            counts[key] += 1
print("tests: %(passed)d passed, %(failed)d failed, %(skipped)d skipped" % counts)
PY
}

cmd=${1:-}
case "$cmd" in
  test)
    install_missing
    configure_and_build
    meson test -C "$build" --print-errorlogs
    meson test -C "$build" --setup=oclgrind --print-errorlogs
    summarize_tests
    ;;
  bench)
    install_missing
    configure_and_build
    "$build/bench/m2pt-bench" --quick
    ;;
  build)
    install_missing
    configure_and_build
    ;;
  *)
    echo "usage: tools/dev.sh test|bench|build" >&2
    exit 2
    ;;
esac
