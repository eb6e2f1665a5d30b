import CKernels
import CKernelsReference
import Foundation
import ResNetShapes
import SeededRandom
import XCTest

/// Optimized convolution kernels against their reference twins, and against finite differences.
/// Tolerances: relative error (max |Δ| / max |reference|) ≤ 1e-4 forward, ≤ 1e-3 backward (sgemm sums
/// in a different order than the naive loops).
final class ConvolutionTests: XCTestCase {
    override func setUp() { ck_set_num_threads(2) }

    /// Runs the optimized forward (automatic choice and forced GEMM), backward-input and backward-weight kernels and
    /// their twins on one shape; returns the five relative errors (forward, GEMM forward, input, weight, bias gradients).
    private func compareWithReference(_ shape: ck_conv2d_shape, bias: Bool, seed: UInt64)
        -> (forward: Float, gemmForward: Float, input: Float, weight: Float, bias: Float)
    {
        var s = shape
        var rng = SplitMix64(seed: seed)
        let P = Int(ck_conv2d_output_height(&s)), Q = Int(ck_conv2d_output_width(&s))
        XCTAssertGreaterThan(P, 0)
        let n = Int(s.batch), c = Int(s.in_channels), k = Int(s.out_channels)
        let x = randomArray(n * c * Int(s.in_height) * Int(s.in_width), &rng)
        let w = randomArray(k * c * Int(s.kernel_height) * Int(s.kernel_width), &rng, range: -0.2...0.2)
        let b: [Float]? = bias ? randomArray(k, &rng) : nil
        let dy = randomArray(n * k * P * Q, &rng)
        let workspace = Workspace(bytes: ck_conv2d_workspace_size(&s))

        var y = [Float](repeating: .nan, count: n * k * P * Q), yRef = y
        XCTAssertOK(ck_conv2d_forward_f32(&y, x, w, b, &s, workspace.buffer, workspace.bytes), "forward")
        XCTAssertOK(ck_conv2d_forward_f32_ref(&yRef, x, w, b, &s, nil, 0), "forward ref")
        // The automatic choice may be Winograd; the im2col path must agree on every shape too.
        var yGemm = [Float](repeating: .nan, count: y.count)
        XCTAssertOK(ck_conv2d_forward_gemm_f32(&yGemm, x, w, b, &s, workspace.buffer, workspace.bytes), "gemm forward")

        var dx = [Float](repeating: .nan, count: x.count), dxRef = dx
        XCTAssertOK(ck_conv2d_backward_input_f32(&dx, dy, w, &s, workspace.buffer, workspace.bytes), "dx")
        XCTAssertOK(ck_conv2d_backward_input_f32_ref(&dxRef, dy, w, &s, nil, 0), "dx ref")

        // Weight gradients accumulate: start both from the same non-zero values to check that too.
        let start = randomArray(w.count, &rng)
        var dw = start, dwRef = start
        let biasStart = randomArray(k, &rng)
        var db = biasStart, dbRef = biasStart
        db.withUnsafeMutableBufferPointer { db in
            dbRef.withUnsafeMutableBufferPointer { dbRef in
                XCTAssertOK(ck_conv2d_backward_weight_f32(&dw, bias ? db.baseAddress : nil, dy, x, &s,
                                                          workspace.buffer, workspace.bytes), "dw")
                XCTAssertOK(ck_conv2d_backward_weight_f32_ref(&dwRef, bias ? dbRef.baseAddress : nil, dy, x, &s, nil, 0),
                            "dw ref")
            }
        }
        return (relativeError(y, yRef), relativeError(yGemm, yRef), relativeError(dx, dxRef), relativeError(dw, dwRef),
                relativeError(db, dbRef))
    }

