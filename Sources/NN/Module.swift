// Module.swift — the layer base class: named parameters, buffers and children whose paths are
// PyTorch state_dict keys, train/eval mode and freezing (mlx-swift's Module, swift-models' Layer).
import Tensors

/// A layer that maps one tensor to one tensor (swift-models `Layer`, mlx-swift `UnaryLayer`).
public protocol UnaryLayer: AnyObject {
    /// The forward pass.
    func callAsFunction(_ x: Tensor) -> Tensor
}

/// A module that is also a unary layer: what `Sequential` holds.
public typealias UnaryModule = Module & UnaryLayer

/// Base class of every layer and model.
///
/// Items are found by reflection, in declaration order, as mlx-swift does:
/// - a stored `Tensor` property is a parameter named like the property;
/// - a stored `Module` (or optional module) property is a child named like the property;
/// - `@ParameterInfo(key:)`, `@ModuleInfo(key:)` give the key when the Swift name differs;
/// - `@BufferInfo(key:)` marks a tensor as a buffer (state, not trained: running statistics).
/// The state_dict order is PyTorch's: a module's parameters, then its buffers, then each child's.
open class Module {
    /// Training (true) or evaluation (false) mode; changed for a whole subtree by `train(_:)`/`eval()`.
    public private(set) var training = true

    public init() {}

    // MARK: Items

    /// One item of a module found by reflection.
    public enum Item {
        case parameter(Tensor)
        case buffer(Tensor)
        case module(Module)
    }

    /// This module's own items (not recursive), keyed, in declaration order. Subclasses with dynamic
    /// children (Sequential) override it.
    open func items() -> [(key: String, item: Item)] {
        var chain: [Mirror] = []
        var mirror: Mirror? = Mirror(reflecting: self)
        while let m = mirror, m.subjectType != Module.self {
            chain.append(m)
            mirror = m.superclassMirror
        }
        var result: [(key: String, item: Item)] = []
        for m in chain.reversed() {
            for child in m.children {
                guard let label = child.label else { continue }
                if let info = child.value as? KeyedItem {
                    let key = info.key ?? (label.hasPrefix("_") ? String(label.dropFirst()) : label)
                    if let item = Module.classify(info.value, isBuffer: info.isBuffer) { result.append((key, item)) }
                } else if let item = Module.classify(child.value, isBuffer: false) {
                    result.append((label, item))
                }
            }
        }
        return result
    }

    private static func classify(_ value: Any, isBuffer: Bool) -> Item? {
        switch value {
        case let t as Tensor: return isBuffer ? .buffer(t) : .parameter(t)
        case let m as Module: return .module(m)
        default: return nil  // nil optionals and plain values (sizes, flags) are not items
        }
    }

    /// Direct children with their keys.
    public func namedChildren() -> [(String, Module)] {
        items().compactMap { if case .module(let m) = $0.item { return ($0.key, m) } else { return nil } }
    }

    /// Every module of the subtree with its dotted path ("" for this one), parents before children.
    public func namedModules(prefix: String = "") -> [(String, Module)] {
        var result: [(String, Module)] = [(prefix, self)]
        for (key, child) in namedChildren() {
            result += child.namedModules(prefix: prefix.isEmpty ? key : prefix + "." + key)
        }
        return result
    }

    /// Parameters and buffers of the subtree in state_dict order, with dotted keys.
    public func namedStates(prefix: String = "") -> [(key: String, tensor: Tensor, isBuffer: Bool)] {
        let own = items()
        let path: (String) -> String = { prefix.isEmpty ? $0 : prefix + "." + $0 }
        var result: [(key: String, tensor: Tensor, isBuffer: Bool)] = []
        for (key, item) in own { if case .parameter(let t) = item { result.append((path(key), t, false)) } }
        for (key, item) in own { if case .buffer(let t) = item { result.append((path(key), t, true)) } }
        for (key, item) in own { if case .module(let m) = item { result += m.namedStates(prefix: path(key)) } }
        return result
    }

    /// Every parameter of the subtree with its dotted key (PyTorch's `named_parameters()`).
    public func namedParameters() -> [(String, Tensor)] {
        namedStates().filter { !$0.isBuffer }.map { ($0.key, $0.tensor) }
    }

