// PoolingOps.swift — max pooling and global average pooling through CKernels.
import CKernels

/// 2-D max pooling, PyTorch's `F.max_pool2d` (floor mode, padding counts as −∞, dilation 1).
/// - Parameters:
///   - x: input (N, C, H, W).
///   - kernelSize: (height, width) of the window.
///   - stride: (vertical, horizontal) step.
///   - padding: (vertical, horizontal), at most half the window.
/// - Returns: (N, C, P, Q).
public func maxPool2d(_ x: Tensor, kernelSize: (Int, Int), stride: (Int, Int), padding: (Int, Int) = (0, 0)) -> Tensor {
    precondition(x.shape.count == 4, "maxPool2d: x \(x.shape) must be 4-D")
    var shape = ck_pool2d_shape(
        batch: Int32(x.shape[0]), channels: Int32(x.shape[1]), in_height: Int32(x.shape[2]), in_width: Int32(x.shape[3]),
        kernel_height: Int32(kernelSize.0), kernel_width: Int32(kernelSize.1), stride_height: Int32(stride.0),
        stride_width: Int32(stride.1), pad_height: Int32(padding.0), pad_width: Int32(padding.1))
    let p = Int(ck_pool2d_output_height(&shape)), q = Int(ck_pool2d_output_width(&shape))
    precondition(p > 0 && q > 0, "maxPool2d: invalid window \(kernelSize) stride \(stride) padding \(padding) for x \(x.shape)")
    let outShape = [x.shape[0], x.shape[1], p, q]
    let outCount = outShape.reduce(1, *)
    let wantsGrad = Tensor.needsGrad(x)
    var argmax = [Int32](repeating: 0, count: wantsGrad ? outCount : 0)
    let y = [Float](unsafeUninitializedCapacity: outCount) { out, initialized in
        x.data.withUnsafeBufferPointer { xp in
            argmax.withUnsafeMutableBufferPointer { am in
                // An empty array's base address is the shared empty storage, not nil: say "no argmax" explicitly.
                let argmaxPointer = wantsGrad ? am.baseAddress : nil
                Kernels.check(Kernels.table.maxpool2d_forward(out.baseAddress, argmaxPointer, xp.baseAddress, &shape),
                              "maxpool2d forward")
            }
        }
        initialized = outCount
    }
    let result = Tensor(shape: outShape, data: y)
    guard wantsGrad else { return result }
    result.record("maxpool2d", parents: [x]) { dy in
        let kernels = Kernels.table
        x.accumulateGrad(overwriting: { dx in
            dy.withUnsafeBufferPointer { dyp in
                argmax.withUnsafeBufferPointer { am in
                    Kernels.check(kernels.maxpool2d_backward(dx, dyp.baseAddress, am.baseAddress, &shape), "maxpool2d backward")
                }
            }
        })
    }
    return result
}

/// Global average pooling: the mean of each (n, c) plane, PyTorch's `AdaptiveAvgPool2d(1)` + flatten.
/// - Parameter x: input (N, C, H, W).
/// - Returns: (N, C).
public func globalAvgPool2d(_ x: Tensor) -> Tensor {
    precondition(x.shape.count == 4, "globalAvgPool2d: x \(x.shape) must be 4-D")
    let n = Int32(x.shape[0]), c = Int32(x.shape[1]), spatial = Int32(x.shape[2] * x.shape[3])
    let y = [Float](unsafeUninitializedCapacity: x.shape[0] * x.shape[1]) { out, initialized in
        x.data.withUnsafeBufferPointer { xp in
            Kernels.check(Kernels.table.global_avgpool_forward(out.baseAddress, xp.baseAddress, n, c, spatial),
                          "global avgpool forward")
        }
        initialized = out.count
    }
    let result = Tensor(shape: [x.shape[0], x.shape[1]], data: y)
    guard Tensor.needsGrad(x) else { return result }
    result.record("global avgpool", parents: [x]) { dy in
        let kernels = Kernels.table
        x.accumulateGrad(overwriting: { dx in
            dy.withUnsafeBufferPointer { dyp in
                Kernels.check(kernels.global_avgpool_backward(dx, dyp.baseAddress, n, c, spatial), "global avgpool backward")
            }
        })
    }
    return result
}
