// ShapeOps.swift — reshape, flatten and concatenation (memory moves only, in Swift).

/// The same values under another shape (no copy: storage is shared copy-on-write).
/// - Parameters:
///   - x: any tensor.
///   - shape: the new dimensions; their product must equal `x.count`.
public func reshape(_ x: Tensor, _ shape: [Int]) -> Tensor {
    precondition(shape.reduce(1, *) == x.count, "reshape: \(x.shape) cannot become \(shape)")
    let result = Tensor(shape: shape, data: x.data)
    guard Tensor.needsGrad(x) else { return result }
    result.record("reshape", parents: [x]) { dy in x.accumulateGrad(dy) }
    return result
}

/// Collapses every axis from `startDim` on into one, PyTorch's `torch.flatten(x, start_dim)`.
public func flatten(_ x: Tensor, startDim: Int = 1) -> Tensor {
    precondition(startDim >= 0 && startDim < max(x.shape.count, 1), "flatten: startDim \(startDim) for shape \(x.shape)")
    return reshape(x, Array(x.shape[..<startDim]) + [x.shape[startDim...].reduce(1, *)])
}

/// Joins tensors along `axis`; all other dimensions must match, PyTorch's `torch.cat`.
/// - Parameters:
///   - tensors: at least one tensor, equal ranks.
///   - axis: the axis to join along.
public func concat(_ tensors: [Tensor], axis: Int = 1) -> Tensor {
    precondition(!tensors.isEmpty, "concat: no tensors")
    let rank = tensors[0].shape.count
    precondition(axis >= 0 && axis < rank, "concat: axis \(axis) for rank \(rank)")
    for t in tensors {
        precondition(t.shape.count == rank
                     && zip(t.shape, tensors[0].shape).enumerated().allSatisfy { $0.offset == axis || $0.element.0 == $0.element.1 },
                     "concat: shapes \(tensors.map(\.shape)) differ outside axis \(axis)")
    }
    let outer = tensors[0].shape[..<axis].reduce(1, *)
    let inner = tensors[0].shape[(axis + 1)...].reduce(1, *)
    let widths = tensors.map { $0.shape[axis] * inner }   // contiguous run per outer index
    let rowWidth = widths.reduce(0, +)
    var outShape = tensors[0].shape
    outShape[axis] = tensors.reduce(0) { $0 + $1.shape[axis] }
    let y = [Float](unsafeUninitializedCapacity: outer * rowWidth) { out, initialized in
        var offset = 0
        for (t, width) in zip(tensors, widths) {
            t.data.withUnsafeBufferPointer { src in
                for o in 0..<outer {
                    (out.baseAddress! + o * rowWidth + offset).update(from: src.baseAddress! + o * width, count: width)
                }
            }
            offset += width
        }
        initialized = outer * rowWidth
    }
    let result = Tensor(shape: outShape, data: y)
    guard GradMode.isEnabled, tensors.contains(where: \.requiresGrad) else { return result }
    result.record("concat", parents: tensors) { dy in
        var offset = 0
        dy.withUnsafeBufferPointer { g in
            for (t, width) in zip(tensors, widths) {
                if t.requiresGrad {
                    t.accumulateGrad(overwriting: { dx in
                        for o in 0..<outer { dx.advanced(by: o * width).update(from: g.baseAddress! + o * rowWidth + offset, count: width) }
                    })
                }
                offset += width
            }
        }
    }
    return result
}
