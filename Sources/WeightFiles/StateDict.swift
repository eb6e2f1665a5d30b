/// Named tensors in insertion order, like PyTorch's `state_dict()` (an `OrderedDict`).
///
/// Keys are PyTorch state-dict paths (`backbone.layer1.0.conv1.weight`). Setting an existing key replaces
/// its tensor in place; setting a new one appends it; setting `nil` removes it.
public struct StateDict: Sequence, Equatable, Sendable {
    public private(set) var keys: [String] = []
    private var tensors: [String: WeightTensor] = [:]

    public init() {}

    /// A state dict of `entries` in their order; a repeated key keeps its first position and last tensor.
    public init<S: Sequence>(_ entries: S) where S.Element == (String, WeightTensor) {
        for (key, tensor) in entries { self[key] = tensor }
    }

    public var count: Int { keys.count }
    public var isEmpty: Bool { keys.isEmpty }

    public subscript(key: String) -> WeightTensor? {
        get { tensors[key] }
        set {
            if let tensor = newValue {
                if tensors.updateValue(tensor, forKey: key) == nil { keys.append(key) }
            } else if tensors.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }

    public func makeIterator() -> AnyIterator<(key: String, tensor: WeightTensor)> {
        var index = 0
        return AnyIterator {
            guard index < keys.count else { return nil }
            defer { index += 1 }
            let key = keys[index]
            return (key, tensors[key]!)
        }
    }

    /// Every key with `prefix` put in front, e.g. a torchvision file loaded into the fusion model's
    /// `backbone.` subtree.
    public func addingPrefix(_ prefix: String) -> StateDict {
        StateDict(map { (prefix + $0.key, $0.tensor) })
    }

    /// The keys that start with `prefix`, with the prefix removed (e.g. `backbone.` → a torchvision
    /// ResNet's own keys); other keys are left out.
    public func strippingPrefix(_ prefix: String) -> StateDict {
        StateDict(lazy.filter { $0.key.hasPrefix(prefix) }.map { (String($0.key.dropFirst(prefix.count)), $0.tensor) })
    }

    /// The entries whose key satisfies `isIncluded`, in order.
    public func filtered(_ isIncluded: (String) -> Bool) -> StateDict {
        StateDict(filter { isIncluded($0.key) }.map { ($0.key, $0.tensor) })
    }

    /// Compares the keys and shapes with what a model expects, like `load_state_dict(strict=True)`
    /// (`Module.loadStateDict` checks through here).
    /// - Parameter expected: the model's keys and shapes, in the model's order.
    /// - Returns: the differences; `isEmpty` when the file fits the model exactly.
    public func mismatches(against expected: [(key: String, shape: [Int])]) -> StateDictMismatch {
        var report = StateDictMismatch()
        var wanted = Set<String>()
        for (key, shape) in expected {
            wanted.insert(key)
            guard let tensor = tensors[key] else { report.missingKeys.append(key); continue }
            // A scalar saved as [1] (or the reverse) is the same value, as PyTorch's `load_state_dict` accepts it.
            let sameScalar = tensor.count == 1 && WeightTensor.elementCount(shape) == 1 && tensor.shape.count <= 1 && shape.count <= 1
            if tensor.shape != shape && !sameScalar {
                report.shapeMismatches.append(.init(key: key, expected: shape, found: tensor.shape))
            }
        }
        report.unexpectedKeys = keys.filter { !wanted.contains($0) }
        return report
    }
}

/// How a state dict differs from what a model expects (see `StateDict.mismatches(against:)`).
/// Thrown as an error by strict loaders; `description` is one line naming every offending key.
public struct StateDictMismatch: Error, CustomStringConvertible, Equatable, Sendable {
    public struct ShapeMismatch: Equatable, Sendable {
        public let key: String
        public let expected: [Int]
        public let found: [Int]
    }

    public var missingKeys: [String] = []
    public var unexpectedKeys: [String] = []
    public var shapeMismatches: [ShapeMismatch] = []

    public init() {}

    public var isEmpty: Bool { missingKeys.isEmpty && unexpectedKeys.isEmpty && shapeMismatches.isEmpty }

    public var description: String {
        var parts: [String] = []
        if !missingKeys.isEmpty { parts.append("missing keys: " + missingKeys.joined(separator: ", ")) }
        if !unexpectedKeys.isEmpty { parts.append("unexpected keys: " + unexpectedKeys.joined(separator: ", ")) }
        if !shapeMismatches.isEmpty {
            parts.append("shape mismatches: " + shapeMismatches.map {
                "\($0.key) expects \($0.expected) but the file has \($0.found)"
            }.joined(separator: ", "))
        }
        return parts.isEmpty ? "state dict matches" : parts.joined(separator: "; ")
    }
}

extension StateDict {
    /// The keys whose tensors hold a NaN or an infinity, in order (empty when every value is finite).
    /// Loading keeps such values; this is how a caller finds them before using the weights.
    public var keysWithNonFiniteValues: [String] {
        keys.filter { self[$0]?.allFinite == false }
    }
}
