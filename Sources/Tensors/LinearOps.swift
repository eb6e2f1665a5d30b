// LinearOps.swift — fully connected layer (sgemm) through CKernels.
import CKernels

/// y = x · weightᵀ + bias, PyTorch's `F.linear`.
/// - Parameters:
///   - x: (B, IN).
///   - weight: (OUT, IN).
///   - bias: (OUT) or nil.
/// - Returns: (B, OUT).
public func linear(_ x: Tensor, weight: Tensor, bias: Tensor? = nil) -> Tensor {
    precondition(x.shape.count == 2 && weight.shape.count == 2 && x.shape[1] == weight.shape[1],
                 "linear: x \(x.shape) and weight \(weight.shape) do not match")
    let batch = x.shape[0], inFeatures = x.shape[1], outFeatures = weight.shape[0]
    if let bias { precondition(bias.shape == [outFeatures], "linear: bias \(bias.shape) for \(outFeatures) outputs") }
    let reference = Kernels.backend == .reference
    let y = [Float](unsafeUninitializedCapacity: batch * outFeatures) { out, initialized in
        x.data.withUnsafeBufferPointer { xp in
            weight.data.withUnsafeBufferPointer { wp in
                withOptionalPointer(bias) { bp in
                    let status = reference
                        ? ck_linear_forward_f32_ref(out.baseAddress, xp.baseAddress, wp.baseAddress, bp,
                                                    Int32(batch), Int32(inFeatures), Int32(outFeatures))
                        : ck_linear_forward_f32(out.baseAddress, xp.baseAddress, wp.baseAddress, bp,
                                                Int32(batch), Int32(inFeatures), Int32(outFeatures))
                    Kernels.check(status, "linear forward")
                }
            }
        }
        initialized = out.count
    }
    let result = Tensor(shape: [batch, outFeatures], data: y)
    guard Tensor.needsGrad(x, weight, bias) else { return result }
    let parents = [x, weight] + (bias.map { [$0] } ?? [])
    result.record("linear", parents: parents) { dy in
        let reference = Kernels.backend == .reference
        let run: (UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Float>?) -> Void = { dx, dw, db in
            dy.withUnsafeBufferPointer { dyp in
                x.data.withUnsafeBufferPointer { xp in
                    weight.data.withUnsafeBufferPointer { wp in
                        let status = reference
                            ? ck_linear_backward_f32_ref(dx, dw, db, dyp.baseAddress, xp.baseAddress, wp.baseAddress,
                                                         Int32(batch), Int32(inFeatures), Int32(outFeatures))
                            : ck_linear_backward_f32(dx, dw, db, dyp.baseAddress, xp.baseAddress, wp.baseAddress,
                                                     Int32(batch), Int32(inFeatures), Int32(outFeatures))
                        Kernels.check(status, "linear backward")
                    }
                }
            }
        }
        withGradientBuffers(x: x, weight: weight, bias: bias, run)
    }
    return result
}
