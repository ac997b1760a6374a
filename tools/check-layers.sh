#!/usr/bin/env bash
# Fails when a layer of lib/ includes one above it (README "Design": common
# <- core <- gemm <- ops <- nn <- train, io <- common, and nn also reads io), or when
# common or io include OpenCL; their build without OpenCL (lib/meson.build)
# checks that part too, this catches a header that compiles anyway.
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
forbid common 'm2pt/(io|context|tensor|ops|gemm|linear|attention|ffn|block|model|opencl)\.h' \
  "lib/common uses no API header but status.h"
forbid io '(\.\./)*(core|gemm|ops|nn|train)/' "lib/io uses lib/common only"
forbid core '(\.\./)*(gemm|ops|nn|io|train)/|clblast|cblas' "lib/core knows no GEMM backend or layer above"
forbid gemm '(\.\./)*(ops|nn|io|train)/' "lib/gemm sits below ops"
forbid ops '(\.\./)*(nn|io|train)/' "lib/ops sits below nn"
forbid nn '(\.\./)*train/' "lib/nn sits below train"

[ "$status" -eq 0 ] && echo "check-layers: every layer includes only those below it"
exit "$status"
