// Tensor.swift — float32 tensors with contiguous storage and a tape for reverse-mode autograd.
//
// The tape follows micrograd/tinygrad: every op output records its parents and a backward closure
// (written right after the op's forward code, in the op's file) that captures what it needs.
// `backward()` sorts the graph topologically, walks it in reverse and accumulates gradients.
import CKernels

/// Global switch for recording the tape (PyTorch's `torch.no_grad()`).
public enum GradMode {
    /// Whether ops record backward closures. Not thread-safe: graphs are built on one thread.
    nonisolated(unsafe) public static var isEnabled = true
}

/// Runs `body` with gradient recording off (no tape, nothing saved for backward), then restores the mode.
/// - Parameter body: the computation, e.g. an evaluation forward.
public func withNoGrad<R>(_ body: () throws -> R) rethrows -> R {
    let previous = GradMode.isEnabled
    GradMode.isEnabled = false
    defer { GradMode.isEnabled = previous }
    return try body()
}

/// A float32 tensor: a shape and its row-major contiguous values, plus its place on the tape.
///
/// A reference type, as in micrograd: a parameter is one object shared by its layer, the optimizer and
/// every graph that uses it. Values live in a `[Float]`; ops reach them through unsafe buffer pointers.
public final class Tensor {
    /// Dimensions, outermost first (NCHW for images, (batch, features) for matrices).
    public let shape: [Int]
    /// The values, row-major, `count` of them. Whoever assigns keeps the count (ops check it on use). Values freed by
    /// `releaseValues()` are remade here on first read, so a reader never sees them missing; values written are no
    /// longer what the op computed, so a write drops the remake.
    public var data: [Float] {
        get {
            if valuesReleased { remakeValues() }
            return storage
        }
        _modify {
            if valuesReleased { remakeValues() }
            remake = nil
            yield &storage
        }
        set {
            storage = newValue
            valuesReleased = false
            remake = nil
        }
    }
    private var storage: [Float]
    /// Recomputes the values bit for bit from what the op that made them keeps for its backward anyway (a batch
    /// norm's: its input and statistics): set by that op, used after `releaseValues()`.
    private var remake: (() -> [Float])?
    private var valuesReleased = false
    /// The accumulated gradient (same count as `data`), or nil when none has been computed.
    public var grad: [Float]?
    /// Whether gradients are computed for this tensor. False for inputs, buffers and frozen parameters.
    public var requiresGrad: Bool
    /// Keeps this node's gradient after `backward()` (by default only leaves keep theirs).
    public var retainsGrad = false
    /// Number of elements.
    public let count: Int

    // Tape: set only when the tensor is the output of an op recorded with gradients on.
    var parents: [Tensor] = []
    var backwardFunction: (([Float]) -> Void)?
    /// The name of the op that made this tensor (for error messages), or nil for leaves.
    public private(set) var opName: StaticString?
    /// Called during `backward()` on a leaf once every op that uses it has sent its gradient: what a data-parallel
    /// step hooks to start reducing a parameter's gradient while the rest of backward runs. Called also when no
    /// gradient arrived (then `grad` is nil).
    public var gradientReady: ((Tensor) -> Void)?

    /// A tensor of the given shape and values.
    /// - Parameters:
    ///   - shape: dimensions; their product must equal `data.count`.
    ///   - data: row-major values.
    ///   - requiresGrad: whether it is a trainable leaf.
    public init(shape: [Int], data: [Float], requiresGrad: Bool = false) {
        let n = shape.reduce(1, *)
        precondition(shape.allSatisfy { $0 >= 0 }, "Tensor: negative dimension in \(shape)")
        precondition(n == data.count, "Tensor: \(data.count) values for shape \(shape)")
        self.shape = shape
        self.count = n
        self.storage = data
        self.requiresGrad = requiresGrad
    }

    /// A tensor filled with `value`.
    public convenience init(shape: [Int], repeating value: Float, requiresGrad: Bool = false) {
        self.init(shape: shape, data: [Float](repeating: value, count: shape.reduce(1, *)), requiresGrad: requiresGrad)
    }

    /// A tensor of zeros.
    public static func zeros(_ shape: [Int], requiresGrad: Bool = false) -> Tensor {
        Tensor(shape: shape, repeating: 0, requiresGrad: requiresGrad)
    }

