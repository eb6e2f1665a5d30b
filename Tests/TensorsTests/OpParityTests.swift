// OpParityTests.swift — each op's forward and backward against PyTorch's (Fixtures/ops.rnfx), with both
// kernel backends, plus hand-checkable cases. Tolerance: relative error (‖ours − torch‖∞ / ‖torch‖∞) ≤ 1e-5
// forward and ≤ 1e-4 backward (float32 sums in a different order).
import NN
import Tensors
import XCTest

final class OpParityTests: XCTestCase {
    var fixture: Fixture!

    override func setUpWithError() throws { fixture = try Fixture(named: "ops") }

    func testConv2dMatchesTorch() {
        forEachBackend { backend in
            for name in ["conv_stem", "conv_3x3", "conv_1x1_s2", "conv_rect"] {
                let settings = fixture.ints("\(name)/settings")
                let x = fixture.tensor("\(name)/x", requiresGrad: true)
                let w = fixture.tensor("\(name)/w", requiresGrad: true)
                let b = fixture.entries["\(name)/b"].map { Tensor(shape: $0.shape, data: $0.floats, requiresGrad: true) }
                let y = conv2d(x, weight: w, bias: b, stride: (settings[0], settings[1]), padding: (settings[2], settings[3]))
                XCTAssertEqual(y.shape, fixture["\(name)/y"].shape)
                assertClose(y.data, fixture["\(name)/y"].floats, tolerance: 1e-5, "\(name) \(backend) y")
                y.backward(gradient: fixture["\(name)/dy"].floats)
                assertClose(x.grad, fixture["\(name)/dx"].floats, tolerance: 1e-4, "\(name) \(backend) dx")
                assertClose(w.grad, fixture["\(name)/dw"].floats, tolerance: 1e-4, "\(name) \(backend) dw")
                if let b { assertClose(b.grad, fixture["\(name)/db"].floats, tolerance: 1e-4, "\(name) \(backend) db") }
            }
        }
    }

    func testBatchNormMatchesTorch() {
        forEachBackend { backend in
            for (name, training) in [("bn_train", true), ("bn_eval", false)] {
                let x = fixture.tensor("\(name)/x", requiresGrad: true)
                let gamma = fixture.tensor("\(name)/gamma", requiresGrad: true)
                let beta = fixture.tensor("\(name)/beta", requiresGrad: true)
                let mean = fixture.tensor("\(name)/running_mean"), variance = fixture.tensor("\(name)/running_var")
                let y = batchNorm2d(x, weight: gamma, bias: beta, runningMean: mean, runningVar: variance, training: training)
                assertClose(y.data, fixture["\(name)/y"].floats, tolerance: 1e-5, "\(name) \(backend) y")
                assertClose(mean.data, fixture["\(name)/running_mean_after"].floats, tolerance: 1e-5, "\(name) \(backend) running mean")
                assertClose(variance.data, fixture["\(name)/running_var_after"].floats, tolerance: 1e-5, "\(name) \(backend) running var")
                y.backward(gradient: fixture["\(name)/dy"].floats)
                assertClose(x.grad, fixture["\(name)/dx"].floats, tolerance: 1e-4, "\(name) \(backend) dx")
                assertClose(gamma.grad, fixture["\(name)/dgamma"].floats, tolerance: 1e-4, "\(name) \(backend) dgamma")
                assertClose(beta.grad, fixture["\(name)/dbeta"].floats, tolerance: 1e-4, "\(name) \(backend) dbeta")
            }
        }
    }

    func testPoolingMatchesTorch() {
        forEachBackend { backend in
            for name in ["maxpool_3s2p1", "maxpool_2s2"] {
                let s = fixture.ints("\(name)/settings")
                let x = fixture.tensor("\(name)/x", requiresGrad: true)
                let y = maxPool2d(x, kernelSize: (s[0], s[0]), stride: (s[1], s[1]), padding: (s[2], s[2]))
                XCTAssertEqual(y.shape, fixture["\(name)/y"].shape)
                assertClose(y.data, fixture["\(name)/y"].floats, tolerance: 0, "\(name) \(backend) y")
                y.backward(gradient: fixture["\(name)/dy"].floats)
                assertClose(x.grad, fixture["\(name)/dx"].floats, tolerance: 1e-6, "\(name) \(backend) dx")
            }
            let x = fixture.tensor("gap/x", requiresGrad: true)
            let y = globalAvgPool2d(x)
            assertClose(y.data, fixture["gap/y"].floats, tolerance: 1e-6, "gap \(backend) y")
            y.backward(gradient: fixture["gap/dy"].floats)
            assertClose(x.grad, fixture["gap/dx"].floats, tolerance: 1e-6, "gap \(backend) dx")
        }
    }

