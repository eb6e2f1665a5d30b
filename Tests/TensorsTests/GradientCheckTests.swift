// GradientCheckTests.swift — finite-difference checks of every op's backward, on random data, with both
// kernel backends. Tolerances: see `checkGradients` (atol 2e-3 + rtol 1e-2, h = 1e-2, float32 forward).
import NN
import Tensors
import XCTest

final class GradientCheckTests: XCTestCase {
    let generator = RandomGenerator(seed: 42)

    func randn(_ shape: [Int], scale: Float = 1) -> Tensor {
        Tensor(shape: shape, data: generator.normalArray(count: shape.reduce(1, *), std: scale))
    }

    /// Random values at least `gap` away from 0, so that ±h never crosses relu's kink.
    func awayFromZero(_ shape: [Int], gap: Float = 0.05) -> Tensor {
        let values = generator.normalArray(count: shape.reduce(1, *)).map { $0 >= 0 ? $0 + gap : $0 - gap }
        return Tensor(shape: shape, data: values)
    }

    func testConv2d() {
        forEachBackend { backend in
            for (stride, padding, bias) in [((1, 1), (1, 1), true), ((2, 2), (3, 3), false), ((2, 1), (0, 1), true)] {
                let x = randn([2, 3, 7, 6]), w = randn([4, 3, 3, 3], scale: 0.5), b = randn([4])
                checkGradients(bias ? [x, w, b] : [x, w], "conv2d \(backend) stride \(stride) padding \(padding)") {
                    conv2d(x, weight: w, bias: bias ? b : nil, stride: stride, padding: padding)
                }
            }
        }
    }

    func testBatchNormTraining() {
        forEachBackend { backend in
            let x = randn([3, 4, 3, 2], scale: 2), gamma = randn([4]), beta = randn([4])
            checkGradients([x, gamma, beta], "batchnorm train \(backend)") {
                batchNorm2d(x, weight: gamma, bias: beta, runningMean: nil, runningVar: nil, training: true)
            }
        }
    }

    /// bn → + residual → relu as one op: the residual's gradient by finite differences (no relu, smooth),
    /// and with the relu, every gradient equal to that of the three separate ops.
    func testBatchNormTrainingFusedWithResidualAndReLU() {
        forEachBackend { backend in
            let x = randn([3, 4, 3, 2], scale: 2), gamma = randn([4]), beta = randn([4]), residual = randn([3, 4, 3, 2])
            checkGradients([x, gamma, beta, residual], "batchnorm train + residual \(backend)") {
                batchNorm2d(x, weight: gamma, bias: beta, runningMean: nil, runningVar: nil, training: true, residual: residual)
            }
            let upstream = generator.normalArray(count: x.count)
            func gradients(_ f: () -> Tensor) -> [[Float]] {
                for t in [x, gamma, beta, residual] { t.grad = nil; t.requiresGrad = true }
                f().backward(gradient: upstream)
                return [x, gamma, beta, residual].map { $0.grad ?? [] }
            }
            let fused = gradients {
                batchNorm2d(x, weight: gamma, bias: beta, runningMean: nil, runningVar: nil, training: true,
                            residual: residual, relu: true)
            }
            let separate = gradients {
                relu(batchNorm2d(x, weight: gamma, bias: beta, runningMean: nil, runningVar: nil, training: true) + residual)
            }
            for (index, (a, b)) in zip(fused, separate).enumerated() {
                XCTAssertEqual(a.count, b.count, "input \(index)")
                for i in a.indices { XCTAssertEqual(a[i], b[i], accuracy: 1e-5, "\(backend) input \(index) gradient [\(i)]") }
            }
            XCTAssertTrue(fused[3].contains(0) && fused[3].contains { $0 != 0 }, "the relu masks some values, not all")
        }
    }

    func testBatchNormInference() {
        forEachBackend { backend in
            let x = randn([3, 4, 3, 2]), gamma = randn([4]), beta = randn([4])
            let mean = randn([4], scale: 0.3)
            let variance = Tensor(shape: [4], data: generator.uniformArray(count: 4, low: 0.5, high: 1.5))
            checkGradients([x, gamma, beta], "batchnorm eval \(backend)") {
                batchNorm2d(x, weight: gamma, bias: beta, runningMean: mean, runningVar: variance, training: false)
            }
        }
    }

