-- GPT-2, as Hugging Face's GPT2LMHeadModel computes it: learned positions,
-- pre-LayerNorm blocks, fused QKV projection, tanh GELU, LM head tied to
-- the token embedding. Parameter names are the Hugging Face ones; the
-- checkpoint's Conv1D weights are stored [in, out] and transposed on import.
local pc = require "pondercc"
local nn = require "lib.nn"

local gpt2 = pc.model {
  name = "gpt2",
  architectures = { "GPT2LMHeadModel" },
  -- Hugging Face config.json names; the defaults are GPT-2 124M.
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
}

local activations = { gelu_new = pc.gelu_tanh, gelu = pc.gelu }

local function block(hp, x, prefix)
  local C, std = hp.n_embd, hp.initializer_range
  -- residual projections start smaller, as in GPT-2: std / sqrt(2 * n_layer)
  local proj = { std = std / math.sqrt(2 * hp.n_layer), layout = "transpose" }
  local conv = { std = std, layout = "transpose" }

  local h = nn.layernorm(x, prefix .. ".ln_1", C, hp.layer_norm_epsilon)
  local q, k, v = pc.split(nn.linear(h, prefix .. ".attn.c_attn", C, 3 * C, conv), C, C, C)
  local a = pc.attention(q, k, v, hp.n_head)
  x = x + nn.linear(a, prefix .. ".attn.c_proj", C, C, proj)

  local inner = hp.n_inner or 4 * C
  local act = activations[hp.activation_function]
  if not act then error("unsupported activation_function '" .. tostring(hp.activation_function) .. "'") end
  h = nn.layernorm(x, prefix .. ".ln_2", C, hp.layer_norm_epsilon)
  h = act(nn.linear(h, prefix .. ".mlp.c_fc", C, inner, conv))
  return x + nn.linear(h, prefix .. ".mlp.c_proj", inner, C, proj)
end

-- Transformer(E): everything from input embeddings to the final norm,
-- position embeddings included, as GPT2Model runs with inputs_embeds.
local function transformer(hp, e, ids)
  local wpe = pc.param("transformer.wpe.weight", { hp.n_positions, hp.n_embd }, nn.normal(hp.initializer_range))
  local x = e + pc.embedding(wpe, pc.positions(ids))
  for i = 0, hp.n_layer - 1 do
    x = block(hp, x, "transformer.h." .. i)
  end
  return nn.layernorm(x, "transformer.ln_f", hp.n_embd, hp.layer_norm_epsilon)
end

function gpt2.forward(hp, ids)
  local wte = pc.param("transformer.wte.weight", { hp.vocab_size, hp.n_embd }, nn.normal(hp.initializer_range))
  local h = transformer(hp, pc.embedding(wte, ids), ids)
  return pc.linear(h, wte) -- the LM head is the token embedding (tied)
end

return gpt2
