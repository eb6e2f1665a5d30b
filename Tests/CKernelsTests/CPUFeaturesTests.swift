import CPUFeatures
import Foundation
import XCTest

/// The CPU feature detector's decisions, from raw cpuid/xgetbv words and environment values.
final class CPUFeaturesTests: XCTestCase {
    // cpuid(1).ecx: FMA, OSXSAVE, AVX; cpuid(7, 0).ebx: AVX2, AVX512F, AVX512BW; xgetbv(0): SSE+AVX, AVX-512 state.
    private let fma: UInt32 = 1 << 12, osxsave: UInt32 = 1 << 27, avx: UInt32 = 1 << 28
    private let avx2: UInt32 = 1 << 5, avx512f: UInt32 = 1 << 16, avx512bw: UInt32 = 1 << 30
    private let ymmState: UInt64 = 0x6, zmmState: UInt64 = 0xe0

    private let all = UInt32(CPU_FEATURE_AVX2 | CPU_FEATURE_FMA | CPU_FEATURE_AVX512F | CPU_FEATURE_AVX512BW)
    private let required = UInt32(CPU_FEATURES_REQUIRED)

    func testFeaturesFromCpuid() {
        let leaf1 = fma | osxsave | avx, leaf7 = avx2 | avx512f | avx512bw
        XCTAssertEqual(cpu_features_from_cpuid(leaf1, leaf7, ymmState | zmmState), all)
        // The OS does not save ZMM state: no AVX-512 even though the CPU has it.
        XCTAssertEqual(cpu_features_from_cpuid(leaf1, leaf7, ymmState), required)
        // No OSXSAVE: nothing beyond SSE is usable.
        XCTAssertEqual(cpu_features_from_cpuid(fma | avx, leaf7, ymmState | zmmState), 0)
        // The OS does not save YMM state: neither AVX2 nor FMA.
        XCTAssertEqual(cpu_features_from_cpuid(leaf1, leaf7, 0x2), 0)
        // An AVX-only CPU (Sandy Bridge): no AVX2, no FMA.
        XCTAssertEqual(cpu_features_from_cpuid(osxsave | avx, 0, ymmState), 0)
        // FMA without AVX2 (AMD Piledriver).
        XCTAssertEqual(cpu_features_from_cpuid(leaf1, 0, ymmState), UInt32(CPU_FEATURE_FMA))
        // AVX-512F without BW (Knights Landing).
        XCTAssertEqual(cpu_features_from_cpuid(leaf1, avx2 | avx512f, ymmState | zmmState),
                       required | UInt32(CPU_FEATURE_AVX512F))
    }

    func testEnvironmentNarrowsTheFeatures() {
        XCTAssertEqual(cpu_features_apply_environment(all, nil, nil), all)
        XCTAssertEqual(cpu_features_apply_environment(all, "avx2", nil), required)
        XCTAssertEqual(cpu_features_apply_environment(all, "avx512", nil), all, "only avx2 narrows")
        XCTAssertEqual(cpu_features_apply_environment(all, nil, "baseline"), 0)
        XCTAssertEqual(cpu_features_apply_environment(all, "avx2", "baseline"), 0)
        XCTAssertEqual(cpu_features_apply_environment(all, nil, "something-else"), all)
    }

    private func missing(_ features: UInt32, size: Int = 64) -> (count: Int32, names: String) {
        var buffer = [CChar](repeating: 0x7f, count: size)
        let count = cpu_features_missing_required(features, &buffer, size)
        return (count, String(cString: buffer))
    }

    func testMissingRequiredFeatureNames() {
        XCTAssertEqual(missing(0).count, 2)
        XCTAssertEqual(missing(0).names, "AVX2, FMA")
        XCTAssertEqual(missing(UInt32(CPU_FEATURE_AVX2)).names, "FMA")
        XCTAssertEqual(missing(UInt32(CPU_FEATURE_FMA) | UInt32(CPU_FEATURE_AVX512F)).names, "AVX2")
        XCTAssertEqual(missing(required).count, 0)
        XCTAssertEqual(missing(required).names, "")
        // A short buffer is cut, still terminated; the count stays right.
        XCTAssertEqual(missing(0, size: 4).names, "AVX")
        XCTAssertEqual(missing(0, size: 4).count, 2)
        XCTAssertEqual(cpu_features_missing_required(0, nil, 0), 2)
    }

    /// This process runs AVX2 code, so the real detector must grant what the build requires (unless a test
    /// runner simulated an old CPU for the whole process).
    func testThisCPUHasTheRequiredFeatures() throws {
        if ProcessInfo.processInfo.environment["RESNETFUSION_SIMULATE_CPU"] != nil { throw XCTSkip("CPU simulated") }
        XCTAssertEqual(cpu_features() & required, required)
        XCTAssertEqual(cpu_features(), cpu_features(), "detected once")
    }
}
