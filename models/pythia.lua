-- Pythia (GPT-NeoX), as Hugging Face's GPTNeoXForCausalLM computes it:
-- LayerNorm before attention and MLP, both read the block's input and add
-- to it (parallel residual; the sequential form when use_parallel_residual
-- is false), rotary positions on the first rotary_pct of each head, exact
-- GELU, an LM head (embed_out) apart from the input embedding (embed_in);
-- pondering (docs/pondering.md) when ponderinglm is set. Parameter names
-- are the Hugging Face ones; the fused query_key_value rows are stored per
-- head (q, k, v of head 0, then head 1, ...) and re-laid out on import.
local pc = require "pondercc"
local nn = require "lib.nn"
local blocks = require "lib.blocks"

local pythia = pc.model {
  name = "pythia",
  architectures = { "GPTNeoXForCausalLM" },
  model_type = "gpt_neox",
  -- Hugging Face config.json names. The sizes default to Pythia-70M; the
  -- other keys default as in transformers' GPTNeoXConfig, so a config.json
  -- without them means what it means to transformers.
  hparams = {
    vocab_size = 50304,
    hidden_size = 512,
    num_hidden_layers = 6,
    num_attention_heads = 8,
    intermediate_size = 2048,
    max_position_embeddings = 2048,
    rotary_pct = 0.25,            -- the share of each head that rotary positions turn
    rotary_emb_base = 10000.0,    -- theta
    rope_type = "default",        -- no scaled RoPE variants
    layer_norm_eps = 1e-5,
    use_parallel_residual = true,
    hidden_act = "gelu",
    attention_bias = true,
    tie_word_embeddings = false,
    initializer_range = 0.02,
  },
  -- transformers 5 writes the rotary settings inside rope_parameters.
  hf_aliases = {
    rotary_pct = "rope_parameters.partial_rotary_factor",
    rotary_emb_base = "rope_parameters.rope_theta",
    rope_type = { "rope_parameters.rope_type", "rope_scaling.rope_type", "rope_scaling.type" },
  },
  hf_required = { "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size" },
  configs = {   -- Pythia's published sizes
    { "tiny", vocab_size = 96, hidden_size = 32, num_hidden_layers = 2, num_attention_heads = 2,
      intermediate_size = 128, max_position_embeddings = 64 },
    { "70m" },
    { "160m", hidden_size = 768, num_hidden_layers = 12, num_attention_heads = 12, intermediate_size = 3072 },
    { "410m", hidden_size = 1024, num_hidden_layers = 24, num_attention_heads = 16, intermediate_size = 4096 },
    { "1b", hidden_size = 2048, num_hidden_layers = 16, num_attention_heads = 8, intermediate_size = 8192 },
    { "1.4b", hidden_size = 2048, num_hidden_layers = 24, num_attention_heads = 16, intermediate_size = 8192 },
    { "2.8b", hidden_size = 2560, num_hidden_layers = 32, num_attention_heads = 32, intermediate_size = 10240 },
  },
  default_config = "70m",
  context = "max_position_embeddings",
}

-- Rotary dims per head: int(head_size * rotary_pct) as transformers takes
-- it, rounded up to even as its cos/sin tables are.
local function rotary_dims(hp)
  local d = math.floor(hp.hidden_size // hp.num_attention_heads * hp.rotary_pct)
  return d + d % 2
end

local function layer(hp, x, positions, prefix, init)
  local C, H, eps = hp.hidden_size, hp.num_attention_heads, hp.layer_norm_eps
  local bias = hp.attention_bias
  local act = nn.activation(hp.hidden_act)

  local h = nn.layernorm(x, prefix .. ".input_layernorm", C, eps)
  local qkv = nn.linear(h, prefix .. ".attention.query_key_value", C, 3 * C,
                        { init = init(), bias = bias, layout = "neox_qkv:" .. H, bias_layout = "neox_qkv:" .. H })
  local q, k, v = pc.split(qkv, C, C, C)
  local a = blocks.rotary_attention(q, k, v, positions,
                                    { n_head = H, rotary_dims = rotary_dims(hp), theta = hp.rotary_emb_base })
  a = nn.linear(a, prefix .. ".attention.dense", C, C, { init = init(true), bias = bias })

  local function mlp(y)
    y = nn.layernorm(y, prefix .. ".post_attention_layernorm", C, eps)
    y = act(nn.linear(y, prefix .. ".mlp.dense_h_to_4h", C, hp.intermediate_size, { init = init() }))
    return nn.linear(y, prefix .. ".mlp.dense_4h_to_h", hp.intermediate_size, C, { init = init(true) })
  end
  if hp.use_parallel_residual then
    return mlp(x) + a + x          -- x + attn(ln1(x)) + mlp(ln2(x))
  end
  x = a + x
  return mlp(x) + x
end

function pythia.forward(hp, ids)
  if hp.rope_type ~= "default" then error("rope_type '" .. hp.rope_type .. "' is not supported (only default RoPE)") end
  local C = hp.hidden_size
  local init = blocks.initializer(hp, { width = C, layers = hp.num_hidden_layers, range = hp.initializer_range })
  local embed_in = pc.param("gpt_neox.embed_in.weight", { hp.vocab_size, C }, init())
  local embed_out = hp.tie_word_embeddings and embed_in
                    or pc.param("embed_out.weight", { hp.vocab_size, C }, init())
  -- Transformer(E): the layers and the final norm, as GPTNeoXModel runs with inputs_embeds
  local logits = blocks.causal_lm(hp, ids, embed_in, embed_out, function(e)
    local positions = pc.positions(ids)
    for i = 0, hp.num_hidden_layers - 1 do
      e = layer(hp, e, positions, "gpt_neox.layers." .. i, init)
    end
    local h = nn.layernorm(e, "gpt_neox.final_layer_norm", C, hp.layer_norm_eps)
    return h
  end)
  return logits   -- (not a tail call, so errors point at these lines)
end

return pythia