    /// Every buffer of the subtree with its dotted key (PyTorch's `named_buffers()`).
    public func namedBuffers() -> [(String, Tensor)] {
        namedStates().filter { $0.isBuffer }.map { ($0.key, $0.tensor) }
    }

    /// The parameters of the subtree.
    public func parameters() -> [Tensor] { namedParameters().map(\.1) }

    /// The parameters that are not frozen: what an optimizer should get.
    public func trainableParameters() -> [Tensor] { parameters().filter(\.requiresGrad) }

    // MARK: Modes

    /// Sets training mode on the whole subtree (PyTorch's `module.train(mode)`).
    @discardableResult
    public func train(_ on: Bool = true) -> Self {
        for (_, m) in namedModules() { m.training = on }
        return self
    }

    /// Sets evaluation mode on the whole subtree (PyTorch's `module.eval()`).
    @discardableResult
    public func eval() -> Self { train(false) }

    /// Freezes every parameter of the subtree: no gradients are computed for them and
    /// `trainableParameters()` leaves them out (mlx-swift `freeze`, PyTorch `requires_grad_(False)`).
    /// Buffers and the training mode are unchanged.
    @discardableResult
    public func freeze() -> Self {
        for p in parameters() { p.requiresGrad = false; p.grad = nil }
        return self
    }

    /// Makes every parameter of the subtree trainable again.
    @discardableResult
    public func unfreeze() -> Self {
        for p in parameters() { p.requiresGrad = true }
        return self
    }

    /// Drops the gradients of every parameter of the subtree.
    public func zeroGrad() {
        for p in parameters() { p.grad = nil }
    }
}

/// The shared shape of the key-giving property wrappers, read by `Module.items()`.
protocol KeyedItem {
    var key: String? { get }
    var value: Any { get }
    var isBuffer: Bool { get }
}

/// A parameter whose state_dict key differs from the Swift name (mlx-swift `@ParameterInfo`).
@propertyWrapper
public struct ParameterInfo: KeyedItem {
    private var storage: Tensor?
    public let key: String?
    public var wrappedValue: Tensor {
        get { storage! }
        set { storage = newValue }
    }
    var value: Any { storage as Any }
    var isBuffer: Bool { false }
    /// Declares the key; the value is assigned in the owner's initialiser (after `super.init()`).
    public init(key: String? = nil) { self.key = key }
    public init(wrappedValue: Tensor, key: String? = nil) {
        storage = wrappedValue
        self.key = key
    }
}

/// A buffer: state saved in the state_dict but never trained (running statistics).
@propertyWrapper
public struct BufferInfo: KeyedItem {
    private var storage: Tensor?
    public let key: String?
    public var wrappedValue: Tensor {
        get { storage! }
        set { storage = newValue }
    }
    var value: Any { storage as Any }
    var isBuffer: Bool { true }
    /// Declares the key; the value is assigned in the owner's initialiser (after `super.init()`).
    public init(key: String? = nil) { self.key = key }
    public init(wrappedValue: Tensor, key: String? = nil) {
        storage = wrappedValue
        self.key = key
    }
}

/// A child module whose key differs from the Swift name (mlx-swift `@ModuleInfo`); also for optional children.
@propertyWrapper
public struct ModuleInfo<M>: KeyedItem {
    private var storage: M?
    public let key: String?
    public var wrappedValue: M {
        get { storage! }
        set { storage = newValue }
    }
    var value: Any {
        // Unwrap optionals so that a present child is seen as a module and an absent one as nothing.
        guard let stored = storage else { return Optional<Module>.none as Any }
        if let optional = stored as? OptionalModule { return optional.unwrapped as Any }
        return stored
    }
    var isBuffer: Bool { false }
    /// Declares the key; the value is assigned in the owner's initialiser (after `super.init()`).
    public init(key: String? = nil) { self.key = key }
    public init(wrappedValue: M, key: String? = nil) {
        storage = wrappedValue
        self.key = key
    }
}

protocol OptionalModule { var unwrapped: Module? { get } }
extension Optional: OptionalModule where Wrapped: Module {
    var unwrapped: Module? { self }
}
