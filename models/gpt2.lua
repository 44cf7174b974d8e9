-- GPT-2, as Hugging Face's GPT2LMHeadModel computes it: learned positions,
-- pre-LayerNorm blocks, fused QKV projection, tanh GELU, LM head tied to
-- the token embedding; pondering (pondercc.ponder) when ponderinglm is set.
-- Parameter names are the Hugging Face ones; the checkpoint's Conv1D
-- weights are stored [in, out] and transposed on import.
local pc = require "pondercc"
local nn = require "lib.nn"
local blocks = require "lib.blocks"

local gpt2 = pc.model {
  name = "gpt2",
  architectures = { "GPT2LMHeadModel" },
  model_type = "gpt2",
  -- Hugging Face config.json names; the defaults are GPT-2 124M. The
  -- pondering knobs (ponderinglm, pondering_steps, ...) are added by
  -- pondercc.model: see docs/pondering.md.
  hparams = {
    vocab_size = 50257,
    n_positions = 1024,
    n_embd = 768,
    n_layer = 12,
    n_head = 12,
    n_inner = pc.none,          -- MLP width; none means 4 * n_embd
    layer_norm_epsilon = 1e-5,
    initializer_range = 0.02,
    activation_function = "gelu_new",
  },
  configs = {
    { "tiny", vocab_size = 96, n_positions = 64, n_embd = 32, n_layer = 2, n_head = 2 },
    { "mini", n_positions = 256, n_embd = 128, n_layer = 4, n_head = 4 },   -- for CPU demos
    { "124m" },
    { "355m", n_embd = 1024, n_layer = 24, n_head = 16 },
    { "774m", n_embd = 1280, n_layer = 36, n_head = 20 },
    { "1558m", n_embd = 1600, n_layer = 48, n_head = 25 },
  },
  default_config = "124m",
  context = "n_positions",
  hf_required = { "vocab_size", "n_embd", "n_layer", "n_head" },
}

local function block(hp, x, prefix, init)
  local C = hp.n_embd
  local conv = { init = init(), layout = "transpose" }
  local proj = { init = init(true), layout = "transpose" }

  local h = nn.layernorm(x, prefix .. ".ln_1", C, hp.layer_norm_epsilon)
  local q, k, v = pc.split(nn.linear(h, prefix .. ".attn.c_attn", C, 3 * C, conv), C, C, C)
  local a = pc.attention(q, k, v, hp.n_head)
  x = x + nn.linear(a, prefix .. ".attn.c_proj", C, C, proj)

  local inner = hp.n_inner or 4 * C
  local act = nn.activation(hp.activation_function)
  h = nn.layernorm(x, prefix .. ".ln_2", C, hp.layer_norm_epsilon)
  h = act(nn.linear(h, prefix .. ".mlp.c_fc", C, inner, conv))
  return x + nn.linear(h, prefix .. ".mlp.c_proj", inner, C, proj)
end

function gpt2.forward(hp, ids)
  -- Weights start as Hugging Face's GPT-2 does (residual projections
  -- smaller by sqrt(2 n_layer)), or as the PonderingLM reference when asked.
  local init = blocks.initializer(hp, { width = hp.n_embd, layers = hp.n_layer, range = hp.initializer_range,
                                        output_div = math.sqrt(2 * hp.n_layer) })
  local wte = pc.param("transformer.wte.weight", { hp.vocab_size, hp.n_embd }, init())
  -- Transformer(E): everything from input embeddings to the final norm,
  -- position embeddings included, as GPT2Model runs with inputs_embeds.
  -- The LM head is the token embedding (tied).
  local logits = blocks.causal_lm(hp, ids, wte, wte, function(e)
    local wpe = pc.param("transformer.wpe.weight", { hp.n_positions, hp.n_embd }, init())
    local x = e + pc.embedding(wpe, pc.positions(ids))
    for i = 0, hp.n_layer - 1 do
      x = block(hp, x, "transformer.h." .. i, init)
    end
    local h = nn.layernorm(x, "transformer.ln_f", hp.n_embd, hp.layer_norm_epsilon)
    return h
  end)
  return logits
end

return gpt2
