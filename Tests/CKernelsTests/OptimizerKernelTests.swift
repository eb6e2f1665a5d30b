// OptimizerKernelTests.swift — ck_adam_update_f32 against its reference twin: random states under Adam, Adam with L2
// decay and AdamW, every tail length, NaN / infinite / subnormal values, thread counts, and the floating-point mode
// it must leave behind on every thread.
import CKernels
import CKernelsReference
import SeededRandom
import XCTest

final class OptimizerKernelTests: XCTestCase {
    override func setUp() { ck_set_num_threads(2) }

    private struct State: Equatable {
        var p: [Float], m: [Float], v: [Float]
    }

    /// Step t's scalars, with the bias corrections worked out as the Swift optimizer does (in double).
    private func scalars(t: Int, lr: Float = 1e-3, betas: (Float, Float) = (0.9, 0.999), eps: Float = 1e-8,
                         weightDecay: Float = 0, decoupled: Bool = false) -> ck_adam_step {
        ck_adam_step(learning_rate: lr, beta1: betas.0, beta2: betas.1, eps: eps, weight_decay: weightDecay,
                     decoupled: decoupled ? 1 : 0,
                     step_size: Float(Double(lr) / (1 - pow(Double(betas.0), Double(t)))),
                     inverse_bias_correction2_sqrt: Float(1 / (1 - pow(Double(betas.1), Double(t))).squareRoot()))
    }

    private func randomState(_ count: Int, _ rng: inout SplitMix64) -> State {
        State(p: randomArray(count, &rng), m: randomArray(count, &rng, range: -0.1...0.1),
              v: randomArray(count, &rng, range: 0...0.01))
    }

    /// One update of a copy of `state`. Each array is handed over with 16 sentinels after its end, values an
    /// update would change (a gradient of 1 moves p, m and v), which must come back as they were: a tail mask one
    /// lane too wide would otherwise write past a Swift array unseen.
    private func update(_ state: State, grad: [Float], _ step: ck_adam_step, reference: Bool,
                        file: StaticString = #filePath, line: UInt = #line) -> State {
        let count = grad.count
        func guarded(_ values: [Float], _ sentinel: Float) -> [Float] { values + [Float](repeating: sentinel, count: 16) }
        var p = guarded(state.p, 3), m = guarded(state.m, 0.5), v = guarded(state.v, 0.25), step = step
        let g = guarded(grad, 1)
        let status = reference
            ? ck_adam_update_f32_ref(&p, &m, &v, g, count, &step)
            : ck_adam_update_f32(&p, &m, &v, g, count, &step)
        XCTAssertOK(status, reference ? "reference" : "optimized", file: file, line: line)
        for (name, array, sentinel) in [("p", p, Float(3)), ("m", m, 0.5), ("v", v, 0.25)] {
            XCTAssertTrue(array[count...].allSatisfy { $0 == sentinel }, "count \(count): \(name) written past its end",
                          file: file, line: line)
        }
        return State(p: Array(p[..<count]), m: Array(m[..<count]), v: Array(v[..<count]))
    }

    /// Optimized and reference agree element by element within a few units in the last place of the values the
    /// element's formula combines (a fused multiply-add rounds once where the twin rounds twice). m = m + (g − m)·c
    /// can cancel, so its error is relative to |m| + |g|, not to the new m; the weight's step s·m/d carries that
    /// error times (|m| + |g|)/|m|. Under Adam's L2 term, g = grad + λ·p can cancel too, and v = β₂v + (1 − β₂)g²
    /// carries g's error twice. NaNs must sit at the same places.
    private func assertAgree(_ got: State, _ want: State, start: State, grad: [Float], _ step: ck_adam_step,
                             _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        let ulp: Float = 1.0 / Float(1 << 21)  // 4 units in the last place of a float's 24-bit significand
        func check(_ a: [Float], _ b: [Float], scale: (Int) -> Float, _ name: String) {
            for i in a.indices {
                if a[i].isNaN || b[i].isNaN {
                    XCTAssertTrue(a[i].isNaN && b[i].isNaN, "\(what) \(name)[\(i)]: \(a[i]) vs \(b[i])", file: file, line: line)
                    continue
                }
                if a[i] == b[i] { continue }  // equal infinities too
                XCTAssertLessThanOrEqual(abs(a[i] - b[i]), ulp * scale(i),
                                         "\(what) \(name)[\(i)]: \(a[i]) vs \(b[i])", file: file, line: line)
                if abs(a[i] - b[i]) > ulp * scale(i) { return }  // one report per array
            }
        }
        // |g|'s inputs: the gradient, and λ·p under Adam's L2 term.
        func gInputs(_ i: Int) -> Float {
            abs(grad[i]) + (step.weight_decay != 0 && step.decoupled == 0 ? step.weight_decay * abs(start.p[i]) : 0)
        }
        func mInputs(_ i: Int) -> Float { abs(start.m[i]) + gInputs(i) }
        check(got.m, want.m, scale: { abs(want.m[$0]) + mInputs($0) }, "m")
        check(got.v, want.v, scale: { i in
            abs(want.v[i]) + abs(start.v[i]) + 2 * (1 - step.beta2) * gInputs(i) * gInputs(i)
        }, "v")
        check(got.p, want.p, scale: { i in
            let step = abs(want.p[i] - start.p[i]), conditioning = mInputs(i) / max(abs(want.m[i]), .leastNormalMagnitude)
            return abs(want.p[i]) + abs(start.p[i]) + step * (4 + conditioning)
        }, "p")
    }