    func testRandomShapesMatchReference() {
        // Odd sizes, stride 2, padding, non-square kernels, batch 1, 3 and 8, pointwise and lowered paths.
        let cases: [(n: Int, c: Int, h: Int, w: Int, k: Int, r: Int, s: Int, sh: Int, sw: Int, ph: Int, pw: Int)] = [
            (1, 3, 9, 7, 4, 3, 3, 1, 1, 1, 1),
            (3, 5, 11, 13, 6, 3, 3, 2, 2, 1, 1),
            (8, 4, 8, 8, 5, 1, 1, 1, 1, 0, 0),
            (8, 6, 9, 9, 7, 1, 1, 2, 2, 0, 0),
            (2, 3, 15, 15, 4, 7, 7, 2, 2, 3, 3),
            (1, 2, 5, 6, 3, 2, 3, 1, 2, 0, 1),
            (3, 7, 6, 10, 2, 3, 1, 2, 1, 2, 0),
            (1, 16, 1, 1, 8, 1, 1, 1, 1, 0, 0),
            (8, 3, 4, 4, 3, 5, 5, 1, 1, 2, 2),
            (1, 1, 3, 3, 1, 3, 3, 3, 3, 0, 0),
            // Wide strided rows: the AVX-512 backend lowers these straight into its panels by gathers.
            (2, 3, 30, 45, 5, 3, 3, 2, 2, 1, 1),
            (1, 2, 9, 70, 4, 5, 5, 1, 2, 2, 2),
            // Backward-weight multiplied transposed (dWᵀ = col · dyᵀ fills the register tiles better): conv1's
            // K 64 and CRS 147, and K 128 over CRS 27.
            (3, 3, 21, 20, 64, 7, 7, 2, 2, 3, 3),
            (4, 3, 17, 19, 128, 3, 3, 2, 2, 1, 1),
            // A stride-2 row whose last 8 outputs end at the row's last pixel (the vector lowering must not read
            // past it: make test-asan), and a 1x1 image under a 5x5 kernel (no pixel of a row is valid).
            (1, 1, 15, 15, 2, 3, 3, 2, 2, 1, 1),
            (1, 1, 1, 1, 2, 5, 5, 1, 1, 2, 2),
        ]
        for backend in availableGemmBackends() { withGemmBackend(backend) {
        for threads in [1, 2, 3] {
            ck_set_num_threads(Int32(threads))
            for (i, t) in cases.enumerated() {
                let shape = ck_conv2d_shape(batch: Int32(t.n), in_channels: Int32(t.c), in_height: Int32(t.h),
                                            in_width: Int32(t.w), out_channels: Int32(t.k), kernel_height: Int32(t.r),
                                            kernel_width: Int32(t.s), stride_height: Int32(t.sh),
                                            stride_width: Int32(t.sw), pad_height: Int32(t.ph), pad_width: Int32(t.pw))
                for bias in [false, true] {
                    let e = compareWithReference(shape, bias: bias, seed: UInt64(100 * i + threads))
                    let label = "case \(i) \(t) threads \(threads) bias \(bias) gemm backend \(backend)"
                    XCTAssertLessThanOrEqual(e.forward, 1e-4, "forward \(label)")
                    XCTAssertLessThanOrEqual(e.gemmForward, 1e-4, "im2col forward \(label)")
                    XCTAssertLessThanOrEqual(e.input, 1e-3, "backward input \(label)")
                    XCTAssertLessThanOrEqual(e.weight, 1e-3, "backward weight \(label)")
                    XCTAssertLessThanOrEqual(e.bias, 1e-3, "backward bias \(label)")
                }
            }
        }
        } }
    }

    /// When a thread's packing buffer is missing (its allocation failed), every convolution kernel falls back to its
    /// own lowering and OpenBLAS and still matches the reference: GEMM, Winograd with each tile (7×7 and 14×14),
    /// strided and pointwise layers, forward, backward-input and backward-weight, and the forward from weights packed
    /// ahead, whose Winograd kernels are then transformed for the fallback (they are not otherwise).
    func testMissingPackingBuffersFallBack() {
        var rng = SplitMix64(seed: 43)
        let cases: [(n: Int, c: Int, h: Int, k: Int, r: Int, stride: Int, pad: Int)] = [
            (2, 16, 14, 24, 3, 1, 1), (3, 8, 7, 12, 3, 1, 1), (2, 8, 9, 13, 3, 2, 1), (4, 32, 7, 40, 1, 1, 0),
            (3, 8, 10, 16, 1, 2, 0)]
        defer { ck_gemm_simulate_missing_packing_buffers(0) }
        forEachInstructionSet { avx512 in
            for threads in [1, 2] {
                ck_set_num_threads(Int32(threads))
                for (i, t) in cases.enumerated() {
                    var s = convShape(batch: t.n, inChannels: t.c, height: t.h, width: t.h, outChannels: t.k,
                                      kernel: t.r, stride: t.stride, pad: t.pad)
                    let label = "\(t) threads \(threads) avx512 \(avx512)"
                    // Packed while the buffers are there, run without them.
                    let x = randomArray(t.n * t.c * t.h * t.h, &rng), w = randomArray(t.k * t.c * t.r * t.r, &rng)
                    let workspace = Workspace(bytes: ck_conv2d_workspace_size(&s))
                    let size = ck_conv2d_packed_weights_size(&s)
                    let packed = Workspace(bytes: size)
                    XCTAssertOK(ck_conv2d_pack_weights_f32(packed.buffer, size, w, &s, workspace.buffer, workspace.bytes))
                    // Packing left the transformed kernels in the workspace: make sure the fallback does not find them.
                    memset(workspace.buffer!, 0xFF, workspace.bytes)  // NaN
                    ck_gemm_simulate_missing_packing_buffers(1)
                    let e = compareWithReference(s, bias: true, seed: UInt64(200 + i))
                    XCTAssertLessThanOrEqual(e.forward, 1e-4, "forward \(label)")
                    XCTAssertLessThanOrEqual(e.gemmForward, 1e-4, "im2col forward \(label)")
                    XCTAssertLessThanOrEqual(e.input, 1e-3, "backward input \(label)")
                    XCTAssertLessThanOrEqual(e.weight, 1e-3, "backward weight \(label)")
                    let count = t.n * t.k * Int(ck_conv2d_output_height(&s)) * Int(ck_conv2d_output_width(&s))
                    var y = [Float](repeating: .nan, count: count), yRef = y
                    XCTAssertOK(ck_conv2d_forward_fused_packed_f32(&y, x, w, packed.buffer, size, nil, nil, 0, &s,
                                                                   workspace.buffer, workspace.bytes))
                    ck_gemm_simulate_missing_packing_buffers(0)
                    XCTAssertOK(ck_conv2d_forward_f32_ref(&yRef, x, w, nil, &s, nil, 0))
                    XCTAssertLessThanOrEqual(relativeError(y, yRef), 1e-4, "forward packed ahead \(label)")
                }
            }
        }
        ck_set_num_threads(2)
    }

