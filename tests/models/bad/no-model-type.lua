-- A valid model that names no Hugging Face architecture or model_type, so
-- it cannot be exported for transformers.
local pc = require "pondercc"
local m = pc.model { name = "plain", hparams = { vocab_size = 10, width = 8 }, configs = { { "only" } } }
function m.forward(hp, ids)
  local wte = pc.param("wte", { hp.vocab_size, hp.width })
  return pc.linear(pc.embedding(wte, ids), wte)
end
return m
