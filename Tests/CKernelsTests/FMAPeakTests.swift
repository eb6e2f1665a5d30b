import CKernels
import XCTest

/// ck_measure_fma_peak measures something sensible: a positive, finite rate, on the vector width the kernels use,
/// counting the FLOPs its loop really does. How fast is for bench-kernels, never asserted here.
final class FMAPeakTests: XCTestCase {
    private func bestPeak(iterations: Int, runs: Int) -> ck_fma_peak {
        var best = ck_fma_peak(), result = ck_fma_peak()
        for _ in 0 ..< runs {
            XCTAssertOK(ck_measure_fma_peak(&result, iterations), "FMA peak")
            if result.flops_per_second > best.flops_per_second { best = result }
        }
        return best
    }

    func testPeakIsAPositiveRateOfTheFLOPsItRuns() {
        forEachInstructionSet { avx512 in
            // 2·10⁶ rounds: 0.5–1 GFLOP per thread, a few milliseconds.
            let peak = bestPeak(iterations: 2_000_000, runs: 3)
            XCTAssertTrue(peak.flops_per_second.isFinite && peak.flops_per_second > 0, "avx512 \(avx512): \(peak)")
            XCTAssertGreaterThan(peak.seconds, 0)
            XCTAssertEqual(Int(peak.threads), Int(ck_get_num_threads()))
            XCTAssertEqual(peak.vector_bits, avx512 ? 512 : 256, "the width the kernels use")
            // The count behind the rate: each thread runs `iterations` rounds of whole-register FMAs (2 FLOPs a lane),
            // a fixed number of independent ones per round, enough to hide FMA latency (8 to 32 on any x86 core).
            let lanes = Double(peak.vector_bits / 32)
            let fmasPerRound = peak.flops_per_second * peak.seconds / (2 * lanes * 2_000_000 * Double(peak.threads))
            XCTAssertEqual(fmasPerRound, fmasPerRound.rounded(), accuracy: 1e-6, "avx512 \(avx512): \(peak)")
            XCTAssertTrue((8 ... 32).contains(fmasPerRound.rounded()), "avx512 \(avx512): \(fmasPerRound) FMAs a round")
        }
    }

    func testRejectsBadArguments() {
        var result = ck_fma_peak()
        XCTAssertEqual(ck_measure_fma_peak(nil, 1), CK_ERR_NULL_POINTER.rawValue)
        XCTAssertEqual(ck_measure_fma_peak(&result, 0), CK_ERR_BAD_SIZE.rawValue)
        XCTAssertEqual(ck_measure_fma_peak(&result, -5), CK_ERR_BAD_SIZE.rawValue)
    }
}
