import CKernels
import CKernelsReference
import Dispatch
import Foundation
import SeededRandom
import XCTest

/// ck_sgemm against its plain-loop twin, for every backend this CPU can run: edge tiles, every cache
/// block boundary, transposes, alpha/beta, padded leading dimensions, and concurrent callers.
final class GemmTests: XCTestCase {
    /// One product through ck_sgemm and ck_sgemm_ref; returns the relative error and whether both left
    /// the padding columns of C (between n and ldc) untouched.
    private func compare(m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool, alpha: Float, beta: Float,
                         rng: inout SplitMix64) -> (error: Float, paddingKept: Bool) {
        let lda = (transposeA ? m : k) + 3, ldb = (transposeB ? k : n) + 1, ldc = n + 5
        let a = randomArray(lda * (transposeA ? k : m), &rng)
        let b = randomArray(ldb * (transposeB ? n : k), &rng)
        // beta == 0 must not read C: start it at NaN so that a read shows.
        let c0 = beta == 0 ? [Float](repeating: .nan, count: ldc * m) : randomArray(ldc * m, &rng)
        var c = c0, cRef = c0
        ck_sgemm(transposeA ? 1 : 0, transposeB ? 1 : 0, Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda),
                 b, Int32(ldb), beta, &c, Int32(ldc))
        ck_sgemm_ref(transposeA ? 1 : 0, transposeB ? 1 : 0, Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda),
                     b, Int32(ldb), beta, &cRef, Int32(ldc))
        var inside = [Float](), insideRef = [Float](), paddingKept = true
        for i in 0 ..< m {
            for j in 0 ..< ldc {
                let index = i * ldc + j
                if j < n {
                    inside.append(c[index])
                    insideRef.append(cRef[index])
                } else if c[index].bitPattern != c0[index].bitPattern {
                    paddingKept = false
                }
            }
        }
        return (relativeError(inside, insideRef), paddingKept)
    }

    /// The AVX2 packed GEMM set explicitly (it runs on every x86-64-v3 CPU, AVX-512 or not): every
    /// combination of m, n, k around its 6×16 register tile, the 64-column panel and a few blocks, with A
    /// both ways and alpha/beta variants (B's orientation and the alpha/beta pair rotate over the shapes).
    func testAVX2BackendOnEdgeSizes() {
        let saved = ck_get_gemm_backend()
        defer { XCTAssertOK(ck_set_gemm_backend(saved)) }
        XCTAssertOK(ck_set_gemm_backend(Int32(CK_GEMM_AVX2.rawValue)))
        XCTAssertEqual(ck_get_gemm_backend(), Int32(CK_GEMM_AVX2.rawValue))
        let sizes = [1, 5, 6, 7, 15, 16, 17, 63, 64, 65, 200]
        let scalings: [(Float, Float)] = [(1, 0), (-0.5, 1), (1.5, 0.25)]
        var rng = SplitMix64(seed: 41)
        var index = 0
        for m in sizes {
            for n in sizes {
                for k in sizes {
                    for transposeA in [false, true] {
                        let transposeB = index % 2 == 1
                        let (alpha, beta) = scalings[(index / 2) % scalings.count]
                        index += 1
                        let (error, kept) = compare(m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB,
                                                    alpha: alpha, beta: beta, rng: &rng)
                        let what = "AVX2 m \(m) n \(n) k \(k) tA \(transposeA) tB \(transposeB) alpha \(alpha) beta \(beta)"
                        XCTAssertLessThan(error, 1e-5, what)
                        XCTAssertTrue(kept, "\(what): wrote past column n")
                    }
                }
            }
        }
    }

    func testMatchesReferenceOnEdgeAndBlockSizes() {
        // Sizes around the micro-tile (6×64), the vector width (16) and the cache blocks (MC 144, KC 256, NC 512).
        let shapes: [(Int, Int, Int)] = [
            (1, 1, 1), (5, 15, 3), (6, 16, 7), (7, 17, 33), (12, 63, 64), (13, 65, 255), (64, 49, 256),
            (145, 70, 257), (8, 513, 40), (150, 530, 520), (3, 1000, 1), (2, 7, 600),
        ]
        var rng = SplitMix64(seed: 11)
        for backend in availableGemmBackends() {
            withGemmBackend(backend) {
                for (m, n, k) in shapes {
                    for (transposeA, transposeB) in [(false, false), (true, false), (false, true), (true, true)] {
                        for (alpha, beta) in [(Float(1), Float(0)), (Float(-0.5), Float(1)), (Float(1.5), Float(0.25))] {
                            let (error, kept) = compare(m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB,
                                                        alpha: alpha, beta: beta, rng: &rng)
                            let what = "backend \(backend) m \(m) n \(n) k \(k) tA \(transposeA) tB \(transposeB) alpha \(alpha) beta \(beta)"
                            XCTAssertLessThan(error, 1e-5, what)
                            XCTAssertTrue(kept, "\(what): wrote past column n")
                        }
                    }
                }
            }
        }
    }

    /// One weight matrix over several images whose columns the AVX-512 backend lays side by side: tiles that
    /// straddle two or more images, gaps between images, both orientations of A, beta 0 and not.
    func testImagesMatchReference() {
        var rng = SplitMix64(seed: 21)
        for backend in availableGemmBackends() {
            withGemmBackend(backend) {
                for (n, count) in [(1, 5), (7, 3), (49, 4), (60, 3), (65, 2), (196, 2), (49, 1)] {
                    for transposeA in [false, true] {
                        for beta in [Float(0), Float(0.5)] {
                            let m = 13, k = 300, lda = (transposeA ? m : k) + 2, ldb = n + 3, ldc = n + 1
                            let strideB = k * ldb + 11, strideC = m * ldc + 7
                            let a = randomArray(lda * (transposeA ? k : m), &rng)
                            let b = randomArray(strideB * count, &rng)
                            let c0 = beta == 0 ? [Float](repeating: .nan, count: strideC * count) : randomArray(strideC * count, &rng)
                            var c = c0, cRef = c0
                            ck_sgemm_images(transposeA ? 1 : 0, Int32(m), Int32(n), Int32(k), 1.25, a, Int32(lda), b, Int32(ldb),
                                            strideB, beta, &c, Int32(ldc), strideC, Int32(count))
                            ck_sgemm_images_ref(transposeA ? 1 : 0, Int32(m), Int32(n), Int32(k), 1.25, a, Int32(lda), b,
                                                Int32(ldb), strideB, beta, &cRef, Int32(ldc), strideC, Int32(count))
                            let what = "backend \(backend) n \(n) count \(count) tA \(transposeA) beta \(beta)"
                            var inside = [Float](), insideRef = [Float]()
                            for index in c.indices {
                                let offset = index % strideC, row = offset / ldc, column = offset % ldc
                                if row < m && column < n {
                                    inside.append(c[index])
                                    insideRef.append(cRef[index])
                                } else {
                                    XCTAssertEqual(c[index].bitPattern, c0[index].bitPattern, "\(what): wrote outside C_i at \(index)")
                                }
                            }
                            XCTAssertLessThan(relativeError(inside, insideRef), 1e-5, what)
                        }
                    }
                }
            }
        }
    }

    /// Several threads at once, each with its own packing buffer (and one that exits afterwards).
    func testConcurrentCallers() {
        for backend in availableGemmBackends() {
            withGemmBackend(backend) {
                let results = UnsafeMutableBufferPointer<Float>.allocate(capacity: 4)
                defer { results.deallocate() }
                DispatchQueue.concurrentPerform(iterations: 4) { index in
                    var rng = SplitMix64(seed: UInt64(100 + index))
                    let (error, kept) = compare(m: 70, n: 300, k: 300, transposeA: index % 2 == 1, transposeB: index >= 2,
                                                alpha: 1, beta: 0, rng: &rng)
                    results[index] = kept ? error : .infinity
                }
                for index in 0 ..< 4 { XCTAssertLessThan(results[index], 1e-5, "backend \(backend) caller \(index)") }
            }
        }
    }

    func testBackendSelection() {
        let saved = ck_get_gemm_backend()
        defer { XCTAssertOK(ck_set_gemm_backend(saved)) }
        XCTAssertOK(ck_set_gemm_backend(Int32(CK_GEMM_OPENBLAS.rawValue)))
        XCTAssertEqual(ck_get_gemm_backend(), Int32(CK_GEMM_OPENBLAS.rawValue))
        XCTAssertEqual(ck_set_gemm_backend(99), CK_ERR_BAD_SIZE.rawValue)
        XCTAssertEqual(ck_get_gemm_backend(), Int32(CK_GEMM_OPENBLAS.rawValue), "a rejected choice keeps the current one")
        XCTAssertOK(ck_set_gemm_backend(Int32(CK_GEMM_AUTO.rawValue)))
        let automatic = ck_get_gemm_backend()
        // OpenBLAS only when RESNETFUSION_GEMM=openblas asks for it; otherwise the widest packed GEMM.
        let forcedOpenBLAS = ProcessInfo.processInfo.environment["RESNETFUSION_GEMM"] == "openblas"
        let hasAVX512 = ck_set_gemm_backend(Int32(CK_GEMM_AVX512.rawValue)) == CK_OK.rawValue
        XCTAssertEqual(automatic, forcedOpenBLAS ? Int32(CK_GEMM_OPENBLAS.rawValue)
                                                 : Int32((hasAVX512 ? CK_GEMM_AVX512 : CK_GEMM_AVX2).rawValue))
        XCTAssertOK(ck_set_gemm_backend(Int32(CK_GEMM_AUTO.rawValue)))
        // Holding kernels to AVX2 turns the AVX-512 GEMM into the AVX2 one (what an AVX2-only CPU picks);
        // allowing AVX-512 again brings the automatic choice back.
        ck_set_avx512_allowed(0)
        XCTAssertEqual(ck_get_gemm_backend(), forcedOpenBLAS ? Int32(CK_GEMM_OPENBLAS.rawValue) : Int32(CK_GEMM_AVX2.rawValue))
        XCTAssertEqual(ck_set_gemm_backend(Int32(CK_GEMM_AVX512.rawValue)), CK_ERR_BAD_SIZE.rawValue)
        ck_set_avx512_allowed(1)
        XCTAssertEqual(ck_get_gemm_backend(), automatic)
    }
}
