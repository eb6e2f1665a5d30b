// ConvolutionOps.swift — conv2d forward and backward through CKernels (dilation 1, groups 1).
import CKernels

/// The kernel's shape record and the output shape (N, K, P, Q) of a convolution, with its arguments checked.
private func convolutionShape(_ op: String, _ x: Tensor, weight: Tensor, bias: Tensor?, stride: (Int, Int),
                              padding: (Int, Int)) -> (ck_conv2d_shape, [Int]) {
    precondition(x.shape.count == 4 && weight.shape.count == 4, "\(op): x \(x.shape) and weight \(weight.shape) must be 4-D")
    precondition(x.shape[1] == weight.shape[1], "\(op): x has \(x.shape[1]) channels, weight expects \(weight.shape[1])")
    if let bias { precondition(bias.shape == [weight.shape[0]], "\(op): bias \(bias.shape) for \(weight.shape[0]) filters") }
    var shape = ck_conv2d_shape(
        batch: Int32(x.shape[0]), in_channels: Int32(x.shape[1]), in_height: Int32(x.shape[2]), in_width: Int32(x.shape[3]),
        out_channels: Int32(weight.shape[0]), kernel_height: Int32(weight.shape[2]), kernel_width: Int32(weight.shape[3]),
        stride_height: Int32(stride.0), stride_width: Int32(stride.1), pad_height: Int32(padding.0), pad_width: Int32(padding.1))
    let p = Int(ck_conv2d_output_height(&shape)), q = Int(ck_conv2d_output_width(&shape))
    precondition(p > 0 && q > 0, "\(op): empty output for x \(x.shape), weight \(weight.shape), stride \(stride), padding \(padding)")
    return (shape, [x.shape[0], weight.shape[0], p, q])
}

/// 2-D convolution, PyTorch's `F.conv2d` with zero padding, dilation 1, groups 1.
/// - Parameters:
///   - x: input (N, C, H, W).
///   - weight: filters (K, C, R, S).
///   - bias: (K) or nil.
///   - stride: (vertical, horizontal) step.
///   - padding: (vertical, horizontal) zero padding on each side.
///   - packed: the weights packed ahead (`PackedConvolutionWeights`), kept by a caller whose weights stay the same.
/// - Returns: (N, K, P, Q) with P = (H + 2·padH − R) / strideH + 1.
public func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor? = nil,
                   stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0),
                   packed: PackedConvolutionWeights? = nil) -> Tensor {
    var (shape, outShape) = convolutionShape("conv2d", x, weight: weight, bias: bias, stride: stride, padding: padding)
    let kernels = Kernels.table
    let workspaceBytes = kernels.conv2d_workspace_size(&shape)
    packed?.prepare(weight.data, shape: &shape, kernels: kernels, workspaceBytes: workspaceBytes)

    let y = [Float](unsafeUninitializedCapacity: outShape.reduce(1, *)) { out, initialized in
        withBaseAddresses(x.data, weight.data, bias?.data) { input in
            Workspace.shared.withBuffer(bytes: workspaceBytes) { ws, wsBytes in
                let status = packed == nil
                    ? kernels.conv2d_forward(out.baseAddress, input[0], input[1], input[2], &shape, ws, wsBytes)
                    : kernels.conv2d_forward_fused_packed(out.baseAddress, input[0], input[1], packed?.buffer,
                                                          packed?.bytes ?? 0, input[2], nil, 0, &shape, ws, wsBytes)
                Kernels.check(status, "conv2d forward")
            }
        }
        initialized = out.count
    }
    let result = Tensor(shape: outShape, data: y)
    guard Tensor.needsGrad(x, weight, bias) else { return result }

    let parents = [x, weight] + (bias.map { [$0] } ?? [])
    result.record("conv2d", parents: parents) { dy in
        let kernels = Kernels.table
        let workspaceBytes = kernels.conv2d_workspace_size(&shape)
        if x.requiresGrad {
            x.accumulateGrad(overwriting: { dx in
                withBaseAddresses(dy, weight.data) { input in
                    Workspace.shared.withBuffer(bytes: workspaceBytes) { ws, wsBytes in
                        Kernels.check(kernels.conv2d_backward_input(dx, input[0], input[1], &shape, ws, wsBytes),
                                      "conv2d backward input")
                    }
                }
            })
        }
        let wantsBias = bias?.requiresGrad ?? false
        guard weight.requiresGrad || wantsBias else { return }
        // The kernel computes dweight and dbias together; a frozen weight next to a trainable bias
        // (rare) gets its share computed into a discarded buffer.
        let biasGrad: (UnsafeMutablePointer<Float>?) -> Void = { dbias in
            let run: (UnsafeMutablePointer<Float>) -> Void = { dw in
                withBaseAddresses(dy, x.data) { input in
                    Workspace.shared.withBuffer(bytes: workspaceBytes) { ws, wsBytes in
                        Kernels.check(kernels.conv2d_backward_weight(dw, dbias, input[0], input[1], &shape, ws, wsBytes),
                                      "conv2d backward weight")
                    }
                }
            }
            if weight.requiresGrad {
                weight.withAccumulatingGrad(run)
            } else {
                var discarded = [Float](repeating: 0, count: weight.count)
                discarded.withUnsafeMutableBufferPointer { run($0.baseAddress!) }
            }
        }
        if let bias, wantsBias { bias.withAccumulatingGrad { biasGrad($0) } } else { biasGrad(nil) }
    }
    return result
}

