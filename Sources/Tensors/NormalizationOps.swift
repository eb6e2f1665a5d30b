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
///   - sync: in training, normalise with the statistics of the global batch of a data-parallel job (PyTorch's
///     `SyncBatchNorm`): see `syncBatchNorm2dTrain`. Ignored in inference. nil: this process's batch only.
/// - Returns: relu?(bn(x) + residual), same shape as `x`. In training the three steps are one pass (one
///   output, no intermediates kept for backward).
public func batchNorm2d(_ x: Tensor, weight: Tensor, bias: Tensor, runningMean: Tensor?, runningVar: Tensor?,
                        training: Bool, momentum: Float = 0.1, eps: Float = 1e-5, residual: Tensor? = nil,
                        relu applyRelu: Bool = false, sync: BatchNormSync? = nil) -> Tensor {
    if let residual { precondition(residual.shape == x.shape, "batchNorm2d: residual \(residual.shape) for x \(x.shape)") }
    if training, let sync {
        return syncBatchNorm2dTrain(x, weight: weight, bias: bias, runningMean: runningMean, runningVar: runningVar,
                                    momentum: momentum, eps: eps, residual: residual, relu: applyRelu, sync: sync)
    }
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
        /// The forward kernel's output for these gamma and beta; it also writes the statistics and, when given, updates
        /// the running ones.
        func normalized(gamma: [Float], beta: [Float], kernels: ck_kernel_table, saveMean: inout [Float],
                        saveInvstd: inout [Float], runningMean: Tensor?, runningVar: Tensor?) -> [Float] {
            [Float](unsafeUninitializedCapacity: x.count) { out, initialized in
                withMutableBaseAddresses(&saveMean, &saveInvstd) { sm, si in
                    withMutableBaseAddresses(runningMean, runningVar) { rm, rv in
                        withBaseAddresses(x.data, gamma, beta, residual?.data) { input in
                            let status = kernels.batchnorm2d_forward_train_fused(
                                out.baseAddress, sm, si, rm, rv, input[0], input[1], input[2], input[3], applyRelu ? 1 : 0,
                                Int32(n), Int32(c), Int32(spatial), momentum, eps)
                            Kernels.check(status, "batchnorm2d forward (train)")
                        }
                    }
                }
                initialized = x.count
            }
        }
        let result = Tensor(shape: x.shape, data: normalized(gamma: weight.data, beta: bias.data, kernels: kernels,
                                                             saveMean: &saveMean, saveInvstd: &saveInvstd,
                                                             runningMean: runningMean, runningVar: runningVar))
        guard Tensor.needsGrad(x, weight, bias, residual) else { return result }
        if residual == nil {
            // The output can be remade from x alone (`releaseValues()`): the same kernel on the same x, gamma and beta
            // computes the same statistics and the same bits; the running statistics are left alone.
            let gamma = weight.data, beta = bias.data
            result.setRemake {
                var mean = [Float](repeating: 0, count: c), invstd = [Float](repeating: 0, count: c)
                return normalized(gamma: gamma, beta: beta, kernels: kernels, saveMean: &mean, saveInvstd: &invstd,
                                  runningMean: nil, runningVar: nil)
            }
        }
        result.record("batchnorm2d", parents: [x, weight, bias] + (residual.map { [$0] } ?? [])) { [unowned result] output in
            let kernels = Kernels.table
            // One pass back through the relu (its mask is the output: y > 0) and the sum, whose gradient both the
            // batch norm and the residual receive: the kernel writes that gradient (dz) only when the residual
            // wants it.
            let residualWantsGrad = residual?.requiresGrad ?? false
            // Uninitialized: either kernel below writes every value of it.
            var dz: [Float]? = residualWantsGrad && applyRelu
                ? [Float](unsafeUninitializedCapacity: output.count) { _, initialized in initialized = output.count } : nil
            withOptionalMutableBaseAddress(&dz) { dzOut in
                if x.requiresGrad || weight.requiresGrad || bias.requiresGrad {
                    withGradientBuffers(x: x, weight: weight, bias: bias) { dx, dg, db in
                        // The relu's mask is the output (y > 0), read through `data`: remade if it was released.
                        withBaseAddresses(output, applyRelu ? result.data : nil, x.data, saveMean, saveInvstd, weight.data) { input in
                            let status = kernels.batchnorm2d_backward_fused(dx, dg, db, dzOut, input[0], input[1], input[2],
                                                                            input[3], input[4], input[5],
                                                                            Int32(n), Int32(c), Int32(spatial))
                            Kernels.check(status, "batchnorm2d backward")
                        }
                    }
                } else if let dzOut {
                    // Only the residual wants a gradient: relu's backward alone.
                    withBaseAddresses(output, result.data) { input in
                        Kernels.check(kernels.relu_backward(dzOut, input[0], input[1], output.count), "relu backward")
                    }
                }
            }
            if let residual, residualWantsGrad { residual.accumulateGrad(dz ?? output) }
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

// MARK: Synchronized batch norm (data-parallel training)

/// The training path of `batchNorm2d(…, sync:)`: batch normalisation with the statistics of the GLOBAL batch of
/// a data-parallel job, as PyTorch's `SyncBatchNorm`. N processes holding disjoint slices of one batch get what
/// one process holding the whole batch would: the same outputs and running statistics, and the same gradients
/// once the job sums the processes' parameter gradients.
///
/// - Forward: this process's per-channel count, Σx and Σx² go through one `reducer.sum`, packed as
///   [counts…, sums…, sums of squares…]; every process then normalises with the global mean and biased variance
///   and updates the running statistics with the global unbiased variance (÷ (count − 1)) and `momentum`.
/// - Backward: Σdy and Σdy·x̂ per channel go through one `reducer.sum` (made only when x needs a gradient, which
///   the model's structure decides, the same on every process), so dx subtracts the GLOBAL means of dy and dy·x̂;
///   dγ and dβ are this process's own sums, the job's gradient sum adds the other processes' parts.
/// - On a process with `sync.contributes == false` every sum it sends is zero. Its outputs (normalised with the
///   global statistics, so that the layers after it run, and make their collective calls, as elsewhere) are
///   placeholders: x, weight and bias get zero gradients from them. Zero, not none: a missing gradient would skip
///   the backward of the layers beneath, and with it their collective calls, which the other processes wait for.
///   The residual still gets dy (the sum's own derivative), zero when the caller zeroes the placeholders' loss.
func syncBatchNorm2dTrain(_ x: Tensor, weight: Tensor, bias: Tensor, runningMean: Tensor?, runningVar: Tensor?,
                          momentum: Float, eps: Float, residual: Tensor?, relu applyRelu: Bool,
                          sync: BatchNormSync) -> Tensor {
    precondition(x.shape.count >= 2, "batchNorm2d: x \(x.shape) must have a channel axis")
    let n = x.shape[0], c = x.shape[1], spatial = x.shape.dropFirst(2).reduce(1, *)
    precondition(weight.shape == [c] && bias.shape == [c], "batchNorm2d: weight \(weight.shape) / bias \(bias.shape) for \(c) channels")
    for buffer in [runningMean, runningVar] {
        if let buffer { precondition(buffer.shape == [c], "batchNorm2d: running statistic \(buffer.shape) for \(c) channels") }
    }
    // Read once: the backward must treat this process as the forward did, whatever the flag says by then.
    let contributes = sync.contributes
    let localCount = contributes ? n * spatial : 0

    // This process's moments. Numerics: summing x² directly makes every term carry μ² + σ², and the variance is
    // what is left after subtracting N·μ², so the rounding of up to 10⁵–10⁶ additions per channel is amplified by
    // (μ² + σ²)/σ². Instead each channel's local mean comes first and then M2 = Σ(x − local mean)² (two passes,
    // doubles), and the sum of squares sent is M2 + count·(local mean)², Σx² exact to a few roundings of its own
    // size. Combining Σcount, Σx and those Σx² is Chan et al.'s parallel formula (M2 = Σ M2ᵣ + Σ nᵣ(μᵣ − μ)²)
    // written as plain sums, which is what one `reducer.sum` can do. The one cancellation left is the final
    // Σx² − (Σx)²/N, a relative error of about 1e-16·μ²/σ² in the variance, below the float32 rounding of x
    // itself (6e-8·|μ|/σ relative to σ) for any |μ|/σ < 10⁸. The cost is one more read of x.
    var moments = [Double](repeating: 0, count: 3 * c)
    if localCount > 0 {
        moments.withUnsafeMutableBufferPointer { totals in
            x.data.withUnsafeBufferPointer { values in
                let totals = totals.baseAddress!, values = values.baseAddress!, count = Double(localCount)
                forEachChannel(c) { channel in
                    var sum = 0.0
                    for b in 0..<n {
                        let plane = values + (b * c + channel) * spatial
                        for i in 0..<spatial { sum += Double(plane[i]) }
                    }
                    let localMean = sum / count
                    var centeredSquares = 0.0
                    for b in 0..<n {
                        let plane = values + (b * c + channel) * spatial
                        for i in 0..<spatial {
                            let d = Double(plane[i]) - localMean
                            centeredSquares += d * d
                        }
                    }
                    totals[channel] = count
                    totals[c + channel] = sum
                    totals[2 * c + channel] = centeredSquares + sum * localMean
                }
            }
        }
    }
    sync.reducer.sum(&moments)
    precondition(moments.count == 3 * c, "batchNorm2d (synchronized): the reducer returned \(moments.count) values for \(3 * c)")

    // Global statistics, the same on every process (every process holds the same totals).
    var globalCount = [Double](repeating: 0, count: c)
    var globalMean = [Double](repeating: 0, count: c), invstd = [Double](repeating: 0, count: c)
    var kernelMean = [Float](repeating: 0, count: c), kernelVariance = [Float](repeating: 0, count: c)
    for channel in 0..<c {
        let count = moments[channel], sum = moments[c + channel], sumSquares = moments[2 * c + channel]
        precondition(count > 1, "batchNorm2d: training needs more than one value per channel in the global batch, got \(count) (x \(x.shape) on this process)")
        let mean = sum / count
        let centeredSquares = max(sumSquares - sum * mean, 0)  // rounding can leave a constant channel slightly below 0
        let biasedVariance = centeredSquares / count, unbiasedVariance = centeredSquares / (count - 1)
        globalCount[channel] = count
        globalMean[channel] = mean
        invstd[channel] = 1 / (biasedVariance + Double(eps)).squareRoot()
        kernelMean[channel] = Float(mean)
        kernelVariance[channel] = Float(biasedVariance)
        // PyTorch's update, rounded once from doubles as the unsynchronized kernel does.
        let keep = 1 - Double(momentum), take = Double(momentum)
        if let runningMean { runningMean.data[channel] = Float(keep * Double(runningMean.data[channel]) + take * mean) }
        if let runningVar { runningVar.data[channel] = Float(keep * Double(runningVar.data[channel]) + take * unbiasedVariance) }
    }

    // What the backward reads, fixed from here on.
    let (channelCount, channelMean, channelInvstd) = (globalCount, globalMean, invstd)

    // (x − mean)/√(var + eps)·γ + β is the inference kernel given the global mean and biased variance; then the
    // residual and the relu in place (both kernels allow their output to alias an input).
    let kernels = Kernels.table
    /// The output for these gamma and beta: a pure function of x and the statistics fixed above (no collective call).
    func normalized(gamma: [Float], beta: [Float]) -> [Float] {
        [Float](unsafeUninitializedCapacity: x.count) { out, initialized in
            if x.count > 0 {
                withBaseAddresses(x.data, gamma, beta, kernelMean, kernelVariance, residual?.data) { input in
                    Kernels.check(kernels.batchnorm2d_forward_infer(out.baseAddress, input[0], input[1], input[2], input[3],
                                                                    input[4], Int32(n), Int32(c), Int32(spatial), eps),
                                  "batchnorm2d forward (synchronized)")
                    if let residualValues = input[5] {
                        Kernels.check(kernels.add(out.baseAddress, out.baseAddress, residualValues, x.count), "batchnorm2d residual add")
                    }
                    if applyRelu { Kernels.check(kernels.relu_forward(out.baseAddress, out.baseAddress, x.count), "batchnorm2d relu") }
                }
            }
            initialized = x.count
        }
    }
    let result = Tensor(shape: x.shape, data: normalized(gamma: weight.data, beta: bias.data))
    guard Tensor.needsGrad(x, weight, bias, residual) else { return result }
    if residual == nil {
        // Remade from x and the global statistics (`releaseValues()`): the same kernels on the same values, no collective.
        let gamma = weight.data, beta = bias.data
        result.setRemake { normalized(gamma: gamma, beta: beta) }
    }
    result.record("batchnorm2d (synchronized)", parents: [x, weight, bias] + (residual.map { [$0] } ?? [])) { [unowned result] output in
        let kernels = Kernels.table
        // Through the relu (its mask is the output: y > 0, read through `data`: remade if it was released) to the sum
        // that both the batch norm and the residual receive.
        let dy = !applyRelu || output.isEmpty ? output : [Float](unsafeUninitializedCapacity: output.count) { dz, initialized in
            withBaseAddresses(output, result.data) { input in
                Kernels.check(kernels.relu_backward(dz.baseAddress, input[0], input[1], output.count), "relu backward")
            }
            initialized = output.count
        }
        if let residual, residual.requiresGrad { residual.accumulateGrad(dy) }
        guard x.requiresGrad || weight.requiresGrad || bias.requiresGrad else { return }

        // This process's Σdy and Σdy·x̂ per channel, packed [Σdy…, Σdy·x̂…]; zeros on a placeholder process.
        var gradientSums = [Double](repeating: 0, count: 2 * c)
        if contributes && x.count > 0 {
            gradientSums.withUnsafeMutableBufferPointer { totals in
                withBaseAddresses(dy, x.data) { input in
                    let totals = totals.baseAddress!, dyValues = input[0]!, xValues = input[1]!
                    forEachChannel(c) { channel in
                        let mean = channelMean[channel]
                        var sumDy = 0.0, sumDyCentered = 0.0
                        for b in 0..<n {
                            let offset = (b * c + channel) * spatial
                            for i in offset..<offset + spatial {
                                let g = Double(dyValues[i])
                                sumDy += g
                                sumDyCentered += g * (Double(xValues[i]) - mean)
                            }
                        }
                        totals[channel] = sumDy
                        totals[c + channel] = sumDyCentered * channelInvstd[channel]
                    }
                }
            }
        }
        // dγ = Σdy·x̂ and dβ = Σdy over THIS process's samples, taken before the reduction.
        if weight.requiresGrad {
            weight.withAccumulatingGrad { dGamma in for channel in 0..<c { dGamma[channel] += Float(gradientSums[c + channel]) } }
        }
        if bias.requiresGrad {
            bias.withAccumulatingGrad { dBeta in for channel in 0..<c { dBeta[channel] += Float(gradientSums[channel]) } }
        }
        guard x.requiresGrad else { return }
        sync.reducer.sum(&gradientSums)
        precondition(gradientSums.count == 2 * c, "batchNorm2d (synchronized): the reducer returned \(gradientSums.count) values for \(2 * c)")
        let globalSums = gradientSums
        guard contributes else {
            x.accumulateGrad([Float](repeating: 0, count: x.count))
            return
        }
        // dx = γ·invstd·(dy − mean(dy) − x̂·mean(dy·x̂)), the means over the global batch.
        x.accumulateGrad(overwriting: { dx in
            guard x.count > 0 else { return }
            withBaseAddresses(dy, x.data, weight.data) { input in
                let dyValues = input[0]!, xValues = input[1]!, gamma = input[2]!
                forEachChannel(c) { channel in
                    let count = channelCount[channel], mean = channelMean[channel], invstd = channelInvstd[channel]
                    let meanDy = globalSums[channel] / count, meanDyXhat = globalSums[c + channel] / count
                    let scale = Double(gamma[channel]) * invstd
                    for b in 0..<n {
                        let offset = (b * c + channel) * spatial
                        for i in offset..<offset + spatial {
                            let xhat = (Double(xValues[i]) - mean) * invstd
                            dx[i] = Float(scale * (Double(dyValues[i]) - meanDy - xhat * meanDyXhat))
                        }
                    }
                }
            }
        })
    }
    return result
}

/// Runs `body(channel)` for every channel on the OpenMP pool, the kernels' one thread pool. Each channel is one
/// call, its sums in a fixed order, so the results do not depend on the thread count. `body` must write only
/// its own channel's outputs.
private func forEachChannel(_ channels: Int, _ body: (Int) -> Void) {
    withoutActuallyEscaping(body) { escapable in
        var context = escapable
        withUnsafeMutablePointer(to: &context) { pointer in
            ck_parallel_for(Int32(channels), { argument, index in
                argument!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(Int(index))
            }, pointer)
        }
    }
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
