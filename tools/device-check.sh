#!/usr/bin/env bash
# The GPU check (README "Running on a GPU"): m2pt-info, the whole test suite and
# m2pt-bench --quick --kernels on a bare x86-64 machine that has an NVIDIA GPU and its
# driver but nothing of ours: no package registry, no network, no OpenCL ICD
# loader, CLBlast, OpenBLAS, cmocka, cJSON or xxHash, maybe no python3, maybe
# not even Debian's C library.
#
#   tools/device-check.sh prepare         here, once (apt and the network): build
#                                         build-device/ and fetch the .debs of every
#                                         run-time library its binaries load into
#                                         device-debs/; both are to be carried
#   tools/device-check.sh [run] [OUTDIR]  there, in a copy of the tree: unpack the
#                                         .debs into a private prefix, point the ICD
#                                         loader at NVIDIA's driver, run everything;
#                                         logs and bench.json go to OUTDIR (default
#                                         $OUT, else device-check-out/)
#   tools/device-check.sh selftest        what this machine can check of `run`, with
#                                         PoCL standing in for the GPU (a meson test)
#
# run's options (the defaults are for the GPU machine):
#   --pocl            PoCL stands in for the GPU (ICD libpocl.so.2, device cpu)
#   --icd LIB         the OpenCL driver library (default libnvidia-opencl.so.1)
#   --device SEL      M2PT_DEVICE for every program (default nvidia)
#   --loader MODE     auto (default): the machine's C library when our binaries
#                     and the .debs' libraries link against it, else bundled:
#                     Debian's libc6 from the .debs, as their ELF interpreter
#   --budget SECONDS  wall-clock for the whole run (default 480); tests stop early
#                     enough to leave m2pt-bench at least 150 s
#   --tests A,B       only these tests (meson's names; '' for none)
#   --no-bench        skip m2pt-bench
#   --suite NAME      m2pt-bench runs this suite (repeatable; default all)
#   --build DIR       the build to run (default build-device)
#   --debs DIR        the .debs and their manifest (default device-debs)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# `run` needs bash 4 (associative arrays, ${var,,}); anything newer than 2009.
if [ "${BASH_VERSINFO[0]}" -lt 4 ]; then
  echo "device-check: needs bash 4 or later" >&2
  exit 1
fi