    /// Winograd F(2x2, 3x3) and F(4x4, 3x3) on their own, forward, backward-input and backward-weight, with each
    /// instruction set's transforms: sizes of every remainder mod 2 and 4 (partial last tiles), runs of 8 and 16
    /// tiles, rows wide enough to read in place (150, 131), 1x1 and 2x2 planes, batch 1 to 5, C ≠ K, thread counts
    /// that split images and that split tiles; and their refusal of other shapes. Both are held to 1e-4 relative
    /// (F(4x4, 3x3) measures about 6x F(2x2, 3x3)'s error: its transforms' coefficients reach 8, and 1/6 is inexact).
    func testWinogradMatchesReference() {
        var rng = SplitMix64(seed: 77)
        forEachInstructionSet { avx512 in
        for tile in [2, 4] {
        ck_conv2d_set_winograd_tile(Int32(tile))
        for threads in [1, 2, 3] {
            ck_set_num_threads(Int32(threads))
            // (2, 64, 36, 35, 64) and (1, 64, 56, 56, 64) have more tiles per thread than one chunk holds.
            for (n, c, h, w, k) in [(1, 3, 5, 5, 2), (2, 4, 8, 8, 3), (5, 2, 7, 9, 4), (1, 1, 1, 1, 1), (3, 6, 2, 3, 5),
                                    (2, 70, 14, 14, 33), (2, 64, 36, 35, 64), (1, 64, 56, 56, 64), (1, 17, 3, 40, 9),
                                    (2, 9, 33, 17, 20), (1, 2, 6, 150, 3), (2, 5, 11, 131, 4)] {
                let label = "\((n, c, h, w, k)) tile \(tile) threads \(threads) avx512 \(avx512)"
                var s = convShape(batch: n, inChannels: c, height: h, width: w, outChannels: k, kernel: 3, stride: 1, pad: 1)
                let x = randomArray(n * c * h * w, &rng), wt = randomArray(k * c * 9, &rng), b = randomArray(k, &rng)
                let workspace = Workspace(bytes: ck_conv2d_workspace_size(&s))
                var y = [Float](repeating: .nan, count: n * k * h * w), yRef = y
                XCTAssertOK(ck_conv2d_forward_winograd_f32(&y, x, wt, b, &s, workspace.buffer, workspace.bytes))
                XCTAssertOK(ck_conv2d_forward_f32_ref(&yRef, x, wt, b, &s, nil, 0))
                XCTAssertLessThanOrEqual(relativeError(y, yRef), 1e-4, "winograd \(label)")
                let dy = randomArray(y.count, &rng)
                var dx = [Float](repeating: .nan, count: x.count), dxRef = dx
                XCTAssertOK(ck_conv2d_backward_input_winograd_f32(&dx, dy, wt, &s, workspace.buffer, workspace.bytes))
                XCTAssertOK(ck_conv2d_backward_input_f32_ref(&dxRef, dy, wt, &s, nil, 0))
                XCTAssertLessThanOrEqual(relativeError(dx, dxRef), 1e-4, "winograd backward-input \(label)")
                // Weight and bias gradients accumulate: start from the same non-zero values.
                let start = randomArray(wt.count, &rng), biasStart = randomArray(k, &rng)
                var dw = start, dwRef = start, db = biasStart, dbRef = biasStart
                XCTAssertOK(ck_conv2d_backward_weight_winograd_f32(&dw, &db, dy, x, &s, workspace.buffer, workspace.bytes))
                XCTAssertOK(ck_conv2d_backward_weight_f32_ref(&dwRef, &dbRef, dy, x, &s, nil, 0))
                XCTAssertLessThanOrEqual(relativeError(dw, dwRef), 1e-4, "winograd backward-weight \(label)")
                XCTAssertLessThanOrEqual(relativeError(db, dbRef), 1e-4, "winograd bias gradient \(label)")
            }
        }
        }
        }
        ck_conv2d_set_winograd_tile(0)
        ck_set_num_threads(2)
        // A workspace sized while F(2x2, 3x3) was chosen is too small for F(4x4, 3x3): refused, never overrun.
        ck_conv2d_set_winograd_tile(2)
        var layer3 = convShape(batch: 1, inChannels: 256, height: 14, width: 14, outChannels: 256, kernel: 3, stride: 1, pad: 1)
        let smallBytes = ck_conv2d_workspace_size(&layer3)
        ck_conv2d_set_winograd_tile(4)
        XCTAssertGreaterThan(ck_conv2d_workspace_size(&layer3), smallBytes)
        let sizedForF2 = Workspace(bytes: smallBytes)
        var y3 = [Float](repeating: 0, count: 256 * 196), x3 = y3
        XCTAssertEqual(ck_conv2d_forward_winograd_f32(&y3, x3, [Float](repeating: 0, count: 256 * 256 * 9), nil, &layer3,
                                                      sizedForF2.buffer, sizedForF2.bytes), CK_ERR_WORKSPACE.rawValue)
        XCTAssertEqual(ck_conv2d_backward_input_winograd_f32(&x3, y3, [Float](repeating: 0, count: 256 * 256 * 9),
                                                             &layer3, sizedForF2.buffer, sizedForF2.bytes),
                       CK_ERR_WORKSPACE.rawValue)
        ck_conv2d_set_winograd_tile(0)
        var strided = convShape(batch: 1, inChannels: 2, height: 6, width: 6, outChannels: 2, kernel: 3, stride: 2, pad: 1)
        let workspace = Workspace(bytes: ck_conv2d_workspace_size(&strided))
        var y = [Float](repeating: 0, count: 18)
        XCTAssertEqual(ck_conv2d_forward_winograd_f32(&y, [Float](repeating: 1, count: 72), [Float](repeating: 1, count: 36),
                                                      nil, &strided, workspace.buffer, workspace.bytes),
                       CK_ERR_BAD_SIZE.rawValue)
        var dx = [Float](repeating: 0, count: 72)
        XCTAssertEqual(ck_conv2d_backward_input_winograd_f32(&dx, y, [Float](repeating: 1, count: 36), &strided,
                                                             workspace.buffer, workspace.bytes),
                       CK_ERR_BAD_SIZE.rawValue)
        var dw = [Float](repeating: 0, count: 36)
        XCTAssertEqual(ck_conv2d_backward_weight_winograd_f32(&dw, nil, y, [Float](repeating: 1, count: 72), &strided,
                                                              workspace.buffer, workspace.bytes),
                       CK_ERR_BAD_SIZE.rawValue)
    }

