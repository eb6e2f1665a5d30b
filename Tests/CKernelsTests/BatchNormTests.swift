import CKernels
import CKernelsReference
import SeededRandom
import XCTest

/// BatchNorm kernels: optimized vs reference, hand-computed running statistics, finite differences, folding.
final class BatchNormTests: XCTestCase {
    override func setUp() { ck_set_num_threads(2) }

    /// x = [1, 2, 3, 4] as N=2, C=1, HW=2: batch mean 2.5, biased variance 1.25 (normalises), unbiased
    /// variance 5/3 (feeds the running variance). From running (0, 1) with momentum 0.1:
    /// running_mean = 0.25, running_var = 0.9 + 0.1·5/3 = 1.0666667.
    func testRunningStatisticsByHand() {
        let x: [Float] = [1, 2, 3, 4]
        for reference in [false, true] {
            var y = [Float](repeating: 0, count: 4), mean: [Float] = [0], invstd: [Float] = [0]
            var runningMean: [Float] = [0], runningVar: [Float] = [1]
            let forward = reference ? ck_batchnorm2d_forward_train_f32_ref : ck_batchnorm2d_forward_train_f32
            XCTAssertOK(forward(&y, &mean, &invstd, &runningMean, &runningVar, x, [2], [0.5], 2, 1, 2, 0.1, 1e-5))
            XCTAssertEqual(mean[0], 2.5, accuracy: 1e-6)
            XCTAssertEqual(invstd[0], Float(1 / (1.25 + 1e-5).squareRoot()), accuracy: 1e-6)
            XCTAssertEqual(runningMean[0], 0.25, accuracy: 1e-6)
            XCTAssertEqual(runningVar[0], 0.9 + 0.1 * 5 / 3, accuracy: 1e-6)
            let expected = x.map { ($0 - 2.5) / Float((1.25 + 1e-5).squareRoot()) * 2 + 0.5 }
            for i in 0..<4 { XCTAssertEqual(y[i], expected[i], accuracy: 1e-5) }
        }
    }

    func testOptimizedMatchesReference() {
        var rng = SplitMix64(seed: 3)
        // The last case sits far from zero (values 100 ± 1): a variance from E[x²] − mean² cancels there.
        for (n, c, hw, offset) in [(1, 3, 5, Float(0)), (8, 16, 49, 0), (2, 64, 3136, 0), (3, 7, 1, 0), (8, 2, 3136, 100)] {
            let x = randomArray(n * c * hw, &rng, range: -3...5).map { offset == 0 ? $0 : offset + $0 / 4 }
            let gamma = randomArray(c, &rng), beta = randomArray(c, &rng), dy = randomArray(x.count, &rng)
            let runStart = randomArray(c, &rng), varStart = randomArray(c, &rng, range: 0.5...2)
            var y = [Float](repeating: 0, count: x.count), yRef = y
            var mean = [Float](repeating: 0, count: c), meanRef = mean, invstd = mean, invstdRef = mean
            var rm = runStart, rmRef = runStart, rv = varStart, rvRef = varStart
            let N = Int32(n), C = Int32(c), HW = Int32(hw)
            XCTAssertOK(ck_batchnorm2d_forward_train_f32(&y, &mean, &invstd, &rm, &rv, x, gamma, beta, N, C, HW, 0.1, 1e-5))
            XCTAssertOK(ck_batchnorm2d_forward_train_f32_ref(&yRef, &meanRef, &invstdRef, &rmRef, &rvRef, x, gamma, beta,
                                                             N, C, HW, 0.1, 1e-5))
            XCTAssertLessThanOrEqual(relativeError(y, yRef), 1e-4, "train forward \(n),\(c),\(hw)")
            XCTAssertLessThanOrEqual(relativeError(rm, rmRef), 1e-5)
            XCTAssertLessThanOrEqual(relativeError(rv, rvRef), 1e-5)

            var dx = y, dxRef = y
            let gStart = randomArray(c, &rng)
            var dg = gStart, dgRef = gStart, dbeta = gStart, dbetaRef = gStart
            XCTAssertOK(ck_batchnorm2d_backward_f32(&dx, &dg, &dbeta, dy, x, mean, invstd, gamma, N, C, HW))
            XCTAssertOK(ck_batchnorm2d_backward_f32_ref(&dxRef, &dgRef, &dbetaRef, dy, x, meanRef, invstdRef, gamma, N, C, HW))
            XCTAssertLessThanOrEqual(relativeError(dx, dxRef), 1e-3, "backward dx \(n),\(c),\(hw)")
            XCTAssertLessThanOrEqual(relativeError(dg, dgRef), 1e-3)
            XCTAssertLessThanOrEqual(relativeError(dbeta, dbetaRef), 1e-3)

            var yi = y, yiRef = y
            XCTAssertOK(ck_batchnorm2d_forward_infer_f32(&yi, x, gamma, beta, rm, rv, N, C, HW, 1e-5))
            XCTAssertOK(ck_batchnorm2d_forward_infer_f32_ref(&yiRef, x, gamma, beta, rm, rv, N, C, HW, 1e-5))
            XCTAssertLessThanOrEqual(relativeError(yi, yiRef), 1e-5)
        }
    }

