import CKernels
import CKernelsReference
import SeededRandom
import XCTest

final class PoolingAndElementwiseTests: XCTestCase {
    override func setUp() { ck_set_num_threads(2) }

    private func poolShape(_ n: Int, _ c: Int, _ h: Int, _ w: Int, kernel: Int, stride: Int, pad: Int) -> ck_pool2d_shape {
        ck_pool2d_shape(batch: Int32(n), channels: Int32(c), in_height: Int32(h), in_width: Int32(w),
                        kernel_height: Int32(kernel), kernel_width: Int32(kernel), stride_height: Int32(stride),
                        stride_width: Int32(stride), pad_height: Int32(pad), pad_width: Int32(pad))
    }

    /// ResNet's 3x3/2 pad-1 max pool on a 4x4 plane of 0…15 (row-major): windows centred on (0,0), (0,2),
    /// (2,0), (2,2) hold maxima 5, 7, 13, 15 at flat indices 5, 7, 13, 15.
    func testMaxPoolByHand() {
        var s = poolShape(1, 1, 4, 4, kernel: 3, stride: 2, pad: 1)
        XCTAssertEqual(ck_pool2d_output_height(&s), 2)
        let x = (0..<16).map(Float.init)
        var y = [Float](repeating: 0, count: 4), argmax = [Int32](repeating: -1, count: 4)
        XCTAssertOK(ck_maxpool2d_forward_f32(&y, &argmax, x, &s))
        XCTAssertEqual(y, [5, 7, 13, 15])
        XCTAssertEqual(argmax, [5, 7, 13, 15])
        var dx = [Float](repeating: .nan, count: 16)
        XCTAssertOK(ck_maxpool2d_backward_f32(&dx, [1, 2, 3, 4], argmax, &s))
        var expected = [Float](repeating: 0, count: 16)
        expected[5] = 1; expected[7] = 2; expected[13] = 3; expected[15] = 4
        XCTAssertEqual(dx, expected)
    }

    /// Overlapping windows route gradient to a shared winner twice; ties go to the first in row-major order.
    func testMaxPoolTiesAndOverlap() {
        var s = poolShape(1, 1, 3, 3, kernel: 2, stride: 1, pad: 0)
        let x: [Float] = [1, 1, 0, 1, 9, 0, 0, 0, 0]
        var y = [Float](repeating: 0, count: 4), argmax = [Int32](repeating: -1, count: 4)
        XCTAssertOK(ck_maxpool2d_forward_f32(&y, &argmax, x, &s))
        XCTAssertEqual(argmax, [4, 4, 4, 4])
        var dx = [Float](repeating: 0, count: 9)
        XCTAssertOK(ck_maxpool2d_backward_f32(&dx, [1, 1, 1, 1], argmax, &s))
        XCTAssertEqual(dx[4], 4)
        let flat: [Float] = [2, 2, 2, 2]
        var s2 = poolShape(1, 1, 2, 2, kernel: 2, stride: 2, pad: 0)
        var y2: [Float] = [0], a2: [Int32] = [-1]
        XCTAssertOK(ck_maxpool2d_forward_f32(&y2, &a2, flat, &s2))
        XCTAssertEqual(a2, [0])
        // NaN propagates as in PyTorch; the argmax points at the window's first NaN.
        for forward in [ck_maxpool2d_forward_f32, ck_maxpool2d_forward_f32_ref] {
            XCTAssertOK(forward(&y2, &a2, [1, .nan, 3, .nan], &s2))
            XCTAssertTrue(y2[0].isNaN)
            XCTAssertEqual(a2, [1])
        }
    }

    func testMaxPoolMatchesReference() {
        var rng = SplitMix64(seed: 9)
        for (n, c, h, w, k, st, p) in [(2, 3, 112, 112, 3, 2, 1), (1, 5, 7, 9, 3, 2, 1), (3, 2, 8, 8, 2, 2, 0),
                                       (1, 1, 5, 5, 5, 1, 2), (2, 2, 10, 7, 3, 1, 0)] {
            var s = poolShape(n, c, h, w, kernel: k, stride: st, pad: p)
            let count = n * c * Int(ck_pool2d_output_height(&s)) * Int(ck_pool2d_output_width(&s))
            let x = randomArray(n * c * h * w, &rng)
            var y = [Float](repeating: 0, count: count), yRef = y
            var a = [Int32](repeating: 0, count: count), aRef = a
            XCTAssertOK(ck_maxpool2d_forward_f32(&y, &a, x, &s))
            XCTAssertOK(ck_maxpool2d_forward_f32_ref(&yRef, &aRef, x, &s))
            XCTAssertEqual(y, yRef)
            XCTAssertEqual(a, aRef)
            let dy = randomArray(count, &rng)
            var dx = x, dxRef = x
            XCTAssertOK(ck_maxpool2d_backward_f32(&dx, dy, a, &s))
            XCTAssertOK(ck_maxpool2d_backward_f32_ref(&dxRef, dy, aRef, &s))
            XCTAssertLessThanOrEqual(relativeError(dx, dxRef), 1e-6)
        }
    }

