// StateDict.swift — an ordered dictionary of named float tensors (what weight files hold), and
// loading it into a module with PyTorch's strict / non-strict key checking.
import Tensors

/// A tensor's shape and values, detached from any graph.
public struct NamedTensor: Equatable {
    /// Dimensions ([] for a scalar such as `num_batches_tracked`).
    public var shape: [Int]
    /// Row-major values; `shape` product of them.
    public var values: [Float]

    /// - Parameters:
    ///   - shape: dimensions.
    ///   - values: row-major values; their count must equal the product of `shape`.
    public init(shape: [Int], values: [Float]) {
        precondition(shape.reduce(1, *) == values.count, "NamedTensor: \(values.count) values for shape \(shape)")
        self.shape = shape
        self.values = values
    }
}

/// An ordered `[key: (shape, values)]` dictionary, PyTorch's `state_dict()`: the format exchanged with
/// weight files. Insertion order is kept (it is the order torch writes and expects).
public struct StateDict: Sequence, Equatable {
    public private(set) var keys: [String] = []
    private var storage: [String: NamedTensor] = [:]

    public init() {}

    /// Builds a state dict from ordered pairs (a repeated key keeps its first position, last value).
    public init(_ pairs: [(String, NamedTensor)]) {
        for (key, value) in pairs { self[key] = value }
    }

    public var count: Int { keys.count }

    /// The entry for `key`; assigning nil removes it, assigning a new key appends it.
    public subscript(key: String) -> NamedTensor? {
        get { storage[key] }
        set {
            if let newValue {
                if storage.updateValue(newValue, forKey: key) == nil { keys.append(key) }
            } else if storage.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }

    public func makeIterator() -> AnyIterator<(key: String, value: NamedTensor)> {
        var index = 0
        return AnyIterator {
            guard index < keys.count else { return nil }
            defer { index += 1 }
            return (keys[index], storage[keys[index]]!)
        }
    }

    /// The entries whose key starts with `prefix`, with the prefix removed ("backbone." → a backbone's own dict).
    public func strippingPrefix(_ prefix: String) -> StateDict {
        StateDict(keys.filter { $0.hasPrefix(prefix) }.map { (String($0.dropFirst(prefix.count)), storage[$0]!) })
    }

    /// Every entry with `prefix` put in front of its key.
    public func addingPrefix(_ prefix: String) -> StateDict {
        StateDict(keys.map { (prefix + $0, storage[$0]!) })
    }

    /// The entries whose key satisfies `isIncluded`, in order.
    public func filter(_ isIncluded: (String) -> Bool) -> StateDict {
        StateDict(keys.filter(isIncluded).map { ($0, storage[$0]!) })
    }
}

/// What loading a state dict found, as PyTorch's `load_state_dict` reports it.
public struct LoadReport: Equatable, CustomStringConvertible {
    /// Keys the module has and the state dict lacks.
    public var missingKeys: [String] = []
    /// Keys the state dict has and the module lacks.
    public var unexpectedKeys: [String] = []
    /// Keys present on both sides with different shapes: (key, expected, found).
    public var shapeMismatches: [(key: String, expected: [Int], found: [Int])] = []

    public var isClean: Bool { missingKeys.isEmpty && unexpectedKeys.isEmpty && shapeMismatches.isEmpty }

    public var description: String {
        var parts: [String] = []
        if !missingKeys.isEmpty { parts.append("missing keys: " + missingKeys.joined(separator: ", ")) }
        if !unexpectedKeys.isEmpty { parts.append("unexpected keys: " + unexpectedKeys.joined(separator: ", ")) }
        if !shapeMismatches.isEmpty {
            parts.append("shape mismatches: " + shapeMismatches.map { "\($0.key) (model \($0.expected), file \($0.found))" }
                .joined(separator: ", "))
        }
        return parts.isEmpty ? "all keys matched" : parts.joined(separator: "; ")
    }

    public static func == (a: LoadReport, b: LoadReport) -> Bool {
        a.missingKeys == b.missingKeys && a.unexpectedKeys == b.unexpectedKeys
            && a.shapeMismatches.map { "\($0.key)\($0.expected)\($0.found)" } == b.shapeMismatches.map { "\($0.key)\($0.expected)\($0.found)" }
    }
}

/// Why a state dict could not be loaded.
public struct StateDictError: Error, CustomStringConvertible {
    public let report: LoadReport
    public var description: String { "state dict does not match the model: \(report)" }
}

extension Module {
    /// The parameters and buffers of the subtree as a state dict, in PyTorch's order and keys (values copied
    /// lazily: arrays are copy-on-write).
    public func stateDict() -> StateDict {
        StateDict(namedStates().map { ($0.key, NamedTensor(shape: $0.tensor.shape, values: $0.tensor.data)) })
    }

    /// Copies values from `stateDict` into the parameters and buffers of the subtree.
    ///
    /// Strict (PyTorch's default): any missing key, unexpected key or shape mismatch throws, naming all of
    /// them, and nothing is loaded. Non-strict: missing and unexpected keys are reported and skipped; shape
    /// mismatches still throw (as in PyTorch). Gradients of loaded parameters are dropped.
    /// - Parameters:
    ///   - stateDict: keyed values, e.g. from a `.pth` or safetensors file.
    ///   - strict: whether every key must match.
    /// - Returns: the report (clean in strict mode).
    @discardableResult
    public func loadStateDict(_ stateDict: StateDict, strict: Bool = true) throws -> LoadReport {
        let states = namedStates()
        var report = LoadReport()
        var known = Set<String>()
        for state in states {
            known.insert(state.key)
            guard let entry = stateDict[state.key] else { report.missingKeys.append(state.key); continue }
            // A scalar saved as [1] (or the reverse) is the same value; anything else must match exactly.
            let sameShape = entry.shape == state.tensor.shape
                || (entry.values.count == 1 && state.tensor.count == 1 && entry.shape.count <= 1 && state.tensor.shape.count <= 1)
            if !sameShape { report.shapeMismatches.append((state.key, state.tensor.shape, entry.shape)) }
        }
        report.unexpectedKeys = stateDict.keys.filter { !known.contains($0) }
        if !report.shapeMismatches.isEmpty || (strict && !report.isClean) { throw StateDictError(report: report) }
        for state in states {
            guard let entry = stateDict[state.key] else { continue }
            state.tensor.data = entry.values
            state.tensor.grad = nil
        }
        return report
    }
}