    func testLinearAndLossMatchTorch() {
        forEachBackend { backend in
            let x = fixture.tensor("linear/x", requiresGrad: true)
            let w = fixture.tensor("linear/w", requiresGrad: true), b = fixture.tensor("linear/b", requiresGrad: true)
            let y = linear(x, weight: w, bias: b)
            assertClose(y.data, fixture["linear/y"].floats, tolerance: 1e-5, "linear \(backend) y")
            y.backward(gradient: fixture["linear/dy"].floats)
            assertClose(x.grad, fixture["linear/dx"].floats, tolerance: 1e-5, "linear \(backend) dx")
            assertClose(w.grad, fixture["linear/dw"].floats, tolerance: 1e-5, "linear \(backend) dw")
            assertClose(b.grad, fixture["linear/db"].floats, tolerance: 1e-5, "linear \(backend) db")
        }
        let z = fixture.tensor("xent/logits", requiresGrad: true)
        let loss = crossEntropy(z, labels: fixture.ints("xent/labels"), classWeights: fixture["xent/class_weights"].floats)
        assertClose(loss.data, fixture["xent/loss"].floats, tolerance: 1e-6, "cross entropy loss")
        loss.backward()
        assertClose(z.grad, fixture["xent/dlogits"].floats, tolerance: 1e-5, "cross entropy dlogits")
    }

    /// Cases a reader can verify by eye.
    func testHandComputedCases() {
        // 2x2 max pool of 1…16 picks the bottom-right of each window; the gradient goes back there.
        let x = Tensor(shape: [1, 1, 4, 4], data: (1...16).map(Float.init), requiresGrad: true)
        let y = maxPool2d(x, kernelSize: (2, 2), stride: (2, 2))
        XCTAssertEqual(y.data, [6, 8, 14, 16])
        y.backward(gradient: [1, 2, 3, 4])
        XCTAssertEqual(x.grad, [0, 0, 0, 0, 0, 1, 0, 2, 0, 0, 0, 0, 0, 3, 0, 4])

        // A 1x1 convolution with weight 2 and bias 1 is 2x + 1.
        let c = conv2d(Tensor(shape: [1, 1, 1, 3], data: [1, 2, 3]), weight: Tensor(shape: [1, 1, 1, 1], data: [2]),
                       bias: Tensor(shape: [1], data: [1]))
        XCTAssertEqual(c.data, [3, 5, 7])

        // Cross-entropy of equal logits over 4 classes is log 4.
        let loss = crossEntropy(Tensor(shape: [2, 4], repeating: 0.5), labels: [1, 3])
        XCTAssertEqual(loss.item, Float(log(4.0)), accuracy: 1e-6)

        // concat along features, then reshape back.
        let joined = concat([Tensor(shape: [2, 1], data: [1, 2]), Tensor(shape: [2, 2], data: [3, 4, 5, 6])], axis: 1)
        XCTAssertEqual(joined.data, [1, 3, 4, 2, 5, 6])
        XCTAssertEqual(joined.shape, [2, 3])
    }

    /// Gradients flow only where asked: frozen inputs get none, no-grad mode records nothing.
    func testGradientBookkeeping() {
        let g = RandomGenerator(seed: 3)
        let x = Tensor.randn([2, 3, 5, 5], generator: g)
        let w = Tensor.randn([4, 3, 3, 3], generator: g, requiresGrad: true)
        let frozen = Tensor.randn([4], generator: g)
        let y = conv2d(x, weight: w, bias: frozen)
        XCTAssertTrue(y.requiresGrad)
        y.backward(gradient: [Float](repeating: 1, count: y.count))
        XCTAssertNotNil(w.grad)
        XCTAssertNil(x.grad)
        XCTAssertNil(frozen.grad)
        // A second backward accumulates.
        let first = w.grad!
        conv2d(x, weight: w, bias: frozen).backward(gradient: [Float](repeating: 1, count: y.count))
        XCTAssertEqual(relativeError(w.grad!, first.map { 2 * $0 }), 0, accuracy: 1e-6)
        let untracked = withNoGrad { conv2d(x, weight: w) }
        XCTAssertFalse(untracked.requiresGrad)
        XCTAssertFalse(untracked.isOnTape)
    }

    /// Dropout keeps about 1 − p of the values, scaled by 1/(1 − p), and is the identity in evaluation.
    func testDropoutStatistics() {
        let x = Tensor(shape: [100_000], repeating: 1)
        let y = dropout(x, p: 0.3, training: true, generator: RandomGenerator(seed: 5))
        let kept = y.data.filter { $0 != 0 }
        XCTAssertEqual(Double(kept.count) / 100_000, 0.7, accuracy: 0.01)
        XCTAssertTrue(kept.allSatisfy { abs($0 - 1 / 0.7) < 1e-6 })
        XCTAssertTrue(dropout(x, p: 0.3, training: false, generator: RandomGenerator(seed: 5)) === x)
        let again = dropout(x, p: 0.3, training: true, generator: RandomGenerator(seed: 5))
        XCTAssertEqual(again.data, y.data, "same seed, same mask")
    }
}
