-- A GPT-NeoX fused QKV layout without its head count.
local pc = require "pondercc"
local m = pc.model { name = "bad", hparams = { vocab_size = 10, width = 12 }, configs = { { "only" } } }
function m.forward(hp, ids)
  local wte = pc.param("wte", { hp.vocab_size, hp.width })
  local qkv = pc.param("qkv.weight", { 3 * hp.width, hp.width }, { layout = "neox_qkv" })
  local q, k, v = pc.split(pc.linear(pc.embedding(wte, ids), qkv), hp.width, hp.width, hp.width)
  return pc.linear(pc.attention(q, k, v, 2), wte)
end
return m
