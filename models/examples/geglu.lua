-- A LLaMA variant, written in docs/writing-models.md: the MLP's gate goes
-- through GELU instead of SiLU (GeGLU), and the norms may be LayerNorm
-- instead of RMSNorm. With norm = "rmsnorm" and hidden_act = "silu" it is
-- LLaMA, and it reads LlamaForCausalLM checkpoints. It names no Hugging
-- Face architecture or model_type: transformers has no class for it, so
-- `ponder export` refuses it and its checkpoints do not pose as LLaMA.
local pc = require "pondercc"
local nn = require "lib.nn"
local blocks = require "lib.blocks"

local geglu = pc.model {
  name = "geglu",
  hparams = {
    vocab_size = 32000,
    hidden_size = 512,
    intermediate_size = 1376,
    num_hidden_layers = 8,
    num_attention_heads = 8,
    num_key_value_heads = pc.none,   -- none: as many as query heads
    max_position_embeddings = 1024,
    rms_norm_eps = 1e-6,             -- the eps of either norm
    rope_theta = 10000.0,
    hidden_act = "gelu",             -- the gate's activation: gelu (GeGLU), silu (SwiGLU)
    norm = "layernorm",              -- layernorm or rmsnorm
    tie_word_embeddings = false,
    initializer_range = 0.02,
  },
  hf_required = { "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads" },
  hf_aliases = { rope_theta = "rope_parameters.rope_theta" },   -- where transformers 5 writes it
  configs = {
    { "tiny", vocab_size = 512, hidden_size = 64, intermediate_size = 172, num_hidden_layers = 2,
      num_attention_heads = 4, num_key_value_heads = 2, max_position_embeddings = 128 },
    { "small" },
  },
  default_config = "tiny",
  context = "max_position_embeddings",
}

-- The norm the hyperparameters ask for, with its Hugging Face-style names.
local function norm(hp, x, prefix)
  if hp.norm == "rmsnorm" then return nn.rmsnorm(x, prefix, hp.hidden_size, hp.rms_norm_eps) end
  if hp.norm == "layernorm" then return nn.layernorm(x, prefix, hp.hidden_size, hp.rms_norm_eps) end
  error("norm must be rmsnorm or layernorm, not '" .. tostring(hp.norm) .. "'")
end

local function layer(hp, x, positions, prefix, init)
  local C, H = hp.hidden_size, hp.num_attention_heads
  local Hkv, D = hp.num_key_value_heads or H, C // H
  local proj = { init = init(), bias = false }

  local h = norm(hp, x, prefix .. ".input_layernorm")
  local q = nn.linear(h, prefix .. ".self_attn.q_proj", C, H * D, proj)
  local k = nn.linear(h, prefix .. ".self_attn.k_proj", C, Hkv * D, proj)
  local v = nn.linear(h, prefix .. ".self_attn.v_proj", C, Hkv * D, proj)
  local a = blocks.rotary_attention(q, k, v, positions,
                                    { n_head = H, n_kv_head = Hkv, rotary_dims = D, theta = hp.rope_theta })
  x = x + nn.linear(a, prefix .. ".self_attn.o_proj", H * D, C, { init = init(true), bias = false })

  h = norm(hp, x, prefix .. ".post_attention_layernorm")
  return x + blocks.gated_mlp(h, prefix .. ".mlp", C, hp.intermediate_size, nn.activation(hp.hidden_act), init)
end

function geglu.forward(hp, ids)
  local C = hp.hidden_size
  local init = blocks.initializer(hp, { width = C, layers = hp.num_hidden_layers, range = hp.initializer_range })
  local embed = pc.param("model.embed_tokens.weight", { hp.vocab_size, C }, init())
  local head = hp.tie_word_embeddings and embed or pc.param("lm_head.weight", { hp.vocab_size, C }, init())
  local logits = blocks.causal_lm(hp, ids, embed, head, function(e)
    local positions = pc.positions(ids)
    for i = 0, hp.num_hidden_layers - 1 do
      e = layer(hp, e, positions, "model.layers." .. i, init)
    end
    local h = norm(hp, e, "model.norm")
    return h
  end)
  return logits
end

return geglu
