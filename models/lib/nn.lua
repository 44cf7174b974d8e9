-- Layers shared by the model scripts. Each takes the Hugging Face name
-- prefix of its parameters, so checkpoints import by name.
local pc = require "pondercc"

local nn = {}

-- Initialisers, as the options table of pondercc.param.
function nn.normal(std) return { init = "normal", std = std } end
nn.zeros = { init = "zeros" }
nn.ones = { init = "ones" }

-- K, the pondering steps the model will run (0 when pondering is off).
function nn.ponder_steps(hp)
  return hp.ponderinglm and hp.pondering_steps or 0
end

-- The PonderingLM reference initialisation (DESIGN section 1): truncated
-- normal with std sqrt(2 / (5 width)); residual output projections divided
-- by sqrt(2 layers (K + 1)), the effective depth of K + 1 chained passes.
function nn.reference_init(width, layers, steps, output)
  local std = math.sqrt(2 / (5 * width))
  if output then std = std / math.sqrt(2 * layers * (steps + 1)) end
  return { init = "trunc_normal", std = std }
end

-- LayerNorm over the last axis: prefix.weight, prefix.bias.
function nn.layernorm(x, prefix, width, eps)
  local w = pc.param(prefix .. ".weight", { width }, nn.ones)
  local b = pc.param(prefix .. ".bias", { width }, nn.zeros)
  return pc.layernorm(x, w, b, eps)
end

-- RMSNorm over the last axis (LLaMA): prefix.weight.
function nn.rmsnorm(x, prefix, width, eps)
  return pc.rmsnorm(x, pc.param(prefix .. ".weight", { width }, nn.ones), eps)
end

-- A dense layer y = x W^T + b with W as [n_out, n_in]. opts:
--   init        the initialiser of W (default normal, std 0.02)
--   bias        false for no bias
--   layout      how the checkpoint stores W when not as ours: "transpose"
--               ([n_in, n_out], GPT-2's Conv1D), "neox_qkv:HEADS"
--               (GPT-NeoX's per-head interleaved q, k, v rows)
--   bias_layout how it stores the bias ("neox_qkv:HEADS")
function nn.linear(x, prefix, n_in, n_out, opts)
  opts = opts or {}
  local init = opts.init or nn.normal(0.02)
  local w = pc.param(prefix .. ".weight", { n_out, n_in },
                     { init = init.init, std = init.std, layout = opts.layout })
  if opts.bias == false then return pc.linear(x, w) end
  local b = pc.param(prefix .. ".bias", { n_out }, { init = "zeros", layout = opts.bias_layout })
  return pc.linear(x, w, b)
end

-- The activation function a Hugging Face config names (hidden_act,
-- activation_function).
local activations = {
  gelu = pc.gelu,                   -- exact: 0.5 x (1 + erf(x / sqrt 2))
  gelu_new = pc.gelu_tanh,          -- the tanh approximation (GPT-2)
  gelu_pytorch_tanh = pc.gelu_tanh,
  silu = pc.silu, swish = pc.silu,
}

function nn.activation(name)
  local f = activations[name]
  if not f then
    error("unsupported activation '" .. tostring(name) .. "' (gelu, gelu_new, gelu_pytorch_tanh, silu)", 2)
  end
  return f
end

return nn
