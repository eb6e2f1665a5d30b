/// Element types found in `.pth` storages and safetensors files.
public enum WeightDType: String, CaseIterable, Sendable {
    case float64, float32, float16, bfloat16
    case int64, int32, int16, int8, uint8, bool

    /// Bytes per element in a file.
    public var byteCount: Int {
        switch self {
        case .float64, .int64: return 8
        case .float32, .int32: return 4
        case .float16, .bfloat16, .int16: return 2
        case .int8, .uint8, .bool: return 1
        }
    }

    public var isFloatingPoint: Bool {
        switch self {
        case .float64, .float32, .float16, .bfloat16: return true
        default: return false
        }
    }

    /// The dtype's name in a safetensors header.
    public var safetensorsName: String {
        switch self {
        case .float64: return "F64"
        case .float32: return "F32"
        case .float16: return "F16"
        case .bfloat16: return "BF16"
        case .int64: return "I64"
        case .int32: return "I32"
        case .int16: return "I16"
        case .int8: return "I8"
        case .uint8: return "U8"
        case .bool: return "BOOL"
        }
    }

    public init?(safetensorsName: String) {
        guard let match = WeightDType.allCases.first(where: { $0.safetensorsName == safetensorsName }) else { return nil }
        self = match
    }

    /// The dtype of a `torch.<Name>Storage` class (the name without the `torch.` module).
    init?(torchStorageName name: String) {
        switch name {
        case "DoubleStorage": self = .float64
        case "FloatStorage": self = .float32
        case "HalfStorage": self = .float16
        case "BFloat16Storage": self = .bfloat16
        case "LongStorage": self = .int64
        case "IntStorage": self = .int32
        case "ShortStorage": self = .int16
        case "CharStorage": self = .int8
        case "ByteStorage": self = .uint8
        case "BoolStorage": self = .bool
        default: return nil
        }
    }
}

/// One tensor read from (or to be written to) a weight file: a shape, the dtype it has in the file, and
/// its values in row-major order.
///
/// Floating dtypes keep their values as `Float`: float16 and bfloat16 widen exactly, float64 is rounded to
/// the nearest `Float`. Integer and bool dtypes keep theirs as `Int64` (e.g. BatchNorm's
/// `num_batches_tracked`), and `floats` converts them on demand.
public struct WeightTensor: Equatable, Sendable {
    public let shape: [Int]
    public let dtype: WeightDType
    private let storage: Storage

    enum Storage: Equatable, Sendable {
        case floats([Float])
        case integers([Int64])
    }

    /// A floating-point tensor.
    /// - Parameters:
    ///   - shape: sizes, outermost first; `[]` is a scalar.
    ///   - floats: the values in row-major order; `floats.count` must equal the product of `shape`.
    ///   - dtype: the dtype to write it as (a floating dtype); float16/bfloat16 round to nearest even.
    public init(shape: [Int], floats: [Float], dtype: WeightDType = .float32) {
        precondition(dtype.isFloatingPoint, "WeightTensor(floats:) needs a floating dtype, got \(dtype)")
        precondition(WeightTensor.elementCount(shape) == floats.count, "shape \(shape) does not hold \(floats.count) values")
        self.shape = shape
        self.dtype = dtype
        self.storage = .floats(floats)
    }

    /// An integer (or bool) tensor.
    /// - Parameters:
    ///   - shape: sizes, outermost first; `[]` is a scalar (e.g. `num_batches_tracked`).
    ///   - integers: the values in row-major order; `integers.count` must equal the product of `shape`.
    ///   - dtype: an integer or bool dtype; values are truncated to its width when written.
    public init(shape: [Int], integers: [Int64], dtype: WeightDType = .int64) {
        precondition(!dtype.isFloatingPoint, "WeightTensor(integers:) needs an integer dtype, got \(dtype)")
        precondition(WeightTensor.elementCount(shape) == integers.count, "shape \(shape) does not hold \(integers.count) values")
        self.shape = shape
        self.dtype = dtype
        self.storage = .integers(integers)
    }

    init(shape: [Int], dtype: WeightDType, storage: Storage) {
        self.shape = shape
        self.dtype = dtype
        self.storage = storage
    }