    /// Weights packed ahead give the fused forward's result bit for bit (the same packing, done once), on GEMM and
    /// Winograd layers under each instruction set; a buffer packed for another choice, cut short or with a damaged
    /// header is ignored (the result is still right), and the reference table packs nothing.
    func testWeightsPackedAheadMatchTheFusedForward() {
        var rng = SplitMix64(seed: 41)
        ck_set_num_threads(2)
        // 3x3 stride 1 (Winograd where chosen), 3x3 stride 2 (implicit GEMM), pointwise on small images (grouped),
        // pointwise on large ones (per image), a 1x1 stride 2.
        let cases: [(n: Int, c: Int, h: Int, k: Int, r: Int, stride: Int, pad: Int)] = [
            (2, 16, 14, 24, 3, 1, 1), (2, 8, 9, 13, 3, 2, 1), (4, 32, 7, 40, 1, 1, 0), (1, 8, 40, 10, 1, 1, 0),
            (3, 8, 10, 16, 1, 2, 0)]
        forEachInstructionSet { avx512 in
            for t in cases {
                var s = convShape(batch: t.n, inChannels: t.c, height: t.h, width: t.h, outChannels: t.k, kernel: t.r,
                                  stride: t.stride, pad: t.pad)
                let x = randomArray(t.n * t.c * t.h * t.h, &rng), w = randomArray(t.k * t.c * t.r * t.r, &rng)
                let b = randomArray(t.k, &rng)
                let P = Int(ck_conv2d_output_height(&s)), Q = Int(ck_conv2d_output_width(&s))
                let residual = randomArray(t.n * t.k * P * Q, &rng)
                let workspace = Workspace(bytes: ck_conv2d_workspace_size(&s))
                var expected = [Float](repeating: .nan, count: residual.count)
                XCTAssertOK(ck_conv2d_forward_fused_f32(&expected, x, w, b, residual, 1, &s, workspace.buffer, workspace.bytes))
                let size = ck_conv2d_packed_weights_size(&s)
                XCTAssertGreaterThan(size, 64, "\(t) avx512 \(avx512)")
                let packed = Workspace(bytes: size)
                XCTAssertOK(ck_conv2d_pack_weights_f32(packed.buffer, size, w, &s, workspace.buffer, workspace.bytes))
                func forward(_ buffer: UnsafeMutableRawPointer?, _ bytes: Int) -> [Float] {
                    var y = [Float](repeating: .nan, count: residual.count)
                    XCTAssertOK(ck_conv2d_forward_fused_packed_f32(&y, x, w, buffer, bytes, b, residual, 1, &s,
                                                                   workspace.buffer, workspace.bytes))
                    return y
                }
                let label = "\(t) avx512 \(avx512)"
                XCTAssertEqual(forward(packed.buffer, size), expected, "packed ahead \(label)")
                XCTAssertEqual(forward(packed.buffer, size - 4), expected, "cut short \(label)")
                XCTAssertEqual(forward(packed.buffer, 10), expected, "shorter than its header \(label)")
                // Another Winograd choice than it was packed for, then damaged headers: ignored.
                ck_conv2d_set_winograd(Int32(CK_WINOGRAD_NEVER))
                var gemmOnly = [Float](repeating: .nan, count: residual.count)
                XCTAssertOK(ck_conv2d_forward_fused_f32(&gemmOnly, x, w, b, residual, 1, &s, workspace.buffer, workspace.bytes))
                XCTAssertEqual(forward(packed.buffer, size), gemmOnly, "other Winograd choice \(label)")
                ck_conv2d_set_winograd(Int32(CK_WINOGRAD_AUTO))
                if t.r == 3 && t.stride == 1 {  // packed for F(4x4, 3x3) (14×14 outputs), run with F(2x2, 3x3)
                    ck_conv2d_set_winograd_tile(2)
                    var smallTile = [Float](repeating: .nan, count: residual.count)
                    XCTAssertOK(ck_conv2d_forward_fused_f32(&smallTile, x, w, b, residual, 1, &s, workspace.buffer,
                                                            workspace.bytes))
                    XCTAssertEqual(forward(packed.buffer, size), smallTile, "other Winograd tile \(label)")
                    XCTAssertNotEqual(smallTile, expected, "the two tiles round differently \(label)")
                    ck_conv2d_set_winograd_tile(0)
                }
                let header = packed.buffer!.assumingMemoryBound(to: Int32.self)
                for field in 0 ..< 10 {  // magic, backend, winograd, K, C, R, S, padding, floats (two halves)
                    let saved = header[field]
                    header[field] = saved &+ 1
                    XCTAssertEqual(forward(packed.buffer, size), expected, "header field \(field) changed, \(label)")
                    header[field] = saved
                }
                XCTAssertEqual(ck_conv2d_pack_weights_f32(packed.buffer, size - 1, w, &s, workspace.buffer, workspace.bytes),
                               CK_ERR_WORKSPACE.rawValue)
                XCTAssertEqual(ck_conv2d_pack_weights_f32(nil, size, w, &s, workspace.buffer, workspace.bytes),
                               CK_ERR_NULL_POINTER.rawValue)
                // The reference table packs nothing; its packed forward is its fused forward.
                XCTAssertEqual(ck_conv2d_packed_weights_size_ref(&s), 0)
                var yRef = [Float](repeating: .nan, count: residual.count)
                XCTAssertOK(ck_conv2d_forward_fused_packed_f32_ref(&yRef, x, w, packed.buffer, size, b, residual, 1, &s, nil, 0))
                XCTAssertLessThanOrEqual(relativeError(expected, yRef), 1e-4, "against the twin \(label)")
            }
        }
        // OpenBLAS: nothing to pack.
        withGemmBackend(Int32(CK_GEMM_OPENBLAS.rawValue)) {
            var s = convShape(batch: 1, inChannels: 4, height: 8, width: 8, outChannels: 4, kernel: 3, stride: 1, pad: 1)
            XCTAssertEqual(ck_conv2d_packed_weights_size(&s), 0)
        }
    }

