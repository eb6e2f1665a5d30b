import CKernels
import CKernelsReference
import SeededRandom
import XCTest

/// The two kernel tables: every entry filled, each routing to its own implementation.
final class KernelTableTests: XCTestCase {
    override func setUp() { ck_set_num_threads(2) }

    private let optimized = ck_optimized_kernels().pointee
    private let reference = ck_reference_kernels().pointee

    /// The table is nothing but function pointers: read it as words, none may be zero.
    private func nullEntries(_ table: ck_kernel_table) -> [Int] {
        withUnsafeBytes(of: table) { bytes in
            let words = bytes.bindMemory(to: UInt.self)
            return words.indices.filter { words[$0] == 0 }
        }
    }

    func testBothTablesAreComplete() {
        XCTAssertEqual(MemoryLayout<ck_kernel_table>.size % MemoryLayout<UInt>.size, 0)
        XCTAssertEqual(nullEntries(optimized), [], "optimized table: empty entries at these word indices")
        XCTAssertEqual(nullEntries(reference), [], "reference table: empty entries at these word indices")
    }

    /// A convolution whose sums the optimized kernel reorders (GEMM blocks, FMA): through each table it must
    /// equal, bit for bit, the function of that implementation called directly, and the two must differ.
    func testEachTableRoutesToItsOwnImplementation() {
        var s = convShape(batch: 2, inChannels: 7, height: 9, width: 9, outChannels: 5, kernel: 3, stride: 1, pad: 1)
        var rng = SplitMix64(seed: 41)
        let x = randomArray(2 * 7 * 81, &rng), w = randomArray(5 * 7 * 9, &rng), b = randomArray(5, &rng)
        let count = 2 * 5 * Int(ck_conv2d_output_height(&s) * ck_conv2d_output_width(&s))
        let workspace = Workspace(bytes: ck_conv2d_workspace_size(&s))
        XCTAssertEqual(optimized.conv2d_workspace_size(&s), ck_conv2d_workspace_size(&s))
        XCTAssertEqual(reference.conv2d_workspace_size(&s), 0)

        var viaOptimized = [Float](repeating: .nan, count: count), direct = viaOptimized
        XCTAssertOK(optimized.conv2d_forward(&viaOptimized, x, w, b, &s, workspace.buffer, workspace.bytes))
        XCTAssertOK(ck_conv2d_forward_f32(&direct, x, w, b, &s, workspace.buffer, workspace.bytes))
        XCTAssertEqual(viaOptimized, direct)

        var viaReference = [Float](repeating: .nan, count: count), directReference = viaReference
        XCTAssertOK(reference.conv2d_forward(&viaReference, x, w, b, &s, nil, 0))
        XCTAssertOK(ck_conv2d_forward_f32_ref(&directReference, x, w, b, &s, nil, 0))
        XCTAssertEqual(viaReference, directReference)
        XCTAssertNotEqual(viaOptimized, viaReference, "both tables reached the same implementation")
        XCTAssertLessThanOrEqual(relativeError(viaOptimized, viaReference), 1e-5)

        // A batch-norm training forward: the reference's two-pass double statistics round differently too.
        let (n, c, hw) = (4, 3, 37)
        let bx = randomArray(n * c * hw, &rng, range: 2...3), gamma = randomArray(c, &rng), beta = randomArray(c, &rng)
        func train(_ table: ck_kernel_table) -> [Float] {
            var y = [Float](repeating: .nan, count: bx.count), mean = [Float](repeating: 0, count: c), invstd = mean
            XCTAssertOK(table.batchnorm2d_forward_train_fused(&y, &mean, &invstd, nil, nil, bx, gamma, beta, nil, 0,
                                                              Int32(n), Int32(c), Int32(hw), 0.1, 1e-5))
            return y + mean + invstd
        }
        var yDirect = [Float](repeating: .nan, count: bx.count), meanDirect = [Float](repeating: 0, count: c), invstdDirect = meanDirect
        XCTAssertOK(ck_batchnorm2d_forward_train_f32_ref(&yDirect, &meanDirect, &invstdDirect, nil, nil, bx, gamma, beta,
                                                         Int32(n), Int32(c), Int32(hw), 0.1, 1e-5))
        XCTAssertEqual(train(reference), yDirect + meanDirect + invstdDirect)
        XCTAssertLessThanOrEqual(relativeError(train(optimized), train(reference)), 1e-5)
    }

