#!/usr/bin/env python3
"""Helpers of scripts/gpu-check (the driver calls them; each prints or appends JSON).

  bench.py shard --vocab V --tokens N --out FILE      a token shard of random ids (docs/data-format.md)
  bench.py ponder --label L --precision P --K K --B B --T T --metrics RUN/metrics.jsonl --timing LOG
           --results FILE [--census FILE]             one `ponder train --device cuda` row from its metrics
                                                      and PONDER_CUDA_TIMING lines, which name the precision
                                                      the engine ran its matrix products in (checked against P);
                                                      --census: `pondercc --emit cuda-census --entries train`
                                                      of the same step, whose lower bound the train entry's
                                                      device time is set against
  bench.py torch --mode eager|compile --dtype bf16|fp32 --K K --B B --T T --results FILE --budget S
                                                      one PyTorch row (the model of scripts/bench_cpu/torch_step.py
                                                      on the GPU)
  bench.py failed --label L --K K --B B --T T --error MESSAGE --results FILE
                                                      a row that says why it has no figures
  bench.py table --results FILE --gpu NAME [--peak-tflops X] --equiv FILE --out FILE
                                                      the table, to stdout and FILE

Model FLOPs follow ../shared/BENCHMARKS.md ("Model FLOPs"): per token, (K + 1) passes of 6 N + 12 L T C
(N: the block weights plus the V x C embedding/head; full T x T attention) plus K vocabulary mixes of
3 x 2 C V. MFU is model FLOPs per second over the chip's dense bf16 peak.
"""
import argparse
import array
import json
import os
import random
import re
import statistics
import struct
import sys
import time

L, C, H, V = 12, 768, 12, 50257  # GPT-2 124M