die() {
  printf 'device-check: %s\n' "$*" >&2
  exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

# Milliseconds since the epoch; EPOCHREALTIME is bash 5, whole seconds before.
now_ms() {
  if [ -n "${EPOCHREALTIME:-}" ]; then
    local t=${EPOCHREALTIME/[.,]/}
    echo $((10#$t / 1000))
  else
    echo $(($(date +%s) * 1000))
  fi
}
fmt_s() { printf '%d.%d s' $(($1 / 1000)) $(($1 % 1000 / 100)); }

is_elf() { [ "$(head -c 4 "$1" 2>/dev/null | tail -c 3)" = ELF ]; }

# ---------------------------------------------------------------------------
# The test manifest: meson's test list (meson-info/intro-tests.json) with this
# machine's paths turned into @SOURCE@, @BUILD@ and @PYTHON@, one plain file
# per test that bash reads without python or meson, plus the offset of each
# executable's ELF interpreter path (for --loader bundled).
write_manifest() { # $1 build dir, $2 destination
  python3 - "$1" "$2" <<'PY'
import json, os, re, shutil, struct, sys

build, dest = sys.argv[1], sys.argv[2]
info = json.load(open(os.path.join(build, "meson-info", "meson-info.json")))
src_root = os.path.normpath(info["directories"]["source"])
build_root = os.path.normpath(info["directories"]["build"])
tests = json.load(open(os.path.join(build, "meson-info", "intro-tests.json")))

def tokens(p):
    # Lexically normalised first: meson writes build/../tests/x.py, and `run`
    # runs a copy of the build that has no ../tests beside it.
    if not p.startswith("/"):
        return p
    p = os.path.normpath(p)
    for r, t in ((build_root, "@BUILD@"), (src_root, "@SOURCE@")):
        if p == r or p.startswith(r + "/"):
            return t + p[len(r):]
    return p

shutil.rmtree(os.path.join(dest, "tests"), ignore_errors=True)
os.makedirs(os.path.join(dest, "tests"))
n = 0
for t in tests:
    if t["name"] == "device-check":  # this machine's check of this script
        continue
    cmd = list(t["cmd"])
    if re.fullmatch(r"python[0-9.]*", os.path.basename(cmd[0])):
        cmd[0] = "@PYTHON@"
    lines = ["name=" + t["name"], "timeout=%d" % (t.get("timeout") or 0),
             "workdir=" + tokens(t.get("workdir") or build_root)]
    for k, v in sorted(t["env"].items()):
        lines.append("env=%s=%s" % (k, ":".join(tokens(x) for x in v.split(":"))))
    lines += ["arg=" + tokens(a) for a in cmd]
    n += 1
    with open(os.path.join(dest, "tests", "%03d" % n), "w") as f:
        f.write("\n".join(lines) + "\n")

# PT_INTERP of every executable: where to write another interpreter's path.
with open(os.path.join(dest, "interp"), "w") as out:
    for d, dirs, files in os.walk(build_root):
        dirs[:] = sorted(x for x in dirs if not x.endswith(".p") and not x.startswith("meson-"))
        for name in sorted(files):
            path = os.path.join(d, name)
            # Links (a library's soname) name files seen anyway; an old
            # one left dangling by a rebuild must not stop the walk.
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            with open(path, "rb") as f:
                head = f.read(64)
                if head[:4] != b"\x7fELF" or head[4] != 2:
                    continue
                phoff, = struct.unpack_from("<Q", head, 0x20)
                phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
                for i in range(phnum):
                    f.seek(phoff + i * phentsize)
                    ph = f.read(phentsize)
                    if struct.unpack_from("<I", ph, 0)[0] == 3:  # PT_INTERP
                        off, = struct.unpack_from("<Q", ph, 8)
                        size, = struct.unpack_from("<Q", ph, 32)
                        out.write("%s %d %d\n" % (os.path.relpath(path, build_root), off, size))
with open(os.path.join(dest, "roots"), "w") as f:
    f.write("source=%s\nbuild=%s\n" % (src_root, build_root))
print("device-check: %d tests in %s" % (n, dest))
PY
}

# ---------------------------------------------------------------------------
# prepare

# The package that installed a file. usrmerge means ldd's /lib/... may be
# recorded as /usr/lib/... or the other way round, and ldd shows symlinks.
pkg_of() {
  local c p out
  for c in "$1" "$(readlink -f "$1")"; do
    for p in "$c" "${c#/usr}" "/usr$c"; do
      out=$(dpkg -S "$p" 2>/dev/null | grep -v '^diversion' | head -n 1) || true
      if [ -n "$out" ]; then
        out=${out%%: *}
        printf '%s\n' "${out%%, *}"
        return 0
      fi
    done
  done
  return 1
}

# Every package that ships a shared library the ELF files under $1 load
# (ldd's closure), so the list follows the build instead of being kept by hand.
runtime_packages() {
  local b=$1 f lib pkg
  local -A pkgs=([libc6]=1) # libc6 always: its ld.so is --loader bundled's interpreter
  while IFS= read -r -d '' f; do
    is_elf "$f" || continue
    while IFS= read -r lib; do
      case $lib in "$b"/*) continue ;; esac
      pkg=$(pkg_of "$lib") || die "no package ships $lib (needed by $f)"
      pkgs[${pkg%%:*}]=1
    done < <(ldd "$f" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3}')
  done < <(find "$b" \( -name '*.p' -o -name 'meson-*' \) -prune -o -type f \
    \( -perm -u+x -o -name '*.so*' \) -print0)
  printf '%s\n' "${!pkgs[@]}" | sort
}

role_of() {
  case $1 in
    libc6) echo libc ;;             # only with --loader bundled
    libstdc++6 | libgcc-s1) echo gccrt ;; # the machine's own may serve instead
    *) echo lib ;;
  esac
}

prepare() {
  local build=$root/build-device debs=$root/device-debs
  if ! have apt-get || ! have dpkg-query; then
    die "prepare needs Debian's apt and dpkg"
  fi
  BUILD_DIR=$build "$root/tools/dev.sh" build
  write_manifest "$build" "$build/device-check"

  mkdir -p "$debs"
  local apt_opts=(-q)
  # As root, apt downloads as _apt, which cannot write into our folder.
  [ "$(id -u)" -eq 0 ] && apt_opts+=(-o APT::Sandbox::User=root)
  local manifest=$debs/manifest.new name ver arch file tmp
  : >"$manifest"
  for name in $(runtime_packages "$build"); do
    read -r ver arch < <(dpkg-query -W -f='${Version} ${Architecture}\n' "$name" | head -n 1)
    file=$(find "$debs" -maxdepth 1 -name "${name}_${ver//:/%3a}_${arch}.deb" | head -n 1)
    if [ -z "$file" ]; then
      tmp=$(mktemp -d "$debs/.download.XXXXXX")
      # The installed version, which the build linked against; the archive's
      # current one if that is gone (same release, same ABI).
      if ! (cd "$tmp" && apt-get download "${apt_opts[@]}" "$name:$arch=$ver"); then
        echo "device-check: $name $ver is no longer in the archive; taking its candidate" >&2
        (cd "$tmp" && apt-get download "${apt_opts[@]}" "$name:$arch")
      fi
      file=$(find "$tmp" -name '*.deb' | head -n 1)
      [ -n "$file" ] || die "apt-get download $name wrote no .deb"
      mv "$file" "$debs/"
      rmdir "$tmp"
      file=$debs/$(basename "$file")
    fi
    echo "$(basename "$file") $(role_of "$name")" >>"$manifest"
  done
  mv "$manifest" "$debs/manifest"
  # .debs of an earlier build that this one no longer loads.
  for file in "$debs"/*.deb; do
    grep -q "^$(basename "$file") " "$debs/manifest" || rm -f "$file"
  done

  echo
  echo "device-check: the .debs (device-debs/manifest):"
  sed 's/^/  /' "$debs/manifest"
  # What travels: the tree as git sees it, plus the two carried folders.
  local tree b d
  tree=$(cd "$root" && git ls-files -z --cached --others --exclude-standard |
    du -cb --files0-from=- 2>/dev/null | tail -n 1 | cut -f1) || tree=0
  b=$(du -sb "$build" | cut -f1)
  d=$(du -sb "$debs" | cut -f1)
  printf 'device-check: to copy: tree %d KiB + build-device %d KiB + device-debs %d KiB = %d KiB (limit 65536)\n' \
    $((tree / 1024)) $((b / 1024)) $((d / 1024)) $(((tree + b + d) / 1024))
  [ $((tree + b + d)) -lt $((60 * 1024 * 1024)) ] ||
    echo "device-check: WARNING: over 60 MiB, close to the 64 MiB the machine takes" >&2
  echo "device-check: carry build-device and device-debs, then run there:"
  # shellcheck disable=SC2016 # $OUT is the other machine's
  echo '  tools/device-check.sh run "$OUT"'
}

# ---------------------------------------------------------------------------
# Unpacking a .deb without dpkg: it is an ar archive of debian-binary,
# control.tar.* and data.tar.*; only data.tar.* matters.

# "name offset size" of each ar member, with coreutils only.
ar_members() {
  local f=$1 total off=8 hdr name size
  [ "$(head -c 7 "$f")" = '!<arch>' ] || return 1
  total=$(wc -c <"$f")
  while [ $((off + 60)) -le "$total" ]; do
    hdr=$(dd if="$f" bs=1 skip="$off" count=60 2>/dev/null)
    name=${hdr:0:16}
    name=${name%%[ /]*}
    size=${hdr:48:10}
    size=${size%% *}
    echo "$name $((off + 60)) $size"
    off=$((off + 60 + size + size % 2))
  done
}

unpack_shell() { # $1 .deb, $2 destination
  local name off size dec
  while read -r name off size; do
    case $name in
      data.tar.xz) dec=(xz -dc) ;;
      data.tar.gz) dec=(gzip -dc) ;;
      data.tar.zst) dec=(zstd -dc) ;;
      data.tar.bz2) dec=(bzip2 -dc) ;;
      data.tar) dec=(cat) ;;
      *) continue ;;
    esac
    have "${dec[0]}" || return 1
    # tail is cut short by head once it has the member: not an error.
    { tail -c +"$((off + 1))" "$1" || true; } | head -c "$size" | "${dec[@]}" | tar -xf - -C "$2"
    return 0
  done < <(ar_members "$1")
  return 1
}

unpack_python() { # $1 .deb, $2 destination
  python3 - "$1" "$2" <<'PY'
import io, sys, tarfile
with open(sys.argv[1], "rb") as f:
    if f.read(8) != b"!<arch>\n":
        sys.exit("not an ar archive: " + sys.argv[1])
    while True:
        hdr = f.read(60)
        if len(hdr) < 60:
            sys.exit("no data.tar in " + sys.argv[1])
        name, size = hdr[:16].decode().strip().rstrip("/"), int(hdr[48:58])
        data = f.read(size)
        f.read(size % 2)
        if name.startswith("data.tar"):
            break
with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as t:
    # Python 3.12+ filters members by default; a .deb's absolute symlinks are
    # expected and fixed by the caller.
    if hasattr(tarfile, "fully_trusted_filter"):
        t.extractall(sys.argv[2], filter="fully_trusted")
    else:
        t.extractall(sys.argv[2])
PY
}

# Unpacks $1 into the private prefix $2 with whatever the machine has:
# dpkg-deb, else ar parsed by coreutils + tar + the decompressor, else python.
# M2PT_DEVCHECK_UNPACK=dpkg|shell|python forces one (the selftest does).
unpack_deb() {
  local deb=$1 dest=$2 how=${M2PT_DEVCHECK_UNPACK:-auto}
  mkdir -p "$dest"
  case $how in
    dpkg) dpkg-deb -x "$deb" "$dest" ;;
    shell) unpack_shell "$deb" "$dest" ;;
    python) unpack_python "$deb" "$dest" ;;
    auto)
      if have dpkg-deb && dpkg-deb -x "$deb" "$dest" 2>/dev/null; then
        return 0
      elif have tar && unpack_shell "$deb" "$dest" 2>/dev/null; then
        return 0
      elif have python3 && unpack_python "$deb" "$dest"; then
        return 0
      fi
      echo "device-check: cannot unpack $deb: no dpkg-deb, no tar with its decompressor, no python3" >&2
      return 1
      ;;
    *) die "M2PT_DEVCHECK_UNPACK: dpkg, shell, python or auto" ;;
  esac
}

# A .deb's absolute symlinks point into / once unpacked elsewhere: into the
# machine's own files, or nowhere. Point them into the prefix.
fix_symlinks() {
  local l t
  while IFS= read -r -d '' l; do
    t=$(readlink "$l")
    case $t in /*) ln -sfn "$1$t" "$l" ;; esac
  done < <(find "$1" -type l -print0)
}

# The directories of a prefix that hold shared libraries, one a line (not
# share/, where man pages and gdb scripts have .so in their names, nor libc6's
# gconv and audit modules, which are no one's dependencies).
lib_dirs() {
  [ -d "$1" ] || return 0
  find "$1" \( -name share -o -name gconv -o -name audit \) -prune -o \( -type f -o -type l \) \
    \( -name '*.so' -o -name '*.so.[0-9]*' \) -print | sed 's|/[^/]*$||' | sort -u
}

# The path of a shared library, by file name: the dynamic linker's cache, the
# ICD files the driver may have installed, the usual directories, and at last
# a bounded search (container runtimes bind-mount driver files anywhere).
find_lib() {
  local name=$1 ldc f d
  case $name in
    /*)
      [ -e "$name" ] && echo "$name"
      return
      ;;
  esac
  ldc=$(command -v ldconfig || true)
  for f in /sbin/ldconfig /usr/sbin/ldconfig; do
    [ -z "$ldc" ] && [ -x "$f" ] && ldc=$f
  done
  if [ -n "$ldc" ]; then
    # Lines like "	libfoo.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libfoo.so.1".
    local n rest
    while read -r n rest; do
      if [ "$n" = "$name" ] && [[ $rest == *x86-64*" => "* ]] && [ -e "${rest##* => }" ]; then
        echo "${rest##* => }"
        return
      fi
    done < <("$ldc" -p 2>/dev/null)
  fi
  for f in /etc/OpenCL/vendors/*.icd; do
    [ -f "$f" ] || continue
    d=$(head -n 1 "$f")
    case $d in /*"/$name"*) [ -e "$d" ] && echo "$d" && return ;; esac
  done
  local IFS=:
  for d in ${LD_LIBRARY_PATH:-} /usr/lib/x86_64-linux-gnu /lib/x86_64-linux-gnu /usr/lib64 \
    /lib64 /usr/lib /lib /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/wsl/lib \
    /usr/local/lib64 /usr/local/lib; do
    [ -n "$d" ] && [ -e "$d/$name" ] && echo "$d/$name" && return
  done
  f=$(timeout 60 find / \( -path /proc -o -path /sys -o -path /dev \) -prune -o \
    -name "$name" -print 2>/dev/null | head -n 1) || true
  [ -n "$f" ] && echo "$f"
}

# ---------------------------------------------------------------------------
# run

# Globals for the EXIT trap, which runs after run()'s locals are gone.
work="" ldlink="" tee_pid=""
run_cleanup() {
  [ -n "$work" ] && rm -rf "$work"
  [ -n "$ldlink" ] && rm -rf "$ldlink"
  # Let tee write the last lines of run.log before the script is gone.
  if [ -n "$tee_pid" ]; then
    exec >&- 2>&-
    wait "$tee_pid" 2>/dev/null || true
  fi
}

run() {
  local out="" icd=libnvidia-opencl.so.1 sel=nvidia loader=auto budget=480
  local only="" only_set=0 bench=1 build=$root/build-device debs=$root/device-debs
  local bench_suites=()
  while [ $# -gt 0 ]; do
    case $1 in
      --pocl) icd=libpocl.so.2 sel=cpu ;;
      --icd) icd=$2; shift ;;
      --device) sel=$2; shift ;;
      --loader) loader=$2; shift ;;
      --budget) budget=$2; shift ;;
      --tests) only=$2; only_set=1; shift ;;
      --no-bench) bench=0 ;;
      --suite) bench_suites+=(--suite "$2"); shift ;;
      --build) build=$2; shift ;;
      --debs) debs=$2; shift ;;
      -*) die "unknown option $1 (see the top of $0)" ;;
      *) out=$1 ;;
    esac
    shift
  done
  case $loader in auto | system | bundled) ;; *) die "--loader auto|system|bundled" ;; esac
  [ -n "$out" ] || out=${OUT:-$root/device-check-out}
  [ -d "$build/meson-info" ] || die "no build in $build: run 'tools/device-check.sh prepare' first"
  [ -f "$debs/manifest" ] || die "no $debs/manifest: run 'tools/device-check.sh prepare' first"
  mkdir -p "$out/tests"
  out=$(cd "$out" && pwd)
  local t0 deadline
  t0=$(now_ms)
  deadline=$((t0 + budget * 1000))
  # Everything printed also goes to run.log, which comes back even if the
  # machine's limit cuts the run short.
  exec > >(tee "$out/run.log") 2>&1
  tee_pid=$!

  # The private prefix lives beside the tree, whose file system is known to
  # allow executing (a /tmp mounted noexec would refuse the libraries).
  work=$(mktemp -d "$root/.device-check.XXXXXX")
  trap run_cleanup EXIT

  echo "== m2pt device check: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), budget ${budget} s"
  {
    echo "uname: $(uname -a)"
    [ -r /etc/os-release ] && grep -E '^(PRETTY_NAME|VERSION)=' /etc/os-release
    echo "C library: $(getconf GNU_LIBC_VERSION 2>/dev/null || ldd --version 2>/dev/null | head -n 1 || echo unknown)"
    echo "bash $BASH_VERSION; python3: $(python3 --version 2>/dev/null || echo none)"
    echo "cpus: $(nproc 2>/dev/null || echo ?)"
    echo "tools: $(for t in dpkg-deb tar xz ldconfig timeout nvidia-smi; do have "$t" && printf '%s ' "$t"; done)"
    echo "OpenCL vendors: $(cd /etc/OpenCL/vendors 2>/dev/null && echo ./*)"
    echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
    if have nvidia-smi; then
      echo "GPU: $(timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total \
        --format=csv,noheader 2>&1 | head -n 4 | tr '\n' ' ')"
      timeout 30 nvidia-smi 2>&1 || true
    fi
  } >"$out/machine.txt" 2>&1
  grep -E '^(uname:|PRETTY_NAME=|C library:|bash |GPU:)' "$out/machine.txt" || true

  # A copy of the build: --loader bundled rewrites its executables, and the
  # carried tree stays as it came.
  cp -a "$build" "$work/build"
  local wb=$work/build mf=$work/build/device-check
  if [ ! -d "$mf/tests" ]; then
    have python3 || die "$build has no device-check manifest (run prepare) and there is no python3 to write one"
    write_manifest "$build" "$work/manifest" >/dev/null
    mf=$work/manifest
  fi
  echo "tests of the build made in $(sed -n 's/^build=//p' "$mf/roots"), run in $wb"

  # The .debs, each into the prefix of its role.
  local t1 file role
  t1=$(now_ms)
  while read -r file role; do
    unpack_deb "$debs/$file" "$work/$role" || die "unpacking $file failed"
  done <"$debs/manifest"
  local r
  for r in lib gccrt libc; do
    [ -d "$work/$r" ] && fix_symlinks "$work/$r"
  done
  echo "unpacked $(wc -l <"$debs/manifest") .debs in $(fmt_s $(($(now_ms) - t1)))"

  # The ICD loader reads the driver's name from *.icd files in one folder:
  # ours holds exactly the driver under test (the machine may have none).
  local icd_path
  icd_path=$(find_lib "$icd")
  [ -n "$icd_path" ] || {
    echo "device-check: cannot find the OpenCL driver $icd" | tee -a "$out/machine.txt"
    (ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null || true) | grep -iE 'nvidia|cuda|opencl' >>"$out/machine.txt" || true
    exit 1
  }
  mkdir -p "$work/vendors"
  echo "$icd_path" >"$work/vendors/device.icd"
  echo "OpenCL driver: $icd_path, device selector $sel"

  # Which C library: the machine's when every executable resolves every
  # library with it (first with our libstdc++, then with the machine's), else
  # Debian's, as the interpreter of patched executables.
  local -a exes=()
  local rel off size
  while read -r rel off size; do exes+=("$rel"); done <"$mf/interp"
  local lib_p gcc_p libc_p
  lib_p=$(lib_dirs "$work/lib" | tr '\n' ':')
  gcc_p=$(lib_dirs "$work/gccrt" | tr '\n' ':')
  libc_p=$(lib_dirs "$work/libc" | tr '\n' ':')
  local tail_p="$wb/lib:${icd_path%/*}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  local libpath="" mode=""

  probe() { # $1 LD_LIBRARY_PATH, $2 log; 0 when every executable resolves
    local e o ok=0
    for e in "${exes[@]}"; do
      if ! o=$(env LD_TRACE_LOADED_OBJECTS=1 LD_LIBRARY_PATH="$1" "$wb/$e" 2>&1) ||
        grep -q 'not found' <<<"$o"; then
        ok=1
        printf '%s:\n%s\n' "$e" "$o" >>"$2"
      fi
    done
    return $ok
  }
  if [ "$loader" != bundled ]; then
    if probe "$lib_p$gcc_p$tail_p" "$out/probe-system.txt"; then
      libpath=$lib_p$gcc_p$tail_p mode="system C library, bundled libstdc++"
    elif probe "$lib_p$tail_p" "$out/probe-system-gccrt.txt"; then
      libpath=$lib_p$tail_p mode="system C library and libstdc++"
    elif [ "$loader" = system ]; then
      die "with the machine's C library some libraries do not resolve: see probe-system*.txt"
    fi
  fi
  if [ -z "$libpath" ]; then
    # Debian's ld.so as every executable's interpreter, through a short link:
    # the new path must fit where /lib64/ld-linux-x86-64.so.2 was.
    local ldso
    ldso=$(find "$work/libc" -name 'ld-linux-x86-64.so.2' -type f | head -n 1)
    [ -n "$ldso" ] || die "no ld-linux-x86-64.so.2 in the libc6 .deb"
    local d
    for d in /tmp /dev/shm /var/tmp; do
      ldlink=$(mktemp -d "$d/ldXXXXXX" 2>/dev/null) && break
    done
    [ -n "$ldlink" ] || die "no short writable directory for the interpreter link"
    ln -s "$ldso" "$ldlink/l"
    while read -r rel off size; do
      [ "${#ldlink}" -lt $((size - 2)) ] || die "interpreter path $ldlink/l too long"
      { printf '%s' "$ldlink/l"; head -c $((size - ${#ldlink} - 2)) /dev/zero; } |
        dd of="$wb/$rel" bs=1 seek="$off" conv=notrunc 2>/dev/null
    done <"$mf/interp"
    libpath=$libc_p$gcc_p$lib_p$tail_p mode="bundled C library (Debian's ld.so as interpreter)"
    probe "$libpath" "$out/probe-bundled.txt" ||
      echo "device-check: some libraries do not resolve even so: see probe-bundled.txt"
  fi
  echo "libraries: $mode"
  env LD_TRACE_LOADED_OBJECTS=1 LD_LIBRARY_PATH="$libpath" "$wb/tools/m2pt-info" >"$out/libs.txt" 2>&1 || true

  # Our programs get the prefix through env at their own exec, so no system
  # program (python3, timeout) ever loads a C library not its own.
  local -a base_env=(-u OCL_ICD_FILENAMES "OCL_ICD_VENDORS=$work/vendors" "M2PT_DEVICE=$sel")
  local -a pyrun=()
  local python
  python=$(command -v python3 || true)
  if [ -n "$python" ]; then
    pyrun=("$python")
    if [ -n "$ldlink" ]; then
      # Under the bundled C library python runs on it too, since its children
      # are ours; that takes the interpreter's ELF file, not a wrapper script
      # (pyenv's shims are).
      python=$("$python" -c 'import sys; print(sys.executable)' 2>/dev/null) || python=""
      pyrun=()
      if [ -n "$python" ] && is_elf "$python"; then
        pyrun=("$ldlink/l" "$python")
      fi
    fi
  fi
  # A writable cache: m2pt's binary cache and the driver's follow XDG/HOME.
  if ! { [ -n "${HOME:-}" ] && [ -w "$HOME" ]; }; then
    base_env+=("XDG_CACHE_HOME=$work/cache" "HOME=$work")
  fi

  echo
  echo "== m2pt-info"
  local info_rc=0
  timeout -k 5 120 env "${base_env[@]}" LD_LIBRARY_PATH="$libpath" "$wb/tools/m2pt-info" \
    >"$out/info.txt" 2>&1 || info_rc=$?
  cat "$out/info.txt"
  if [ $info_rc -ne 0 ] || ! grep -q '^\* ' "$out/info.txt"; then
    [ "$info_rc" -ne 0 ] || info_rc=1
    echo "device-check: m2pt-info found no device; the ICD loader's trace is in icd-debug.txt"
    timeout -k 5 60 env "${base_env[@]}" OCL_ICD_DEBUG=15 LD_LIBRARY_PATH="$libpath" \
      "$wb/tools/m2pt-info" >"$out/icd-debug.txt" 2>&1 || true
  fi

  echo
  echo "== tests"
  local -A want=()
  local n
  if [ $only_set -eq 1 ]; then
    local -a names=()
    IFS=, read -r -a names <<<"$only"
    for n in "${names[@]+"${names[@]}"}"; do want[$n]=1; done
  fi
  local passed=0 failed=0 skipped=0 notrun=0 bench_reserve=150000
  local tf line name timeout workdir status rc ms t
  local -a tenv targs failures=()
  subst() {
    local s=${1//@BUILD@/"$wb"}
    s=${s//@SOURCE@/"$root"}
    printf '%s' "$s"
  }
  for tf in "$mf"/tests/*; do
    name="" timeout=30 workdir="" tenv=() targs=()
    while IFS= read -r line; do
      case $line in
        name=*) name=${line#name=} ;;
        timeout=*) timeout=${line#timeout=} ;;
        workdir=*) workdir=$(subst "${line#workdir=}") ;;
        env=LD_LIBRARY_PATH=*) tenv+=("LD_LIBRARY_PATH=$(subst "${line#env=LD_LIBRARY_PATH=}"):$libpath") ;;
        env=*) tenv+=("$(subst "${line#env=}")") ;;
        arg=*) targs+=("$(subst "${line#arg=}")") ;;
      esac
    done <"$tf"
    if [ $only_set -eq 1 ] && [ -z "${want[$name]:-}" ]; then
      continue
    fi
    [ "${timeout:-0}" -gt 0 ] || timeout=600
    t=$(((deadline - bench_reserve * bench - $(now_ms)) / 1000))
    if [ "$t" -lt 10 ]; then
      printf '  %-8s %-22s\n' "not run" "$name (out of time)"
      notrun=$((notrun + 1))
      continue
    fi
    [ "$t" -lt "$timeout" ] && timeout=$t
    if [ "${targs[0]}" = @PYTHON@ ]; then
      if [ ${#pyrun[@]} -eq 0 ]; then
        printf '  %-8s %-22s\n' skipped "$name (no python3)"
        skipped=$((skipped + 1))
        continue
      fi
      targs=("${pyrun[@]}" "${targs[@]:1}")
    fi
    if ! grep -q LD_LIBRARY_PATH= <<<"${tenv[*]:-}"; then
      tenv+=("LD_LIBRARY_PATH=$libpath")
    fi
    t=$(now_ms)
    rc=0
    {
      echo "command: ${targs[*]}"
      echo "env: ${tenv[*]} OCL_ICD_VENDORS=$work/vendors M2PT_DEVICE=$sel; timeout ${timeout} s"
      echo
    } >"$out/tests/$name.log"
    # MALLOC_PERTURB_ as meson test sets it: fresh allocations are not zero.
    (cd "$workdir" && exec timeout -k 10 "$timeout" env "${base_env[@]}" \
      "MALLOC_PERTURB_=$((RANDOM % 255 + 1))" "${tenv[@]}" "${targs[@]}") \
      >>"$out/tests/$name.log" 2>&1 </dev/null || rc=$?
    ms=$(($(now_ms) - t))
    case $rc in
      0) status=ok passed=$((passed + 1)) ;;
      77) status=skipped skipped=$((skipped + 1)) ;;
      124 | 137) status=TIMEOUT failed=$((failed + 1)) failures+=("$name") ;;
      *) status="FAIL($rc)" failed=$((failed + 1)) failures+=("$name") ;;
    esac
    printf '  %-8s %-22s %s\n' "$status" "$name" "$(fmt_s "$ms")"
  done
  for n in "${failures[@]+"${failures[@]}"}"; do
    echo
    echo "-- $n (last 40 lines of tests/$n.log)"
    tail -n 40 "$out/tests/$n.log"
  done
  local summary="tests: $passed passed, $failed failed, $skipped skipped, $notrun not run"
  echo "$summary"

  local bench_status="not run (--no-bench)"
  if [ $bench -eq 1 ]; then
    echo
    echo "== m2pt-bench --quick --kernels"
    t=$(((deadline - $(now_ms)) / 1000))
    if [ "$t" -lt 30 ]; then
      bench_status="not run (out of time)"
    else
      rc=0
      t1=$(now_ms)
      timeout -k 10 "$t" env "${base_env[@]}" LD_LIBRARY_PATH="$libpath" \
        "$wb/bench/m2pt-bench" --quick --kernels "${bench_suites[@]+"${bench_suites[@]}"}" \
        --device "$sel" --json "$out/bench.json" \
        >"$out/bench.txt" 2>"$out/bench-progress.txt" </dev/null || rc=$?
      cat "$out/bench.txt"
      case $rc in
        0) bench_status="ok in $(fmt_s $(($(now_ms) - t1))), bench.json" ;;
        124 | 137) bench_status="TIMEOUT after ${t} s" ;;
        *)
          bench_status="FAIL($rc)"
          tail -n 20 "$out/bench-progress.txt"
          ;;
      esac
    fi
  fi

  local total
  total=$(fmt_s $(($(now_ms) - t0)))
  {
    echo "device: $(grep -m 1 '^\* ' "$out/info.txt" || echo none)"
    echo "libraries: $mode"
    echo "m2pt-info: $([ "$info_rc" -eq 0 ] && echo ok || echo "FAIL($info_rc)")"
    echo "$summary${failures[0]:+ (failed: ${failures[*]})}"
    echo "bench: $bench_status"
    echo "total: $total"
  } >"$out/summary.txt"
  echo
  echo "== summary"
  cat "$out/summary.txt"
  [ "$info_rc" -eq 0 ] && [ "$failed" -eq 0 ] && [ "$notrun" -eq 0 ] &&
    case $bench_status in ok* | "not run (--no-bench)") true ;; *) false ;; esac
}

# ---------------------------------------------------------------------------
# selftest: `run` with PoCL standing in for the GPU and .debs built here from
# this machine's own libOpenCL.so.1 and C library, so no network is needed.

selftest() {
  local build=""
  while [ $# -gt 0 ]; do
    case $1 in
      --build) build=$2; shift ;;
      *) die "selftest: unknown argument $1" ;;
    esac
    shift
  done
  [ -n "$build" ] || build=$root/build
  # Under oclgrind or valgrind (meson's other setups) this is no device test.
  if [ "${M2PT_TEST_SMALL:-}" = 1 ]; then
    echo "selftest: skipped under the oclgrind/valgrind setups"
    exit 77
  fi
  local t
  for t in dpkg-deb python3 ldd; do
    have "$t" || { echo "selftest: skipped, no $t"; exit 77; }
  done
  local pocl opencl
  pocl=$(find_lib libpocl.so.2)
  [ -n "$pocl" ] || { echo "selftest: skipped, no PoCL"; exit 77; }
  opencl=$(ldd "$build/tools/m2pt-info" | awk '$1 == "libOpenCL.so.1" {print $3}')
  [ -n "$opencl" ] || die "selftest: m2pt-info loads no libOpenCL.so.1"

  local tmp
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/m2pt-devcheck-selftest.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" EXIT
  fails=0
  check() { # $1 what, then the command
    local what=$1
    shift
    if "$@"; then
      echo "ok   $what"
    else
      echo "FAIL $what"
      fails=$((fails + 1))
    fi
  }
  check_run() { # $1 what, $2 log, then run's arguments; the log when it fails
    local what=$1 log=$2
    shift 2
    if "$0" run "$@" >"$log" 2>&1; then
      echo "ok   $what"
    else
      echo "FAIL $what"
      fails=$((fails + 1))
      cat "$log"
    fi
  }
  not_grep() { ! grep -q "$@"; }

  # Two .debs: the ICD loader (xz, as Debian's), with an absolute symlink as
  # Debian's packages have, and the C library (gzip).
  local p=$tmp/pkg-ocl ma=usr/lib/x86_64-linux-gnu
  mkdir -p "$p/DEBIAN" "$p/$ma"
  printf 'Package: m2pt-selftest-opencl\nVersion: 1\nArchitecture: amd64\nMaintainer: m2pt\nDescription: selftest\n' >"$p/DEBIAN/control"
  cp -L "$opencl" "$p/$ma/libOpenCL.so.1"
  ln -s "/$ma/libOpenCL.so.1" "$p/$ma/libOpenCL.so"
  mkdir -p "$tmp/debs"
  dpkg-deb -Zxz --root-owner-group --build "$p" "$tmp/debs/opencl.deb" >/dev/null
  p=$tmp/pkg-libc
  mkdir -p "$p/DEBIAN" "$p/lib/x86_64-linux-gnu"
  sed 's/opencl/libc/' "$tmp/pkg-ocl/DEBIAN/control" >"$p/DEBIAN/control"
  local l
  for l in libc.so.6 libm.so.6 libpthread.so.0 libdl.so.2 librt.so.1 ld-linux-x86-64.so.2; do
    [ -e "/lib/x86_64-linux-gnu/$l" ] && cp -L "/lib/x86_64-linux-gnu/$l" "$p/lib/x86_64-linux-gnu/"
  done
  dpkg-deb -Zgzip --root-owner-group --build "$p" "$tmp/debs/libc.deb" >/dev/null
  printf 'opencl.deb lib\nlibc.deb libc\n' >"$tmp/debs/manifest"

  # The three ways of unpacking give the same tree; afterwards the absolute
  # symlink points into the prefix.
  local how
  for how in dpkg shell python; do
    if [ $how = shell ] && ! have xz; then
      echo "skip unpack by $how (no xz)"
      continue
    fi
    check "unpack by $how" env M2PT_DEVCHECK_UNPACK=$how "$0" _unpack "$tmp/debs/opencl.deb" "$tmp/u-$how"
    [ $how = dpkg ] ||
      check "... the same tree as dpkg-deb's" diff -r --no-dereference "$tmp/u-dpkg" "$tmp/u-$how"
  done
  "$0" _fixlinks "$tmp/u-dpkg"
  check "absolute symlink points into the prefix" \
    test "$(readlink "$tmp/u-dpkg/$ma/libOpenCL.so")" = "$tmp/u-dpkg/$ma/libOpenCL.so.1"

  # run with the machine's C library: libOpenCL.so.1 comes from the prefix,
  # the only platform is the one our ICD folder names, and the tests find the
  # tree they run in.
  local tests=header-c11-pedantic,readme-example,example-linear,io
  local o=$tmp/out-system
  check_run "run --pocl --loader system" "$tmp/run-system.log" --pocl --loader system \
    --no-bench --tests "$tests" --build "$build" --debs "$tmp/debs" "$o"
  check "libOpenCL.so.1 resolves in the prefix" \
    grep -Eq 'libOpenCL\.so\.1 => [^ ]*/\.device-check\.[^/]+/lib/' "$o/libs.txt"
  check "m2pt-info sees PoCL alone" \
    test "$(grep -c '^platform ' "$o/info.txt")" = 1 -a \
    "$(grep -c 'Portable Computing Language' "$o/info.txt")" = 1
  check "4 tests passed" grep -q '^tests: 4 passed, 0 failed' "$o/summary.txt"

  # An ICD folder naming a library that is no OpenCL driver: no platform at
  # all, so the loader reads our folder and not /etc/OpenCL/vendors.
  o=$tmp/out-noicd
  if "$0" run --icd "$(find_lib libm.so.6)" --device cpu --no-bench --tests '' \
    --build "$build" --debs "$tmp/debs" "$o" >"$tmp/run-noicd.log" 2>&1; then
    check "run with no driver fails" false
  else
    check "run with no driver fails" true
  fi
  check "... and m2pt-info sees no platform" not_grep '^platform ' "$o/info.txt"

  # run with Debian's ld.so (here: this machine's copy) as the interpreter of
  # patched executables; python runs on it too.
  o=$tmp/out-bundled
  check_run "run --pocl --loader bundled" "$tmp/run-bundled.log" --pocl --loader bundled \
    --no-bench --tests "$tests" --build "$build" --debs "$tmp/debs" "$o"
  check "libc.so.6 resolves in the prefix" \
    grep -Eq 'libc\.so\.6 => [^ ]*/\.device-check\.[^/]+/libc/' "$o/libs.txt"
  check "4 tests passed" grep -q '^tests: 4 passed, 0 failed' "$o/summary.txt"
  check "the build run from is left unpatched" grep -q /lib64/ld-linux-x86-64.so.2 "$build/tools/m2pt-info"

  [ $fails -eq 0 ] && echo "selftest: all passed" && return 0
  echo "selftest: $fails failed"
  return 1
}

case ${1:-run} in
  prepare) prepare ;;
  run) [ $# -gt 0 ] && shift; run "$@" ;;
  selftest) shift; selftest "$@" ;;
  _unpack) unpack_deb "$2" "$3" ;; # for selftest
  _fixlinks) fix_symlinks "$2" ;;
  -h | --help | help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
  -*) run "$@" ;;
  *)
    if [ $# -eq 1 ]; then run "$1"; else
      echo "usage: tools/device-check.sh prepare | [run] [options] [OUTDIR] | selftest" >&2
      exit 2
    fi
    ;;
esac
