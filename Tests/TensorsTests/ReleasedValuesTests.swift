// ReleasedValuesTests.swift — `Tensor.releaseValues()`: an op output's values freed after the forward and remade when
// read. What the backward computes must not change by a bit, whichever kernel table runs, and a reader (the backward,
// a test, a user) must never see the values missing.
import NN
import Tensors
import XCTest

final class ReleasedValuesTests: XCTestCase {
    override func tearDown() { Kernels.backend = .optimized }

    private func bits(_ values: [Float]) -> [UInt32] { values.map(\.bitPattern) }

    /// conv → batch norm (+ relu) → conv → batch norm + residual + relu → max pool → loss, the shapes of a ResNet
    /// block and its stem, with `release` deciding which intermediates are freed after the forward, and `synchronized`
    /// whether the batch norms take the data-parallel path (one process here).
    /// - Returns: the loss and every gradient, and the running statistics after the step.
    private func block(release: Bool, seed: UInt64, synchronized: Bool) -> (loss: Float, gradients: [[Float]], running: [[Float]]) {
        let generator = RandomGenerator(seed: seed)
        let x = Tensor.randn([3, 4, 9, 7], generator: generator, requiresGrad: true)
        let w1 = Tensor.randn([6, 4, 3, 3], generator: generator, requiresGrad: true)
        let w2 = Tensor.randn([4, 6, 1, 1], generator: generator, requiresGrad: true)
        let bn1 = BatchNorm2d(6), bn2 = BatchNorm2d(4), shortcutBN = BatchNorm2d(4)
        let wShortcut = Tensor.randn([4, 4, 1, 1], generator: generator, requiresGrad: true)
        for bn in [bn1, bn2, shortcutBN] {
            bn.weight.data = generator.uniformArray(count: bn.weight.count, low: 0.5, high: 1.5)
            bn.bias.data = generator.normalArray(count: bn.bias.count)
            if synchronized { bn.sync = BatchNormSync(reducer: SingleProcessSum()) }
        }
        let h = bn1(conv2d(x, weight: w1, padding: (1, 1)), residual: nil, relu: true)
        let identity = shortcutBN(conv2d(x, weight: wShortcut))
        let out = bn2(conv2d(h, weight: w2), residual: identity, relu: true)
        let pooled = maxPool2d(out, kernelSize: (3, 3), stride: (2, 2), padding: (1, 1))
        if release {
            XCTAssertTrue(h.releaseValues(), "a training batch norm + relu output can be remade")
            XCTAssertTrue(identity.releaseValues(), "a training batch norm output can be remade")
            XCTAssertFalse(out.releaseValues(), "an output with a residual added cannot be remade from x alone")
        }
        let weights = generator.normalArray(count: pooled.count)
        var loss = Float(0)
        for i in 0..<pooled.count { loss += pooled.data[i] * weights[i] }
        pooled.backward(gradient: weights)
        let parameters = [x, w1, w2, wShortcut, bn1.weight, bn1.bias, bn2.weight, bn2.bias, shortcutBN.weight, shortcutBN.bias]
        let running = [bn1, bn2, shortcutBN].flatMap { [$0.runningMean.data, $0.runningVar.data] }
        return (loss, parameters.map { $0.grad ?? [] }, running)
    }

    func testBackwardIsBitIdenticalWhenIntermediatesAreReleased() {
        forEachBackend { backend in
            for (seed, synchronized) in [(1, false), (2, false), (3, false), (4, true), (5, true)] as [(UInt64, Bool)] {
                let kept = block(release: false, seed: seed, synchronized: synchronized)
                let released = block(release: true, seed: seed, synchronized: synchronized)
                XCTAssertEqual(kept.loss.bitPattern, released.loss.bitPattern, "\(backend) seed \(seed): loss")
                XCTAssertEqual(kept.gradients.count, released.gradients.count)
                for (index, (a, b)) in zip(kept.gradients, released.gradients).enumerated() {
                    XCTAssertFalse(a.isEmpty, "\(backend) seed \(seed): gradient \(index) missing")
                    XCTAssertEqual(bits(a), bits(b), "\(backend) seed \(seed): gradient \(index)")
                }
                // Remaking runs the forward kernel again; the running statistics must move once per forward, not twice.
                for (a, b) in zip(kept.running, released.running) { XCTAssertEqual(bits(a), bits(b), "\(backend): running statistics") }
            }
        }
    }

    func testRemadeValuesAreTheForwardsBits() {
        forEachBackend { backend in
            for relu in [false, true] {
                let generator = RandomGenerator(seed: 7)
                let x = Tensor.randn([2, 3, 5, 4], generator: generator, requiresGrad: true)
                let gamma = Tensor.uniform([3], low: -1, high: 1, generator: generator, requiresGrad: true)
                let beta = Tensor.randn([3], generator: generator, requiresGrad: true)
                let mean = Tensor.zeros([3]), variance = Tensor(shape: [3], repeating: 1)
                let y = batchNorm2d(x, weight: gamma, bias: beta, runningMean: mean, runningVar: variance, training: true,
                                    relu: relu)
                let forward = y.data, runningAfterForward = mean.data + variance.data
                XCTAssertTrue(y.releaseValues())
                XCTAssertEqual(bits(y.data), bits(forward), "\(backend) relu \(relu): remade values")
                XCTAssertEqual(bits(mean.data + variance.data), bits(runningAfterForward), "\(backend): running statistics moved")
                // The parameters change after the forward (an optimizer step): the remake still gives the forward's values.
                XCTAssertTrue(y.releaseValues())
                gamma.data[0] += 1
                beta.data = beta.data.map { $0 - 2 }
                XCTAssertEqual(bits(y.data), bits(forward), "\(backend) relu \(relu): remade after a parameter update")
            }
        }
    }