    /// The fused inference epilogue, relu(conv + bias + residual), through im2col, pointwise and Winograd with each
    /// tile (planes narrower and wider than a vector of tiles). The packed GEMM applies it in its stores of the last K
    /// block only: the last two shapes have more than one K block (CRS 648 and 600) and more than one block of rows
    /// (K 150); 7x7 pointwise tiles span images.
    func testFusedEpilogueMatchesReference() {
        var rng = SplitMix64(seed: 31)
        let choices = [(Int32(0), Int32(0)), (1, 2), (1, 4)]  // (Winograd, its tile)
        for ((winograd, tile), backend) in choices.flatMap({ w in availableGemmBackends().map { (w, $0) } }) {
            ck_conv2d_set_winograd(winograd)
            ck_conv2d_set_winograd_tile(tile)
            ck_set_gemm_backend(backend)
            // Winograd's transforms: AVX-512 with the AVX-512 GEMM, the plain loops with OpenBLAS.
            ck_set_avx512_allowed(backend == Int32(CK_GEMM_AVX512.rawValue) ? 1 : 0)
            ck_set_gemm_backend(backend)
            defer { ck_set_avx512_allowed(1); ck_set_gemm_backend(Int32(CK_GEMM_AUTO.rawValue)) }
            for (n, c, h, k, r, stride, pad) in [(2, 5, 9, 6, 3, 1, 1), (3, 8, 7, 4, 1, 1, 0), (1, 3, 11, 4, 3, 2, 1),
                                                 (4, 6, 6, 8, 1, 2, 0), (1, 4, 5, 3, 3, 1, 1), (3, 3, 40, 5, 3, 2, 1),
                                                 (1, 3, 70, 4, 3, 1, 1), (2, 72, 6, 150, 3, 1, 1),
                                                 (3, 600, 7, 20, 1, 1, 0)] {
                var s = convShape(batch: n, inChannels: c, height: h, width: h, outChannels: k, kernel: r,
                                  stride: stride, pad: pad)
                let outCount = n * k * Int(ck_conv2d_output_height(&s)) * Int(ck_conv2d_output_width(&s))
                let x = randomArray(n * c * h * h, &rng), w = randomArray(k * c * r * r, &rng)
                let b = randomArray(k, &rng), residual = randomArray(outCount, &rng)
                let workspace = Workspace(bytes: ck_conv2d_workspace_size(&s))
                for (useResidual, relu) in [(false, Int32(1)), (true, 0), (true, 1)] {
                    var y = [Float](repeating: .nan, count: outCount), yRef = y
                    residual.withUnsafeBufferPointer { res in
                        let r = useResidual ? res.baseAddress : nil
                        XCTAssertOK(ck_conv2d_forward_fused_f32(&y, x, w, b, r, relu, &s, workspace.buffer, workspace.bytes))
                        XCTAssertOK(ck_conv2d_forward_fused_f32_ref(&yRef, x, w, b, r, relu, &s, nil, 0))
                    }
                    XCTAssertLessThanOrEqual(relativeError(y, yRef), 1e-4,
                                             "fused \((n, c, h, k, r, stride, pad)) residual \(useResidual) relu \(relu) "
                                                 + "winograd \(winograd) tile \(tile) gemm \(backend)")
                    if relu == 1 { XCTAssertTrue(y.allSatisfy { $0 >= 0 }) }
                }
            }
        }
        ck_conv2d_set_winograd(Int32(CK_WINOGRAD_AUTO))
        ck_conv2d_set_winograd_tile(0)
    }