    /// Central differences of L = Σ g·bn(x) through the batch statistics, h = 1e-2, L summed in double.
    /// The backward through relu and bn in one pass, against its twin and against the two steps it replaces (relu's
    /// backward, then bn's): dz bit for bit (a mask is exact), dx and the parameter gradients to 1e-4; y holds
    /// zeros, negatives and a NaN (whose gradient is zero, as relu's); some outputs not wanted (NULL).
    func testFusedBackwardMatchesTwoSteps() {
        var rng = SplitMix64(seed: 11)
        for (n, c, hw) in [(2, 3, 7), (8, 16, 49), (1, 5, 3136), (3, 2, 1)] {
            let x = randomArray(n * c * hw, &rng, range: -3...3), dy = randomArray(x.count, &rng)
            var y = randomArray(x.count, &rng).map { $0 < -0.5 ? 0 : $0 }
            y[0] = .nan
            let gamma = randomArray(c, &rng), mean = randomArray(c, &rng, range: -0.5...0.5)
            let invstd = randomArray(c, &rng, range: 0.5...2)
            let N = Int32(n), C = Int32(c), HW = Int32(hw)
            var masked = [Float](repeating: .nan, count: x.count)
            XCTAssertOK(ck_relu_backward_f32(&masked, dy, y, x.count))
            let gStart = randomArray(c, &rng)
            var dxSteps = [Float](repeating: .nan, count: x.count), dgSteps = gStart, dbSteps = gStart
            XCTAssertOK(ck_batchnorm2d_backward_f32_ref(&dxSteps, &dgSteps, &dbSteps, masked, x, mean, invstd, gamma, N, C, HW))
            for relu in [true, false] {
                let expectedDx = relu ? dxSteps : nil
                var dx = [Float](repeating: .nan, count: x.count), dg = gStart, db = gStart, dz = dx
                var dxRef = dx, dgRef = gStart, dbRef = gStart, dzRef = dx
                let mask: [Float]? = relu ? y : nil
                XCTAssertOK(ck_batchnorm2d_backward_fused_f32(&dx, &dg, &db, &dz, dy, mask, x, mean, invstd, gamma, N, C, HW))
                XCTAssertOK(ck_batchnorm2d_backward_fused_f32_ref(&dxRef, &dgRef, &dbRef, &dzRef, dy, mask, x, mean, invstd,
                                                                  gamma, N, C, HW))
                let label = "\((n, c, hw)) relu \(relu)"
                XCTAssertEqual(dz, relu ? masked : dy, "dz \(label)")
                XCTAssertEqual(dzRef, relu ? masked : dy, "twin's dz \(label)")
                XCTAssertLessThanOrEqual(relativeError(dx, dxRef), 1e-4, "dx \(label)")
                XCTAssertLessThanOrEqual(relativeError(dg, dgRef), 1e-4, "dgamma \(label)")
                XCTAssertLessThanOrEqual(relativeError(db, dbRef), 1e-4, "dbeta \(label)")
                if let expectedDx {
                    XCTAssertLessThanOrEqual(relativeError(dx, expectedDx), 1e-4, "dx against two steps \(label)")
                    XCTAssertLessThanOrEqual(relativeError(dg, dgSteps), 1e-4, "dgamma against two steps \(label)")
                    XCTAssertLessThanOrEqual(relativeError(db, dbSteps), 1e-4, "dbeta against two steps \(label)")
                }
            }
            // Only the parameter gradients wanted: dx and dz untouched.
            var dg = gStart, db = gStart
            XCTAssertOK(ck_batchnorm2d_backward_fused_f32(nil, &dg, &db, nil, dy, y, x, mean, invstd, gamma, N, C, HW))
            XCTAssertLessThanOrEqual(relativeError(dg, dgSteps), 1e-4)
            XCTAssertEqual(ck_batchnorm2d_backward_fused_f32(nil, &dg, &db, nil, nil, y, x, mean, invstd, gamma, N, C, HW),
                           CK_ERR_NULL_POINTER.rawValue)
        }
    }

