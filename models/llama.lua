-- LLaMA, as Hugging Face's LlamaForCausalLM computes it: RMSNorm before
-- attention and MLP, rotary positions on whole heads (theta = rope_theta),
-- grouped-query attention (num_key_value_heads), the SwiGLU MLP, no
-- biases, an LM head tied to the token embedding or not
-- (tie_word_embeddings); pondering (docs/pondering.md) when ponderinglm is
-- set. Parameter names are the Hugging Face ones; no layout changes.
local pc = require "pondercc"
local nn = require "lib.nn"
local blocks = require "lib.blocks"

local llama = pc.model {
  name = "llama",
  architectures = { "LlamaForCausalLM" },
  model_type = "llama",
  -- Hugging Face config.json names, with the defaults of transformers'
  -- LlamaConfig, so a config.json without a key means what it means to
  -- transformers.
  hparams = {
    vocab_size = 32000,
    hidden_size = 4096,
    intermediate_size = 11008,
    num_hidden_layers = 32,
    num_attention_heads = 32,
    num_key_value_heads = pc.none,   -- none: num_attention_heads (no grouping)
    head_dim = pc.none,              -- none: hidden_size / num_attention_heads
    max_position_embeddings = 2048,
    rms_norm_eps = 1e-6,
    rope_theta = 10000.0,
    rope_type = "default",           -- no scaled RoPE variants
    hidden_act = "silu",
    attention_bias = false,
    mlp_bias = false,
    tie_word_embeddings = false,
    initializer_range = 0.02,
  },
  -- transformers 5 writes the rotary settings inside rope_parameters.
  hf_aliases = {
    rope_theta = "rope_parameters.rope_theta",
    rope_type = { "rope_parameters.rope_type", "rope_scaling.rope_type", "rope_scaling.type" },
  },
  hf_required = { "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads" },
  configs = {
    -- The smallest published shape is 1.1B parameters (4.4 GB in float32),
    -- so the default is a tiny one.
    { "tiny", vocab_size = 96, hidden_size = 32, intermediate_size = 96, num_hidden_layers = 2,
      num_attention_heads = 4, num_key_value_heads = 2, max_position_embeddings = 64 },
    { "tinyllama-1.1b", hidden_size = 2048, intermediate_size = 5632, num_hidden_layers = 22,
      num_attention_heads = 32, num_key_value_heads = 4, rms_norm_eps = 1e-5 },
    { "llama2-7b", num_key_value_heads = 32, max_position_embeddings = 4096, rms_norm_eps = 1e-5 },
  },
  default_config = "tiny",
  context = "max_position_embeddings",
}

local function layer(hp, x, positions, prefix, init)
  local C, H, eps = hp.hidden_size, hp.num_attention_heads, hp.rms_norm_eps
  local Hkv = hp.num_key_value_heads or H
  local D = hp.head_dim or C // H
  local proj = { init = init(), bias = false }

  local h = nn.rmsnorm(x, prefix .. ".input_layernorm", C, eps)
  local q = nn.linear(h, prefix .. ".self_attn.q_proj", C, H * D, proj)
  local k = nn.linear(h, prefix .. ".self_attn.k_proj", C, Hkv * D, proj)
  local v = nn.linear(h, prefix .. ".self_attn.v_proj", C, Hkv * D, proj)
  local a = blocks.rotary_attention(q, k, v, positions,
                                    { n_head = H, n_kv_head = Hkv, rotary_dims = D, theta = hp.rope_theta })
  x = x + nn.linear(a, prefix .. ".self_attn.o_proj", H * D, C, { init = init(true), bias = false })

  h = nn.rmsnorm(x, prefix .. ".post_attention_layernorm", C, eps)
  return x + blocks.gated_mlp(h, prefix .. ".mlp", C, hp.intermediate_size, nn.activation(hp.hidden_act), init)
end

function llama.forward(hp, ids)
  if hp.rope_type ~= "default" then error("rope_type '" .. hp.rope_type .. "' is not supported (only default RoPE)") end
  if hp.attention_bias or hp.mlp_bias then error("attention_bias and mlp_bias are not supported (LLaMA has no biases)") end
  local C = hp.hidden_size
  local init = blocks.initializer(hp, { width = C, layers = hp.num_hidden_layers, range = hp.initializer_range })
  local embed = pc.param("model.embed_tokens.weight", { hp.vocab_size, C }, init())
  local head = hp.tie_word_embeddings and embed or pc.param("lm_head.weight", { hp.vocab_size, C }, init())
  -- Transformer(E): the layers and the final norm, as LlamaModel runs with inputs_embeds
  local logits = blocks.causal_lm(hp, ids, embed, head, function(e)
    local positions = pc.positions(ids)
    for i = 0, hp.num_hidden_layers - 1 do
      e = layer(hp, e, positions, "model.layers." .. i, init)
    end
    local h = nn.rmsnorm(e, "model.norm", C, hp.rms_norm_eps)
    return h
  end)
  return logits
end

return llama
