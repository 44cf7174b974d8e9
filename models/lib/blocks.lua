-- The pieces the model scripts share above single layers (lib/nn.lua):
-- how weights start, rotary self-attention, the gated MLP, and the causal
-- LM around a model body (pondering included).
local pc = require "pondercc"
local nn = require "lib.nn"

local blocks = {}

-- How a model's weights start: init(output) gives the options of a weight,
-- `output` true for the residual output projections. Hugging Face's normal
-- with std o.range (output projections divided by o.output_div, as GPT-2
-- does; default 1), or the PonderingLM reference initialisation when
-- ponder_reference_init is set. o: { width =, layers =, range =, output_div = }
function blocks.initializer(hp, o)
  return function(output)
    if hp.ponder_reference_init then
      return nn.reference_init(o.width, o.layers, nn.ponder_steps(hp), output)
    end
    return nn.normal(o.range / (output and o.output_div or 1))
  end
end

-- Causal self-attention with rotary positions: q [B,T,n_head*D], k and v
-- [B,T,n_kv_head*D] (grouped-query when n_kv_head < n_head); the first
-- rotary_dims of each head of q and k turn by their position (none when
-- 0). o: { n_head =, n_kv_head = (default n_head), rotary_dims =, theta = }
function blocks.rotary_attention(q, k, v, positions, o)
  local kv_heads = o.n_kv_head or o.n_head
  if o.rotary_dims > 0 then
    q = pc.rope(q, positions, o.n_head, o.rotary_dims, o.theta)
    k = pc.rope(k, positions, kv_heads, o.rotary_dims, o.theta)
  end
  return pc.attention(q, k, v, o.n_head, kv_heads)
end

-- The gated MLP: down(act(gate(x)) * up(x)), no biases (SwiGLU with SiLU,
-- as LLaMA: prefix.gate_proj, prefix.up_proj, prefix.down_proj).
function blocks.gated_mlp(x, prefix, width, inner, act, init)
  local gate = nn.linear(x, prefix .. ".gate_proj", width, inner, { init = init(), bias = false })
  local up = nn.linear(x, prefix .. ".up_proj", width, inner, { init = init(), bias = false })
  return nn.linear(act(gate) * up, prefix .. ".down_proj", inner, width, { init = init(true), bias = false })
end

-- A causal LM's logits: the pondering loop (off unless ponderinglm is set;
-- docs/pondering.md) around body, the model from input embeddings to its
-- final norm, then the LM head. embed is W_in [V,C], head W_out [V,C] (the
-- same tensor when the embeddings are tied).
function blocks.causal_lm(hp, ids, embed, head, body)
  local h = pc.ponder(hp, { embed = embed, head = head, ids = ids, body = body })
  return pc.linear(h, head)
end

return blocks
