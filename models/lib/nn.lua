-- Layers shared by the model scripts. Each takes the Hugging Face name
-- prefix of its parameters, so checkpoints import by name.
local pc = require "pondercc"

local nn = {}

-- Initialisers, as the options table of pondercc.param.
function nn.normal(std) return { init = "normal", std = std } end
nn.zeros = { init = "zeros" }
nn.ones = { init = "ones" }

-- LayerNorm over the last axis: prefix.weight, prefix.bias.
function nn.layernorm(x, prefix, width, eps)
  local w = pc.param(prefix .. ".weight", { width }, nn.ones)
  local b = pc.param(prefix .. ".bias", { width }, nn.zeros)
  return pc.layernorm(x, w, b, eps)
end

-- A dense layer y = x W^T + b with W as [n_out, n_in]. opts:
--   std    init std of W (default 0.02)
--   bias   false for no bias
--   layout "transpose" when the checkpoint stores W as [n_in, n_out]
--          (GPT-2's Conv1D)
function nn.linear(x, prefix, n_in, n_out, opts)
  opts = opts or {}
  local w = pc.param(prefix .. ".weight", { n_out, n_in },
                     { init = "normal", std = opts.std or 0.02, layout = opts.layout })
  if opts.bias == false then return pc.linear(x, w) end
  local b = pc.param(prefix .. ".bias", { n_out }, nn.zeros)
  return pc.linear(x, w, b)
end

return nn
