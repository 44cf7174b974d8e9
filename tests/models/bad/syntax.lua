local pc = require "pondercc"
local m = pc.model { name = "bad", hparams = { width = 8 }, configs = { { "only" } } }
function m.forward(hp, ids)
  local x = = 1
end
return m