    /// Number of elements (the product of `shape`; 1 for a scalar).
    public var count: Int { WeightTensor.elementCount(shape) ?? 0 }

    /// The values as `Float`, whatever the dtype (integers are converted, large ones rounded).
    public var floats: [Float] {
        switch storage {
        case .floats(let values): return values
        case .integers(let values): return values.map { Float($0) }
        }
    }

    /// The values of an integer or bool dtype; `nil` for floating dtypes.
    public var integers: [Int64]? {
        if case .integers(let values) = storage { return values }
        return nil
    }

    /// Whether every value is finite (no NaN, no ±infinity). Always true for integer and bool dtypes.
    ///
    /// The readers load non-finite values as they are (a checkpoint saved mid-divergence is still a valid
    /// file); callers that must not train or predict from them check here.
    public var allFinite: Bool {
        guard case .floats(let values) = storage else { return true }
        return values.allSatisfy { $0.isFinite }
    }

    /// The most dimensions a tensor read from a file may have. Models here use at most 4; the limit keeps
    /// per-tensor work small when a crafted file repeats one huge shape across many tensors.
    static let maximumRank = 64

    /// The product of `sizes`, or nil when a size is negative or the product overflows `Int`.
    static func elementCount(_ sizes: [Int]) -> Int? {
        var count = 1
        for size in sizes {
            guard size >= 0 else { return nil }
            let (product, overflow) = count.multipliedReportingOverflow(by: size)
            if overflow { return nil }
            count = product
        }
        return count
    }
}

// MARK: - Half-precision conversions (bit-exact, round to nearest even; no Float16 type needed)

@inline(__always)
func floatFromHalfBits(_ h: UInt16) -> Float {
    let sign: UInt32 = UInt32(h & 0x8000) << 16
    let exponent = UInt32((h >> 10) & 0x1F)
    let mantissa = UInt32(h & 0x3FF)
    if exponent == 0 {
        // Zero or subnormal: mantissa · 2^-24, exact in Float.
        let magnitude = Float(mantissa) * 0x1p-24
        return sign != 0 ? -magnitude : magnitude
    }
    if exponent == 31 {
        return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
    }
    return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
}

@inline(__always)
func halfBitsFromFloat(_ value: Float) -> UInt16 {
    let bits = value.bitPattern
    let sign = UInt16((bits >> 16) & 0x8000)
    let exponent = Int((bits >> 23) & 0xFF)
    let mantissa = bits & 0x7F_FFFF
    if exponent == 0xFF {
        return sign | 0x7C00 | (mantissa != 0 ? 0x200 | UInt16(truncatingIfNeeded: mantissa >> 13) : 0)
    }
    let halfExponent = exponent - 112
    if halfExponent >= 31 { return sign | 0x7C00 }
    if halfExponent <= 0 {
        if halfExponent < -10 { return sign }
        let full = mantissa | 0x80_0000
        let shift = UInt32(14 - halfExponent)
        var result = full >> shift
        let remainder = full & ((1 << shift) - 1)
        let halfway: UInt32 = 1 << (shift - 1)
        if remainder > halfway || (remainder == halfway && result & 1 == 1) { result += 1 }
        return sign | UInt16(truncatingIfNeeded: result)
    }
    var result = UInt32(halfExponent) << 10 | (mantissa >> 13)
    let remainder = mantissa & 0x1FFF
    if remainder > 0x1000 || (remainder == 0x1000 && result & 1 == 1) { result += 1 }
    return sign | UInt16(truncatingIfNeeded: result)
}

@inline(__always)
func floatFromBFloat16Bits(_ b: UInt16) -> Float {
    Float(bitPattern: UInt32(b) << 16)
}

@inline(__always)
func bfloat16BitsFromFloat(_ value: Float) -> UInt16 {
    let bits = value.bitPattern
    if value.isNaN { return UInt16(truncatingIfNeeded: bits >> 16) | 0x40 }
    let rounded = bits &+ 0x7FFF &+ ((bits >> 16) & 1)
    return UInt16(truncatingIfNeeded: rounded >> 16)
}