# dense bf16 tensor-core peaks (TFLOP/s) by a substring of the GPU's name, most specific first
PEAKS = [("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4), ("H200", 989.4), ("GH200", 989.4),
         ("A100", 312.0), ("L40S", 362.1), ("L4", 121.0), ("B200", 2250.0)]


def step_flops(K, B, T):
    n = L * (12 * C * C + 13 * C) + 2 * C + V * C
    tokens = B * T
    return (K + 1) * (6 * n * tokens + 12 * L * T * C * tokens) + K * 3 * 2 * C * V * tokens


def append(path, row):
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def cmd_shard(a):
    width = 2 if a.vocab <= 65536 else 4
    head = b"PCTOKENS" + struct.pack("<IIIIQI", 1, 64, width, a.vocab, a.tokens, 0xFFFFFFFF)
    rng = random.Random(1)
    ids = array.array("H" if width == 2 else "I", (rng.randrange(a.vocab) for _ in range(a.tokens)))
    with open(a.out, "wb") as f:
        f.write(head.ljust(64, b"\0"))
        f.write(ids.tobytes())


def cmd_ponder(a):
    """Steps after the first (warm-up); the device time of the train entry and the optimizer from PONDER_CUDA_TIMING."""
    row = {"impl": "ponder", "label": a.label, "K": a.K, "B": a.B, "T": a.T}
    timing = re.compile(r"cuda: train: upload ([\d.]+) ms, run ([\d.]+) ms, download ([\d.]+) ms "
                        r"\((\w+) products, ([\d.]+) MiB of bf16 operands, (\d+) elements converted")
    steps = []
    if os.path.exists(a.metrics):
        for line in open(a.metrics):
            m = json.loads(line)
            if "ms" in m and "loss" in m:
                steps.append(m)
    optimizer = re.compile(r"cuda: optimizer: run ([\d.]+) ms")
    run_ms, opt_ms, used = [], [], set()
    if os.path.exists(a.timing):
        for line in open(a.timing):
            m = timing.match(line)
            if m:
                run_ms.append((float(m[1]), float(m[2]), float(m[3])))
                used.add(m[4])
                row["bf16_mib"] = float(m[5])
                row["converted_g"] = int(m[6]) / 1e9
            m = optimizer.match(line)
            if m:
                opt_ms.append(float(m[1]))
    timed = [s["ms"] for s in steps[1:]]
    if used and used != {a.precision}:  # the table says what ran, not what was asked
        row["error"] = f"asked for {a.precision} products, the engine ran {', '.join(sorted(used))}"
    elif not timed:
        row["error"] = a.error or f"no step after the warm-up finished ({len(steps)} in all)"
    else:
        row["ms"] = statistics.median(timed)
        row["steps"] = len(timed)
        row["loss"] = steps[-1]["loss"]
    if len(run_ms) > 1:  # one train call and one optimizer update per step (no --accum here)
        runs = [r[1] for r in run_ms[1:]]
        if len(opt_ms) == len(run_ms):
            runs = [r + o for r, o in zip(runs, opt_ms[1:])]
        row["device_ms"] = statistics.median(runs)
        row["transfer_ms"] = statistics.median(r[0] + r[2] for r in run_ms[1:])
        row["train_ms"] = statistics.median(r[1] for r in run_ms[1:])
    if a.census and os.path.exists(a.census):
        text = open(a.census).read()
        bound = re.search(r"on an (.+?) \(.*\): at least ([\d.]+) ms", text)
        traffic = re.search(r"traffic \(estimated\): ([\d.]+) GB", text)
        if bound and traffic:
            row["census"] = {"chip": bound[1], "bound_ms": float(bound[2]), "traffic_gb": float(traffic[1])}
        else:
            row["census"] = {"error": "no bound in the census output"}
    append(a.results, row)


def cmd_failed(a):
    append(a.results, {"impl": "failed", "label": a.label, "K": a.K, "B": a.B, "T": a.T, "error": a.error})


def cmd_torch(a):
    row = {"impl": f"torch {a.mode}", "label": f"PyTorch {a.mode}, {a.dtype}", "K": a.K, "B": a.B, "T": a.T}
    try:
        row.update(torch_step(a))
    except Exception as e:  # the row says why, the other rows go on
        row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
    append(a.results, row)


def torch_step(a):
    import torch
    import torch.nn.functional as F
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench_cpu"))
    from torch_step import GPT  # the CPU benchmark's nanoGPT-style model and pondering loop

    class GpuGPT(GPT):
        def body(self, e):  # positions on the embeddings' device
            x = e + self.wpe(torch.arange(e.shape[1], device=e.device))
            for block in self.h:
                x = block(x)
            return self.ln_f(x)

    torch.manual_seed(1)
    torch.backends.cuda.matmul.allow_tf32 = a.dtype == "bf16"
    torch.backends.cudnn.allow_tf32 = a.dtype == "bf16"
    dev = torch.device("cuda")
    model = GpuGPT(L, C, H, V, a.T, "sdpa").to(dev)
    if a.mode == "compile":  # the transformer, run K + 1 times per step, compiles once
        model.body = torch.compile(model.body)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                            lr=6e-4, betas=(0.9, 0.95), eps=1e-8, fused=True)
    g = torch.Generator().manual_seed(1)
    batches = [torch.randint(0, V, (a.B, a.T + 1), generator=g).to(dev) for _ in range(3)]

    def step(i):
        ids = batches[i % len(batches)]
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=a.dtype == "bf16"):
            loss = model(ids[:, :-1], ids[:, 1:], a.K)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        torch.cuda.synchronize()
        return (time.perf_counter() - t0) * 1e3, loss.item()

    warm = [step(i)[0] for i in range(2)]
    timed, start = [], time.perf_counter()
    while len(timed) < 3 or (time.perf_counter() - start < a.budget and len(timed) < 20):
        ms, loss = step(len(warm) + len(timed))
        timed.append(ms)
    return {"ms": statistics.median(timed), "steps": len(timed), "warmup_ms": warm, "loss": loss,
            "torch": torch.__version__, "peak_gb": torch.cuda.max_memory_allocated() / 2**30}


