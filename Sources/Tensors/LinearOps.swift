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
    let y = [Float](unsafeUninitializedCapacity: batch * outFeatures) { out, initialized in
        withBaseAddresses(x.data, weight.data, bias?.data) { input in
            let status = Kernels.table.linear_forward(out.baseAddress, input[0], input[1], input[2],
                                                      Int32(batch), Int32(inFeatures), Int32(outFeatures))
            Kernels.check(status, "linear forward")
        }
        initialized = out.count
    }
    let result = Tensor(shape: [batch, outFeatures], data: y)
    guard Tensor.needsGrad(x, weight, bias) else { return result }
    let parents = [x, weight] + (bias.map { [$0] } ?? [])
    result.record("linear", parents: parents) { dy in
        let kernels = Kernels.table
        withGradientBuffers(x: x, weight: weight, bias: bias) { dx, dw, db in
            withBaseAddresses(dy, x.data, weight.data) { input in
                let status = kernels.linear_backward(dx, dw, db, input[0], input[1], input[2],
                                                     Int32(batch), Int32(inFeatures), Int32(outFeatures))
                Kernels.check(status, "linear backward")
            }
        }
    }
    return result
}
