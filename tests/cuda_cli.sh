#!/usr/bin/env bash
# The CUDA backend from the command line, without a GPU:
#  1. pondercc --emit cuda prints kernels, --target cuda --emit kir the CUDA schedule's kernel IR
#     (bias gradients as products), --emit cuda-census what each entry asks of a GPU (the
#     models' steps converting nothing to bf16 but their parameters); bad
#     --target / --device uses are refused;
#  2. without a driver, ponder --device cuda says so on one line (skipped where one exists);
#     a --target cuda library run without --device cuda says how to run it;
#  3. on the CPU emulator (PONDER_CUDA_EMULATE=1): ponder train --device cuda (the optimizer on
#     the device, clipping on) gives the interpreter's losses over 8 steps with --precision fp32
#     (within 1e-4), and in bf16 (the default) within 1e-3 but not within 1e-6 (so the option
#     reaches the products); a step moves only the batch up and the loss down; a run resumes
#     exactly, with accumulation too; the engine reports bf16 products by default and tf32 when
#     asked; --profile FILE (PONDER_CUDA_PROFILE) writes the device time of every op (train, eval
#     and the optimizer, each summing to its total); ponder generate --device cuda --precision fp32
#     gives the interpreter's tokens (cached decoding) and uploads the weights once; in bf16 it
#     rounds them once; scripts/gpu-check's bench.py turns such a run into its table's row.
# Usage: tests/cuda_cli.sh BUILD_DIR   (run from the repository root)
set -u
build=${1:?usage: cuda_cli.sh BUILD_DIR}
source "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"
# refused: a non-zero exit and a one-line message containing $1
refused() {
  local want=$1
  shift
  if "$@" >"$tmp/out" 2>"$tmp/err"; then
    fail "accepted: $*"
  elif [[ $(wc -l <"$tmp/err") -ne 1 ]] || ! grep -qF -- "$want" "$tmp/err"; then
    fail "$*: expected one line with '$want', got: $(cat "$tmp/err")"
  fi
}
tiny=(models/gpt2.lua --config tiny)

# 1. pondercc
run "$pondercc" "${tiny[@]}" --ponder 2 --emit cuda
grep -q 'extern "C" __global__ void __launch_bounds__([0-9]*) k0(' "$tmp/out" || fail "--emit cuda printed no kernel k0"
grep -q "pc_warp_sum_f(q" "$tmp/out" || fail "--emit cuda: no warp reduction"
grep -q '^entry ' "$tmp/out" && fail "--emit cuda: kernel IR printed too"
# the census: every entry at the largest dims, decode a step of one token, with its products and memory
run "$pondercc" "${tiny[@]}" --ponder 2 --emit cuda-census
[[ $(grep -c '^  [0-9]* launches: ' "$tmp/out") -eq 4 ]] || fail "--emit cuda-census: not four entries: $(head -c 400 "$tmp/out")"
grep -q '^entry [a-z]* \[' "$tmp/out" && fail "--emit cuda-census: kernel IR printed too"
for want in "entry train at B = 8, T = 64 (bf16 products" "entry decode at B = 8, T = 1 (bf16 products" \
  "library" " products, " "device memory: arena " "pc_attn_cached (k"; do
  grep -qF -- "$want" "$tmp/out" || fail "--emit cuda-census: no '$want' in: $(head -c 400 "$tmp/out")"
done
# Every model's kernels store every activation a product reads with its bf16 mirror: a training
# step converts its parameters and nothing else (a lost mirror shows here as more elements converted)
for m in gpt2 pythia llama; do
  run "$pondercc" models/$m.lua --config tiny --ponder 2 --emit cuda-census --entries train
  grep -Eq 'bf16 operands: ([0-9.e+-]+) G elements converted \(\1 G of parameters' "$tmp/out" ||
    fail "$m: a train step converts more than its parameters: $(grep 'bf16 operands' "$tmp/out")"
