// Linear.swift — fully connected layer.
import Tensors

/// y = x · weightᵀ + bias, PyTorch's `nn.Linear` (keys `weight` (out, in), `bias` (out)).
public final class Linear: Module, UnaryLayer {
    public let weight: Tensor
    public let bias: Tensor?

    /// - Parameters:
    ///   - inFeatures: input width.
    ///   - outFeatures: output width.
    ///   - bias: whether there is a bias.
    ///   - generator: initialisation stream (PyTorch's default: weight and bias uniform in ±1/√in).
    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true,
                generator: RandomGenerator = Initializer.defaultGenerator) {
        let shape = [outFeatures, inFeatures]
        weight = Tensor(shape: shape, data: Initializer.defaultWeight(shape, generator: generator), requiresGrad: true)
        self.bias = bias
            ? Tensor(shape: [outFeatures], data: Initializer.defaultBias(count: outFeatures, fanIn: inFeatures, generator: generator),
                     requiresGrad: true)
            : nil
        super.init()
    }

    public var inFeatures: Int { weight.shape[1] }
    public var outFeatures: Int { weight.shape[0] }

    /// - Parameter x: (B, in).
    /// - Returns: (B, out).
    public func callAsFunction(_ x: Tensor) -> Tensor { linear(x, weight: weight, bias: bias) }
}
