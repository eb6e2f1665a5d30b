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
    let reference = Kernels.backend == .reference
    if training {
        precondition(n * spatial > 1, "batchNorm2d: training needs more than one value per channel, got x \(x.shape)")
        var saveMean = [Float](repeating: 0, count: c)
        var saveInvstd = [Float](repeating: 0, count: c)
        let y = [Float](unsafeUninitializedCapacity: x.count) { out, initialized in
            saveMean.withUnsafeMutableBufferPointer { sm in
                saveInvstd.withUnsafeMutableBufferPointer { si in
                    withOptionalMutablePointer(runningMean) { rm in
                        withOptionalMutablePointer(runningVar) { rv in
                            x.data.withUnsafeBufferPointer { xp in
                                weight.data.withUnsafeBufferPointer { g in
                                    bias.data.withUnsafeBufferPointer { b in
                                        withOptionalPointer(residual) { res in
                                            let status = reference
                                                ? ck_batchnorm2d_forward_train_fused_f32_ref(
                                                    out.baseAddress, sm.baseAddress, si.baseAddress, rm, rv, xp.baseAddress,
                                                    g.baseAddress, b.baseAddress, res, applyRelu ? 1 : 0,
                                                    Int32(n), Int32(c), Int32(spatial), momentum, eps)
                                                : ck_batchnorm2d_forward_train_fused_f32(
                                                    out.baseAddress, sm.baseAddress, si.baseAddress, rm, rv, xp.baseAddress,
                                                    g.baseAddress, b.baseAddress, res, applyRelu ? 1 : 0,
                                                    Int32(n), Int32(c), Int32(spatial), momentum, eps)
                                            Kernels.check(status, "batchnorm2d forward (train)")
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            initialized = x.count
        }
        let result = Tensor(shape: x.shape, data: y)
        guard Tensor.needsGrad(x, weight, bias, residual) else { return result }
        result.record("batchnorm2d", parents: [x, weight, bias] + (residual.map { [$0] } ?? [])) { output in
            let reference = Kernels.backend == .reference
            // Through the relu (its mask is the output: y > 0) to the sum, whose gradient both the batch
            // norm and the residual receive.
            let dy = !applyRelu ? output : [Float](unsafeUninitializedCapacity: output.count) { dz, initialized in
                output.withUnsafeBufferPointer { g in
                    y.withUnsafeBufferPointer { yp in
                        let status = reference
                            ? ck_relu_backward_f32_ref(dz.baseAddress, g.baseAddress, yp.baseAddress, output.count)
                            : ck_relu_backward_f32(dz.baseAddress, g.baseAddress, yp.baseAddress, output.count)
                        Kernels.check(status, "relu backward")
                    }
                }
                initialized = output.count
            }
            if let residual, residual.requiresGrad { residual.accumulateGrad(dy) }
            guard x.requiresGrad || weight.requiresGrad || bias.requiresGrad else { return }
            let run: (UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Float>?) -> Void = { dx, dg, db in
                dy.withUnsafeBufferPointer { dyp in
                    x.data.withUnsafeBufferPointer { xp in
                        saveMean.withUnsafeBufferPointer { sm in
                            saveInvstd.withUnsafeBufferPointer { si in
                                weight.data.withUnsafeBufferPointer { g in
                                    let status = reference
                                        ? ck_batchnorm2d_backward_f32_ref(dx, dg, db, dyp.baseAddress, xp.baseAddress, sm.baseAddress,
                                                                          si.baseAddress, g.baseAddress, Int32(n), Int32(c), Int32(spatial))
                                        : ck_batchnorm2d_backward_f32(dx, dg, db, dyp.baseAddress, xp.baseAddress, sm.baseAddress,
                                                                      si.baseAddress, g.baseAddress, Int32(n), Int32(c), Int32(spatial))
                                    Kernels.check(status, "batchnorm2d backward")
                                }
                            }
                        }
                    }
                }
            }
            withGradientBuffers(x: x, weight: weight, bias: bias, run)
        }
        return result
    }

    guard let runningMean, let runningVar else { preconditionFailure("batchNorm2d: inference needs running statistics") }
    let y = [Float](unsafeUninitializedCapacity: x.count) { out, initialized in
        x.data.withUnsafeBufferPointer { xp in
            weight.data.withUnsafeBufferPointer { g in
                bias.data.withUnsafeBufferPointer { b in
                    runningMean.data.withUnsafeBufferPointer { rm in
                        runningVar.data.withUnsafeBufferPointer { rv in
                            let status = reference
                                ? ck_batchnorm2d_forward_infer_f32_ref(out.baseAddress, xp.baseAddress, g.baseAddress, b.baseAddress,
                                                                       rm.baseAddress, rv.baseAddress, Int32(n), Int32(c), Int32(spatial), eps)
                                : ck_batchnorm2d_forward_infer_f32(out.baseAddress, xp.baseAddress, g.baseAddress, b.baseAddress,
                                                                   rm.baseAddress, rv.baseAddress, Int32(n), Int32(c), Int32(spatial), eps)
                            Kernels.check(status, "batchnorm2d forward (inference)")
                        }
                    }
                }
            }
        }
        initialized = x.count
    }
    let result = Tensor(shape: x.shape, data: y)
    guard Tensor.needsGrad(x, weight, bias) else { return result }
    // The statistics are constants of this graph: keep the values they had at forward time.
    let mean = runningMean.data, variance = runningVar.data
    result.record("batchnorm2d (inference)", parents: [x, weight, bias]) { dy in
        withGradientBuffers(x: x, weight: weight, bias: bias) { dx, dg, db in
            dy.withUnsafeBufferPointer { dyp in
                x.data.withUnsafeBufferPointer { xp in
                    weight.data.withUnsafeBufferPointer { g in
                        mean.withUnsafeBufferPointer { rm in
                            variance.withUnsafeBufferPointer { rv in
                                let status = ck_batchnorm2d_backward_infer_f32(
                                    dx, dg, db, dyp.baseAddress, xp.baseAddress, g.baseAddress, rm.baseAddress, rv.baseAddress,
                                    Int32(n), Int32(c), Int32(spatial), eps)
                                Kernels.check(status, "batchnorm2d backward (inference)")
                            }
                        }
                    }
                }
            }
        }
    }
    return result
}

/// Calls `body` with the tensor's values for writing, or with nil when there is no tensor.
@inline(__always)
func withOptionalMutablePointer<R>(_ t: Tensor?, _ body: (UnsafeMutablePointer<Float>?) -> R) -> R {
    guard let t else { return body(nil) }
    return t.data.withUnsafeMutableBufferPointer { body($0.baseAddress) }
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
            weight.data.withUnsafeBufferPointer { w in
                withOptionalPointer(bias) { b in
                    gamma.data.withUnsafeBufferPointer { g in
                        beta.data.withUnsafeBufferPointer { be in
                            runningMean.data.withUnsafeBufferPointer { m in
                                runningVar.data.withUnsafeBufferPointer { v in
                                    Kernels.check(ck_batchnorm2d_fold_into_conv_f32(
                                        out.baseAddress, fb.baseAddress, w.baseAddress, b, g.baseAddress, be.baseAddress,
                                        m.baseAddress, v.baseAddress, Int32(k), Int32(perChannel), eps), "batchnorm fold")
                                }
                            }
                        }
                    }
                }
            }
        }
        initialized = weight.count
    }
    return (Tensor(shape: weight.shape, data: foldedWeight), Tensor(shape: [k], data: foldedBias))
}