    /// Every distinct ResNet-50 convolution at its real size, batch 1 (threads split one image) and
    /// batch 2 (threads take whole images).
    func testEveryResNet50ShapeMatchesReference() {
        for (i, layer) in resnet50ConvShapes.enumerated() {
            // Batch 2 at full size would double the naive reference's minutes; the batch path is the same
            // code for every shape, so run it on the cheaper half.
            let batches = layer.inputSize <= 28 ? [1, 2] : [1]
            for batch in batches {
                let shape = convShape(batch: batch, inChannels: layer.inChannels, height: layer.inputSize,
                                      width: layer.inputSize, outChannels: layer.outChannels, kernel: layer.kernel,
                                      stride: layer.stride, pad: layer.pad)
                let e = compareWithReference(shape, bias: false, seed: UInt64(7 + i))
                XCTAssertLessThanOrEqual(e.forward, 1e-4, "forward \(layer.name) batch \(batch)")
                XCTAssertLessThanOrEqual(e.gemmForward, 1e-4, "im2col forward \(layer.name) batch \(batch)")
                XCTAssertLessThanOrEqual(e.input, 1e-3, "backward input \(layer.name) batch \(batch)")
                XCTAssertLessThanOrEqual(e.weight, 1e-3, "backward weight \(layer.name) batch \(batch)")
                if layer.kernel == 3 && layer.stride == 1 {
                    // Winograd forced in all three kernels, with each tile: the error bound it is held to, printed
                    // per shape.
                    ck_conv2d_set_winograd(Int32(CK_WINOGRAD_ALWAYS))
                    for tile in [2, 4] {
                        ck_conv2d_set_winograd_tile(Int32(tile))
                        let w = compareWithReference(shape, bias: false, seed: UInt64(7 + i))
                        print("Winograd F(\(tile)x\(tile), 3x3) relative error, \(layer.name) batch \(batch): forward "
                              + "\(w.forward), backward-input \(w.input), backward-weight \(w.weight)")
                        XCTAssertLessThanOrEqual(max(w.forward, w.input, w.weight), 1e-4,
                                                 "winograd tile \(tile) \(layer.name) batch \(batch)")
                    }
                    ck_conv2d_set_winograd_tile(0)
                    ck_conv2d_set_winograd(Int32(CK_WINOGRAD_AUTO))
                }
            }
        }
    }

    /// Central differences of L = Σ g·conv(x, w, b): the convolution is linear in each argument, so a large
    /// step (h = 0.5) leaves only float rounding; L is summed in double.
    func testGradientsMatchFiniteDifferences() {
        var s = convShape(batch: 2, inChannels: 3, height: 7, width: 6, outChannels: 4, kernel: 3, stride: 2, pad: 1)
        var rng = SplitMix64(seed: 42)
        let P = Int(ck_conv2d_output_height(&s)), Q = Int(ck_conv2d_output_width(&s))
        var x = randomArray(2 * 3 * 7 * 6, &rng), w = randomArray(4 * 3 * 9, &rng), b = randomArray(4, &rng)
        let g = randomArray(2 * 4 * P * Q, &rng)
        let workspace = Workspace(bytes: ck_conv2d_workspace_size(&s))
        func loss() -> Double {
            var y = [Float](repeating: 0, count: g.count)
            XCTAssertOK(ck_conv2d_forward_f32(&y, x, w, b, &s, workspace.buffer, workspace.bytes))
            return weightedSum(y, g)
        }
        var dx = [Float](repeating: 0, count: x.count)
        var dw = [Float](repeating: 0, count: w.count), db = [Float](repeating: 0, count: 4)
        XCTAssertOK(ck_conv2d_backward_input_f32(&dx, g, w, &s, workspace.buffer, workspace.bytes))
        XCTAssertOK(ck_conv2d_backward_weight_f32(&dw, &db, g, x, &s, workspace.buffer, workspace.bytes))

        let h: Float = 0.5
        func numeric(_ read: () -> Float, _ write: (Float) -> Void) -> Float {
            centralDifference(step: h, read: read, write: write, loss: loss)
        }
        var fdX = [Float](), fdW = [Float](), fdB = [Float]()
        for i in x.indices { fdX.append(numeric({ x[i] }, { x[i] = $0 })) }
        for i in w.indices { fdW.append(numeric({ w[i] }, { w[i] = $0 })) }
        for i in b.indices { fdB.append(numeric({ b[i] }, { b[i] = $0 })) }
        XCTAssertLessThanOrEqual(relativeError(dx, fdX), 1e-4)
        XCTAssertLessThanOrEqual(relativeError(dw, fdW), 1e-4)
        XCTAssertLessThanOrEqual(relativeError(db, fdB), 1e-4)
    }

