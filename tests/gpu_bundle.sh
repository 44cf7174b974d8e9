#!/usr/bin/env bash
# scripts/gpu-bundle: it builds without LLVM, holds what scripts/gpu-check --prebuilt runs and the
# libraries they load, and its binaries run on those (the test suite of a GPU itself is gpu-check's).
# Usage: tests/gpu_bundle.sh BUILD_DIR (unused: the bundle builds in a folder of its own)
set -uo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
scripts/gpu-bundle --build "$tmp/build" --out "$tmp/bundle" >"$tmp/log" 2>&1 || fail "scripts/gpu-bundle: $(tail -5 "$tmp/log")"
b=$tmp/bundle
for f in ponder pondercc tests/test_cuda_backend tests/test_cuda_library tests/test_cuda_plan BUILT lib/liblua5.4.so.0 lib/libcjson.so.1 \
  lib/libopenblas.so.0; do
  [[ -e $b/$f ]] || fail "the bundle has no $f: $(cd "$b" && find . -type f | tr '\n' ' ')"
done
ldd "$b/ponder" | grep -qi llvm && fail "the bundle's ponder loads LLVM: $(ldd "$b/ponder" | grep -i llvm)"
# every library a binary needs is the bundle's or the C library's own
for x in "$b/ponder" "$b/pondercc" "$b"/tests/*; do
  LD_LIBRARY_PATH=$b/lib ldd "$x" | awk '$2 == "=>" { print $3 }' | grep -v "^$b/lib/" |
    grep -Ev '/(libc|libm|libdl|libpthread|librt|libgcc_s|libstdc\+\+)\.so' >"$tmp/outside" &&
    fail "${x##*/} loads from outside the bundle: $(tr '\n' ' ' <"$tmp/outside")"
done
LD_LIBRARY_PATH=$b/lib "$b/tests/test_cuda_plan" >"$tmp/out" 2>&1 || fail "the bundle's test_cuda_plan: $(tail -3 "$tmp/out")"
LD_LIBRARY_PATH=$b/lib "$b/ponder" forward models/gpt2.lua --config tiny --backend interp >"$tmp/out" 2>&1 &&
  grep -q "p = " "$tmp/out" || fail "the bundle's ponder forward: $(tail -3 "$tmp/out")"
"$b/pondercc" models/gpt2.lua --config tiny -o "$tmp/x.so" 2>"$tmp/err" && fail "pondercc -o without LLVM succeeded"
grep -q "no LLVM backend (configured with -DPONDER_LLVM=OFF)" "$tmp/err" || fail "pondercc -o without LLVM: $(cat "$tmp/err")"
echo "gpu-bundle: $(du -sh "$b" | cut -f1), $(ls "$b/lib" | tr '\n' ' '); test_cuda_plan and ponder forward run on them"
