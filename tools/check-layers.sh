#!/usr/bin/env bash
# Fails when lib/common or lib/io include OpenCL or a layer above their own
# (README "Design"; the arrows: common <- core <- gemm <- ops <- nn, and
# io <- common only). Their build without OpenCL (lib/meson.build) checks
# the OpenCL part too; this catches a core/ header that compiles anyway.
#   tools/check-layers.sh [LIB_DIR]   (default: the lib/ beside this script)
set -euo pipefail
lib=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../lib" && pwd)}

status=0
# forbid LAYER PATTERN WHY: LAYER's sources must not include PATTERN.
forbid() {
  local layer=$1 pattern=$2 why=$3 hits
  [ -d "$lib/$layer" ] || return 0
  if hits=$(grep -nE "^[[:space:]]*#[[:space:]]*include[[:space:]]*[<\"]($pattern)" \
      -r --include='*.c' --include='*.h' "$lib/$layer"); then
    printf '%s\n' "$hits" | sed "s|^$lib/|lib/|; s|\$|   <- $why|" >&2
    status=1
  fi
}

opencl='CL/|OpenCL/|clblast|m2pt/opencl\.h|(\.\./)*(core|gemm)/cl\.h'
forbid common "$opencl" "lib/common uses no OpenCL"
forbid common '(\.\./)*(core|gemm|ops|nn|io|train)/' "lib/common depends on nothing"
forbid io "$opencl" "lib/io uses no OpenCL"
forbid io '(\.\./)*(core|gemm|ops|nn|train)/' "lib/io uses lib/common only"

[ "$status" -eq 0 ] && echo "check-layers: lib/common and lib/io include no OpenCL and no higher layer"
exit "$status"
