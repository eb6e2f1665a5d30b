// Layers.swift — parameterless layers and containers: ReLU, MaxPool2d, GlobalAvgPool2d, Flatten,
// Dropout, Identity, Sequential.
import Tensors

/// max(x, 0), PyTorch's `nn.ReLU`.
public final class ReLU: Module, UnaryLayer {
    public override init() { super.init() }
    public func callAsFunction(_ x: Tensor) -> Tensor { relu(x) }
}

/// PyTorch's `nn.MaxPool2d` (floor mode, dilation 1).
public final class MaxPool2d: Module, UnaryLayer {
    public let kernelSize: Int, stride: Int, padding: Int

    /// - Parameters:
    ///   - kernelSize: square window.
    ///   - stride: step (PyTorch's default: the window).
    ///   - padding: −∞ padding on each side.
    public init(kernelSize: Int, stride: Int? = nil, padding: Int = 0) {
        self.kernelSize = kernelSize
        self.stride = stride ?? kernelSize
        self.padding = padding
        super.init()
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        maxPool2d(x, kernelSize: (kernelSize, kernelSize), stride: (stride, stride), padding: (padding, padding))
    }
}

/// (N, C, H, W) → (N, C): `nn.AdaptiveAvgPool2d(1)` followed by `torch.flatten(x, 1)`.
public final class GlobalAvgPool2d: Module, UnaryLayer {
    public override init() { super.init() }
    public func callAsFunction(_ x: Tensor) -> Tensor { globalAvgPool2d(x) }
}

/// Collapses every axis after the first, `nn.Flatten()`.
public final class Flatten: Module, UnaryLayer {
    public override init() { super.init() }
    public func callAsFunction(_ x: Tensor) -> Tensor { flatten(x, startDim: 1) }
}

/// Returns its input, `nn.Identity` (e.g. a ResNet's `fc` in a feature extractor).
public final class Identity: Module, UnaryLayer {
    public override init() { super.init() }
    public func callAsFunction(_ x: Tensor) -> Tensor { x }
}

/// Inverted dropout in training mode, identity in evaluation mode: `nn.Dropout(p)`.
public final class Dropout: Module, UnaryLayer {
    /// The generator every Dropout draws masks from unless given its own.
    nonisolated(unsafe) public static var defaultGenerator = RandomGenerator(seed: 0x5eed)

    public let p: Float
    /// The mask stream of this layer.
    public var generator: RandomGenerator
    /// Rows of the whole batch before and after this process's rows, in data-parallel training: their mask draws
    /// are skipped, so each row's mask does not depend on how the batch is split (see `dropout`).
    public var rowsOutside = (before: 0, after: 0)

    /// - Parameters:
    ///   - p: drop probability.
    ///   - generator: mask stream (nil: the shared `Dropout.defaultGenerator`; reseed that object for reproducible runs).
    public init(p: Float = 0.5, generator: RandomGenerator? = nil) {
        precondition(p >= 0 && p < 1, "Dropout: p = \(p) must be in [0, 1)")
        self.p = p
        self.generator = generator ?? Dropout.defaultGenerator
        super.init()
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        let perRow = x.shape.count > 1 ? x.count / max(x.shape[0], 1) : 1
        return dropout(x, p: p, training: training, generator: generator, drawsBefore: rowsOutside.before * perRow,
                       drawsAfter: rowsOutside.after * perRow)
    }
}

/// Layers applied in order, `nn.Sequential`: children are keyed "0", "1", …
public final class Sequential: Module, UnaryLayer {
    public let layers: [UnaryModule]

    public init(_ layers: [UnaryModule]) {
        self.layers = layers
        super.init()
    }

    public convenience init(_ layers: UnaryModule...) { self.init(layers) }

    public override func items() -> [(key: String, item: Item)] {
        layers.enumerated().map { (String($0.offset), .module($0.element)) }
    }

    public subscript(index: Int) -> UnaryModule { layers[index] }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        var y = x
        for layer in layers { y = layer(y) }
        return y
    }
}
