-- A test model (tests/test_backends.c): a product added to a value that is
-- read again afterwards, so the sum cannot be written over it: the sum's
-- buffer gets a copy of it, then the product adds itself in (beta = 1:
-- compiler/lower/inline.c, sums_into_ops). The attention gives decoding
-- its KV caches.
local pc = require "pondercc"

local m = pc.model {
  name = "product_sum",
  hparams = { vocab_size = 64, hidden_size = 16, max_position_embeddings = 32 },
  configs = { { "tiny" } },
  default_config = "tiny",
  context = "max_position_embeddings",
}

function m.forward(hp, ids)
  local C = hp.hidden_size
  local w = { init = "normal", std = 0.2 }
  local embed = pc.param("embed.weight", { hp.vocab_size, C }, w)
  local h = pc.ponder(hp, { embed = embed, head = embed, ids = ids, body = function(e)
    local r = e + pc.linear(e, pc.param("proj.weight", { C, C }, w))
    return pc.linear(r, pc.param("out.weight", { C, C }, w)) * e + r + pc.attention(e, e, e, 2)
  end })
  return pc.linear(h, embed)
end

return m
