local pc = require "pondercc"
return pc.model { name = "bad", hparams = { n_embd = 8 }, configs = { { "only" } } }
