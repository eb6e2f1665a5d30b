import Foundation
// OptimizerTests.swift — Adam/AdamW/SGD parameter trajectories against PyTorch's over 5 steps with fixed
// gradients (Fixtures/optimizers.rnfx): relative error ≤ 1e-5 per step. Plus state save/restore.
import NN
import Tensors
import WeightFiles
import XCTest

final class OptimizerTests: XCTestCase {
    var fixture: Fixture!

    override func setUpWithError() throws { fixture = try Fixture(named: "optimizers") }

    private func makeOptimizer(_ name: String, _ parameters: [Tensor]) -> Optimizer {
        switch name {
        case "adam": return Adam(parameters: parameters, learningRate: 1e-2)
        case "adam_l2": return Adam(parameters: parameters, learningRate: 1e-2, betas: (0.8, 0.99), eps: 1e-6, weightDecay: 0.1)
        case "adamw": return Adam.adamW(parameters: parameters, learningRate: 1e-2, weightDecay: 0.1)
        case "sgd_nesterov": return SGD(parameters: parameters, learningRate: 0.05, momentum: 0.9, weightDecay: 0.01, nesterov: true)
        case "sgd_dampened": return SGD(parameters: parameters, learningRate: 0.05, momentum: 0.9, dampening: 0.1)
        default: fatalError(name)
        }
    }

    private static let settings = ["adam", "adam_l2", "adamw", "sgd_nesterov", "sgd_dampened"]

    /// Under both kernel tables: Adam's update is a kernel, so the reference twin must follow PyTorch too.
    func testTrajectoriesMatchTorch() {
        defer { Kernels.backend = .optimized }
        for backend in [KernelBackend.optimized, .reference] {
            Kernels.backend = backend
            trajectoriesMatchTorch(backend: "\(backend)")
        }
    }

    private func trajectoriesMatchTorch(backend: String) {
        for name in Self.settings {
            let p0 = fixture.tensor("p0", requiresGrad: true), p1 = fixture.tensor("p1", requiresGrad: true)
            let optimizer = makeOptimizer(name, [p0, p1])
            var worst = 0.0
            for t in 0..<5 {
                optimizer.zeroGrad()
                p0.grad = fixture["grad/\(t)/p0"].floats
                p1.grad = fixture["grad/\(t)/p1"].floats
                optimizer.step()
                worst = max(worst, assertClose(p0.data, fixture["\(name)/\(t)/p0"].floats, tolerance: 1e-5, "\(backend) \(name) step \(t) p0"))
                worst = max(worst, assertClose(p1.data, fixture["\(name)/\(t)/p1"].floats, tolerance: 1e-5, "\(backend) \(name) step \(t) p1"))
            }
            print("optimizer \(name), \(backend) kernels: worst trajectory rel err over 5 steps \(worst)")
        }
    }

    /// Saving after 2 steps and restoring into a fresh optimizer continues the same trajectory.
    func testStateRoundTrip() throws {
        for name in Self.settings {
            let p0 = fixture.tensor("p0", requiresGrad: true), p1 = fixture.tensor("p1", requiresGrad: true)
            var optimizer = makeOptimizer(name, [p0, p1])
            for t in 0..<5 {
                if t == 2 {
                    let saved = optimizer.stateDict()
                    optimizer = makeOptimizer(name, [p0, p1])
                    try optimizer.loadStateDict(saved)
                }
                p0.grad = fixture["grad/\(t)/p0"].floats
                p1.grad = fixture["grad/\(t)/p1"].floats
                optimizer.step()
            }
            assertClose(p0.data, fixture["\(name)/4/p0"].floats, tolerance: 1e-5, "\(name) after restore p0")
            assertClose(p1.data, fixture["\(name)/4/p1"].floats, tolerance: 1e-5, "\(name) after restore p1")
        }
        XCTAssertThrowsError(try Adam(parameters: [Tensor(shape: [3], repeating: 0, requiresGrad: true)]).loadStateDict(StateDict()))
    }

    /// A state file is untrusted: a step count that is NaN, negative, fractional or too large for Int, and moments
    /// that are non-finite (or a negative second moment), are refused naming the entry, and the optimizer keeps its
    /// state.
    func testHostileStateIsRefused() throws {
        let p = Tensor(shape: [3], data: [1, 2, 3], requiresGrad: true)
        let adam = Adam(parameters: [p])
        p.grad = [1, 1, 1]
        adam.step()
        let good = adam.stateDict()
        func with(_ key: String, _ floats: [Float]) -> StateDict {
            var state = good
            state[key] = WeightTensor(shape: good[key]!.shape, floats: floats)
            return state
        }
        let cases: [(String, [Float], String)] = [
            ("state.0.step", [.nan], "state.0.step"), ("state.0.step", [1e30], "state.0.step"),
            ("state.0.step", [-1], "state.0.step"), ("state.0.step", [2.5], "state.0.step"),
            ("state.0.exp_avg", [0, .infinity, 0], "exp_avg[1]"), ("state.0.exp_avg", [.nan, 0, 0], "exp_avg[0]"),
            ("state.0.exp_avg_sq", [0, 0, -1e-3], "exp_avg_sq[2]"), ("state.0.exp_avg_sq", [.nan, 0, 0], "exp_avg_sq[0]"),
        ]
        for (key, floats, named) in cases {
            XCTAssertThrowsError(try adam.loadStateDict(with(key, floats)), "\(key) = \(floats)") { error in
                XCTAssertTrue("\(error)".contains(named), "\(error)")
            }
        }
        XCTAssertEqual(adam.stateDict()["state.0.step"]!.floats, [1], "a refused state changes nothing")
        XCTAssertEqual(adam.stateDict()["state.0.exp_avg"]!.floats, good["state.0.exp_avg"]!.floats)
        try adam.loadStateDict(with("state.0.step", [16_777_216]))
        XCTAssertEqual(adam.steps, [16_777_216])
    }

