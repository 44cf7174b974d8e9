# Shared by the command-line test scripts (sourced after they set $build):
# the tools, a temporary folder removed on exit, and fail/run, which count
# failures in $fails instead of stopping at the first.
ponder=$build/ponder
pondercc=$build/pondercc
if [[ ! -x $ponder || ! -x $pondercc ]]; then
  echo "SKIP: $ponder or $pondercc is not built"
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
# run: the command must succeed; its output is left in $tmp/out and $tmp/err
run() { "$@" >"$tmp/out" 2>"$tmp/err" || fail "exit $?: $*: $(tail -c 400 "$tmp/err")"; }
