// Random.swift — Tensors' random streams come from the package's one seeded-random module.
//
// `RandomGenerator` (xoshiro256** seeded through SplitMix64) lives in SeededRandom, beside the SplitMix64 the data
// pipeline draws from. Tensors' public API takes it (`Tensor.randn`, `dropout`), and so do every layer and model
// above, so it is re-exported: whoever can build a tensor can name its generator without a second import.
@_exported import SeededRandom
