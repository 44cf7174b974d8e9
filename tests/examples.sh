#!/usr/bin/env bash
# The walk-through of docs/writing-models.md, step by step as a reader runs
# it, on its script models/examples/geglu.lua (so the guide cannot rot):
#  1. the script compiles, with and without pondering;
#  2. at LLaMA's settings it computes exactly what models/llama.lua does on
#     a LlamaForCausalLM checkpoint (the fixture llama-gqa4);
#  3. it trains: tokenizer, shards, 30 steps, the loss goes down; with
#     pondering too;
#  4. cached generation gives the same text as recomputing;
#  5. `ponder export` refuses it (no Hugging Face class).
# Usage: tests/examples.sh BUILD_DIR   (run from the repository root)
set -u
build=${1:?usage: examples.sh BUILD_DIR}
source "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"
script=models/examples/geglu.lua

# 1. compile
run "$pondercc" $script --emit ir
grep -q "layernorm(" "$tmp/out" || fail "no layernorm in the traced IR"
grep -q "gelu(" "$tmp/out" || fail "no gelu in the traced IR"
run "$pondercc" $script --emit hparams
grep -qx "norm = layernorm" "$tmp/out" || fail "hparams: $(cat "$tmp/out")"
run "$pondercc" $script --ponder 3 --emit ir
grep -q "loop(.*trip=3" "$tmp/out" || fail "--ponder 3 makes no loop"

# 2. at LLaMA's settings it is LLaMA
run "$ponder" forward models/llama.lua --hf tests/fixtures/llama-gqa4
tail -6 "$tmp/out" >"$tmp/llama"
run "$ponder" forward $script --hf tests/fixtures/llama-gqa4 --set norm=rmsnorm --set hidden_act=silu
tail -6 "$tmp/out" >"$tmp/geglu"
cmp -s "$tmp/llama" "$tmp/geglu" || fail "geglu at LLaMA's settings differs from llama: $(paste "$tmp/llama" "$tmp/geglu")"
"$ponder" forward $script --hf tests/fixtures/llama-gqa4 >"$tmp/out" 2>"$tmp/err" &&
  fail "a LayerNorm geglu loaded a checkpoint without norm biases"
grep -q "missing tensor 'model.layers.0.input_layernorm.bias'" "$tmp/err" || fail "unexpected: $(cat "$tmp/err")"

# 3. train
run "$ponder" tokenizer train --vocab-size 512 --out "$tmp/tok.json" README.md docs/*.md
run "$ponder" prepare --tokenizer "$tmp/tok.json" --out "$tmp/data" --docs paragraph --val-fraction 0.1 README.md docs/*.md
run "$ponder" train $script --data "$tmp/data" --out "$tmp/run" --steps 30 --batch 8 --seq 64 --lr 1e-2 --threads 1
first=$(head -1 "$tmp/run/metrics.jsonl" | sed 's/.*"loss": \([0-9.]*\).*/\1/')
last=$(grep '"step": 30, "loss"' "$tmp/run/metrics.jsonl" | sed 's/.*"loss": \([0-9.]*\).*/\1/')
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 0.5) }' || fail "the loss went from $first to $last"
run "$ponder" train $script --ponder 2 --set scale_embeds=true --data "$tmp/data" --out "$tmp/ponder" --steps 5 \
  --batch 4 --seq 32 --threads 1
[[ -d $tmp/ponder/ckpt-00000005 ]] || fail "the pondering run wrote no checkpoint"

# 4. cached generation = recomputation
ckpt=$tmp/run/ckpt-00000030
run "$ponder" generate $script --hf "$ckpt" --prompt "The model" --temperature 0.8 --max-tokens 40
cp "$tmp/out" "$tmp/cached"
run "$ponder" generate $script --hf "$ckpt" --prompt "The model" --temperature 0.8 --max-tokens 40 --no-cache
cmp -s "$tmp/cached" "$tmp/out" || fail "cached and recomputed generation differ"

# 5. not exportable
"$ponder" export $script --hf "$ckpt" --out "$tmp/hf" >"$tmp/out" 2>"$tmp/err" && fail "export accepted geglu"
grep -q "must name its Hugging Face architectures and model_type" "$tmp/err" || fail "export: $(cat "$tmp/err")"

if ((fails)); then
  echo "$fails check(s) failed" >&2
  exit 1
fi
echo "the walk-through of docs/writing-models.md works (loss $first -> $last in 30 steps)"
