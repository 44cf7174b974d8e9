-- A LayerNorm whose weight is narrower than its input.
local pc = require "pondercc"
local m = pc.model { name = "bad", hparams = { vocab = 10, width = 32 }, configs = { { "only" } } }
function m.forward(hp, ids)
  local wte = pc.param("wte", { hp.vocab, hp.width })
  local w = pc.param("ln.weight", { 16 }, { init = "ones" })
  local b = pc.param("ln.bias", { 16 }, { init = "zeros" })
  local x = pc.layernorm(pc.embedding(wte, ids), w, b, 1e-5)
  return pc.linear(x, wte)
end
return m