    /// bn → + residual → relu in one pass, against the reference's three steps; NaN passes the relu.
    func testFusedTrainForwardMatchesReference() {
        var rng = SplitMix64(seed: 5)
        for (n, c, hw) in [(2, 3, 7), (8, 16, 49), (1, 4, 3136)] {
            var x = randomArray(n * c * hw, &rng, range: -3...3)
            x[1] = .nan
            let gamma = randomArray(c, &rng), beta = randomArray(c, &rng), residual = randomArray(x.count, &rng)
            for (useResidual, relu) in [(false, Int32(1)), (true, 0), (true, 1)] {
                var y = [Float](repeating: 0, count: x.count), yRef = y
                var mean = [Float](repeating: 0, count: c), meanRef = mean, invstd = mean, invstdRef = mean
                var rm = [Float](repeating: 0, count: c), rmRef = rm, rv = [Float](repeating: 1, count: c), rvRef = rv
                residual.withUnsafeBufferPointer { r in
                    let res = useResidual ? r.baseAddress : nil
                    XCTAssertOK(ck_batchnorm2d_forward_train_fused_f32(&y, &mean, &invstd, &rm, &rv, x, gamma, beta, res, relu,
                                                                       Int32(n), Int32(c), Int32(hw), 0.1, 1e-5))
                    XCTAssertOK(ck_batchnorm2d_forward_train_fused_f32_ref(&yRef, &meanRef, &invstdRef, &rmRef, &rvRef, x, gamma,
                                                                           beta, res, relu, Int32(n), Int32(c), Int32(hw), 0.1, 1e-5))
                }
                let what = "fused \(n),\(c),\(hw) residual \(useResidual) relu \(relu)"
                // Channel 0 holds the NaN: every value of it is NaN on both sides; compare the other channels.
                let finite = y.indices.filter { ($0 / hw) % c != 0 }
                XCTAssertLessThanOrEqual(relativeError(finite.map { y[$0] }, finite.map { yRef[$0] }), 1e-4, what)
                XCTAssertTrue(y[1].isNaN && yRef[1].isNaN, "\(what): NaN passes")
                if relu == 1 { XCTAssertTrue(finite.allSatisfy { y[$0] >= 0 }, what) }
                XCTAssertLessThanOrEqual(relativeError(Array(rv.dropFirst()), Array(rvRef.dropFirst())), 1e-5, what)
            }
        }
    }