    func testRemakeUsesTheTableThatRanTheForward() {
        for (forwardBackend, readBackend) in [(KernelBackend.optimized, KernelBackend.reference), (.reference, .optimized)] {
            Kernels.backend = forwardBackend
            let generator = RandomGenerator(seed: 11)
            let x = Tensor.randn([4, 5, 6, 6], generator: generator, requiresGrad: true)
            let bn = BatchNorm2d(5)
            bn.weight.data = generator.normalArray(count: 5)
            let y = bn(x, residual: nil, relu: true)
            let forward = y.data
            XCTAssertTrue(y.releaseValues())
            Kernels.backend = readBackend
            XCTAssertEqual(bits(y.data), bits(forward), "forward \(forwardBackend), read under \(readBackend)")
        }
    }

    func testSynchronizedBatchNormRemakesWithoutACollective() {
        forEachBackend { backend in
            for relu in [false, true] {
                let generator = RandomGenerator(seed: 13)
                let x = Tensor.randn([3, 4, 5, 5], generator: generator, requiresGrad: true)
                let bn = BatchNorm2d(4)
                bn.weight.data = generator.normalArray(count: 4)
                let reducer = SingleProcessSum()
                bn.sync = BatchNormSync(reducer: reducer)
                let y = bn(x, residual: nil, relu: relu)
                let forward = y.data
                XCTAssertTrue(y.releaseValues())
                XCTAssertEqual(bits(y.data), bits(forward), "\(backend) relu \(relu)")
                XCTAssertEqual(reducer.calls, 1, "\(backend): a remake must not call the other processes")
                XCTAssertTrue(y.releaseValues())
                let z = conv2d(y, weight: Tensor.randn([2, 4, 1, 1], generator: generator, requiresGrad: true))
                z.backward(gradient: [Float](repeating: 1, count: z.count))
                XCTAssertEqual(reducer.calls, 2, "\(backend): one sum in the forward, one in the backward")
                XCTAssertNotNil(x.grad)
            }
        }
    }

    func testValuesStayWhenNothingCanRemakeThem() {
        let generator = RandomGenerator(seed: 3)
        let leaf = Tensor.randn([2, 3], generator: generator, requiresGrad: true)
        XCTAssertFalse(leaf.releaseValues(), "a parameter or input has nothing to remake it")
        XCTAssertEqual(leaf.data.count, 6)
        let x = Tensor.randn([2, 3, 4, 4], generator: generator)
        let bn = BatchNorm2d(3)
        let offTape = withNoGrad { bn(x) }
        XCTAssertFalse(offTape.releaseValues(), "off the tape there is no backward to remake for")
        XCTAssertEqual(offTape.data.count, x.count)
        let r = relu(Tensor.randn([5], generator: generator, requiresGrad: true))
        XCTAssertFalse(r.releaseValues(), "relu's output is its own backward's mask and is kept")
        XCTAssertEqual(r.data.count, 5)
    }

    func testReleasedValuesCanBeReadAndWrittenAfterBackward() {
        let generator = RandomGenerator(seed: 5)
        let x = Tensor.randn([2, 3, 4, 4], generator: generator, requiresGrad: true)
        let bn = BatchNorm2d(3)
        let y = bn(x, residual: nil, relu: true)
        let forward = y.data
        let z = conv2d(y, weight: Tensor.randn([2, 3, 1, 1], generator: generator, requiresGrad: true))
        XCTAssertTrue(y.releaseValues())
        z.backward(gradient: [Float](repeating: 1, count: z.count))
        XCTAssertNotNil(x.grad)
        // The convolution's backward remade them; with the graph gone they stay, and a caller that kept y reads them.
        XCTAssertFalse(y.releaseValues(), "the remake went with the graph once the values were back")
        XCTAssertEqual(bits(y.data), bits(forward))

        // Released, never read by a backward: still readable after it, and still releasable.
        let y2 = bn(x, residual: nil, relu: false)
        let forward2 = y2.data
        let sum = conv2d(x, weight: Tensor.randn([3, 3, 1, 1], generator: generator, requiresGrad: true)) + y2
        XCTAssertTrue(y2.releaseValues())
        sum.backward(gradient: [Float](repeating: 1, count: sum.count))
        XCTAssertEqual(bits(y2.data), bits(forward2))
        XCTAssertTrue(y2.releaseValues(), "the values were out when backward passed, so their remake stays")
        // Written values are not the op's any more: releasing them would lose the write, so it is refused.
        y2.data[0] = 42
        XCTAssertEqual(y2.data[0], 42)
        XCTAssertEqual(y2.data.count, y2.count)
        XCTAssertEqual(bits(Array(y2.data.dropFirst())), bits(Array(forward2.dropFirst())))
        XCTAssertFalse(y2.releaseValues())
        XCTAssertEqual(y2.data[0], 42)
    }

    func testKeptValuesDropTheirRemakeInBackward() {
        // A batch norm output never released keeps nothing alive for a remake once backward has passed it.
        let generator = RandomGenerator(seed: 9)
        weak var input: Tensor?
        var y: Tensor?
        do {
            let x = conv2d(Tensor.randn([2, 2, 4, 4], generator: generator),
                           weight: Tensor.randn([3, 2, 1, 1], generator: generator, requiresGrad: true))
            input = x
            y = BatchNorm2d(3)(x)
        }
        XCTAssertNotNil(input, "the graph holds the batch norm's input before backward")
        y!.backward(gradient: [Float](repeating: 1, count: y!.count))
        XCTAssertNil(input, "after backward neither the graph nor a remake holds it")
        XCTAssertFalse(y!.releaseValues(), "its remake went with the graph")
        XCTAssertEqual(y!.data.count, y!.count)
    }
}