def cmd_table(a):
    rows = [json.loads(line) for line in open(a.results)] if os.path.exists(a.results) else []
    peak = a.peak_tflops or next((p for name, p in PEAKS if name in a.gpu), None)
    lines = [f"# scripts/gpu-check, {time.strftime('%Y-%m-%d %H:%M')}", "",
             f"GPU: {a.gpu}; bf16 dense peak: " + (f"{peak:g} TFLOP/s" if peak else "unknown (give --peak-tflops)"), ""]
    if os.path.exists(a.equiv):
        lines += ["## On the GPU: the hand-written kernels against references (tests/test_cuda_library.c), the CUDA "
                  "backend against the interpreter (fp32 within 1e-4 relative; bf16 within tests/test_cuda_backend.c's "
                  "bounds), compute-sanitizer", "", "```"]
        lines += [line.rstrip() for line in open(a.equiv)]
        lines += ["```", ""]
    lines += ["## Training step, GPT-2 124M shape", "",
              "| implementation | K | B x T | GFLOP/step | ms/step | tokens/s | MFU (bf16 peak) | device ms | notes |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        gflop = step_flops(r["K"], r["B"], r["T"]) / 1e9
        bt = f"{r['B']} x {r['T']}"
        if "error" in r:
            lines.append(f"| {r['label']} | {r['K']} | {bt} | {gflop:.0f} | - | - | - | - | {r['error']} |")
            continue
        ms = r["ms"]
        mfu = f"{gflop / (ms / 1e3) / 1e3 / peak * 100:.1f}%" if peak else "-"
        dev = f"{r['device_ms']:.0f}" if "device_ms" in r else "-"
        notes = [f"median of {r['steps']}", f"loss {r['loss']:.3f}"]
        if "transfer_ms" in r:
            notes.append(f"PCIe {r['transfer_ms']:.0f} ms")
        if r.get("bf16_mib"):
            notes.append(f"bf16 operands {r['bf16_mib']:.0f} MiB, {r.get('converted_g', 0):.3g} G converted per call")
        if "peak_gb" in r:
            notes.append(f"{r['peak_gb']:.1f} GiB")
        census = r.get("census", {})
        if "error" in census:
            notes.append(f"census: {census['error']}")
        elif census and r.get("train_ms", 0) > 0:
            notes.append(f"train entry {r['train_ms']:.0f} ms against the census's {census['bound_ms']:.0f} ms lower "
                         f"bound on an {census['chip']} ({census['traffic_gb']:.0f} GB estimated traffic): "
                         f"{census['bound_ms'] / r['train_ms'] * 100:.0f}% of it")
        lines.append(f"| {r['label']} | {r['K']} | {bt} | {gflop:.0f} | {ms:.0f} | {r['B'] * r['T'] / (ms / 1e3):.0f} | "
                     f"{mfu} | {dev} | {', '.join(notes)} |")
    lines += ["", "ponder rows: a `ponder train --device cuda` step (the train entry and AdamW on the GPU, parameters "
              "resident; the batch goes up and the loss down), in the matrix-product precision of the label, as the "
              "engine reported it (bf16: operands rounded to bf16, fp32 sums and weights; tf32; fp32); device ms: "
              "the train entry and the optimizer (PONDER_CUDA_TIMING). PyTorch rows: the same model and pondering loop (probabilities "
              "materialised), fused AdamW on the GPU; compile = torch.compile of the transformer body."]
    text = "\n".join(lines) + "\n"
    if not a.quiet:
        sys.stdout.write(text)
    with open(a.out + ".tmp", "w") as f:  # whole or not at all: gpu-check may be stopped at any moment
        f.write(text)
    os.replace(a.out + ".tmp", a.out)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("shard")
    s.add_argument("--vocab", type=int, required=True)
    s.add_argument("--tokens", type=int, required=True)
    s.add_argument("--out", required=True)
    s = sub.add_parser("ponder")
    for name in ["label", "precision", "metrics", "timing", "results"]:
        s.add_argument("--" + name, required=True)
    for name in ["K", "B", "T"]:
        s.add_argument("--" + name, type=int, required=True)
    s.add_argument("--error", default="")
    s.add_argument("--census", default="", help="pondercc --emit cuda-census --entries train of the same step")
    s = sub.add_parser("torch")
    s.add_argument("--mode", choices=["eager", "compile"], required=True)
    s.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    for name in ["K", "B", "T"]:
        s.add_argument("--" + name, type=int, required=True)
    s.add_argument("--results", required=True)
    s.add_argument("--budget", type=float, default=10.0, help="seconds of timed steps (at least 3 steps)")
    s = sub.add_parser("failed")
    for name in ["label", "error", "results"]:
        s.add_argument("--" + name, required=True)
    for name in ["K", "B", "T"]:
        s.add_argument("--" + name, type=int, required=True)
    s = sub.add_parser("table")
    for name in ["results", "gpu", "equiv", "out"]:
        s.add_argument("--" + name, required=True)
    s.add_argument("--peak-tflops", type=float, default=None)
    s.add_argument("--quiet", action="store_true", help="write the file only (the table so far)")
    a = p.parse_args()
    {"shard": cmd_shard, "ponder": cmd_ponder, "torch": cmd_torch, "failed": cmd_failed, "table": cmd_table}[a.cmd](a)


if __name__ == "__main__":
    main()