    /// Random states and gradients, every count from 0 to 40 (all tails of the 8-lane loop) and large ones split
    /// across threads, under plain Adam, Adam with an L2 term, AdamW and a large ε, early and late steps. The kernel
    /// has one (AVX2) path for both tiers; the loop over them keeps it honest if a tier-specific path appears.
    func testMatchesReference() {
        var rng = SplitMix64(seed: 31)
        let counts = Array(0 ... 40) + [65_535, 65_536, 100_003]
        let settings: [(String, (Int) -> ck_adam_step)] = [
            ("adam", { self.scalars(t: $0) }),
            ("adam-l2", { self.scalars(t: $0, lr: 1e-2, betas: (0.8, 0.99), eps: 1e-6, weightDecay: 0.1) }),
            ("adamw", { self.scalars(t: $0, lr: 1e-2, weightDecay: 0.1, decoupled: true) }),
            // ε comparable to √v (v up to 1e-2 here): where ε sits in the denominator shows.
            ("large-eps", { self.scalars(t: $0, eps: 3e-2) }),
        ]
        forEachInstructionSet { avx512 in
            for count in counts {
                for (name, step) in settings {
                    for t in [1, 2, 1000] {
                        let start = randomState(count, &rng), grad = randomArray(count, &rng)
                        let got = update(start, grad: grad, step(t), reference: false)
                        let want = update(start, grad: grad, step(t), reference: true)
                        assertAgree(got, want, start: start, grad: grad, step(t),
                                    "\(name) count \(count) t \(t) avx512 \(avx512)")
                    }
                }
            }
        }
    }

    /// The first step moves every weight by lr·sign(g) whatever the gradient's size (m̂ = g, v̂ = g²): a check of
    /// the formula that does not lean on the twin.
    func testFirstStepMovesByTheLearningRate() {
        var rng = SplitMix64(seed: 32)
        let grad = randomArray(1_000, &rng, range: -100...100).map { $0 == 0 ? 1 : $0 }
        let start = State(p: [Float](repeating: 0.5, count: 1_000), m: [Float](repeating: 0, count: 1_000),
                          v: [Float](repeating: 0, count: 1_000))
        let got = update(start, grad: grad, scalars(t: 1, lr: 1e-2), reference: false)
        for i in grad.indices {
            XCTAssertEqual(got.p[i], 0.5 - 1e-2 * (grad[i] > 0 ? 1 : -1), accuracy: 1e-6, "p[\(i)], g \(grad[i])")
        }
    }