done
# --target cuda --emit kir prints the kernel IR as the CUDA schedule lowers it: bias gradients as
# products of a row of ones, which the CPU's schedule sums in loops
run "$pondercc" models/gpt2.lua --config tiny --entries train --target cuda --emit kir
grep -q 'gemm nn m=1 ' "$tmp/out" || fail "--target cuda --emit kir: no bias gradient as a product of one row"
grep -q 'extern "C"' "$tmp/out" && fail "--target cuda --emit kir: CUDA C printed too"
run "$pondercc" models/gpt2.lua --config tiny --entries train --emit kir
grep -q 'gemm nn m=1 ' "$tmp/out" && fail "--emit kir: a bias gradient as a product on the CPU's schedule"
refused "--target gpu: expected cpu or cuda" "$pondercc" "${tiny[@]}" --target gpu -o "$tmp/x.so"
refused "--target cuda goes with -o MODEL.so or --emit kir" "$pondercc" "${tiny[@]}" --target cuda
refused "drop --backend c" "$pondercc" "${tiny[@]}" --target cuda --backend c -o "$tmp/x.so"
refused "--device is for ponder" "$pondercc" "${tiny[@]}" --device cuda -o "$tmp/x.so"
refused "--device gpu: expected cpu or cuda" "$ponder" forward "${tiny[@]}" --device gpu
refused "--precision fp16: expected bf16, tf32 or fp32" "$ponder" forward "${tiny[@]}" --device cuda --precision fp16
refused "--precision bf16 is for --device cuda" "$ponder" forward "${tiny[@]}" --precision bf16
refused "--profile is for --device cuda" "$ponder" forward "${tiny[@]}" --profile "$tmp/p.md"
refused "--profile is for ponder --device cuda" "$pondercc" "${tiny[@]}" --profile "$tmp/p.md" --emit cuda
refused "--precision is for ponder --device cuda" "$pondercc" "${tiny[@]}" --target cuda --precision fp32 -o "$tmp/x.so"

# 2. no driver
if ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1 '; then
  echo "a CUDA driver is installed: the no-driver messages are not checked"
else
  refused "no CUDA driver (libcuda.so.1 not found)" "$ponder" forward "${tiny[@]}" --device cuda
  refused "no CUDA driver (libcuda.so.1 not found)" "$ponder" generate "${tiny[@]}" --device cuda --ids --prompt-ids "1 2"
fi
if "$pondercc" "${tiny[@]}" --target cuda -o "$tmp/cuda.so" >"$tmp/out" 2>"$tmp/err"; then
  refused "holds CUDA code: run it with --device cuda" "$ponder" forward "$tmp/cuda.so"
elif grep -q "NVRTC.*not found" "$tmp/err"; then
  echo "no NVRTC: the --target cuda library is not checked"
else
  fail "--target cuda: $(cat "$tmp/err")"
fi

# 3. the emulator
if ! "${CXX:-c++}" --version >/dev/null 2>&1; then
  echo "no C++ compiler: the emulated runs are not checked"
