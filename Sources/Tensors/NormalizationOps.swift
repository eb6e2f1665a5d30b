// NormalizationOps.swift — batchnorm2d (PyTorch semantics) through CKernels.
import CKernels

/// Batch normalisation over (N, H, W) per channel, PyTorch's `F.batch_norm`.
///
/// Training: normalises with the batch mean and biased variance and, when running statistics are given,
/// updates them in place with `momentum` and the unbiased variance (also under `withNoGrad`, as PyTorch).
/// Inference: normalises with the running statistics; its backward treats them as constants.
/// See Ioffe & Szegedy 2015, https://arxiv.org/abs/1502.03167.
/// - Parameters:
///   - x: input (N, C, H, W) or (N, C).
///   - weight: gamma (C).
///   - bias: beta (C).
///   - runningMean: (C) buffer, updated in training; required in inference.
///   - runningVar: (C) buffer, updated in training; required in inference.
///   - training: batch statistics (true) or running statistics (false).
///   - momentum: running = (1 − momentum)·running + momentum·batch.
///   - eps: added to the variance.
///   - residual: added after normalising (a ResNet block's shortcut), same shape as `x`, or nil.
///   - relu: apply max(·, 0) last.
/// - Returns: relu?(bn(x) + residual), same shape as `x`. In training the three steps are one pass (one
///   output, no intermediates kept for backward).
public func batchNorm2d(_ x: Tensor, weight: Tensor, bias: Tensor, runningMean: Tensor?, runningVar: Tensor?,
                        training: Bool, momentum: Float = 0.1, eps: Float = 1e-5, residual: Tensor? = nil,
                        relu applyRelu: Bool = false) -> Tensor {
    if let residual { precondition(residual.shape == x.shape, "batchNorm2d: residual \(residual.shape) for x \(x.shape)") }
    if !training && (residual != nil || applyRelu) {
        // Inference keeps the plain steps (with gradients it is rare: the no-gradient path folds instead).
        var y = batchNorm2d(x, weight: weight, bias: bias, runningMean: runningMean, runningVar: runningVar, training: false,
                            momentum: momentum, eps: eps)
        if let residual { y = add(y, residual) }
        return applyRelu ? relu(y) : y
    }
    precondition(x.shape.count >= 2, "batchNorm2d: x \(x.shape) must have a channel axis")
    let n = x.shape[0], c = x.shape[1], spatial = x.shape.dropFirst(2).reduce(1, *)
    precondition(weight.shape == [c] && bias.shape == [c], "batchNorm2d: weight \(weight.shape) / bias \(bias.shape) for \(c) channels")
    for buffer in [runningMean, runningVar] {
        if let buffer { precondition(buffer.shape == [c], "batchNorm2d: running statistic \(buffer.shape) for \(c) channels") }
    }
    let kernels = Kernels.table
    if training {
        precondition(n * spatial > 1, "batchNorm2d: training needs more than one value per channel, got x \(x.shape)")
        var saveMean = [Float](repeating: 0, count: c)
        var saveInvstd = [Float](repeating: 0, count: c)
        let y = [Float](unsafeUninitializedCapacity: x.count) { out, initialized in
            withMutableBaseAddresses(&saveMean, &saveInvstd) { sm, si in
                withMutableBaseAddresses(runningMean, runningVar) { rm, rv in
                    withBaseAddresses(x.data, weight.data, bias.data, residual?.data) { input in
                        let status = kernels.batchnorm2d_forward_train_fused(
                            out.baseAddress, sm, si, rm, rv, input[0], input[1], input[2], input[3], applyRelu ? 1 : 0,
                            Int32(n), Int32(c), Int32(spatial), momentum, eps)
                        Kernels.check(status, "batchnorm2d forward (train)")
                    }
                }
            }
            initialized = x.count
        }
        let result = Tensor(shape: x.shape, data: y)
        guard Tensor.needsGrad(x, weight, bias, residual) else { return result }
        result.record("batchnorm2d", parents: [x, weight, bias] + (residual.map { [$0] } ?? [])) { output in
            let kernels = Kernels.table
            // Through the relu (its mask is the output: y > 0) to the sum, whose gradient both the batch
            // norm and the residual receive.
            let dy = !applyRelu ? output : [Float](unsafeUninitializedCapacity: output.count) { dz, initialized in
                withBaseAddresses(output, y) { input in
                    Kernels.check(kernels.relu_backward(dz.baseAddress, input[0], input[1], output.count), "relu backward")
                }
                initialized = output.count
            }
            if let residual, residual.requiresGrad { residual.accumulateGrad(dy) }
            guard x.requiresGrad || weight.requiresGrad || bias.requiresGrad else { return }
            withGradientBuffers(x: x, weight: weight, bias: bias) { dx, dg, db in
                withBaseAddresses(dy, x.data, saveMean, saveInvstd, weight.data) { input in
                    let status = kernels.batchnorm2d_backward(dx, dg, db, input[0], input[1], input[2], input[3], input[4],
                                                              Int32(n), Int32(c), Int32(spatial))
                    Kernels.check(status, "batchnorm2d backward")
                }
            }
        }
        return result
    }

    guard let runningMean, let runningVar else { preconditionFailure("batchNorm2d: inference needs running statistics") }
    let y = [Float](unsafeUninitializedCapacity: x.count) { out, initialized in
        withBaseAddresses(x.data, weight.data, bias.data, runningMean.data, runningVar.data) { input in
            let status = kernels.batchnorm2d_forward_infer(out.baseAddress, input[0], input[1], input[2], input[3], input[4],
                                                           Int32(n), Int32(c), Int32(spatial), eps)
            Kernels.check(status, "batchnorm2d forward (inference)")
        }
        initialized = x.count
    }
    let result = Tensor(shape: x.shape, data: y)
    guard Tensor.needsGrad(x, weight, bias) else { return result }
    // The statistics are constants of this graph: keep the values they had at forward time.
    let mean = runningMean.data, variance = runningVar.data
    result.record("batchnorm2d (inference)", parents: [x, weight, bias]) { dy in
        let kernels = Kernels.table
        withGradientBuffers(x: x, weight: weight, bias: bias) { dx, dg, db in
            withBaseAddresses(dy, x.data, weight.data, mean, variance) { input in
                let status = kernels.batchnorm2d_backward_infer(dx, dg, db, input[0], input[1], input[2], input[3], input[4],
                                                                Int32(n), Int32(c), Int32(spatial), eps)
                Kernels.check(status, "batchnorm2d backward (inference)")
            }
        }
    }
    return result
}