    /// Values drawn from N(0, 1) with `generator`.
    public static func randn(_ shape: [Int], generator: RandomGenerator, requiresGrad: Bool = false) -> Tensor {
        Tensor(shape: shape, data: generator.normalArray(count: shape.reduce(1, *)), requiresGrad: requiresGrad)
    }

    /// Values drawn uniformly from [low, high) with `generator`.
    public static func uniform(_ shape: [Int], low: Float = 0, high: Float = 1, generator: RandomGenerator,
                               requiresGrad: Bool = false) -> Tensor {
        Tensor(shape: shape, data: generator.uniformArray(count: shape.reduce(1, *), low: low, high: high),
               requiresGrad: requiresGrad)
    }

    /// The single value of a one-element tensor.
    public var item: Float {
        precondition(count == 1, "Tensor.item: tensor has shape \(shape)")
        return data[0]
    }

    /// Whether this tensor is an op output on the tape (as opposed to a leaf).
    public var isOnTape: Bool { backwardFunction != nil }

    /// A new leaf sharing these values (copy-on-write), cut from the tape.
    public func detached() -> Tensor { Tensor(shape: shape, data: data) }

    /// Sets the gradient to nil.
    public func zeroGrad() { grad = nil }

    // MARK: Recording

    /// Whether an op over `inputs` must record a backward closure: gradients on and some input wants one.
    @inline(__always)
    public static func needsGrad(_ inputs: Tensor?...) -> Bool {
        guard GradMode.isEnabled else { return false }
        for case let t? in inputs where t.requiresGrad { return true }
        return false
    }

    /// Puts this op output on the tape.
    /// - Parameters:
    ///   - op: the op's name, for shape-check messages.
    ///   - parents: the inputs the backward closure sends gradients to.
    ///   - backward: receives this tensor's gradient (same count) and accumulates into the parents.
    public func record(_ op: StaticString, parents: [Tensor], backward: @escaping ([Float]) -> Void) {
        requiresGrad = true
        opName = op
        self.parents = parents
        backwardFunction = backward
    }

    // MARK: Values remade instead of kept (activation memory)

    /// Lets `releaseValues()` free this op output's values: `remake` recomputes them, the same bits, from what the op
    /// keeps for its backward anyway. For an op whose output costs one pass to remake and a full activation to keep.
    public func setRemake(_ remake: @escaping () -> [Float]) {
        self.remake = remake
    }

    /// Frees the values until something reads them again (`data` remakes them then): what a model does with an
    /// intermediate once the forward has no further use for it, so the activations kept for backward are the ones
    /// that cannot be recomputed in one cheap pass. Between a block's batch norm + relu and the convolution after
    /// it, that is a third of a ResNet's activations; the convolution's backward, which reads them, remakes them.
    /// - Returns: whether the values were freed (false: nothing can remake them, so they stay).
    @discardableResult
    public func releaseValues() -> Bool {
        guard remake != nil, count > 0 else { return false }
        storage = []
        valuesReleased = true
        return true
    }

    private func remakeValues() {
        guard let remake else { preconditionFailure("Tensor: values released with nothing to remake them") }
        let values = remake()
        precondition(values.count == count, "Tensor: \(opName ?? "op") remade \(values.count) values for shape \(shape)")
        storage = values
        valuesReleased = false
    }

    // MARK: Gradient accumulation (used by backward closures)

    /// Adds `g` to the gradient. The first contribution is kept without a copy.
    public func accumulateGrad(_ g: [Float]) {
        precondition(g.count == count, "\(opName ?? "leaf"): gradient of \(g.count) values for shape \(shape)")
        guard var current = grad else { grad = g; return }
        grad = nil  // keep `current` uniquely referenced: no copy on write
        current.withUnsafeMutableBufferPointer { c in
            g.withUnsafeBufferPointer { s in _ = ck_accumulate_f32(c.baseAddress!, s.baseAddress!, count) }
        }
        grad = current
    }

