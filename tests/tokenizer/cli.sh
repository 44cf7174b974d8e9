#!/usr/bin/env bash
# The tokenizer commands of `ponder`: tokenize (and --decode), tokenizer
# train/info, prepare; their --help, one-line errors and exit codes.
# Usage: tests/tokenizer/cli.sh BUILD_DIR   (run from the repository root)
set -u
build=${1:?usage: cli.sh BUILD_DIR}
ponder=$build/ponder
if [[ ! -x $ponder ]]; then
  echo "SKIP: $ponder is not built (the tokenizer CLI test needs it)"
  exit 77
fi
fx=tests/tokenizer/fixtures
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
# expect CODE CMD...: runs CMD, checks its exit status, keeps stdout/stderr in $tmp/out, $tmp/err
expect() {
  local want=$1; shift
  "$@" >"$tmp/out" 2>"$tmp/err"
  local got=$?
  [[ $got == "$want" ]] || fail "exit $got (want $want): $*: $(head -c 300 "$tmp/err")"
}
one_line_error() { # the error is one line and names the command
  [[ $(wc -l <"$tmp/err") == 1 ]] || fail "error is not one line: $(cat "$tmp/err")"
  grep -q "^ponder $1" "$tmp/err" || fail "error does not name 'ponder $1': $(cat "$tmp/err")"
}

# --- help and usage errors ---
for c in tokenize prepare tokenizer; do
  expect 0 "$ponder" $c --help
  grep -q "usage: ponder $c" "$tmp/out" || fail "$c --help has no usage line"
done
expect 2 "$ponder" tokenize
one_line_error tokenize
expect 2 "$ponder" tokenize --tokenizer "$fx/tiny_bytelevel/tokenizer.json" --bogus
expect 1 "$ponder" tokenize --tokenizer /nonexistent.json </dev/null
one_line_error tokenize
expect 1 "$ponder" tokenize --tokenizer "$fx/vectors/gpt2.jsonl" </dev/null
one_line_error tokenize

# --- tokenize and decode ---
tok=$fx/tiny_bytelevel/tokenizer.json
printf 'Hello there, world!\n  Two spaces\tand a tab. 🎉' >"$tmp/text"
expect 0 "$ponder" tokenize --tokenizer "$tok" <"$tmp/text"
cp "$tmp/out" "$tmp/ids"
[[ $(wc -l <"$tmp/ids") == 1 ]] || fail "encode output is not one line"
grep -Eq '^[0-9]+( [0-9]+)*$' "$tmp/ids" || fail "encode output is not ids: $(cat "$tmp/ids")"
expect 0 "$ponder" tokenize --tokenizer "$tok" --decode <"$tmp/ids"
cmp -s "$tmp/out" "$tmp/text" || fail "decode(encode(text)) != text"
expect 0 "$ponder" tokenize --tokenizer "$tok" --eos <"$tmp/text"
[[ $(awk '{print $NF}' "$tmp/out") == 0 ]] || fail "--eos did not add id 0"
echo "1,2, 3" | "$ponder" tokenize --tokenizer "$tok" --decode >/dev/null || fail "commas in --decode input"
echo "1 x 3" >"$tmp/bad"
expect 1 "$ponder" tokenize --tokenizer "$tok" --decode <"$tmp/bad"
grep -q "not a token id: 'x'" "$tmp/err" || fail "bad id message: $(cat "$tmp/err")"
echo "99999999" >"$tmp/bad"
expect 1 "$ponder" tokenize --tokenizer "$tok" --decode <"$tmp/bad"
grep -q "out of range" "$tmp/err" || fail "out-of-range message: $(cat "$tmp/err")"
printf 'one\ntwo two\n\nthree' >"$tmp/lines"
expect 0 "$ponder" tokenize --tokenizer "$tok" --lines <"$tmp/lines"
[[ $(wc -l <"$tmp/out") == 4 ]] || fail "--lines: want 4 result lines, got $(wc -l <"$tmp/out")"
cp "$tmp/out" "$tmp/line_ids"
expect 0 "$ponder" tokenize --tokenizer "$tok" --decode --lines <"$tmp/line_ids"
printf 'one\ntwo two\n\nthree\n' | cmp -s - "$tmp/out" || fail "--lines decode does not give the lines back"
printf 'ab\xffcd' >"$tmp/invalid"
expect 1 "$ponder" tokenize --tokenizer "$tok" --strict-utf8 <"$tmp/invalid"
grep -q "invalid UTF-8 at byte 2" "$tmp/err" || fail "strict UTF-8 message: $(cat "$tmp/err")"
expect 0 "$ponder" tokenize --tokenizer "$tok" <"$tmp/invalid"
expect 0 "$ponder" tokenize --tokenizer "$fx/tiny_spm/tokenizer.model" --bos <"$tmp/text"
[[ $(awk '{print $1}' "$tmp/out") == 1 ]] || fail "--bos on the SentencePiece model did not add id 1"