    /// Parameters without a gradient and frozen parameters are not touched.
    func testSkipsFrozenAndGradlessParameters() {
        let trained = Tensor(shape: [2], data: [1, 2], requiresGrad: true)
        let idle = Tensor(shape: [2], data: [3, 4], requiresGrad: true)
        let frozen = Tensor(shape: [2], data: [5, 6])
        let adam = Adam(parameters: [trained, idle, frozen])
        XCTAssertEqual(adam.parameters.count, 2)
        trained.grad = [1, -1]
        adam.step()
        XCTAssertEqual(trained.data[0], 1 - 1e-3, accuracy: 1e-7)  // first Adam step is lr·sign(g)
        XCTAssertEqual(trained.data[1], 2 + 1e-3, accuracy: 1e-7)
        XCTAssertEqual(idle.data, [3, 4])
        XCTAssertEqual(frozen.data, [5, 6])
    }

    /// A parameter large enough to be updated on several threads: every thread flushes subnormals (the mode is per
    /// thread), and the result is bit for bit the one-thread result, for Adam and SGD with momentum.
    func testLargeParametersUpdateOnThreadsAsOnOne() {
        let count = 300_001
        func run(threads: Int) -> (adam: [Float], sgd: [Float], moments: [Float]) {
            Kernels.setNumThreads(threads)
            defer { Kernels.setNumThreads(0) }
            let first = (0 ..< count).map { Float($0 % 7) * 1e-30 + Float($0 % 3) }
            let a = Tensor(shape: [count], data: [Float](repeating: 1, count: count), requiresGrad: true)
            let b = Tensor(shape: [count], data: [Float](repeating: 1, count: count), requiresGrad: true)
            let adam = Adam(parameters: [a], learningRate: 1e-3)
            let sgd = SGD(parameters: [b], learningRate: 0.1, momentum: 0.9, weightDecay: 1e-4)
            for step in 0 ..< 400 {
                let grad = step == 0 ? first : [Float](repeating: 0, count: count)
                a.grad = grad; b.grad = grad
                adam.step(); sgd.step()
            }
            return (a.data, b.data, adam.stateDict()["state.0.exp_avg"]!.floats)
        }
        let one = run(threads: 1), two = run(threads: 2)
        XCTAssertEqual(one.adam, two.adam)
        XCTAssertEqual(one.sgd, two.sgd)
        XCTAssertEqual(one.moments, two.moments)
        XCTAssertFalse(two.moments.contains { $0 != 0 && !$0.isNormal }, "a thread left subnormals in the moments")
    }

    /// Moments that decay into the subnormal range are flushed to zero inside the step (they made a step ~15x slower),
    /// and the caller's floating-point mode is left as it was.
    func testStepFlushesSubnormalMomentsAndRestoresTheFloatingPointMode() {
        let parameter = Tensor(shape: [2], data: [1, 1], requiresGrad: true)
        let adam = Adam(parameters: [parameter], learningRate: 1e-3)
        parameter.grad = [1e-30, 1]
        adam.step()
        // m = 0.1·g = 1e-31, then 400 steps of zero gradient would take it to 1e-31·0.9^400 ≈ 5e-50, through the
        // subnormal range. Flushed, it stops where its decrement (0.1·m) would be subnormal: at about 1e-37, normal.
        for _ in 0 ..< 400 {
            parameter.grad = [0, 0]
            adam.step()
        }
        let state = adam.stateDict()
        for key in ["state.0.exp_avg", "state.0.exp_avg_sq"] {
            let values = state[key]!.floats
            XCTAssertFalse(values.contains { $0 != 0 && !$0.isNormal }, "\(key) holds a subnormal: \(values)")
        }
        XCTAssertLessThan(abs(state["state.0.exp_avg"]!.floats[0]), 1e-36)
        var environment = fenv_t()
        fegetenv(&environment)
        XCTAssertEqual(environment.__mxcsr & 0x8040, 0, "flush-to-zero must not leak out of step()")
        XCTAssertEqual(Float.leastNonzeroMagnitude * 2 / 2, Float.leastNonzeroMagnitude, "subnormals work again outside step()")
    }

    /// Plain SGD with weight decay, by hand: p ← p − lr·(g + λ·p).
    func testPlainSGDByHand() {
        let p = Tensor(shape: [3], data: [1, -2, 0.5], requiresGrad: true)
        let sgd = SGD(parameters: [p], learningRate: 0.1, weightDecay: 0.5)
        p.grad = [0.2, 0.4, -1]
        sgd.step()
        XCTAssertEqual(p.data[0], 1 - 0.1 * (0.2 + 0.5), accuracy: 1e-7)
        XCTAssertEqual(p.data[1], -2 - 0.1 * (0.4 - 1.0), accuracy: 1e-7)
        XCTAssertEqual(p.data[2], 0.5 - 0.1 * (-1 + 0.25), accuracy: 1e-7)
        XCTAssertEqual(sgd.stateDict().count, 0, "no momentum, no state")
    }
}