    /// Lets a kernel that OVERWRITES its output produce a gradient contribution, then accumulates it:
    /// written straight into the gradient buffer when there is none yet, otherwise into a temporary.
    public func accumulateGrad(overwriting body: (UnsafeMutablePointer<Float>) -> Void) {
        let fresh = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            body(buffer.baseAddress!)
            initialized = count
        }
        accumulateGrad(fresh)
    }

    /// Lets a kernel that ACCUMULATES (+=) into its output add to the gradient in place; the buffer is
    /// zero-filled the first time.
    public func withAccumulatingGrad<R>(_ body: (UnsafeMutablePointer<Float>) -> R) -> R {
        var current = grad ?? [Float](repeating: 0, count: count)
        grad = nil
        defer { grad = current }
        return current.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
    }

    // MARK: Backward

    /// Reverse-mode differentiation from this tensor. Leaves that require gradients accumulate into
    /// `grad`; the graph is released afterwards (as PyTorch without `retain_graph`), and intermediate
    /// gradients are dropped unless `retainsGrad` is set.
    /// - Parameter gradient: the seed, same count as this tensor; nil means 1 for a one-element tensor.
    public func backward(gradient: [Float]? = nil) {
        precondition(requiresGrad, "backward(): tensor does not require gradients (no parameter or input on its tape)")
        let seed: [Float]
        if let gradient {
            precondition(gradient.count == count, "backward(): seed of \(gradient.count) values for shape \(shape)")
            seed = gradient
        } else {
            precondition(count == 1, "backward(): a seed gradient is needed for shape \(shape)")
            seed = [1]
        }
        var order = topologicalOrder()
        // Hooked leaves: how many ops on the tape still owe each one a gradient.
        var pendingUses = [ObjectIdentifier: Int]()
        for node in order {
            for parent in node.parents where parent.gradientReady != nil { pendingUses[ObjectIdentifier(parent), default: 0] += 1 }
        }
        accumulateGrad(seed)
        // Last node first, each dropped from `order` once done: with its closure gone and its children done, nothing
        // holds an intermediate node any more, so its values (the activation) are freed as backward passes it
        // rather than all at the end (a lower peak: the parameter gradients grow while the activations shrink).
        while let node = order.popLast() {
            guard let function = node.backwardFunction else { continue }
            if let g = node.grad {
                precondition(g.count == node.count, "\(node.opName ?? "op"): gradient count \(g.count) for shape \(node.shape)")
                function(g)
            }
            let parents = node.parents
            node.backwardFunction = nil
            node.parents = []
            // What a remake holds (the op's inputs) goes with the graph, unless the values are out and need it.
            if !node.valuesReleased { node.remake = nil }
            if !node.retainsGrad { node.grad = nil }
            guard !pendingUses.isEmpty else { continue }
            for parent in parents {
                guard let hook = parent.gradientReady, let left = pendingUses[ObjectIdentifier(parent)] else { continue }
                pendingUses[ObjectIdentifier(parent)] = left - 1
                if left == 1 { hook(parent) }
            }
        }
    }

    /// Nodes on the tape reachable from this one, each after all of its parents (iterative DFS, so
    /// deep networks do not exhaust the stack).
    private func topologicalOrder() -> [Tensor] {
        var order: [Tensor] = []
        var visited = Set<ObjectIdentifier>()
        var stack: [(Tensor, Int)] = [(self, 0)]
        visited.insert(ObjectIdentifier(self))
        while let (node, next) = stack.popLast() {
            if next < node.parents.count {
                stack.append((node, next + 1))
                let parent = node.parents[next]
                if parent.backwardFunction != nil, visited.insert(ObjectIdentifier(parent)).inserted {
                    stack.append((parent, 0))
                }
            } else {
                order.append(node)
            }
        }
        return order
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let preview = data.prefix(6).map { String($0) }.joined(separator: ", ")
        return "Tensor(shape: \(shape), [\(preview)\(count > 6 ? ", …" : "")])"
    }
}

/// Hands a backward kernel of the form (dx, dweight, dbias) the gradient buffers of the inputs that want
/// one, nil for the others: dx is overwritten (a fresh buffer, then accumulated), dweight and dbias
/// accumulate in place.
func withGradientBuffers(x: Tensor, weight: Tensor, bias: Tensor?,
                         _ run: (UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Float>?) -> Void) {
    func withBias(_ dx: UnsafeMutablePointer<Float>?, _ dw: UnsafeMutablePointer<Float>?) {
        if let bias, bias.requiresGrad { bias.withAccumulatingGrad { run(dx, dw, $0) } } else { run(dx, dw, nil) }
    }
    func withWeight(_ dx: UnsafeMutablePointer<Float>?) {
        if weight.requiresGrad { weight.withAccumulatingGrad { withBias(dx, $0) } } else { withBias(dx, nil) }
    }
    if x.requiresGrad { x.accumulateGrad(overwriting: { withWeight($0) }) } else { withWeight(nil) }
}