    func testReLU() {
        forEachBackend { backend in
            let x = awayFromZero([3, 5, 4])
            checkGradients([x], "relu \(backend)") { relu(x) }
        }
    }

    func testMaxPool() {
        forEachBackend { backend in
            // A shuffled grid 0.05 apart: no two window values within 2h of each other, so ±h never changes an argmax.
            var values = (0..<(2 * 3 * 9 * 8)).map { Float($0) * 0.05 }
            for i in stride(from: values.count - 1, to: 0, by: -1) { values.swapAt(i, generator.nextInt(below: i + 1)) }
            let x = Tensor(shape: [2, 3, 9, 8], data: values)
            checkGradients([x], h: 1e-2, "maxpool 3/2/1 \(backend)") {
                maxPool2d(x, kernelSize: (3, 3), stride: (2, 2), padding: (1, 1))
            }
            checkGradients([x], h: 1e-2, "maxpool 2/2/0 \(backend)") {
                maxPool2d(x, kernelSize: (2, 2), stride: (2, 2))
            }
        }
    }

    func testGlobalAvgPool() {
        forEachBackend { backend in
            let x = randn([2, 3, 4, 5])
            checkGradients([x], "global avgpool \(backend)") { globalAvgPool2d(x) }
        }
    }

    func testLinear() {
        forEachBackend { backend in
            let x = randn([4, 6]), w = randn([3, 6]), b = randn([3])
            checkGradients([x, w, b], "linear \(backend)") { linear(x, weight: w, bias: b) }
            checkGradients([x, w], "linear no bias \(backend)") { linear(x, weight: w) }
        }
    }

    func testAddConcatFlattenReshape() {
        let a = randn([2, 3, 2, 2]), b = randn([2, 3, 2, 2]), c = randn([2, 5])
        checkGradients([a, b], "add") { (a + b) + a }  // `a` reached twice: gradients accumulate
        checkGradients([a, c], "concat+flatten") { concat([flatten(a), c], axis: 1) }
        checkGradients([a, b], "concat axis 2") { concat([a, b], axis: 2) }
        checkGradients([a], "reshape") { reshape(a, [4, 6]) }
    }

    func testDropout() {
        let x = randn([6, 10])
        let masks = RandomGenerator(seed: 1)
        // The mask is drawn anew on each call: restart the stream so every evaluation uses the same one.
        checkGradients([x], "dropout") {
            masks.reseed(99)
            return dropout(x, p: 0.3, training: true, generator: masks)
        }
    }

    func testCrossEntropy() {
        let z = randn([5, 3], scale: 2)
        let labels = [0, 2, 1, 1, 2]
        checkGradients([z], "cross entropy") { crossEntropy(z, labels: labels) }
        checkGradients([z], "cross entropy, class weights") { crossEntropy(z, labels: labels, classWeights: [0.5, 2, 1.5]) }
    }

    /// A small network of every op at once (train-mode BN, shortcut, pooling, concat, loss). The output is
    /// one scalar, so float rounding allows h = 1e-3, which keeps most relu/max kinks out of reach.
    func testComposite() {
        let x = randn([2, 3, 8, 8])
        let conv = Conv2d(3, 4, kernelSize: 3, padding: 1, generator: generator)
        let bn = BatchNorm2d(4)
        bn.weight.data = generator.uniformArray(count: 4, low: 0.5, high: 1.5)
        let fc = Linear(4 + 3, 3, generator: generator)
        let meta = randn([2, 3])
        checkGradients([conv.weight, conv.bias!, bn.weight, bn.bias, fc.weight, meta], h: 1e-3, samples: 24, atol: 1e-3, "composite") {
            let y = relu(bn(conv(x)))
            let pooled = globalAvgPool2d(maxPool2d(y + conv(x), kernelSize: (2, 2), stride: (2, 2)))
            return crossEntropy(fc(concat([pooled, meta], axis: 1)), labels: [1, 2])
        }
    }
}
