#!/usr/bin/env bash
# Run the kernel tests with every C kernel built under a sanitizer (not part of CI).
#
#   bash tools/asan.sh                          # AddressSanitizer: kernel, GEMM, Winograd
#                                               # and executor tests
#   bash tools/asan.sh --ubsan                  # UndefinedBehaviorSanitizer instead
#   bash tools/asan.sh [--ubsan] tests/test_zoo.py  # or any test selection (pytest args)
#   ENGINE_SANITIZER=ubsan bash tools/asan.sh   # same as --ubsan
#
# Builds a scratch copy of the working tree (tracked and untracked, not ignored, files) at
# -O1 (ENGINE_DEBUG_BUILD) with
#   asan:  -fsanitize=address; libasan is preloaded into Python (which is not itself
#          instrumented); stops at the first invalid read or write.  Leak checking is off:
#          CPython's arenas report false leaks.
#   ubsan: -fsanitize=undefined -fno-sanitize-recover=all, and -fno-wrapv (CPython's own
#          flags carry -fwrapv, which would hide signed overflow): any undefined behaviour
#          (signed overflow, bad shift, misaligned access, out-of-bounds array index, ...)
#          aborts the run with a stack trace.
# (ASan / UBSan do not see inside AVX-512 masked loads and stores; the avx2 and scalar
# levels, which the kernel tests also run, do the same index arithmetic with plain ones.)
#
# Python: $PYTHON (else python3, else python) when it has Cython (3.x), numpy, setuptools,
# pytest and hypothesis; otherwise a virtual environment made from it is created (once,
# then reused) at $ENGINE_SANITIZE_VENV (default: .venv-sanitize in the repository,
# git-ignored) and they are installed into it with pip.
# Takes about 4 minutes to build and a few minutes to test on 2 cores.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

mode="${ENGINE_SANITIZER:-asan}"
tests=()
for a in "$@"; do
  case "$a" in
    --ubsan) mode=ubsan ;;
    --asan) mode=asan ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
               exit 0 ;;
    *) tests+=("$a") ;;
  esac
done
case "$mode" in
  asan|ubsan) ;;
  *) echo "tools/asan.sh: unknown sanitizer '$mode' (asan or ubsan)" >&2; exit 2 ;;
esac

# -- a Python with the build and test requirements ------------------------------------------
need='import Cython, numpy, setuptools, pytest, hypothesis
assert int(Cython.__version__.split(".")[0]) >= 3, "Cython >= 3 needed"'
base=""
if [ -n "${PYTHON:-}" ]; then
  base="$PYTHON"
else
  for cand in python3 python; do
    if command -v "$cand" >/dev/null 2>&1; then base="$cand"; break; fi
  done
fi
if [ -z "$base" ] || ! command -v "$base" >/dev/null 2>&1; then
  echo "tools/asan.sh: no python found (set PYTHON)" >&2
  exit 2
fi
py=""
if "$base" -c "$need" 2>/dev/null; then
  py="$(command -v "$base")"
else
  venv="${ENGINE_SANITIZE_VENV:-$root/.venv-sanitize}"
  if [ ! -x "$venv/bin/python" ]; then
    echo "tools/asan.sh: creating $venv (Cython, numpy, setuptools, pytest, hypothesis)" >&2
    "$base" -m venv "$venv"
  fi
  py="$venv/bin/python"
  if ! "$py" -c "$need" 2>/dev/null; then
    "$py" -m pip install -q "cython>=3" numpy setuptools pytest hypothesis >&2
  fi
  "$py" -c "$need"
fi
echo "tools/asan.sh: $mode build with $py" >&2

# -- scratch copy and sanitized build -------------------------------------------------------
cc="${CC:-gcc}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$root" && git ls-files -z -co --exclude-standard |
   while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
   xargs -0 cp --parents -t "$work")
cd "$work"
if [ "$mode" = asan ]; then
  san_cflags="-fsanitize=address -fno-omit-frame-pointer"
  san_ldflags="-fsanitize=address"
  preload="$("$cc" -print-file-name=libasan.so)"
  export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
else
  san_cflags="-fsanitize=undefined -fno-sanitize-recover=all -fno-wrapv -fno-omit-frame-pointer"
  san_ldflags="-fsanitize=undefined"
  preload="$("$cc" -print-file-name=libubsan.so)"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
fi
# ($CC, when set, reaches the build too: the runtime library must be that compiler's)
ENGINE_DEBUG_BUILD=1 CFLAGS="$san_cflags" LDFLAGS="$san_ldflags" \
  "$py" setup.py build_ext --inplace -q

# -- tests ----------------------------------------------------------------------------------
if [ ${#tests[@]} -eq 0 ]; then
  tests=(tests/test_kernels_cpu.py tests/test_gemm.py tests/test_executor.py)
  [ -f tests/test_winograd.py ] && tests+=(tests/test_winograd.py)
fi
LD_PRELOAD="$preload" "$py" -m pytest -q -p no:cacheprovider "${tests[@]}"
