import Foundation

/// Raw element bytes ⇄ `WeightTensor` values. Callers check bounds first (`TensorLayout.requiredElements`);
/// these functions trust the ranges they are given.
enum ElementCodec {
    /// Decodes the elements a strided view selects from `bytes`, in row-major order of `layout.shape`.
    static func decode(_ bytes: UnsafeRawBufferPointer, dtype: WeightDType, byteSwapped: Bool,
                       layout: TensorLayout, count: Int) -> WeightTensor.Storage {
        switch dtype {
        case .float32:
            if !byteSwapped, layout.isContiguous, let base = bytes.baseAddress {
                // The common case (every torchvision weight): one copy.
                let start = base + layout.offset * 4
                return .floats([Float](unsafeUninitializedCapacity: count) { buffer, initialized in
                    if count > 0 { memcpy(buffer.baseAddress!, start, count * 4) }
                    initialized = count
                })
            }
            return .floats(gather(layout, count) { i in
                let raw = bytes.loadUnaligned(fromByteOffset: i &* 4, as: UInt32.self)
                return Float(bitPattern: byteSwapped ? raw.byteSwapped : raw)
            })
        case .float64:
            return .floats(gather(layout, count) { i in
                let raw = bytes.loadUnaligned(fromByteOffset: i &* 8, as: UInt64.self)
                return Float(Double(bitPattern: byteSwapped ? raw.byteSwapped : raw))
            })
        case .float16:
            return .floats(gather(layout, count) { i in
                let raw = bytes.loadUnaligned(fromByteOffset: i &* 2, as: UInt16.self)
                return floatFromHalfBits(byteSwapped ? raw.byteSwapped : raw)
            })
        case .bfloat16:
            return .floats(gather(layout, count) { i in
                let raw = bytes.loadUnaligned(fromByteOffset: i &* 2, as: UInt16.self)
                return floatFromBFloat16Bits(byteSwapped ? raw.byteSwapped : raw)
            })
        case .int64:
            return .integers(gather(layout, count) { i in
                let raw = bytes.loadUnaligned(fromByteOffset: i &* 8, as: UInt64.self)
                return Int64(bitPattern: byteSwapped ? raw.byteSwapped : raw)
            })
        case .int32:
            return .integers(gather(layout, count) { i in
                let raw = bytes.loadUnaligned(fromByteOffset: i &* 4, as: UInt32.self)
                return Int64(Int32(bitPattern: byteSwapped ? raw.byteSwapped : raw))
            })
        case .int16:
            return .integers(gather(layout, count) { i in
                let raw = bytes.loadUnaligned(fromByteOffset: i &* 2, as: UInt16.self)
                return Int64(Int16(bitPattern: byteSwapped ? raw.byteSwapped : raw))
            })
        case .int8:
            return .integers(gather(layout, count) { i in Int64(Int8(bitPattern: bytes[i])) })
        case .uint8:
            return .integers(gather(layout, count) { i in Int64(bytes[i]) })
        case .bool:
            return .integers(gather(layout, count) { i in bytes[i] != 0 ? 1 : 0 })
        }
    }

    /// Little-endian bytes of a tensor's values in its dtype. Total over every tensor: values of the
    /// other kind (floats given an integer dtype) are converted, non-finite floats to 0.
    static func encode(_ tensor: WeightTensor, into data: inout Data) {
        switch tensor.dtype {
        case .float32: appendLittleEndian(tensor.floats.lazy.map { $0.bitPattern }, into: &data)
        case .float64: appendLittleEndian(tensor.floats.lazy.map { Double($0).bitPattern }, into: &data)
        case .float16: appendLittleEndian(tensor.floats.lazy.map { halfBitsFromFloat($0) }, into: &data)
        case .bfloat16: appendLittleEndian(tensor.floats.lazy.map { bfloat16BitsFromFloat($0) }, into: &data)
        case .int64: appendLittleEndian(integers(tensor).lazy.map { UInt64(bitPattern: $0) }, into: &data)
        case .int32: appendLittleEndian(integers(tensor).lazy.map { UInt32(truncatingIfNeeded: $0) }, into: &data)
        case .int16: appendLittleEndian(integers(tensor).lazy.map { UInt16(truncatingIfNeeded: $0) }, into: &data)
        case .int8, .uint8: data.append(contentsOf: integers(tensor).lazy.map { UInt8(truncatingIfNeeded: $0) })
        case .bool: data.append(contentsOf: integers(tensor).lazy.map { $0 != 0 ? UInt8(1) : 0 })
        }
    }