    /// A case small enough to check by eye: 1 channel 3x3 input of 1…9, a 2x2 all-ones kernel, stride 1,
    /// no padding: each output is the sum of a 2x2 window.
    func testHandComputedConvolution() {
        var s = convShape(batch: 1, inChannels: 1, height: 3, width: 3, outChannels: 1, kernel: 2, stride: 1, pad: 0)
        let x: [Float] = [1, 2, 3, 4, 5, 6, 7, 8, 9]
        let w: [Float] = [1, 1, 1, 1]
        var y = [Float](repeating: 0, count: 4)
        let workspace = Workspace(bytes: ck_conv2d_workspace_size(&s))
        XCTAssertOK(ck_conv2d_forward_f32(&y, x, w, [0.5], &s, workspace.buffer, workspace.bytes))
        XCTAssertEqual(y, [12.5, 16.5, 24.5, 28.5])
    }

    /// Kernels called from a thread other than the one that set the thread count use the set count: a
    /// workspace sized for one thread is enough (under `make test-asan` an overflow would be caught).
    func testKernelsOnAnotherThreadUseTheSetTeamSize() {
        ck_set_num_threads(1)
        defer { ck_set_num_threads(2) }
        var s = convShape(batch: 2, inChannels: 4, height: 8, width: 8, outChannels: 4, kernel: 3, stride: 2, pad: 1)
        var rng = SplitMix64(seed: 21)
        let x = randomArray(2 * 4 * 64, &rng), w = randomArray(4 * 4 * 9, &rng)
        let workspace = Workspace(bytes: ck_conv2d_workspace_size(&s))
        /// What the worker thread hands back.
        final class Outcome: @unchecked Sendable {
            var y = [Float](repeating: 0, count: 2 * 4 * 16)
            var status: Int32 = -99
        }
        let outcome = Outcome(), shape = s
        let done = DispatchSemaphore(value: 0)
        let worker = Thread {
            var s = shape
            outcome.status = ck_conv2d_forward_f32(&outcome.y, x, w, nil, &s, workspace.buffer, workspace.bytes)
            done.signal()
        }
        worker.start()
        done.wait()
        XCTAssertOK(outcome.status)
        let y = outcome.y
        var yRef = y
        XCTAssertOK(ck_conv2d_forward_f32_ref(&yRef, x, w, nil, &s, nil, 0))
        XCTAssertLessThanOrEqual(relativeError(y, yRef), 1e-4)
    }

    /// NaN in the input reaches the output of every path, ReLU included (as in PyTorch), at least everywhere the
    /// direct convolution puts it.
    func testNaNPropagatesThroughFusedReLU() {
        var s = convShape(batch: 1, inChannels: 2, height: 6, width: 6, outChannels: 2, kernel: 3, stride: 1, pad: 1)
        var x = [Float](repeating: 0.5, count: 72)
        x[14] = .nan
        let w = [Float](repeating: -1, count: 36)
        let choices = [(Int32(0), Int32(0)), (1, 2), (1, 4)]  // (Winograd, its tile)
        for ((winograd, tile), backend) in choices.flatMap({ w in availableGemmBackends().map { (w, $0) } }) {
            ck_conv2d_set_winograd(winograd)
            ck_conv2d_set_winograd_tile(tile)
            ck_set_gemm_backend(backend)
            defer { ck_set_gemm_backend(Int32(CK_GEMM_AUTO.rawValue)) }
            let workspace = Workspace(bytes: ck_conv2d_workspace_size(&s))
            var y = [Float](repeating: 0, count: 72), yRef = y
            XCTAssertOK(ck_conv2d_forward_fused_f32(&y, x, w, nil, nil, 1, &s, workspace.buffer, workspace.bytes))
            XCTAssertOK(ck_conv2d_forward_fused_f32_ref(&yRef, x, w, nil, nil, 1, &s, nil, 0))
            XCTAssertTrue(y.contains { $0 == 0 }, "negative outputs clamp to 0")
            // Every output the direct convolution makes NaN is NaN here too; the GEMM and F(2x2, 3x3) mark exactly
            // those, F(4x4, 3x3) the rest of their 4x4 tiles as well.
            let nans = y.indices.filter { y[$0].isNaN }, nansRef = yRef.indices.filter { yRef[$0].isNaN }
            XCTAssertFalse(nansRef.isEmpty)
            XCTAssertTrue(Set(nansRef).isSubset(of: Set(nans)), "winograd \(winograd) tile \(tile)")
            if tile != 4 { XCTAssertEqual(nans, nansRef, "winograd \(winograd) tile \(tile)") }
        }
        ck_conv2d_set_winograd(Int32(CK_WINOGRAD_AUTO))
        ck_conv2d_set_winograd_tile(0)
        var r = [Float](repeating: 0, count: 3)
        XCTAssertOK(ck_relu_forward_f32(&r, [.nan, -1, 2], 3))
        XCTAssertTrue(r[0].isNaN)
        XCTAssertEqual(Array(r[1...]), [0, 2])
    }