/// Folds an inference batch norm into the convolution before it: conv(x, w′) + b′ equals
/// bn(conv(x, w) + b) with the running statistics, with w′ = w·s, b′ = (b − mean)·s + beta, s = gamma/√(var + eps).
/// For forward passes without gradients (evaluation, feature extraction): one pass over the activations less.
/// - Parameters:
///   - weight: convolution weight (K, …).
///   - bias: convolution bias (K) or nil.
///   - gamma: (K); beta: (K); runningMean: (K); runningVar: (K).
///   - eps: the batch norm's epsilon.
/// - Returns: the folded weight (same shape) and bias (K), off the tape.
public func foldBatchNormIntoConv(weight: Tensor, bias: Tensor?, gamma: Tensor, beta: Tensor,
                                  runningMean: Tensor, runningVar: Tensor, eps: Float) -> (weight: Tensor, bias: Tensor) {
    let k = weight.shape[0], perChannel = weight.count / max(k, 1)
    precondition([gamma, beta, runningMean, runningVar].allSatisfy { $0.shape == [k] },
                 "foldBatchNormIntoConv: batch norm of \(gamma.shape) after a weight \(weight.shape)")
    var foldedBias = [Float](repeating: 0, count: k)
    let foldedWeight = [Float](unsafeUninitializedCapacity: weight.count) { out, initialized in
        foldedBias.withUnsafeMutableBufferPointer { fb in
            withBaseAddresses(weight.data, bias?.data, gamma.data, beta.data, runningMean.data, runningVar.data) { input in
                let status = Kernels.table.batchnorm2d_fold_into_conv(
                    out.baseAddress, fb.baseAddress, input[0], input[1], input[2], input[3], input[4], input[5],
                    Int32(k), Int32(perChannel), eps)
                Kernels.check(status, "batchnorm fold")
            }
        }
        initialized = weight.count
    }
    return (Tensor(shape: weight.shape, data: foldedWeight), Tensor(shape: [k], data: foldedBias))
}
