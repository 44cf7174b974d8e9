-- hf_required names a key that is no hyperparameter.
local pc = require "pondercc"
local m = pc.model { name = "bad", hparams = { vocab = 10, width = 32 }, configs = { { "only" } },
                     hf_required = { "vocab", "hidden_size" } }
function m.forward(hp, ids)
  local wte = pc.param("wte", { hp.vocab, hp.width })
  return pc.linear(pc.embedding(wte, ids), wte)
end
return m