    /// A NaN or infinite gradient, weight or moment spreads to its own element only, as in the twin; subnormal
    /// inputs count as zero and no subnormal comes out.
    func testNonFiniteAndSubnormalValues() {
        var rng = SplitMix64(seed: 33)
        let count = 100_003
        var start = randomState(count, &rng), grad = randomArray(count, &rng)
        let tiny = Float.leastNormalMagnitude / 4
        for i in stride(from: 0, to: count, by: 97) { grad[i] = .nan }
        for i in stride(from: 5, to: count, by: 89) { grad[i] = i % 2 == 0 ? .infinity : -.infinity }
        for i in stride(from: 7, to: count, by: 83) { start.p[i] = .nan }
        for i in stride(from: 9, to: count, by: 79) { start.m[i] = .infinity }
        for i in stride(from: 11, to: count, by: 73) { grad[i] = tiny; start.m[i] = -tiny; start.v[i] = tiny }
        for (weightDecay, decoupled) in [(Float(0), false), (0.1, false), (0.1, true)] {
            let step = scalars(t: 3, weightDecay: weightDecay, decoupled: decoupled)
            let got = update(start, grad: grad, step, reference: false)
            let want = update(start, grad: grad, step, reference: true)
            assertAgree(got, want, start: start, grad: grad, step,
                        "decay \(weightDecay) decoupled \(decoupled)")
            XCTAssertTrue(got.p[97].isNaN && got.m[97].isNaN && got.v[97].isNaN, "a NaN gradient reaches p, m and v")
            XCTAssertTrue(got.p[1].isFinite, "its neighbours stay finite")
            for values in [got.m, got.v] {
                XCTAssertFalse(values.contains { $0 != 0 && $0.isFinite && !$0.isNormal }, "a subnormal came out")
            }
            // Element 11: every input subnormal, so (flushed) zero moments and the weight left where it was, or only
            // decayed under AdamW. (Adam's L2 term makes its gradient λ·p: not a zero input.)
            if weightDecay == 0 || decoupled {
                XCTAssertEqual(got.m[11], 0)
                XCTAssertEqual(got.v[11], 0)
                XCTAssertEqual(got.p[11], decoupled ? start.p[11] * (1 - 1e-3 * 0.1) : start.p[11])
            }
        }
    }

    /// The thread count changes no bit: 1, 2 and 3 threads over a size that splits unevenly, with a tail.
    func testThreadCountChangesNothing() {
        var rng = SplitMix64(seed: 34)
        let start = randomState(300_001, &rng), grad = randomArray(300_001, &rng)
        let step = scalars(t: 7, weightDecay: 0.01, decoupled: true)
        var results = [State]()
        for threads in [1, 2, 3] {
            ck_set_num_threads(Int32(threads))
            results.append(update(start, grad: grad, step, reference: false))
        }
        ck_set_num_threads(2)
        XCTAssertEqual(results[0], results[1])
        XCTAssertEqual(results[0], results[2])
    }

    /// Flushing subnormals is the kernel's business only: afterwards, on the calling thread and on the OpenMP
    /// threads the next kernel runs on, subnormals add up as IEEE says. (libomp also puts the calling thread's mode
    /// back after a parallel region and hands it to the workers at the next, so this checks the contract, not the
    /// kernel's own restore alone: a mutation that dropped that restore passed here.)
    func testLeavesTheFloatingPointModeOnEveryThread() {
        var rng = SplitMix64(seed: 35)
        var state = randomState(200_000, &rng)
        let grad = randomArray(200_000, &rng)
        var step = scalars(t: 1)
        XCTAssertOK(ck_adam_update_f32(&state.p, &state.m, &state.v, grad, grad.count, &step))
        var environment = fenv_t()
        fegetenv(&environment)
        XCTAssertEqual(environment.__mxcsr & 0x8040, 0, "flush-to-zero left on the calling thread")
        let tiny = Float.leastNonzeroMagnitude
        var sums = [Float](repeating: tiny, count: 200_000)
        XCTAssertOK(ck_accumulate_f32(&sums, [Float](repeating: tiny, count: 200_000), 200_000))  // parallel
        XCTAssertEqual(sums.first, 2 * tiny)
        XCTAssertEqual(sums.last, 2 * tiny, "flush-to-zero left on a worker thread")
    }

    func testRejectsMissingArrays() {
        var step = scalars(t: 1)
        var p: [Float] = [1], m: [Float] = [0], v: [Float] = [0]
        let g: [Float] = [1]
        XCTAssertEqual(ck_adam_update_f32(&p, &m, &v, g, 1, nil), CK_ERR_NULL_POINTER.rawValue)
        XCTAssertEqual(ck_adam_update_f32(nil, &m, &v, g, 1, &step), CK_ERR_NULL_POINTER.rawValue)
        XCTAssertEqual(ck_adam_update_f32(&p, &m, &v, nil, 1, &step), CK_ERR_NULL_POINTER.rawValue)
        XCTAssertEqual(ck_adam_update_f32_ref(&p, nil, &v, g, 1, &step), CK_ERR_NULL_POINTER.rawValue)
        XCTAssertEqual(ck_adam_update_f32(nil, nil, nil, nil, 0, &step), CK_OK.rawValue, "nothing to update")
        XCTAssertEqual(p, [1], "a refused call writes nothing")
    }
}
