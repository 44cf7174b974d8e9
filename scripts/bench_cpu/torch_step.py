#!/usr/bin/env python3
"""One PyTorch measurement for scripts/bench-cpu, run in its own process (the
driver sets the environment: default or tuned). Prints one JSON object.

  torch_step.py step --layers L --embd C --heads H --vocab V --batch B --seq T --ponder K ...
  torch_step.py gemm --threads N < shapes      (torch.matmul rates on sgemm shapes)

The model is a plain nanoGPT-style GPT-2: learned positions, pre-LayerNorm
blocks, one fused qkv Linear, causal attention (scaled_dot_product_attention
with is_causal=True, or the explicit masked-softmax form), tanh GELU, final
LayerNorm, LM head tied to the token embedding, cross-entropy. Pondering is
DESIGN section 1 written plainly, probabilities materialised:

    E = W[x]
    repeat K times: H = body(E); P = softmax(H W^T); E = E + P W
    loss = cross_entropy(body(E) W^T, targets)

(tied weights, no scale_embeds, no multiply_steps, tau = 1, accumulate). A
step is zero_grad, forward, backward, clip_grad_norm_(1.0), AdamW.step, in
float32, as `ponder train` does.
"""
import argparse
import json
import math
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, C, H, attention):
        super().__init__()
        self.C, self.H, self.attention = C, H, attention
        self.ln_1 = nn.LayerNorm(C)
        self.c_attn = nn.Linear(C, 3 * C)
        self.c_proj = nn.Linear(C, C)
        self.ln_2 = nn.LayerNorm(C)
        self.c_fc = nn.Linear(C, 4 * C)
        self.mlp_proj = nn.Linear(4 * C, C)

    def forward(self, x):
        B, T, C = x.shape
        H = self.H
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q = q.view(B, T, H, C // H).transpose(1, 2)
        k = k.view(B, T, H, C // H).transpose(1, 2)
        v = v.view(B, T, H, C // H).transpose(1, 2)
        if self.attention == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(C // H))
            mask = torch.ones(T, T, dtype=torch.bool).tril()
            att = F.softmax(att.masked_fill(~mask, float("-inf")), dim=-1)
            y = att @ v
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        x = x + self.c_proj(y)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, L, C, H, V, n_positions, attention):
        super().__init__()
        self.wte = nn.Embedding(V, C)
        self.wpe = nn.Embedding(n_positions, C)
        self.h = nn.ModuleList(Block(C, H, attention) for _ in range(L))
        self.ln_f = nn.LayerNorm(C)
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * L) if name.endswith(("c_proj.weight", "mlp_proj.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def body(self, e):  # Transformer(E): input embeddings -> final norm
        T = e.shape[1]
        x = e + self.wpe(torch.arange(T))
        for block in self.h:
            x = block(x)
        return self.ln_f(x)

    def forward(self, ids, targets, K):
        W = self.wte.weight
        e = self.wte(ids)
        for _ in range(K):
            p = F.softmax(F.linear(self.body(e), W), dim=-1)  # [B, T, V], materialised
            e = e + p @ W
        logits = F.linear(self.body(e), W)
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))


def adamw_kind(opt, kind):
    """Which AdamW implementation runs: what torch picks by default on these tensors."""
    if kind != "default":
        return kind
    try:
        from torch.optim.optimizer import _default_to_fused_or_foreach
        params = [p for g in opt.param_groups for p in g["params"]]
        fused, foreach = _default_to_fused_or_foreach(params, differentiable=False, use_fused=False)
        return "fused" if fused else "foreach" if foreach else "single-tensor (for-loop)"
    except Exception:  # private helper moved: say what we know
        return "torch default"


def run_step(a):
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    model = GPT(a.layers, a.embd, a.heads, a.vocab, max(a.seq, 1024), a.attention)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}]
    extra = {} if a.adamw == "default" else {"foreach": a.adamw == "foreach", "fused": a.adamw == "fused"}
    if a.adamw == "single":
        extra = {"foreach": False}
    opt = torch.optim.AdamW(groups, lr=6e-4, betas=(0.9, 0.95), eps=1e-8, **extra)
    g = torch.Generator().manual_seed(a.seed)
    batches = [torch.randint(0, a.vocab, (a.batch, a.seq + 1), generator=g) for _ in range(4)]

    def step(i):
        ids = batches[i % len(batches)]
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model(ids[:, :-1], ids[:, 1:], a.ponder)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return (time.perf_counter() - t0) * 1e3, loss.item()

    warm, timed, losses = [], [], []
    for i in range(a.warmup):  # a step over --warmup-cap seconds is warm-up enough
        ms, loss = step(i)
        warm.append(ms)
        if ms > a.warmup_cap * 1e3:
            break
    start = time.perf_counter()
    for i in range(a.steps):
        ms, loss = step(len(warm) + i)
        timed.append(ms)
        losses.append(loss)
        if len(timed) >= a.min_steps and time.perf_counter() - start > a.budget:
            break
    print(json.dumps({
        "median_ms": statistics.median(timed), "ms": timed, "warmup_ms": warm, "loss": losses[-1],
        "params": sum(p.numel() for p in model.parameters()),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "adamw": adamw_kind(opt, a.adamw), "attention": a.attention,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def run_gemm(a):
    """torch.matmul on the same shapes as the sgemm program: lines 'ta tb M N K'."""
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    out = []
    for line in sys.stdin:
        if not line.strip():
            continue
        ta, tb, M, N, K = line.split()
        M, N, K = int(M), int(N), int(K)
        A = torch.randn(K, M).t() if ta == "T" else torch.randn(M, K)
        B = torch.randn(N, K).t() if tb == "T" else torch.randn(K, N)
        C = torch.empty(M, N)
        torch.matmul(A, B, out=C)
        times, total = [], 0.0
        while len(times) < a.min_reps or (total < a.min_time and len(times) < 50):
            t0 = time.perf_counter()
            torch.matmul(A, B, out=C)
            dt = time.perf_counter() - t0
            times.append(dt)
            total += dt
        out.append({"shape": [ta, tb, M, N, K], "gflops": 2.0 * M * N * K / statistics.median(times) / 1e9})
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "rates": out}))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("step")
    for name, default in [("layers", 12), ("embd", 768), ("heads", 12), ("vocab", 50257), ("batch", 4),
                          ("seq", 64), ("ponder", 0), ("threads", 2), ("warmup", 2), ("steps", 8),
                          ("min-steps", 3), ("seed", 1)]:
        s.add_argument("--" + name, type=int, default=default)
    s.add_argument("--budget", type=float, default=60.0, help="stop timing after this many seconds (>= --min-steps)")
    s.add_argument("--warmup-cap", type=float, default=10.0, help="end the warm-up after a step this long (seconds)")
    s.add_argument("--attention", choices=["sdpa", "explicit"], default="sdpa")
    s.add_argument("--adamw", choices=["default", "single", "foreach", "fused"], default="default")
    g = sub.add_parser("gemm")
    g.add_argument("--threads", type=int, default=2)
    g.add_argument("--min-reps", type=int, default=3)
    g.add_argument("--min-time", type=float, default=0.3)
    a = p.parse_args()
    run_step(a) if a.cmd == "step" else run_gemm(a)


if __name__ == "__main__":
    main()
