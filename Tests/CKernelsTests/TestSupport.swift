import CKernels
import SeededRandom
import XCTest

func randomArray(_ count: Int, _ rng: inout SplitMix64, range: ClosedRange<Float> = -1...1) -> [Float] {
    (0..<count).map { _ in Float.random(in: range, using: &rng) }
}

/// max |a − b| / max |b|: one number that stays meaningful whatever the scale of the output. A NaN or infinity in
/// one array where the other has something else is an infinite error: Swift's max(x, .nan) is x, so without this
/// check an output a kernel left NaN (or made NaN) would pass unseen. Equal non-finite values agree.
func relativeError(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "length mismatch \(a.count) vs \(b.count)")
    var maxDiff: Float = 0, maxRef: Float = 0
    for i in a.indices {
        if !a[i].isFinite || !b[i].isFinite {
            if a[i] == b[i] || (a[i].isNaN && b[i].isNaN) { continue }
            return .infinity
        }
        maxDiff = max(maxDiff, abs(a[i] - b[i]))
        maxRef = max(maxRef, abs(b[i]))
    }
    return maxDiff / max(maxRef, 1e-30)
}

func XCTAssertOK(_ status: Int32, _ what: String = "", file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(status, CK_OK.rawValue, "\(what): \(String(cString: ck_status_string(status)))",
                   file: file, line: line)
}

/// A workspace buffer of at least `bytes`, float-aligned.
final class Workspace {
    private(set) var buffer: UnsafeMutableRawPointer?
    private(set) var bytes: Int = 0
    init(bytes: Int) {
        self.bytes = bytes
        buffer = bytes > 0 ? UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64) : nil
    }
    deinit { buffer?.deallocate() }
}

func convShape(batch: Int, inChannels: Int, height: Int, width: Int, outChannels: Int, kernel: Int,
               stride: Int, pad: Int) -> ck_conv2d_shape {
    ck_conv2d_shape(batch: Int32(batch), in_channels: Int32(inChannels), in_height: Int32(height),
                    in_width: Int32(width), out_channels: Int32(outChannels), kernel_height: Int32(kernel),
                    kernel_width: Int32(kernel), stride_height: Int32(stride), stride_width: Int32(stride),
                    pad_height: Int32(pad), pad_width: Int32(pad))
}


/// Σ y·g in double: the scalar loss whose gradient with respect to y is g.
func weightedSum(_ y: [Float], _ g: [Float]) -> Double {
    zip(y, g).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
}

/// (L(v + h) − L(v − h)) / 2h for one value reached through `read`/`write`, which is restored afterwards.
func centralDifference(step h: Float, read: () -> Float, write: (Float) -> Void, loss: () -> Double) -> Float {
    let original = read()
    write(original + h)
    let plus = loss()
    write(original - h)
    let minus = loss()
    write(original)
    return Float((plus - minus) / Double(2 * h))
}

/// The sgemm backends this CPU can run: OpenBLAS always, the AVX2 packed GEMM on x86-64 (the build floor),
/// the AVX-512 packed GEMM when the CPU has it.
func availableGemmBackends() -> [Int32] {
    let saved = ck_get_gemm_backend()
    defer { ck_set_gemm_backend(saved) }
    var backends = [Int32(CK_GEMM_OPENBLAS.rawValue)]
    for backend in [Int32(CK_GEMM_AVX2.rawValue), Int32(CK_GEMM_AVX512.rawValue)]
    where ck_set_gemm_backend(backend) == CK_OK.rawValue {
        backends.append(backend)
    }
    return backends
}

/// Runs body with the given sgemm backend, then restores the one before.
func withGemmBackend(_ backend: Int32, _ body: () -> Void) {
    let saved = ck_get_gemm_backend()
    precondition(ck_set_gemm_backend(backend) == CK_OK.rawValue, "backend \(backend) unavailable")
    body()
    ck_set_gemm_backend(saved)
}

/// Runs body with AVX-512 allowed and, when this CPU has it, once more with every kernel on its AVX2 path
/// (ck_set_avx512_allowed(0)); restores the automatic choices after.
func forEachInstructionSet(_ body: (_ avx512: Bool) -> Void) {
    let hasAVX512 = availableGemmBackends().contains(Int32(CK_GEMM_AVX512.rawValue))
    for avx512 in hasAVX512 ? [true, false] : [false] {
        ck_set_avx512_allowed(avx512 ? 1 : 0)
        body(avx512)
    }
    ck_set_avx512_allowed(1)
    ck_set_gemm_backend(Int32(CK_GEMM_AUTO.rawValue))
}