    func testBadArgumentsReturnErrors() {
        var s = convShape(batch: 1, inChannels: 2, height: 5, width: 5, outChannels: 3, kernel: 3, stride: 1, pad: 0)
        let x = [Float](repeating: 1, count: 50), w = [Float](repeating: 1, count: 54)
        var y = [Float](repeating: 0, count: 27)
        let bytes = ck_conv2d_workspace_size(&s)
        XCTAssertGreaterThan(bytes, 0)
        let small = Workspace(bytes: bytes - 4)
        XCTAssertEqual(ck_conv2d_forward_f32(&y, x, w, nil, &s, small.buffer, small.bytes), CK_ERR_WORKSPACE.rawValue)
        XCTAssertEqual(ck_conv2d_forward_f32(&y, x, w, nil, &s, nil, 0), CK_ERR_WORKSPACE.rawValue)
        let workspace = Workspace(bytes: bytes)
        XCTAssertEqual(ck_conv2d_forward_f32(nil, x, w, nil, &s, workspace.buffer, workspace.bytes),
                       CK_ERR_NULL_POINTER.rawValue)
        XCTAssertEqual(ck_conv2d_forward_f32(&y, x, w, nil, nil, workspace.buffer, workspace.bytes),
                       CK_ERR_NULL_POINTER.rawValue)
        var zeroBatch = s; zeroBatch.batch = 0
        XCTAssertEqual(ck_conv2d_forward_f32(&y, x, w, nil, &zeroBatch, workspace.buffer, workspace.bytes),
                       CK_ERR_BAD_SIZE.rawValue)
        var tooBigKernel = s; tooBigKernel.kernel_height = 9
        XCTAssertEqual(ck_conv2d_output_height(&tooBigKernel), 0)
        XCTAssertEqual(ck_conv2d_workspace_size(&tooBigKernel), 0)
        // Every kernel that needs scratch refuses a short one.
        var dx = [Float](repeating: 0, count: 50), dw = [Float](repeating: 0, count: 54)
        XCTAssertEqual(ck_conv2d_backward_input_f32(&dx, y, w, &s, small.buffer, small.bytes), CK_ERR_WORKSPACE.rawValue)
        XCTAssertEqual(ck_conv2d_backward_weight_f32(&dw, nil, y, x, &s, small.buffer, small.bytes), CK_ERR_WORKSPACE.rawValue)
        var same = convShape(batch: 1, inChannels: 2, height: 5, width: 5, outChannels: 3, kernel: 3, stride: 1, pad: 1)
        let sameBytes = ck_conv2d_workspace_size(&same)
        let sameSmall = Workspace(bytes: sameBytes - 4)
        var ySame = [Float](repeating: 0, count: 75)
        XCTAssertEqual(ck_conv2d_forward_winograd_f32(&ySame, x, w, nil, &same, sameSmall.buffer, sameSmall.bytes),
                       CK_ERR_WORKSPACE.rawValue)
        // Absurd shapes get an honest (absurd) size or a refusal, never a crash: 2²⁵ + 2²⁵ channels once
        // overflowed Winograd's chunk arithmetic into a division by zero.
        var huge = convShape(batch: 1, inChannels: 1 << 25, height: 1, width: 1, outChannels: 1 << 25, kernel: 3,
                             stride: 1, pad: 1)
        let hugeBytes = ck_conv2d_workspace_size(&huge)
        XCTAssertTrue(hugeBytes == 0 || hugeBytes > 1 << 50, "\(hugeBytes)")
        var enormous = convShape(batch: 1, inChannels: Int(Int32.max), height: 1, width: 1, outChannels: Int(Int32.max),
                                 kernel: 3, stride: 1, pad: 1)
        XCTAssertEqual(ck_conv2d_workspace_size(&enormous), 0)
        var farStride = s; farStride.stride_height = 1_610_612_736; farStride.pad_height = 1_610_612_736
        XCTAssertEqual(ck_conv2d_forward_f32_ref(&y, x, w, nil, &farStride, nil, 0), CK_ERR_BAD_SIZE.rawValue)
        var negativePad = s; negativePad.pad_width = -1
        XCTAssertEqual(ck_conv2d_backward_input_f32_ref(&y, x, w, &negativePad, nil, 0), CK_ERR_BAD_SIZE.rawValue)
    }
}