    func testTrainingBackwardMatchesFiniteDifferences() {
        var rng = SplitMix64(seed: 11)
        let n = 2, c = 3, hw = 5
        var x = randomArray(n * c * hw, &rng, range: -2...2)
        var gamma = randomArray(c, &rng, range: 0.5...1.5), beta = randomArray(c, &rng)
        let g = randomArray(x.count, &rng)
        func loss() -> Double {
            var y = [Float](repeating: 0, count: x.count), m = [Float](repeating: 0, count: c), s = m
            XCTAssertOK(ck_batchnorm2d_forward_train_f32(&y, &m, &s, nil, nil, x, gamma, beta, 2, 3, 5, 0.1, 1e-5))
            return weightedSum(y, g)
        }
        var y = [Float](repeating: 0, count: x.count), mean = [Float](repeating: 0, count: c), invstd = mean
        XCTAssertOK(ck_batchnorm2d_forward_train_f32(&y, &mean, &invstd, nil, nil, x, gamma, beta, 2, 3, 5, 0.1, 1e-5))
        var dx = y, dg = [Float](repeating: 0, count: c), db = dg
        XCTAssertOK(ck_batchnorm2d_backward_f32(&dx, &dg, &db, g, x, mean, invstd, gamma, 2, 3, 5))
        let h: Float = 1e-2
        func numeric(_ read: () -> Float, _ write: (Float) -> Void) -> Float {
            centralDifference(step: h, read: read, write: write, loss: loss)
        }
        let fdX = x.indices.map { i in numeric({ x[i] }, { x[i] = $0 }) }
        let fdG = gamma.indices.map { i in numeric({ gamma[i] }, { gamma[i] = $0 }) }
        let fdB = beta.indices.map { i in numeric({ beta[i] }, { beta[i] = $0 }) }
        // The normalisation is nonlinear: the O(h²) truncation term and float rounding of y allow ~1e-3.
        XCTAssertLessThanOrEqual(relativeError(dx, fdX), 2e-3)
        XCTAssertLessThanOrEqual(relativeError(dg, fdG), 2e-3)
        XCTAssertLessThanOrEqual(relativeError(db, fdB), 2e-3)
    }

    /// Inference backward against its twin, with every output accumulating from non-zero starts.
    func testInferenceBackwardMatchesReference() {
        var rng = SplitMix64(seed: 13)
        let (n, c, hw) = (3, 5, 20)
        let x = randomArray(n * c * hw, &rng), dy = randomArray(x.count, &rng), gamma = randomArray(c, &rng)
        let mean = randomArray(c, &rng), variance = randomArray(c, &rng, range: 0.5...2)
        let gStart = randomArray(c, &rng), bStart = randomArray(c, &rng)
        var dx = x, dxRef = x, dg = gStart, dgRef = gStart, db = bStart, dbRef = bStart
        XCTAssertOK(ck_batchnorm2d_backward_infer_f32(&dx, &dg, &db, dy, x, gamma, mean, variance, 3, 5, 20, 1e-5))
        XCTAssertOK(ck_batchnorm2d_backward_infer_f32_ref(&dxRef, &dgRef, &dbRef, dy, x, gamma, mean, variance, 3, 5, 20, 1e-5))
        XCTAssertLessThanOrEqual(relativeError(dx, dxRef), 1e-5)
        XCTAssertLessThanOrEqual(relativeError(dg, dgRef), 1e-4)
        XCTAssertLessThanOrEqual(relativeError(db, dbRef), 1e-4)
        XCTAssertNotEqual(db, bStart)
    }

    /// In-place inference (y aliases x) gives what out-of-place does; one value per channel cannot train.
    func testInPlaceInferenceAndSingleValueTraining() {
        var rng = SplitMix64(seed: 14)
        let x = randomArray(2 * 3 * 4, &rng), gamma = randomArray(3, &rng), beta = randomArray(3, &rng)
        let mean = randomArray(3, &rng), variance = randomArray(3, &rng, range: 0.5...2)
        var out = x
        XCTAssertOK(ck_batchnorm2d_forward_infer_f32(&out, x, gamma, beta, mean, variance, 2, 3, 4, 1e-5))
        var inPlace = x
        inPlace.withUnsafeMutableBufferPointer { p in
            XCTAssertOK(ck_batchnorm2d_forward_infer_f32(p.baseAddress, p.baseAddress, gamma, beta, mean, variance, 2, 3, 4, 1e-5))
        }
        XCTAssertEqual(inPlace, out)
        var y: [Float] = [0], m: [Float] = [0], s: [Float] = [0]
        for forward in [ck_batchnorm2d_forward_train_f32, ck_batchnorm2d_forward_train_f32_ref] {
            XCTAssertEqual(forward(&y, &m, &s, nil, nil, [1], [1], [0], 1, 1, 1, 0.1, 1e-5), CK_ERR_BAD_SIZE.rawValue)
        }
    }

