// StateDict.swift — a module's parameters and buffers as a state dict (WeightFiles' `StateDict`, the very type
// weight files hold, so a model is saved and loaded without conversion), and loading one with PyTorch's strict /
// non-strict key checking.
import Tensors
import WeightFiles

/// Why a state dict could not be loaded into a module: every key and shape that differs.
public struct StateDictError: Error, CustomStringConvertible {
    public let report: StateDictMismatch
    public var description: String { "state dict does not match the model: \(report)" }
}

extension Module {
    /// The parameters and buffers of the subtree as a state dict, in PyTorch's order, keys and dtypes: float32,
    /// except BatchNorm's `num_batches_tracked` counter, int64 as in PyTorch (values copied lazily: arrays are
    /// copy-on-write).
    public func stateDict() -> StateDict {
        StateDict(namedStates().map { state -> (String, WeightTensor) in
            if state.key.hasSuffix("num_batches_tracked") {
                return (state.key, WeightTensor(shape: state.tensor.shape, integers: state.tensor.data.map { Int64($0) }))
            }
            return (state.key, WeightTensor(shape: state.tensor.shape, floats: state.tensor.data))
        })
    }

    /// Copies values from `stateDict` into the parameters and buffers of the subtree (any dtype: values are
    /// converted to `Float`).
    ///
    /// Strict (PyTorch's default): any missing key, unexpected key or shape mismatch throws, naming all of
    /// them, and nothing is loaded. Non-strict: missing and unexpected keys are reported and skipped; shape
    /// mismatches still throw (as in PyTorch). Gradients of loaded parameters are dropped.
    /// - Parameters:
    ///   - stateDict: keyed tensors, e.g. from a `.pth` or safetensors file.
    ///   - strict: whether every key must match.
    /// - Returns: the report (empty in strict mode).
    @discardableResult
    public func loadStateDict(_ stateDict: StateDict, strict: Bool = true) throws -> StateDictMismatch {
        let states = namedStates()
        let report = stateDict.mismatches(against: states.map { (key: $0.key, shape: $0.tensor.shape) })
        if !report.shapeMismatches.isEmpty || (strict && !report.isEmpty) { throw StateDictError(report: report) }
        for state in states {
            guard let entry = stateDict[state.key] else { continue }
            state.tensor.data = entry.floats
            state.tensor.grad = nil
        }
        return report
    }
}