else
  export PONDER_CUDA_EMULATE=1
  run "$ponder" tokenizer train --vocab-size 300 --out "$tmp/tok.json" README.md
  run "$ponder" prepare --tokenizer "$tmp/tok.json" --out "$tmp/data" --docs paragraph --val-fraction 0.1 README.md docs/*.md
  args=("${tiny[@]}" --ponder 2 --set vocab_size=300 --data "$tmp/data" --steps 8 --batch 2 --seq 32 --threads 1 --log-every 1
    --eval-every 4 --eval-batches 1 --clip 0.5)
  run "$ponder" train "${args[@]}" --out "$tmp/cpu" --backend interp
  loss() { sed -n 's/.*"step": \([0-9]*\), "loss": \([-0-9.e]*\).*/\1 \2/p' "$1/metrics.jsonl"; }
  # the losses of --precision $1 within $2 (relative) of the interpreter's
  train_within() {
    PONDER_CUDA_TIMING=1 run "$ponder" train "${args[@]}" --out "$tmp/gpu-$1" --device cuda --precision "$1"
    paste <(loss "$tmp/cpu") <(loss "$tmp/gpu-$1") >"$tmp/losses"
    [[ $(wc -l <"$tmp/losses") -eq 8 ]] || fail "$1: expected 8 steps: $(cat "$tmp/losses")"
    awk -v tol="$2" '{ d = $2 - $4; if (d < 0) d = -d; if ($1 != $3 || d > tol * ($2 < 0 ? -$2 : $2)) exit 1 }' "$tmp/losses" ||
      fail "train --device cuda --precision $1 (emulated) differs from the interpreter: $(tr '\n' ' ' <"$tmp/losses")"
    echo "--precision $1: losses (step, interpreter, step, cuda): $(tr '\n' ' ' <"$tmp/losses")"
  }
  train_within fp32 1e-4
  awk '/"grad_norm"/ { if (!match($0, /"grad_norm": [0-9.e]*/) || substr($0, RSTART + 13, RLENGTH - 13) + 0 <= 0.5) exit 1 }' \
    "$tmp/gpu-fp32/metrics.jsonl" || fail "expected clipping in every step: $(cat "$tmp/gpu-fp32/metrics.jsonl")"
  # a step moves the batch (2 x 32 ids and targets) up and the loss down; eval no parameters
  grep -E '^cuda: (train|eval):' "$tmp/err" | grep -v '; 512 bytes up, 4 down$' >"$tmp/moved" &&
    fail "a train or eval call moved more than the batch and the loss: $(head -3 "$tmp/moved")"
  [[ $(grep -c '^cuda: train:' "$tmp/err") -eq 8 ]] || fail "expected 8 timed train calls: $(head -5 "$tmp/err")"
  train_within bf16 1e-3
  # what scripts/gpu-check makes of such a run (bench.py reads the metrics and the timing lines):
  # a row with ms/step and device ms in the table, and a row that says so when the engine ran
  # other products than the label's
  if command -v python3 >/dev/null; then
    bench() { python3 scripts/gpu_check/bench.py "$@" >>"$tmp/bench.out" 2>&1 || fail "bench.py $1: $(tail -3 "$tmp/bench.out")"; }
    "$pondercc" "${tiny[@]}" --ponder 2 --set vocab_size=300 --emit cuda-census --max-batch 2 --max-seq 32 --entries train \
      >"$tmp/census" 2>&1 || fail "the census of the emulated step: $(tail -3 "$tmp/census")"
    for p in bf16 fp32; do
      bench ponder --label "ponder, $p" --precision "$p" --K 2 --B 2 --T 32 --metrics "$tmp/gpu-bf16/metrics.jsonl" \
        --timing "$tmp/err" --results "$tmp/rows.jsonl" --error "" --census "$tmp/census"
    done
    grep '"label": "ponder, bf16"' "$tmp/rows.jsonl" | grep '"ms": ' | grep '"device_ms": ' | grep '"bound_ms": ' |
      grep -qv '"error"' ||
      fail "bench.py ponder: no timed row with the census's bound from an emulated bf16 run: $(cat "$tmp/rows.jsonl")"
    grep -q '"label": "ponder, fp32".*"error": "asked for fp32 products, the engine ran bf16"' "$tmp/rows.jsonl" ||
      fail "bench.py ponder: a bf16 run passed as fp32: $(cat "$tmp/rows.jsonl")"
    echo "(no GPU: the kernels' checks are not run)" >"$tmp/equiv"
    bench table --results "$tmp/rows.jsonl" --gpu "NVIDIA H100 80GB HBM3, 580.00, 81559 MiB" --equiv "$tmp/equiv" \
      --out "$tmp/table.md" --quiet
    grep -Eq '^\| ponder, bf16 \| 2 \| 2 x 32 \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \|' "$tmp/table.md" ||
      fail "bench.py table: no row for the bf16 run: $(cat "$tmp/table.md")"
    grep -Eq "^\| ponder, bf16 \|.* train entry [0-9]+ ms against the census's [0-9]+ ms lower bound on an H100 SXM \([0-9]+ GB" \
      "$tmp/table.md" || fail "bench.py table: the bf16 row does not set its train entry against the census: $(cat "$tmp/table.md")"
  else
    echo "no python3: scripts/gpu-check's rows are not checked"
  fi
  # in bf16 the products read what kernels stored with bf16 mirrors, converting little else
  grep '^cuda: train:' "$tmp/err" | grep -q ', 0 read from mirrors' &&
    fail "a bf16 train call read no operand from a mirror: $(grep -m1 '^cuda: train:' "$tmp/err")"
  paste <(loss "$tmp/gpu-fp32") <(loss "$tmp/gpu-bf16") |
    awk '{ d = $2 - $4; if (d < 0) d = -d; if (d > 1e-6 * ($2 < 0 ? -$2 : $2)) differs = 1 } END { exit !differs }' ||
    fail "train --device cuda: the bf16 losses are the fp32 ones (is --precision ignored?)"
  # the products' precision as the engine reports it: bf16 unless named
  PONDER_CUDA_TIMING=1 run "$ponder" forward "${tiny[@]}" --device cuda
  grep -q "cuda: logits: .*(bf16 products" "$tmp/err" || fail "forward --device cuda is not bf16 by default: $(cat "$tmp/err")"
  PONDER_CUDA_TIMING=1 run "$ponder" forward "${tiny[@]}" --device cuda --precision tf32
  grep -q "cuda: logits: .*(tf32 products" "$tmp/err" || fail "--precision tf32 did not reach the engine: $(cat "$tmp/err")"
  # exact resume on the device (bf16): 4 steps, then 4 more, against 8 in one go; with accumulation too
  cp -r "$tmp/gpu-bf16" "$tmp/gpu-a1"
  for accum in 1 2; do
    ((accum == 1)) || run "$ponder" train "${args[@]}" --accum $accum --out "$tmp/gpu-a$accum" --device cuda --profile "$tmp/profile.md"
    run "$ponder" train "${args[@]}" --accum $accum --out "$tmp/gpu-r$accum" --device cuda --stop-at 4
    run "$ponder" train "${args[@]}" --accum $accum --out "$tmp/gpu-r$accum" --device cuda --resume
    cmp -s <(loss "$tmp/gpu-a$accum") <(loss "$tmp/gpu-r$accum") ||
      fail "--accum $accum: 4 + resume differs from 8 steps: $(loss "$tmp/gpu-a$accum" | tr '\n' ' ') vs $(loss "$tmp/gpu-r$accum" | tr '\n' ' ')"
    for f in model.safetensors optimizer.safetensors; do
      cmp -s "$tmp/gpu-a$accum/ckpt-00000008/$f" "$tmp/gpu-r$accum/ckpt-00000008/$f" ||
        fail "--accum $accum: the resumed run's step-8 $f differs"
    done
  done
  # PONDER_CUDA_PROFILE=1: the profile on stderr
  PONDER_CUDA_PROFILE=1 run "$ponder" forward "${tiny[@]}" --device cuda
  grep -q "^### cuda profile: logits on CUDA emulator (CPU), bf16 products (its only call, with the warm-up): 1 call," "$tmp/err" ||
    fail "PONDER_CUDA_PROFILE=1: no profile of the logits call on stderr: $(head -c 300 "$tmp/err")"
  # the profile of the --accum 2 run (--profile FILE), the first call (or step) apart: 16 train calls, 2 evaluations,
  # 8 optimizer steps; ops named by their graph op
  for want in "### cuda profile: train on CUDA emulator (CPU), bf16 products (after the first call, [0-9.]* ms with its warm-up): 15 calls" \
    "### cuda profile: eval on CUDA emulator (CPU), bf16 products (after the first call, [0-9.]* ms with its warm-up): 1 call," \
    "### cuda profile: optimizer on CUDA emulator (CPU) (after the first step, [0-9.]* ms with its warm-up): 7 steps" \
    "| gradient accumulation (pc_opt_accum) |" "| AdamW (pc_opt_adamw) |" "| attention_grad @models/gpt2.lua:48 |" \
    " bf16 | linear @models/gpt2.lua:[0-9]* |"; do
    grep -q -- "$want" "$tmp/profile.md" || fail "PONDER_CUDA_PROFILE: no '$want' in: $(head -c 600 "$tmp/profile.md")"
  done
  grep -q '^| [0-9.]* | [0-9.]*% | 10 | pc_attn_fwd_tc (k[0-9]*) | attention @models/gpt2.lua:48 |' "$tmp/profile.md" ||
    fail "PONDER_CUDA_PROFILE: no attention forward launched 10 times a call (5 passes of 2 layers)"
  # each entry's graph ops add up to its total (every stamp charged to one op)
  awk '/^### cuda profile: (train|eval)/ { total = $(NF - 6); sum = 0; on = 0 }
       /^by graph op:/ { on = 1 } on && /^\| [0-9]/ { sum += $2 }
       on && /^$/ && sum > 0 { d = sum - total; if (d < 0) d = -d; if (d > 0.01 + 1e-3 * total) bad = 1; on = 0; sum = 0 }
       END { exit bad }' "$tmp/profile.md" || fail "PONDER_CUDA_PROFILE: the graph ops do not add up to the total"
  gen=(generate "${tiny[@]}" --ponder 2 --set vocab_size=300 --hf "$tmp/cpu/ckpt-00000008" --prompt-ids "5 9 2"
    --max-tokens 12 --temperature 0)
  run "$ponder" "${gen[@]}" --backend interp
  cp "$tmp/out" "$tmp/gen-cpu"
  PONDER_CUDA_TIMING=1 run "$ponder" "${gen[@]}" --device cuda --precision fp32
  cmp -s "$tmp/gen-cpu" "$tmp/out" || fail "generate --device cuda (emulated) differs: $(cat "$tmp/gen-cpu") vs $(cat "$tmp/out")"
  # the weights go up with the first call only: later ones move an id and a position
  (($(grep -c '^cuda: decode:' "$tmp/err") >= 2)) || fail "expected timed decode calls: $(head -3 "$tmp/err")"
  [[ $(grep '^cuda: decode:' "$tmp/err" | tail -n +2 | grep -vc '; 8 bytes up, ') -eq 0 ]] ||
    fail "generate uploaded more than an id and a position after its first call: $(grep -m3 '^cuda: decode:' "$tmp/err")"
  # in bf16 the weights are rounded with the first call only: later ones keep their bf16 copies
  PONDER_CUDA_TIMING=1 run "$ponder" "${gen[@]}" --device cuda --precision bf16
  grep -m1 '^cuda: decode:' "$tmp/err" | grep -q ', 0 elements converted' &&
    fail "the first bf16 decode call converted no weights: $(grep -m1 '^cuda: decode:' "$tmp/err")"
  [[ $(grep '^cuda: decode:' "$tmp/err" | tail -n +2 | grep -vc ', 0 elements converted, ') -eq 0 ]] ||
    fail "a later bf16 decode call converted its weights again: $(grep '^cuda: decode:' "$tmp/err" | sed -n 2p)"
fi

if ((fails)); then
  echo "$fails check(s) failed" >&2
  exit 1
fi
echo "the CUDA command-line checks pass"