    private static func integers(_ tensor: WeightTensor) -> [Int64] {
        tensor.integers ?? tensor.floats.map { Int64(exactly: $0.rounded(.towardZero)) ?? 0 }
    }

    private static func appendLittleEndian<S: Sequence>(_ values: S, into data: inout Data)
    where S.Element: FixedWidthInteger {
        var chunk = [S.Element]()
        chunk.reserveCapacity(1 << 16)
        func flush() {
            chunk.withUnsafeBytes { data.append(contentsOf: $0) }
            chunk.removeAll(keepingCapacity: true)
        }
        for value in values {
            chunk.append(value.littleEndian)
            if chunk.count == 1 << 16 { flush() }
        }
        flush()
    }

    /// Visits the storage index of every element of the view, in row-major order.
    ///
    /// Only indices of elements are ever formed: `requiredElements` checked that the last one fits, so
    /// none of this arithmetic can overflow. (Stepping past the end of a row first and back afterwards
    /// would: a size-1 dimension may carry any stride, e.g. `Int.max`.)
    @inline(__always)
    private static func gather<T>(_ layout: TensorLayout, _ count: Int, _ read: (Int) -> T) -> [T] {
        var out = [T]()
        out.reserveCapacity(count)
        let shape = layout.shape
        let strides = layout.strides
        let rank = shape.count
        if rank == 0 { out.append(read(layout.offset)); return out }
        if count == 0 { return out }
        var index = [Int](repeating: 0, count: rank)
        // Storage index of the first element of the current row.
        var rowStart = layout.offset
        let innerSize = shape[rank - 1]
        let innerStride = strides[rank - 1]
        while true {
            var p = rowStart
            out.append(read(p))
            for _ in 1..<innerSize {
                p += innerStride
                out.append(read(p))
            }
            // Advance the outer index like an odometer: the first dimension (from the inside) that is not
            // at its last position steps forward; the ones inside it go back to 0.
            var d = rank - 2
            while d >= 0 {
                if index[d] + 1 < shape[d] {
                    index[d] += 1
                    rowStart += strides[d]
                    break
                }
                rowStart -= strides[d] * (shape[d] - 1)
                index[d] = 0
                d -= 1
            }
            if d < 0 { return out }
        }
    }
}

/// Where a tensor's elements sit in a storage: element offset, sizes and element strides (torch's
/// `as_strided` view).
struct TensorLayout {
    var offset: Int
    var shape: [Int]
    var strides: [Int]

    /// A contiguous row-major layout of `shape` starting at element 0.
    init(contiguous shape: [Int]) {
        self.offset = 0
        self.shape = shape
        var strides = [Int](repeating: 1, count: shape.count)
        var step = 1
        for d in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[d] = step
            step = step &* max(shape[d], 1)
        }
        self.strides = strides
    }

    init(offset: Int, shape: [Int], strides: [Int]) {
        self.offset = offset
        self.shape = shape
        self.strides = strides
    }

    var isContiguous: Bool {
        var step = 1
        for d in stride(from: shape.count - 1, through: 0, by: -1) {
            if shape[d] != 1 && strides[d] != step { return false }
            step = step &* shape[d]
        }
        return true
    }

    /// The number of storage elements the view reaches (highest index + 1; 0 for an empty view), or a
    /// problem when a size, stride or offset is negative or the arithmetic overflows.
    func requiredElements() throws -> Int {
        guard offset >= 0 else { throw FormatProblem.tensor("negative storage offset \(offset)") }
        guard strides.count == shape.count else {
            throw FormatProblem.tensor("shape \(shape) and strides \(strides) differ in rank")
        }
        guard shape.allSatisfy({ $0 >= 0 }) else {
            throw FormatProblem.tensor("shape \(shape) has a negative size")
        }
        guard let count = WeightTensor.elementCount(shape) else {
            throw FormatProblem.tensor("shape \(shape) has more elements than an Int can count")
        }
        if count == 0 { return 0 }
        var last = offset
        for (size, step) in zip(shape, strides) {
            guard step >= 0 else { throw FormatProblem.tensor("negative stride in \(strides)") }
            let (reach, o1) = (size - 1).multipliedReportingOverflow(by: step)
            let (sum, o2) = last.addingReportingOverflow(reach)
            if o1 || o2 { throw FormatProblem.tensor("shape \(shape) with strides \(strides) overflows") }
            last = sum
        }
        let (needed, overflow) = last.addingReportingOverflow(1)
        if overflow { throw FormatProblem.tensor("shape \(shape) with strides \(strides) overflows") }
        return needed
    }
}