    /// The fold's twin: same folded weight and bias, with and without a convolution bias.
    func testFoldIntoConvMatchesReference() {
        var rng = SplitMix64(seed: 42)
        let (k, perChannel) = (6, 27)
        let weight = randomArray(k * perChannel, &rng), bias = randomArray(k, &rng)
        let gamma = randomArray(k, &rng), beta = randomArray(k, &rng), mean = randomArray(k, &rng)
        let variance = randomArray(k, &rng, range: 0.1...3)
        for convBias in [nil, bias] {
            var w = [Float](repeating: .nan, count: weight.count), wRef = w
            var b = [Float](repeating: .nan, count: k), bRef = b
            XCTAssertOK(ck_batchnorm2d_fold_into_conv_f32(&w, &b, weight, convBias, gamma, beta, mean, variance,
                                                          Int32(k), Int32(perChannel), 1e-5))
            XCTAssertOK(ck_batchnorm2d_fold_into_conv_f32_ref(&wRef, &bRef, weight, convBias, gamma, beta, mean, variance,
                                                              Int32(k), Int32(perChannel), 1e-5))
            XCTAssertLessThanOrEqual(relativeError(w, wRef), 1e-6)
            XCTAssertLessThanOrEqual(relativeError(b, bRef), 1e-6)
        }
        var w = [Float](repeating: 0, count: 1), b = w
        XCTAssertEqual(ck_batchnorm2d_fold_into_conv_f32_ref(&w, &b, [1], nil, [1], [0], [0], [1], 0, 1, 1e-5),
                       CK_ERR_BAD_SIZE.rawValue)
        XCTAssertEqual(ck_batchnorm2d_fold_into_conv_f32_ref(&w, &b, [1], nil, nil, [0], [0], [1], 1, 1, 1e-5),
                       CK_ERR_NULL_POINTER.rawValue)
    }

    /// The shared argument checks are what both implementations return on a bad shape.
    func testTwinsShareTheArgumentChecks() {
        var bad = convShape(batch: 1, inChannels: 1, height: 2, width: 2, outChannels: 1, kernel: 5, stride: 1, pad: 0)
        XCTAssertEqual(ck_conv2d_check_shape(&bad), CK_ERR_BAD_SIZE.rawValue)
        XCTAssertEqual(ck_conv2d_check_shape(nil), CK_ERR_NULL_POINTER.rawValue)
        var y = [Float](repeating: 0, count: 4)
        XCTAssertEqual(ck_conv2d_forward_f32_ref(&y, y, y, nil, &bad, nil, 0), CK_ERR_BAD_SIZE.rawValue)
        XCTAssertEqual(ck_conv2d_forward_f32(&y, y, y, nil, &bad, nil, 0), CK_ERR_BAD_SIZE.rawValue)
        XCTAssertEqual(ck_batchnorm2d_check_sizes(0, 1, 1), CK_ERR_BAD_SIZE.rawValue)
        XCTAssertEqual(ck_global_avgpool_check_sizes(1, 1, 0), CK_ERR_BAD_SIZE.rawValue)
        XCTAssertEqual(ck_linear_check_sizes(1, -1, 1), CK_ERR_BAD_SIZE.rawValue)
        XCTAssertEqual(ck_linear_check_sizes(1, 2, 3), CK_OK.rawValue)
        var pool = ck_pool2d_shape(batch: 1, channels: 1, in_height: 4, in_width: 4, kernel_height: 2, kernel_width: 2,
                                   stride_height: 2, stride_width: 2, pad_height: 2, pad_width: 0)
        XCTAssertEqual(ck_pool2d_check_shape(&pool), CK_ERR_BAD_SIZE.rawValue, "padding above half the window")
        pool.pad_height = 1
        XCTAssertEqual(ck_pool2d_check_shape(&pool), CK_OK.rawValue)
    }
}