/// A convolution's weights packed ahead for the kernels (`conv2dInference(…, packed:)`), so an inference pass does
/// not pack (or, for Winograd layers, transform) 25 M weights again on every batch. Whoever keeps the weights
/// unchanged keeps this with them (a folded batch norm's cache); it repacks when a new input size asks for another
/// form, and the kernels ignore a buffer packed for another GEMM backend or Winograd choice.
public final class PackedConvolutionWeights {
    fileprivate var buffer: UnsafeMutableRawPointer?
    fileprivate var bytes = 0
    fileprivate var packedFor: [Int] = []  // what it was packed for: the shape (batch aside), size and GEMM backend

    public init() {}

    deinit { buffer?.deallocate() }

    /// Packs `weight` for `shape` unless that is done already for this kernel table's choice: its packed size (0 for
    /// the reference table, and it changes with the Winograd choice) and the GEMM backend are part of the key, so a
    /// switch of either repacks rather than leaving a buffer the kernels would ignore.
    fileprivate func prepare(_ weight: [Float], shape: inout ck_conv2d_shape, kernels: ck_kernel_table,
                             workspaceBytes: Int) {
        let size = kernels.conv2d_packed_weights_size(&shape)
        let key = [shape.in_channels, shape.in_height, shape.in_width, shape.out_channels, shape.kernel_height,
                   shape.kernel_width, shape.stride_height, shape.stride_width, shape.pad_height, shape.pad_width]
            .map(Int.init) + [size, Int(ck_get_gemm_backend())]
        if key == packedFor { return }
        buffer?.deallocate()
        buffer = nil
        bytes = 0
        packedFor = key
        guard size > 0 else { return }
        let storage = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
        let status = weight.withUnsafeBufferPointer { w in
            Workspace.shared.withBuffer(bytes: workspaceBytes) { ws, wsBytes in
                kernels.conv2d_pack_weights(storage, size, w.baseAddress, &shape, ws, wsBytes)
            }
        }
        guard status == CK_OK.rawValue else {
            storage.deallocate()  // the forward packs as usual
            return
        }
        buffer = storage
        bytes = size
    }
}

/// relu?(conv(x, weight) + bias + residual) in one pass over the output: the inference path of a
/// BatchNorm-folded network (the bias is the folded BatchNorm's shift). No autograd: callers use it only
/// when nothing needs a gradient. `packed`: the weights packed ahead, kept by the caller while they stay the same.
/// - Parameters:
///   - x: (N, C, H, W).
///   - weight: (K, C, R, S).
///   - bias: (K) or nil.
///   - residual: (N, K, P, Q) added before the activation, or nil.
///   - relu: apply max(·, 0) last (NaN kept).
/// - Returns: (N, K, P, Q), off the tape.
public func conv2dInference(_ x: Tensor, weight: Tensor, bias: Tensor?, residual: Tensor? = nil, relu: Bool,
                            stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0),
                            packed: PackedConvolutionWeights? = nil) -> Tensor {
    precondition(!Tensor.needsGrad(x, weight, bias, residual), "conv2dInference: an input needs a gradient")
    var (shape, outShape) = convolutionShape("conv2dInference", x, weight: weight, bias: bias, stride: stride,
                                             padding: padding)
    if let residual { precondition(residual.shape == outShape, "conv2dInference: residual \(residual.shape), output \(outShape)") }
    let kernels = Kernels.table
    let workspaceBytes = kernels.conv2d_workspace_size(&shape)
    packed?.prepare(weight.data, shape: &shape, kernels: kernels, workspaceBytes: workspaceBytes)
    let y = [Float](unsafeUninitializedCapacity: outShape.reduce(1, *)) { out, initialized in
        withBaseAddresses(x.data, weight.data, bias?.data, residual?.data) { input in
            Workspace.shared.withBuffer(bytes: workspaceBytes) { ws, wsBytes in
                let status = kernels.conv2d_forward_fused_packed(out.baseAddress, input[0], input[1], packed?.buffer,
                                                                 packed?.bytes ?? 0, input[2], input[3], relu ? 1 : 0,
                                                                 &shape, ws, wsBytes)
                Kernels.check(status, "conv2d fused forward")
            }
        }
        initialized = out.count
    }
    return Tensor(shape: outShape, data: y)
}
