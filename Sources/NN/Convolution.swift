// Convolution.swift — 2-D convolution layer.
import Tensors

/// PyTorch's `nn.Conv2d` with zero padding, dilation 1, groups 1 (keys `weight` (K, C, R, S), `bias` (K)).
public final class Conv2d: Module, UnaryLayer {
    public let weight: Tensor
    public let bias: Tensor?
    public let stride: (Int, Int)
    public let padding: (Int, Int)

    /// - Parameters:
    ///   - inChannels: C.
    ///   - outChannels: K.
    ///   - kernelSize: (R, S).
    ///   - stride: (vertical, horizontal).
    ///   - padding: (vertical, horizontal) zeros on each side.
    ///   - bias: whether there is a bias.
    ///   - generator: initialisation stream (PyTorch's default: kaiming_uniform(a=√5), bias ±1/√fan_in).
    public init(_ inChannels: Int, _ outChannels: Int, kernelSize: (Int, Int), stride: (Int, Int) = (1, 1),
                padding: (Int, Int) = (0, 0), bias: Bool = true, generator: RandomGenerator = Initializer.defaultGenerator) {
        let shape = [outChannels, inChannels, kernelSize.0, kernelSize.1]
        weight = Tensor(shape: shape, data: Initializer.defaultWeight(shape, generator: generator), requiresGrad: true)
        self.bias = bias
            ? Tensor(shape: [outChannels],
                     data: Initializer.defaultBias(count: outChannels, fanIn: Initializer.fans(shape).fanIn, generator: generator),
                     requiresGrad: true)
            : nil
        self.stride = stride
        self.padding = padding
        super.init()
    }

    /// Square kernel, stride and padding.
    public convenience init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                            bias: Bool = true, generator: RandomGenerator = Initializer.defaultGenerator) {
        self.init(inChannels, outChannels, kernelSize: (kernelSize, kernelSize), stride: (stride, stride),
                  padding: (padding, padding), bias: bias, generator: generator)
    }

    /// The weights packed ahead for the kernels while they are frozen (a frozen backbone's forward packs none of its
    /// 23 M weights again each batch). Holding `source` keeps its storage shared, so any write to the weights copies
    /// them to new storage, which the check in `callAsFunction` sees.
    private var frozenPacking: (source: [Float], packed: PackedConvolutionWeights)?

    /// - Parameter x: (N, C, H, W).
    /// - Returns: (N, K, P, Q).
    public func callAsFunction(_ x: Tensor) -> Tensor {
        guard !weight.requiresGrad else {
            frozenPacking = nil  // trained weights change every step: packing ahead would only cost a copy
            return conv2d(x, weight: weight, bias: bias, stride: stride, padding: padding)
        }
        if frozenPacking.map({ !sameStorage($0.source, weight.data) }) ?? true {
            frozenPacking = (weight.data, PackedConvolutionWeights())
        }
        return conv2d(x, weight: weight, bias: bias, stride: stride, padding: padding, packed: frozenPacking?.packed)
    }
}

/// Whether two arrays are one storage (not merely equal values): an O(1) check.
func sameStorage(_ a: [Float], _ b: [Float]) -> Bool {
    a.withUnsafeBufferPointer { pa in
        b.withUnsafeBufferPointer { pb in pa.baseAddress == pb.baseAddress && pa.count == pb.count }
    }
}
