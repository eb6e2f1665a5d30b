import CKernels
import Dispatch
import SeededRandom
import XCTest

/// ck_measure_fma_peak measures something sensible: a positive, finite rate, on the vector width the kernels
/// use, not below what a real matrix product reaches. Speed itself is for bench-kernels, so the bound against
/// the product is loose (a loaded machine can slow either measurement).
final class FMAPeakTests: XCTestCase {
    /// Every thread of the pool multiplies the same size³ pair into its own output (raw buffers: threads write
    /// them concurrently, which Swift arrays inside a class would flag as overlapping accesses).
    private final class GemmPerThread {
        let size: Int
        let a, b, c: UnsafeMutablePointer<Float>
        init(size: Int, threads: Int) {
            self.size = size
            var rng = SplitMix64(seed: 21)
            a = .allocate(capacity: size * size)
            b = .allocate(capacity: size * size)
            c = .allocate(capacity: size * size * threads)
            a.initialize(from: randomArray(size * size, &rng), count: size * size)
            b.initialize(from: randomArray(size * size, &rng), count: size * size)
            c.initialize(repeating: 0, count: size * size * threads)
        }
        deinit { a.deallocate(); b.deallocate(); c.deallocate() }
    }

    /// The best rate of `runs`, all threads together.
    private func gemmRate(size: Int, runs: Int) -> Double {
        let threads = Int(ck_get_num_threads())
        let work = GemmPerThread(size: size, threads: threads)
        var best = 0.0
        for _ in 0 ..< runs {
            let start = DispatchTime.now().uptimeNanoseconds
            ck_parallel_for(Int32(threads), { context, index in
                let work = Unmanaged<GemmPerThread>.fromOpaque(context!).takeUnretainedValue()
                let n = Int32(work.size)
                ck_sgemm(0, 0, n, n, n, 1, work.a, n, work.b, n, 0, work.c + Int(index) * work.size * work.size, n)
            }, Unmanaged.passUnretained(work).toOpaque())
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            best = max(best, 2 * pow(Double(size), 3) * Double(threads) / seconds)
        }
        return best
    }

    private func bestPeak(iterations: Int, runs: Int) -> ck_fma_peak {
        var best = ck_fma_peak(), result = ck_fma_peak()
        for _ in 0 ..< runs {
            XCTAssertOK(ck_measure_fma_peak(&result, iterations), "FMA peak")
            if result.flops_per_second > best.flops_per_second { best = result }
        }
        return best
    }

    func testPeakIsAPositiveRateNotBelowAMatrixProduct() {
        forEachInstructionSet { avx512 in
            // 2·10⁶ rounds: 0.5–1 GFLOP per thread, a few milliseconds.
            let peak = bestPeak(iterations: 2_000_000, runs: 3)
            XCTAssertTrue(peak.flops_per_second.isFinite && peak.flops_per_second > 0, "avx512 \(avx512): \(peak)")
            XCTAssertGreaterThan(peak.seconds, 0)
            XCTAssertEqual(Int(peak.threads), Int(ck_get_num_threads()))
            XCTAssertEqual(peak.vector_bits, avx512 ? 512 : 256, "the width the kernels use")
            // No product runs faster than the FMAs it is made of; half leaves room for a noisy neighbour.
            let gemm = gemmRate(size: 256, runs: 3)
            XCTAssertGreaterThanOrEqual(peak.flops_per_second, 0.5 * gemm,
                                        "avx512 \(avx512): peak \(peak.flops_per_second / 1e9) GFLOP/s, "
                                            + "sgemm 256³ \(gemm / 1e9) GFLOP/s")
        }
    }

    func testRejectsBadArguments() {
        var result = ck_fma_peak()
        XCTAssertEqual(ck_measure_fma_peak(nil, 1), CK_ERR_NULL_POINTER.rawValue)
        XCTAssertEqual(ck_measure_fma_peak(&result, 0), CK_ERR_BAD_SIZE.rawValue)
        XCTAssertEqual(ck_measure_fma_peak(&result, -5), CK_ERR_BAD_SIZE.rawValue)
    }
}
