-- Rotary positions on an odd number of dims.
local pc = require "pondercc"
local m = pc.model { name = "bad", hparams = { vocab = 10, width = 32 }, configs = { { "only" } } }
function m.forward(hp, ids)
  local wte = pc.param("wte", { hp.vocab, hp.width })
  local x = pc.rope(pc.embedding(wte, ids), pc.positions(ids), 2, 3)
  return pc.linear(x, wte)
end
return m
