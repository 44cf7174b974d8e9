-- A test model (tests/test_backends.c, tests/test_codegen.c): one
-- projection split three ways whose middle piece is unused, so the gradient
-- of the projection's output gets two slices that leave a gap (the
-- lowering keeps its zeros and adds: compiler/lower/lower_ops.c,
-- covering_chain), and q, k, v of another, whose slices cover it (copied
-- in, no zeros) and compute its bias add themselves.
local pc = require "pondercc"

local m = pc.model {
  name = "split_unused",
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
    local a, _, c = pc.split(pc.linear(e, pc.param("gap.weight", { 3 * C, C }, w)), C, C, C)
    local q, k, v = pc.split(pc.linear(e, pc.param("qkv.weight", { 3 * C, C }, w)) + pc.param("qkv.bias", { 3 * C }, w), C, C, C)
    return e + a * c + pc.attention(q, k, v, 2)
  end })
  return pc.linear(h, embed)
end

return m