    /// Wide rows take the vector path (3-wide windows, stride 2): odd widths, both paddings, 16-column
    /// chunks with a partial last one, ties (values from a set of five) and NaNs must give the reference's
    /// values and argmax exactly.
    func testMaxPoolWideRowsTiesAndNaN() {
        var rng = SplitMix64(seed: 19)
        forEachInstructionSet { avx512 in
        for (n, c, h, w, pad) in [(1, 2, 9, 75, 1), (2, 1, 8, 40, 0), (1, 3, 7, 33, 1), (1, 1, 5, 112, 1), (1, 1, 3, 36, 0)] {
            var s = poolShape(n, c, h, w, kernel: 3, stride: 2, pad: pad)
            let count = n * c * Int(ck_pool2d_output_height(&s)) * Int(ck_pool2d_output_width(&s))
            var x = (0 ..< n * c * h * w).map { _ in Float(Int.random(in: -2 ... 2, using: &rng)) }
            for _ in 0 ..< max(1, x.count / 40) { x[Int.random(in: 0 ..< x.count, using: &rng)] = .nan }
            var y = [Float](repeating: 0, count: count), yRef = y
            var a = [Int32](repeating: 0, count: count), aRef = a
            XCTAssertOK(ck_maxpool2d_forward_f32(&y, &a, x, &s))
            XCTAssertOK(ck_maxpool2d_forward_f32_ref(&yRef, &aRef, x, &s))
            XCTAssertEqual(y.map(\.bitPattern), yRef.map(\.bitPattern), "values \((n, c, h, w, pad))")
            XCTAssertEqual(a, aRef, "argmax \((n, c, h, w, pad)) avx512 \(avx512)")
        }
        }
    }

    /// Max pool is piecewise linear: with distinct random values a step h = 1e-3 never changes a winner.
    func testMaxPoolBackwardMatchesFiniteDifferences() {
        var rng = SplitMix64(seed: 10)
        var s = poolShape(2, 2, 6, 5, kernel: 3, stride: 2, pad: 1)
        let outCount = 2 * 2 * Int(ck_pool2d_output_height(&s)) * Int(ck_pool2d_output_width(&s))
        var x = (0..<(2 * 2 * 30)).map { Float($0) * 0.01 }
        x.shuffle(using: &rng)
        let g = randomArray(outCount, &rng)
        func loss() -> Double {
            var y = [Float](repeating: 0, count: outCount)
            XCTAssertOK(ck_maxpool2d_forward_f32(&y, nil, x, &s))
            return weightedSum(y, g)
        }
        var y = [Float](repeating: 0, count: outCount), a = [Int32](repeating: 0, count: outCount)
        XCTAssertOK(ck_maxpool2d_forward_f32(&y, &a, x, &s))
        var dx = x
        XCTAssertOK(ck_maxpool2d_backward_f32(&dx, g, a, &s))
        let h: Float = 1e-3
        let fd = x.indices.map { i in centralDifference(step: h, read: { x[i] }, write: { x[i] = $0 }, loss: loss) }
        XCTAssertLessThanOrEqual(relativeError(dx, fd), 1e-3)
    }

    func testPoolRejectsBadShapes() {
        var tooMuchPadding = poolShape(1, 1, 4, 4, kernel: 3, stride: 2, pad: 2)
        XCTAssertEqual(ck_pool2d_output_height(&tooMuchPadding), 0)
        var y: [Float] = [0]
        XCTAssertEqual(ck_maxpool2d_forward_f32(&y, nil, [1], &tooMuchPadding), CK_ERR_BAD_SIZE.rawValue)
        var ok = poolShape(1, 1, 4, 4, kernel: 3, stride: 2, pad: 1)
        XCTAssertEqual(ck_maxpool2d_backward_f32(&y, [1], nil, &ok), CK_ERR_NULL_POINTER.rawValue)
    }

