// WeightFileBridge.swift — moving model state to and from weight files (.pth, safetensors): NN's
// StateDict (float tensors) ⇄ WeightFiles' StateDict (tensors with their file dtype).
import NN
import WeightFiles

extension NN.StateDict {
    /// A weight file's tensors as float tensors (integer tensors such as `num_batches_tracked` converted).
    public init(_ file: WeightFiles.StateDict) {
        self.init(file.map { ($0.key, NamedTensor(shape: $0.tensor.shape, values: $0.tensor.floats)) })
    }

    /// The tensors as a weight file stores them: float32, except `num_batches_tracked` as int64, like PyTorch.
    public var weightFileStateDict: WeightFiles.StateDict {
        WeightFiles.StateDict(map { entry -> (String, WeightTensor) in
            if entry.key.hasSuffix("num_batches_tracked") {
                return (entry.key, WeightTensor(shape: entry.value.shape, integers: entry.value.values.map { Int64($0) }))
            }
            return (entry.key, WeightTensor(shape: entry.value.shape, floats: entry.value.values))
        })
    }
}

extension Module {
    /// Loads tensors read from a weight file (e.g. `WeightFiles.StateDict.load(from:)`), with the same key and
    /// shape checks as `loadStateDict(_:strict:)`.
    @discardableResult
    public func loadStateDict(_ file: WeightFiles.StateDict, strict: Bool = true) throws -> LoadReport {
        try loadStateDict(NN.StateDict(file), strict: strict)
    }

    /// The parameters and buffers as a weight file stores them (see `NN.StateDict.weightFileStateDict`).
    public func weightFileStateDict() -> WeightFiles.StateDict { stateDict().weightFileStateDict }
}

extension FusionModel {
    /// Loads a torchvision ResNet weight file's tensors into the backbone (see `loadBackbone(_:)`).
    @discardableResult
    public func loadBackbone(_ file: WeightFiles.StateDict) throws -> LoadReport {
        try loadBackbone(NN.StateDict(file))
    }
}
