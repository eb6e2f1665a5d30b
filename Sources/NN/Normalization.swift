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
    /// In training mode, normalise with the statistics of the global batch of a data-parallel job (PyTorch's
    /// `SyncBatchNorm`); nil (the default): this process's batch. Not a state_dict item. Set it on a whole model
    /// with `setBatchNormSync(_:)`.
    public var sync: BatchNormSync?

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
    public func callAsFunction(_ x: Tensor) -> Tensor { callAsFunction(x, residual: nil, relu: false) }

    /// relu?(bn(x) + residual): a ResNet block's tail, one pass over the activations in training.
    /// - Parameters:
    ///   - x: (N, C, H, W) or (N, C).
    ///   - residual: same shape as x, or nil.
    ///   - relu: apply max(·, 0) last.
    public func callAsFunction(_ x: Tensor, residual: Tensor?, relu: Bool) -> Tensor {
        if training {
            numBatchesTracked.data[0] += 1
            foldCache = nil  // training is about to change the values it was made from
        }
        return batchNorm2d(x, weight: weight, bias: bias, runningMean: runningMean, runningVar: runningVar,
                           training: training, momentum: momentum, eps: eps, residual: residual, relu: relu,
                           sync: training ? sync : nil)
    }

    // MARK: Folding into the convolution before it (inference)

    private struct FoldCache {
        /// The arrays the fold was computed from. Holding them keeps their storage shared, so any later
        /// write to a source copies it (copy-on-write) to new storage: same storage means same values.
        let sources: [[Float]]
        let conv: ObjectIdentifier
        let weight: Tensor
        let bias: Tensor
        let packed = PackedConvolutionWeights()
    }
    private var foldCache: FoldCache?

    /// `conv` followed by this batch norm on its running statistics, as one convolution: weight·s and
    /// (bias − mean)·s + beta with s = gamma/√(var + eps). Computed once and reused across inference passes
    /// while none of the values it came from changes (a ResNet-50 refolds 25 M weights otherwise, every
    /// batch); a training forward drops it. `packed` holds the folded weights packed for the kernels, for as long.
    public func folded(into conv: Conv2d) -> (weight: Tensor, bias: Tensor, packed: PackedConvolutionWeights) {
        let sources = [conv.weight.data, conv.bias?.data ?? [], weight.data, bias.data, runningMean.data, runningVar.data]
        if let cache = foldCache, cache.conv == ObjectIdentifier(conv), cache.sources.count == sources.count,
           zip(cache.sources, sources).allSatisfy({ sameStorage($0, $1) }) {
            return (cache.weight, cache.bias, cache.packed)
        }
        let result = foldBatchNormIntoConv(weight: conv.weight, bias: conv.bias, gamma: weight, beta: bias,
                                           runningMean: runningMean, runningVar: runningVar, eps: eps)
        let cache = FoldCache(sources: sources, conv: ObjectIdentifier(conv), weight: result.weight, bias: result.bias)
        foldCache = cache
        return (cache.weight, cache.bias, cache.packed)
    }
}

extension Module {
    /// Sets (or, with nil, clears) `sync` on every `BatchNorm2d` of this subtree: one shared object, so a training
    /// loop sets `contributes` once per step for all of them.
    /// - Returns: how many batch norms were set.
    @discardableResult
    public func setBatchNormSync(_ sync: BatchNormSync?) -> Int {
        var count = 0
        for case let (_, batchNorm as BatchNorm2d) in namedModules() {
            batchNorm.sync = sync
            count += 1
        }
        return count
    }
}

