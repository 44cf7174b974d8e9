local pc = require "pondercc"
local m = pc.model { name = "bad", hparams = { n_embd = 8 }, configs = { { "only" } } }
function m.forward(hp, ids)
  local C = hp.n_embed
end
return m