    func testGlobalAveragePool() {
        var rng = SplitMix64(seed: 4)
        let x = randomArray(3 * 5 * 49, &rng)
        var y = [Float](repeating: 0, count: 15), yRef = y
        XCTAssertOK(ck_global_avgpool_forward_f32(&y, x, 3, 5, 49))
        XCTAssertOK(ck_global_avgpool_forward_f32_ref(&yRef, x, 3, 5, 49))
        XCTAssertLessThanOrEqual(relativeError(y, yRef), 1e-6)
        XCTAssertEqual(y[0], x[0..<49].reduce(0, +) / 49, accuracy: 1e-6)
        let dy = randomArray(15, &rng)
        var dx = x, dxRef = x
        XCTAssertOK(ck_global_avgpool_backward_f32(&dx, dy, 3, 5, 49))
        XCTAssertOK(ck_global_avgpool_backward_f32_ref(&dxRef, dy, 3, 5, 49))
        XCTAssertEqual(dx, dxRef)
        XCTAssertEqual(dx[48], dy[0] / 49)
    }

    func testReluAndElementwise() {
        var rng = SplitMix64(seed: 8)
        let x = randomArray(100_000, &rng), dy = randomArray(100_000, &rng)
        var y = x, yRef = x
        XCTAssertOK(ck_relu_forward_f32(&y, x, x.count))
        XCTAssertOK(ck_relu_forward_f32_ref(&yRef, x, x.count))
        XCTAssertEqual(y, yRef)
        XCTAssertEqual(y[0], max(x[0], 0))
        var dx = dy, dxRef = dy
        XCTAssertOK(ck_relu_backward_f32(&dx, dy, y, x.count))
        XCTAssertOK(ck_relu_backward_f32_ref(&dxRef, dy, y, x.count))
        XCTAssertEqual(dx, dxRef)
        var sum = x, sumRef = x
        XCTAssertOK(ck_add_f32(&sum, x, dy, x.count))
        XCTAssertOK(ck_add_f32_ref(&sumRef, x, dy, x.count))
        XCTAssertEqual(sum, sumRef)
        XCTAssertOK(ck_accumulate_f32_ref(&sumRef, x, x.count))
        XCTAssertEqual(sum[7], x[7] + dy[7])
        XCTAssertOK(ck_accumulate_f32(&sum, x, x.count))
        XCTAssertEqual(sum[7], x[7] + dy[7] + x[7])
        XCTAssertEqual(sum, sumRef)
    }

    func testLinearMatchesReferenceAndFiniteDifferences() {
        var rng = SplitMix64(seed: 6)
        let b = 3, i = 7, o = 5
        var x = randomArray(b * i, &rng)
        let w = randomArray(o * i, &rng), bias = randomArray(o, &rng), g = randomArray(b * o, &rng)
        var y = [Float](repeating: 0, count: b * o), yRef = y
        XCTAssertOK(ck_linear_forward_f32(&y, x, w, bias, 3, 7, 5))
        XCTAssertOK(ck_linear_forward_f32_ref(&yRef, x, w, bias, 3, 7, 5))
        XCTAssertLessThanOrEqual(relativeError(y, yRef), 1e-5)
        let start = randomArray(o * i, &rng)
        var dx = x, dxRef = x, dw = start, dwRef = start, db = bias, dbRef = bias
        XCTAssertOK(ck_linear_backward_f32(&dx, &dw, &db, g, x, w, 3, 7, 5))
        XCTAssertOK(ck_linear_backward_f32_ref(&dxRef, &dwRef, &dbRef, g, x, w, 3, 7, 5))
        XCTAssertLessThanOrEqual(relativeError(dx, dxRef), 1e-5)
        XCTAssertLessThanOrEqual(relativeError(dw, dwRef), 1e-5)
        XCTAssertLessThanOrEqual(relativeError(db, dbRef), 1e-5)
        var dxOnly = x
        XCTAssertOK(ck_linear_backward_f32(&dxOnly, nil, nil, g, x, w, 3, 7, 5))
        let h: Float = 0.5
        var fd = [Float]()
        for k in x.indices {
            let orig = x[k]
            var yp = y, ym = y
            x[k] = orig + h; XCTAssertOK(ck_linear_forward_f32(&yp, x, w, bias, 3, 7, 5))
            x[k] = orig - h; XCTAssertOK(ck_linear_forward_f32(&ym, x, w, bias, 3, 7, 5))
            x[k] = orig
            let lp = weightedSum(yp, g)
            let lm = weightedSum(ym, g)
            fd.append(Float((lp - lm) / Double(2 * h)))
        }
        XCTAssertLessThanOrEqual(relativeError(dxOnly, fd), 1e-4)
    }
}