    /// Inference backward: dx = dy·gamma/sqrt(var + eps); checked against finite differences (it is linear).
    func testInferenceBackwardMatchesFiniteDifferences() {
        var rng = SplitMix64(seed: 12)
        var x = randomArray(2 * 3 * 4, &rng), gamma = randomArray(3, &rng)
        let beta = randomArray(3, &rng), mean = randomArray(3, &rng), variance = randomArray(3, &rng, range: 0.5...2)
        let g = randomArray(x.count, &rng)
        func loss() -> Double {
            var y = [Float](repeating: 0, count: x.count)
            XCTAssertOK(ck_batchnorm2d_forward_infer_f32(&y, x, gamma, beta, mean, variance, 2, 3, 4, 1e-5))
            return weightedSum(y, g)
        }
        var dx = [Float](repeating: 0, count: x.count), dg = [Float](repeating: 0, count: 3)
        XCTAssertOK(ck_batchnorm2d_backward_infer_f32(&dx, &dg, nil, g, x, gamma, mean, variance, 2, 3, 4, 1e-5))
        let h: Float = 0.5
        let fdX = x.indices.map { i in centralDifference(step: h, read: { x[i] }, write: { x[i] = $0 }, loss: loss) }
        let fdG = gamma.indices.map { i in
            centralDifference(step: h, read: { gamma[i] }, write: { gamma[i] = $0 }, loss: loss)
        }
        XCTAssertLessThanOrEqual(relativeError(dx, fdX), 1e-4)
        XCTAssertLessThanOrEqual(relativeError(dg, fdG), 1e-4)
    }

    /// conv(x, folded w) + folded b equals bn_infer(conv(x, w) + b).
    func testFoldingIntoConvolution() {
        var rng = SplitMix64(seed: 5)
        var s = convShape(batch: 2, inChannels: 3, height: 6, width: 6, outChannels: 4, kernel: 3, stride: 1, pad: 1)
        let x = randomArray(2 * 3 * 36, &rng), w = randomArray(4 * 27, &rng), b = randomArray(4, &rng)
        let gamma = randomArray(4, &rng), beta = randomArray(4, &rng), mean = randomArray(4, &rng)
        let variance = randomArray(4, &rng, range: 0.1...3)
        let workspace = Workspace(bytes: ck_conv2d_workspace_size(&s))
        var conv = [Float](repeating: 0, count: 2 * 4 * 36), expected = conv, folded = conv
        XCTAssertOK(ck_conv2d_forward_f32(&conv, x, w, b, &s, workspace.buffer, workspace.bytes))
        XCTAssertOK(ck_batchnorm2d_forward_infer_f32(&expected, conv, gamma, beta, mean, variance, 2, 4, 36, 1e-5))
        var fw = w, fb = b
        XCTAssertOK(ck_batchnorm2d_fold_into_conv_f32(&fw, &fb, w, b, gamma, beta, mean, variance, 4, 27, 1e-5))
        XCTAssertOK(ck_conv2d_forward_f32(&folded, x, fw, fb, &s, workspace.buffer, workspace.bytes))
        XCTAssertLessThanOrEqual(relativeError(folded, expected), 1e-5)
    }

    func testBadArgumentsReturnErrors() {
        var y: [Float] = [0], m: [Float] = [0], s: [Float] = [0]
        XCTAssertEqual(ck_batchnorm2d_forward_train_f32(&y, &m, &s, nil, nil, [1], [1], [0], 0, 1, 1, 0.1, 1e-5),
                       CK_ERR_BAD_SIZE.rawValue)
        XCTAssertEqual(ck_batchnorm2d_forward_train_f32(&y, &m, &s, nil, nil, [1], nil, [0], 1, 1, 1, 0.1, 1e-5),
                       CK_ERR_NULL_POINTER.rawValue)
        XCTAssertEqual(ck_batchnorm2d_forward_infer_f32(&y, [1], [1], [0], nil, [1], 1, 1, 1, 1e-5),
                       CK_ERR_NULL_POINTER.rawValue)
    }
}
