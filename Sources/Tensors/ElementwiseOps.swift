// ElementwiseOps.swift — relu and add through CKernels; dropout in Swift.
import CKernels

/// max(x, 0).
/// - Parameter x: any shape.
public func relu(_ x: Tensor) -> Tensor {
    let y = [Float](unsafeUninitializedCapacity: x.count) { out, initialized in
        x.data.withUnsafeBufferPointer { xp in
            Kernels.check(Kernels.table.relu_forward(out.baseAddress, xp.baseAddress, x.count), "relu forward")
        }
        initialized = x.count
    }
    let result = Tensor(shape: x.shape, data: y)
    guard Tensor.needsGrad(x) else { return result }
    // The output decides the mask (y > 0); sharing `y` costs no copy.
    result.record("relu", parents: [x]) { dy in
        let kernels = Kernels.table
        x.accumulateGrad(overwriting: { dx in
            withBaseAddresses(dy, y) { input in
                Kernels.check(kernels.relu_backward(dx, input[0], input[1], x.count), "relu backward")
            }
        })
    }
    return result
}

/// a + b, same shapes (no broadcasting: the residual connection).
public func add(_ a: Tensor, _ b: Tensor) -> Tensor {
    precondition(a.shape == b.shape, "add: shapes \(a.shape) and \(b.shape) differ")
    let y = [Float](unsafeUninitializedCapacity: a.count) { out, initialized in
        withBaseAddresses(a.data, b.data) { input in
            Kernels.check(Kernels.table.add(out.baseAddress, input[0], input[1], a.count), "add")
        }
        initialized = a.count
    }
    let result = Tensor(shape: a.shape, data: y)
    guard Tensor.needsGrad(a, b) else { return result }
    result.record("add", parents: [a, b]) { dy in
        // Both receive the same buffer; copy-on-write separates them only if one is later accumulated into.
        if a.requiresGrad { a.accumulateGrad(dy) }
        if b.requiresGrad { b.accumulateGrad(dy) }
    }
    return result
}

/// a + b.
public func + (a: Tensor, b: Tensor) -> Tensor { add(a, b) }

/// Inverted dropout, PyTorch's `F.dropout`: in training, each value is zeroed with probability `p`
/// and the survivors scaled by 1/(1 − p); otherwise the input itself is returned.
/// - Parameters:
///   - x: any shape.
///   - p: drop probability in [0, 1).
///   - training: whether to drop.
///   - generator: the stream the mask is drawn from, one draw per value.
///   - drawsBefore: draws to discard first, and `drawsAfter` after: when `x` is one process's rows of a larger
///     batch (data-parallel training), the other rows' draws, so every row gets the mask it would get if one
///     process ran the whole batch.
public func dropout(_ x: Tensor, p: Float, training: Bool, generator: RandomGenerator, drawsBefore: Int = 0,
                    drawsAfter: Int = 0) -> Tensor {
    precondition(p >= 0 && p < 1, "dropout: p = \(p) must be in [0, 1)")
    precondition(drawsBefore >= 0 && drawsAfter >= 0, "dropout: negative draws to skip")
    guard training, p > 0 else { return x }
    for _ in 0 ..< drawsBefore { _ = generator.next() }
    defer { for _ in 0 ..< drawsAfter { _ = generator.next() } }
    let scale = 1 / (1 - p)
    // Keep when the 24-bit uniform draw is at or above p.
    let threshold = UInt64((Double(p) * 16_777_216).rounded(.up))
    let mask = [Float](unsafeUninitializedCapacity: x.count) { m, initialized in
        for i in 0..<x.count { m[i] = (generator.next() >> 40) >= threshold ? scale : 0 }
        initialized = x.count
    }
    let y = [Float](unsafeUninitializedCapacity: x.count) { out, initialized in
        x.data.withUnsafeBufferPointer { xp in
            mask.withUnsafeBufferPointer { m in
                for i in 0..<x.count { out[i] = xp[i] * m[i] }
            }
        }
        initialized = x.count
    }
    let result = Tensor(shape: x.shape, data: y)
    guard Tensor.needsGrad(x) else { return result }
    result.record("dropout", parents: [x]) { dy in
        x.accumulateGrad(overwriting: { dx in
            dy.withUnsafeBufferPointer { dyp in
                mask.withUnsafeBufferPointer { m in
                    for i in 0..<x.count { dx[i] = dyp[i] * m[i] }
                }
            }
        })
    }
    return result
}
