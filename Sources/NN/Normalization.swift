// Normalization.swift — batch normalisation layer with PyTorch's parameters and buffers.
import Tensors

/// PyTorch's `nn.BatchNorm2d` (affine, tracking running statistics). Keys: parameters `weight`, `bias`;
/// buffers `running_mean`, `running_var`, `num_batches_tracked` (a count kept as a float scalar, exact
/// below 2²⁴; weight files may store it as int64).
///
/// Training mode normalises with batch statistics and updates the running ones (also when the
/// parameters are frozen: PyTorch's behaviour, which the seed script relies on); evaluation mode uses
/// the running statistics.
public final class BatchNorm2d: Module, UnaryLayer {
    public let weight: Tensor
    public let bias: Tensor
    @BufferInfo(key: "running_mean") public var runningMean: Tensor
    @BufferInfo(key: "running_var") public var runningVar: Tensor
    @BufferInfo(key: "num_batches_tracked") public var numBatchesTracked: Tensor
    public let momentum: Float
    public let eps: Float

    /// - Parameters:
    ///   - features: C.
    ///   - momentum: running-statistics momentum (PyTorch 0.1).
    ///   - eps: variance epsilon (PyTorch 1e-5).
    public init(_ features: Int, momentum: Float = 0.1, eps: Float = 1e-5) {
        weight = Tensor(shape: [features], repeating: 1, requiresGrad: true)
        bias = Tensor(shape: [features], repeating: 0, requiresGrad: true)
        self.momentum = momentum
        self.eps = eps
        super.init()
        runningMean = Tensor(shape: [features], repeating: 0)
        runningVar = Tensor(shape: [features], repeating: 1)
        numBatchesTracked = Tensor(shape: [], repeating: 0)
    }

    /// - Parameter x: (N, C, H, W) or (N, C).
    public func callAsFunction(_ x: Tensor) -> Tensor {
        if training { numBatchesTracked.data[0] += 1 }
        return batchNorm2d(x, weight: weight, bias: bias, runningMean: runningMean, runningVar: runningVar,
                           training: training, momentum: momentum, eps: eps)
    }
}