# --- tokenizer train / info ---
for i in $(seq 1 300); do echo "the quick brown fox jumps over the lazy dog number $i"; done >"$tmp/corpus.txt"
printf '{"text": "a JSONL document about the fox"}\n\n{"text": "and another one"}\n' >"$tmp/corpus.jsonl"
expect 0 "$ponder" tokenizer train --vocab-size 300 --out "$tmp/trained.json" "$tmp/corpus.txt" "$tmp/corpus.jsonl"
[[ -s $tmp/trained.json ]] || fail "train wrote nothing"
expect 0 "$ponder" tokenizer info "$tmp/trained.json"
grep -q "vocab size: 300" "$tmp/out" || fail "info: $(cat "$tmp/out")"
grep -q "eos: 0 <|endoftext|>" "$tmp/out" || fail "info eos: $(cat "$tmp/out")"
: >"$tmp/empty.txt"
expect 1 "$ponder" tokenizer train --vocab-size 300 --out "$tmp/x.json" "$tmp/empty.txt"
one_line_error tokenizer
grep -q "corpus is empty" "$tmp/err" || fail "empty corpus message: $(cat "$tmp/err")"
[[ ! -e $tmp/x.json ]] || fail "a failed training left a file"
expect 2 "$ponder" tokenizer train --vocab-size 300 "$tmp/corpus.txt"
expect 2 "$ponder" tokenizer train --vocab-size lots --out "$tmp/x.json" "$tmp/corpus.txt"
expect 2 "$ponder" tokenizer frobnicate

# --- prepare ---
expect 0 "$ponder" prepare --tokenizer "$tmp/trained.json" --out "$tmp/shards" --docs line --val-fraction 0.1 \
  --shard-tokens 1000 "$tmp/corpus.txt" "$tmp/corpus.jsonl"
m=$tmp/shards/manifest.json
[[ -s $m ]] || fail "no manifest"
grep -q '"documents": {"train": 272, "val": 30}' "$m" || fail "documents split: $(grep documents "$m")"
command -v python3 >/dev/null && python3 - "$m" "$tmp/shards" <<'EOF' || fail "manifest or shard sizes are wrong"
import json, os, sys
m = json.load(open(sys.argv[1]))
assert m["format"] == "pondercc-token-shards" and m["version"] == 1 and m["dtype"] == "uint16", m
assert m["documents"] == {"train": 272, "val": 30}, m["documents"]
for split in ("train", "val"):
    assert sum(f["tokens"] for f in m[split]) == m["tokens"][split]
    for f in m[split]:
        p = os.path.join(sys.argv[2], f["file"])
        assert os.path.getsize(p) == 64 + 2 * f["tokens"], p
        assert f["tokens"] <= 1000
        h = open(p, "rb").read(64)
        assert h[:8] == b"PCTOKENS"
assert len(m["train"]) > 1
EOF
[[ -z $(ls "$tmp/shards" | grep -v -E '^(train|val)_[0-9]{6}\.bin$|^manifest\.json$') ]] || fail "stray files: $(ls "$tmp/shards")"
expect 0 "$ponder" prepare -q --tokenizer "$tmp/trained.json" --out "$tmp/shards" --val-fraction 0 "$tmp/corpus.txt"
[[ $(ls "$tmp/shards" | grep -c '^val_') == 0 ]] || fail "old val shards were not removed"
printf '{"text": "ok"}\nnot json\n' >"$tmp/broken.jsonl"
expect 1 "$ponder" prepare --tokenizer "$tmp/trained.json" --out "$tmp/s2" "$tmp/broken.jsonl"
grep -q "broken.jsonl:2: invalid JSON" "$tmp/err" || fail "bad JSONL message: $(cat "$tmp/err")"
printf '{"txt": "ok"}\n' >"$tmp/nofield.jsonl"
expect 1 "$ponder" prepare --tokenizer "$tmp/trained.json" --out "$tmp/s3" "$tmp/nofield.jsonl"
grep -q 'no string field "text"' "$tmp/err" || fail "missing field message: $(cat "$tmp/err")"
expect 1 "$ponder" prepare --tokenizer "$tmp/trained.json" --out "$tmp/s4" "$tmp/missing.txt"
one_line_error prepare
expect 2 "$ponder" prepare --tokenizer "$tmp/trained.json" "$tmp/corpus.txt"
expect 2 "$ponder" prepare --tokenizer "$tmp/trained.json" --out "$tmp/s5" --val-fraction 2 "$tmp/corpus.txt"

if ((fails)); then
  echo "$fails check(s) failed" >&2
  exit 1
fi
echo "tokenizer CLI: all checks passed"
