// SyncBatchNormTests.swift — batchNorm2d(…, sync:), the batch norm of data-parallel training that normalises with
// the statistics of the global batch. With one process it must be the plain training batch norm; two processes,
// simulated as two threads that meet in a barrier to sum their arrays, must together be one batch norm over the
// whole batch (outputs, running statistics, input gradients, and parameter gradients once summed over the two);
// a process that does not contribute must count as nothing; central differences check the gradients directly.
import Foundation
import NN
import Tensors
import XCTest

// MARK: Reducers

/// One process: its sums already are the totals. Counts the calls (one per forward, one per backward).
final class SingleProcessSum: CrossProcessSum {
    private(set) var calls = 0
    func sum(_ values: inout [Double]) { calls += 1 }
}

/// Where two simulated ranks (threads) meet, as in an all-reduce: each hands its array in, waits for the other's,
/// and leaves with the element-wise total, the same on both. A rank that waits longer than `timeout` means the two
/// made different collective calls (a deadlock under MPI): it stops with that message instead of hanging the run.
final class TwoRankExchange: @unchecked Sendable {  // every stored property is guarded by `condition`
    private let condition = NSCondition()
    private var arrived: [[Double]?] = [nil, nil]
    private var total: [Double] = []
    private var completed = 0
    private let timeout: TimeInterval = 60

    /// Collective calls both ranks have made.
    var rounds: Int {
        condition.lock()
        defer { condition.unlock() }
        return completed
    }

    func sum(_ values: inout [Double], rank: Int) {
        condition.lock()
        defer { condition.unlock() }
        precondition(arrived[rank] == nil, "rank \(rank) entered a collective twice")
        arrived[rank] = values
        let round = completed
        if let first = arrived[0], let second = arrived[1] {
            precondition(first.count == second.count, "the ranks summed arrays of \(first.count) and \(second.count) values")
            total = zip(first, second).map { $0 + $1 }
            arrived = [nil, nil]
            completed += 1
            condition.broadcast()
        } else {
            // `total` cannot change before this rank has read it: the next round needs this rank's array too.
            let deadline = Date(timeIntervalSinceNow: timeout)
            while completed == round {
                precondition(condition.wait(until: deadline) || completed != round,
                             "rank \(rank) waited \(timeout) s in collective \(round): the ranks made different calls")
            }
        }
        values = total
    }
}

/// One rank's end of a `TwoRankExchange`.
final class RankSum: CrossProcessSum {
    let exchange: TwoRankExchange
    let rank: Int
    init(_ exchange: TwoRankExchange, rank: Int) {
        self.exchange = exchange
        self.rank = rank
    }
    func sum(_ values: inout [Double]) { exchange.sum(&values, rank: rank) }
}

/// Hands a value to another thread. Safe here because each rank's thread touches only its own objects, and the
/// caller reads the results only after both threads have finished.
final class ThreadHandOff<Value>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}

/// Runs `body(0)` and `body(1)` on two threads at the same time (each rank blocks in the other's collectives, so
/// they cannot run one after the other) and returns their results once both have finished.
func onTwoRanks<R>(_ body: @escaping (Int) -> R) -> [R] {
    let work = ThreadHandOff(body)
    let results = [ThreadHandOff<R?>(nil), ThreadHandOff<R?>(nil)]
    let finished = DispatchGroup()
    for rank in 0..<2 {
        let result = results[rank]
        finished.enter()
        let thread = Thread {
            result.value = work.value(rank)
            finished.leave()
        }
        thread.stackSize = 8 << 20
        thread.start()
    }
    finished.wait()
    return results.map { $0.value! }
}

// MARK: One batch norm call

/// Everything one training batch norm call reads, and the gradient of the loss with respect to its output.
struct BatchNormProblem {
    var shape: [Int]
    var x: [Float]
    var gamma: [Float]
    var beta: [Float]
    var runningMean: [Float]
    var runningVar: [Float]
    var residual: [Float]?
    var relu: Bool
    /// ∂loss/∂y, the backward's seed.
    var upstream: [Float]

    var batch: Int { shape[0] }
    var channels: Int { shape[1] }

    /// Random values with a different mean (−3…3) and spread (0.5…2.5) per channel, so the statistics matter.
    init(shape: [Int], residual: Bool, relu: Bool, seed: UInt64) {
        let generator = RandomGenerator(seed: seed)
        let c = shape[1], count = shape.reduce(1, *), spatial = shape.dropFirst(2).reduce(1, *)
        let offsets = generator.uniformArray(count: c, low: -3, high: 3)
        let scales = generator.uniformArray(count: c, low: 0.5, high: 2.5)
        var x = generator.normalArray(count: count)
        for i in x.indices { x[i] = x[i] * scales[(i / spatial) % c] + offsets[(i / spatial) % c] }
        self.shape = shape
        self.x = x
        gamma = generator.uniformArray(count: c, low: 0.5, high: 1.5)
        beta = generator.normalArray(count: c, std: 0.5)
        runningMean = generator.normalArray(count: c, std: 0.1)
        runningVar = generator.uniformArray(count: c, low: 0.5, high: 1.5)
        self.residual = residual ? generator.normalArray(count: count) : nil
        self.relu = relu
        upstream = generator.normalArray(count: count)
    }

    /// Samples `range` of the batch (same parameters and buffers): one rank's slice.
    func samples(_ range: Range<Int>) -> BatchNormProblem {
        let perSample = x.count / batch
        let values = range.lowerBound * perSample..<range.upperBound * perSample
        var slice = self
        slice.shape[0] = range.count
        slice.x = Array(x[values])
        slice.residual = residual.map { Array($0[values]) }
        slice.upstream = Array(upstream[values])
        return slice
    }
}

/// What one call produced: the output, the updated running statistics and every gradient.
struct BatchNormOutcome {
    var y: [Float]
    var runningMean: [Float]
    var runningVar: [Float]
    var dx: [Float]
    var dGamma: [Float]
    var dBeta: [Float]
    var dResidual: [Float]
}

/// One training forward and backward of `problem`, on fresh tensors (so on a rank's own copies of everything).
func runBatchNorm(_ problem: BatchNormProblem, sync: BatchNormSync?) -> BatchNormOutcome {
    let x = Tensor(shape: problem.shape, data: problem.x, requiresGrad: true)
    let gamma = Tensor(shape: [problem.channels], data: problem.gamma, requiresGrad: true)
    let beta = Tensor(shape: [problem.channels], data: problem.beta, requiresGrad: true)
    let runningMean = Tensor(shape: [problem.channels], data: problem.runningMean)
    let runningVar = Tensor(shape: [problem.channels], data: problem.runningVar)
    let residual = problem.residual.map { Tensor(shape: problem.shape, data: $0, requiresGrad: true) }
    let y = batchNorm2d(x, weight: gamma, bias: beta, runningMean: runningMean, runningVar: runningVar, training: true,
                        residual: residual, relu: problem.relu, sync: sync)
    y.backward(gradient: problem.upstream)
    return BatchNormOutcome(y: y.data, runningMean: runningMean.data, runningVar: runningVar.data, dx: x.grad ?? [],
                            dGamma: gamma.grad ?? [], dBeta: beta.grad ?? [], dResidual: residual?.grad ?? [])
}

/// The two ranks' outcomes for `problem` split at sample `split`, each rank with its own copies; `contributing`
/// says which ranks' samples are part of the global batch.
func runOnTwoRanks(_ parts: [BatchNormProblem], contributing: [Bool] = [true, true]) -> (outcomes: [BatchNormOutcome], collectives: Int) {
    let exchange = TwoRankExchange()
    let handOff = ThreadHandOff(parts)
    let outcomes = onTwoRanks { rank in
        let sync = BatchNormSync(reducer: RankSum(exchange, rank: rank))
        sync.contributes = contributing[rank]
        return runBatchNorm(handOff.value[rank], sync: sync)
    }
    return (outcomes, exchange.rounds)
}

/// Per-channel mean and biased variance over (N, H, W), in doubles: the statistics a batch norm normalises with.
func channelStatistics(_ problem: BatchNormProblem) -> (mean: [Float], variance: [Float]) {
    let c = problem.channels, spatial = problem.x.count / (problem.batch * c), count = Double(problem.batch * spatial)
    var sums = [Double](repeating: 0, count: c), squares = [Double](repeating: 0, count: c)
    for (i, value) in problem.x.enumerated() { sums[(i / spatial) % c] += Double(value) }
    let means = sums.map { $0 / count }
    for (i, value) in problem.x.enumerated() {
        let d = Double(value) - means[(i / spatial) % c]
        squares[(i / spatial) % c] += d * d
    }
    return (means.map { Float($0) }, squares.map { Float($0 / count) })
}

func elementwiseSum(_ a: [Float], _ b: [Float]) -> [Float] { zip(a, b).map { $0 + $1 } }

/// The largest error seen per quantity, printed at the end of a test for the record.
struct WorstErrors {
    private(set) var values: [(String, Double)] = []
    mutating func note(_ what: String, _ error: Double) {
        if let index = values.firstIndex(where: { $0.0 == what }) { values[index].1 = max(values[index].1, error) }
        else { values.append((what, error)) }
    }
    func report(_ test: String) {
        print("\(test): max relative error " + values.map { "\($0.0) \(String(format: "%.2e", $0.1))" }.joined(separator: ", "))
    }
}

final class SyncBatchNormTests: XCTestCase {
    /// Float32 results of the same maths summed in a different order (double sums here, float runs or a split
    /// batch there, a different formula for dx): a few float roundings, ~1e-7 relative. 1e-5 is the op-parity
    /// forward bound of docs/ARCHITECTURE.md §8, and far below what a wrong statistic does: local instead of global
    /// means in the forward or the backward gave errors of 3e-2 to 3 here when broken on purpose.
    let tolerance = 1e-5

    /// Compares `actual` to `expected` (same quantity names in every test) and notes the error.
    func compare(_ actual: BatchNormOutcome, _ expected: BatchNormOutcome, _ context: String, into worst: inout WorstErrors,
                 file: StaticString = #filePath, line: UInt = #line) {
        let pairs: [(String, [Float], [Float])] = [
            ("y", actual.y, expected.y), ("running_mean", actual.runningMean, expected.runningMean),
            ("running_var", actual.runningVar, expected.runningVar), ("dx", actual.dx, expected.dx),
            ("dgamma", actual.dGamma, expected.dGamma), ("dbeta", actual.dBeta, expected.dBeta),
            ("dresidual", actual.dResidual, expected.dResidual),
        ]
        for (what, a, b) in pairs where !(a.isEmpty && b.isEmpty) {
            worst.note(what, assertClose(a, b, tolerance: tolerance, "\(context): \(what)", file: file, line: line))
        }
    }

    /// One process with a reducer that changes nothing: the synchronized path computes what the plain training
    /// batch norm computes (its own code: double sums, the inference kernel, its own backward), for images and
    /// for (N, C), with and without the residual and the relu, with both kernel tables.
    func testSingleProcessEqualsPlainBatchNorm() {
        var worst = WorstErrors()
        forEachBackend { backend in
            for shape in [[4, 3, 5, 6], [6, 5]] {
                for (residual, relu) in [(false, false), (true, false), (false, true), (true, true)] {
                    let problem = BatchNormProblem(shape: shape, residual: residual, relu: relu, seed: 11)
                    let reducer = SingleProcessSum()
                    let synchronized = runBatchNorm(problem, sync: BatchNormSync(reducer: reducer))
                    let plain = runBatchNorm(problem, sync: nil)
                    let context = "\(backend) \(shape) residual \(residual) relu \(relu)"
                    XCTAssertEqual(reducer.calls, 2, "\(context): one sum in the forward, one in the backward")
                    compare(synchronized, plain, context, into: &worst)
                }
            }
        }
        worst.report("single process vs plain")
    }

    /// Two ranks, each with its slice of one batch and its own copies of the parameters and buffers, against one
    /// batch norm over the whole batch: each slice's outputs and input gradients, each rank's running statistics,
    /// and dγ, dβ summed over the ranks (what the data-parallel gradient sum does). Even and uneven slices, and
    /// a one-sample slice (for (N, C) a single value per channel on that rank, fine since the global count is 8).
    func testTwoRanksEqualOneProcessOverTheWholeBatch() {
        var worst = WorstErrors()
        for shape in [[8, 3, 4, 5], [8, 6]] {
            for split in [4, 3, 1] {
                for (residual, relu) in [(false, false), (true, true)] {
                    let problem = BatchNormProblem(shape: shape, residual: residual, relu: relu, seed: 23)
                    let whole = runBatchNorm(problem, sync: nil)
                    let (ranks, collectives) = runOnTwoRanks([problem.samples(0..<split), problem.samples(split..<8)])
                    let context = "\(shape) split \(split) + \(8 - split) residual \(residual) relu \(relu)"
                    XCTAssertEqual(collectives, 2, "\(context): one collective in the forward, one in the backward")
                    for rank in 0..<2 {
                        // Both ranks hold the global statistics, so both update their buffers as the whole batch does.
                        worst.note("running_mean", assertClose(ranks[rank].runningMean, whole.runningMean, tolerance: tolerance,
                                                               "\(context) rank \(rank): running_mean"))
                        worst.note("running_var", assertClose(ranks[rank].runningVar, whole.runningVar, tolerance: tolerance,
                                                              "\(context) rank \(rank): running_var"))
                    }
                    let joined = BatchNormOutcome(
                        y: ranks[0].y + ranks[1].y, runningMean: ranks[0].runningMean, runningVar: ranks[0].runningVar,
                        dx: ranks[0].dx + ranks[1].dx, dGamma: elementwiseSum(ranks[0].dGamma, ranks[1].dGamma),
                        dBeta: elementwiseSum(ranks[0].dBeta, ranks[1].dBeta), dResidual: ranks[0].dResidual + ranks[1].dResidual)
                    compare(joined, whole, context, into: &worst)
                }
            }
        }
        worst.report("two ranks vs whole batch")
    }

    /// Rank 1 runs placeholder samples with `contributes == false` (and a nonzero upstream gradient, which must not
    /// leak): rank 0 must get exactly a single-process batch norm over its own slice; rank 1 the same running
    /// statistics, outputs normalised with rank 0's batch statistics, and zero gradients for x, γ and β.
    func testNonContributingRankCountsAsNothing() {
        var worst = WorstErrors()
        for shape in [[5, 3, 4, 4], [5, 4]] {
            for (residual, relu) in [(false, false), (true, true)] {
                let real = BatchNormProblem(shape: shape, residual: residual, relu: relu, seed: 31)
                var placeholder = BatchNormProblem(shape: [3] + shape.dropFirst(), residual: residual, relu: relu, seed: 32)
                (placeholder.gamma, placeholder.beta) = (real.gamma, real.beta)
                (placeholder.runningMean, placeholder.runningVar) = (real.runningMean, real.runningVar)
                let alone = runBatchNorm(real, sync: nil)
                let (ranks, collectives) = runOnTwoRanks([real, placeholder], contributing: [true, false])
                let context = "\(shape) residual \(residual) relu \(relu)"
                XCTAssertEqual(collectives, 2, "\(context): the placeholder rank still takes part in both collectives")
                compare(ranks[0], alone, "\(context) rank 0", into: &worst)
                worst.note("running_mean", assertClose(ranks[1].runningMean, alone.runningMean, tolerance: tolerance,
                                                       "\(context) rank 1: running_mean"))
                worst.note("running_var", assertClose(ranks[1].runningVar, alone.runningVar, tolerance: tolerance,
                                                      "\(context) rank 1: running_var"))
                // The placeholders are normalised with the global statistics, which are rank 0's alone.
                let statistics = channelStatistics(real)
                let expected = batchNorm2d(
                    Tensor(shape: placeholder.shape, data: placeholder.x), weight: Tensor(shape: [shape[1]], data: real.gamma),
                    bias: Tensor(shape: [shape[1]], data: real.beta), runningMean: Tensor(shape: [shape[1]], data: statistics.mean),
                    runningVar: Tensor(shape: [shape[1]], data: statistics.variance), training: false,
                    residual: placeholder.residual.map { Tensor(shape: placeholder.shape, data: $0) }, relu: relu)
                worst.note("placeholder y", assertClose(ranks[1].y, expected.data, tolerance: tolerance, "\(context) rank 1: y"))
                XCTAssertEqual(ranks[1].dx, [Float](repeating: 0, count: placeholder.x.count), "\(context): placeholder dx")
                XCTAssertEqual(ranks[1].dGamma, [Float](repeating: 0, count: shape[1]), "\(context): placeholder dgamma")
                XCTAssertEqual(ranks[1].dBeta, [Float](repeating: 0, count: shape[1]), "\(context): placeholder dbeta")
            }
        }
        worst.report("contributing rank vs its slice alone")
    }

    /// The NN layer: `setBatchNormSync` reaches every BatchNorm2d of a tree, the layers make their collectives in
    /// the same order on both ranks (two forwards, then the backward in reverse), and two ranks of a
    /// bn → relu → bn stack equal the stack over the whole batch, buffers included. (No convolution here: the
    /// convolutions share one workspace buffer, which two threads of one process must not use at once.)
    func testModuleTreeOnTwoRanks() {
        func makeStack() -> Sequential {
            let stack = Sequential(BatchNorm2d(3), ReLU(), BatchNorm2d(3))
            let generator = RandomGenerator(seed: 5)
            for parameter in stack.parameters() { parameter.data = generator.uniformArray(count: parameter.count, low: 0.5, high: 1.5) }
            return stack
        }
        let problem = BatchNormProblem(shape: [8, 3, 3, 4], residual: false, relu: false, seed: 41)
        let whole = makeStack()
        let wholeOutput = whole(Tensor(shape: problem.shape, data: problem.x))
        wholeOutput.backward(gradient: problem.upstream)

        let exchange = TwoRankExchange()
        let parts = ThreadHandOff([problem.samples(0..<3), problem.samples(3..<8)])
        let stacks = onTwoRanks { rank -> ThreadHandOff<(Sequential, [Float])> in
            let stack = makeStack()
            let part = parts.value[rank]
            let layers = stack.setBatchNormSync(BatchNormSync(reducer: RankSum(exchange, rank: rank)))
            precondition(layers == 2, "setBatchNormSync found \(layers) batch norms, not 2")
            let output = stack(Tensor(shape: part.shape, data: part.x))
            output.backward(gradient: part.upstream)
            return ThreadHandOff((stack, output.data))
        }.map(\.value)
        // Two forward collectives, and one backward: the first batch norm's input is the data, which wants no
        // gradient, so that backward needs no global sums (a rule of the model's structure, the same on every rank).
        XCTAssertEqual(exchange.rounds, 3, "two batch norms: two collectives forward, one backward")
        var worst = WorstErrors()
        worst.note("y", assertClose(stacks[0].1 + stacks[1].1, wholeOutput.data, tolerance: tolerance, "stack output"))
        for (index, (key, expected)) in whole.namedBuffers().enumerated() {
            for rank in 0..<2 {
                worst.note("buffers", assertClose(stacks[rank].0.namedBuffers()[index].1.data, expected.data, tolerance: tolerance,
                                                  "rank \(rank) \(key)"))
            }
        }
        for (index, (key, expected)) in whole.namedParameters().enumerated() {
            let summed = elementwiseSum(stacks[0].0.parameters()[index].grad ?? [], stacks[1].0.parameters()[index].grad ?? [])
            worst.note("parameter gradients", assertClose(summed, expected.grad ?? [], tolerance: tolerance, "\(key) gradient summed over ranks"))
        }
        XCTAssertEqual(stacks[0].0.setBatchNormSync(nil), 2)
        XCTAssertTrue(stacks[0].0.layers.compactMap { $0 as? BatchNorm2d }.allSatisfy { $0.sync == nil }, "nil clears the sync")
        worst.report("module tree on two ranks")
    }

    /// Central differences of loss = Σ over both ranks of Σ y·r (r the fixed upstream gradient, the sum in
    /// doubles) with respect to every x of either rank, every γ and β (one value shared by both ranks' copies)
    /// and some residual values, against the two ranks' tape gradients (dγ, dβ summed over the ranks). This
    /// checks the cross-rank terms of dx from their definition, independently of the plain batch norm's kernel.
    ///
    /// Tolerance: the forward is float32, so each loss carries rounding of about √(outputs)·|y|·|r|·6e-8 ≈ 2e-6
    /// here (108 outputs of magnitude ≤ ~3), which the quotient by 2h = 2e-2 turns into ~1e-4; the truncation error
    /// h²/6·|∂³loss| is ~1e-5 (the third derivatives are O(γ·invstd³) ≲ 1 with spreads 0.5…2.5). So
    /// |fd − tape| ≤ 5e-4 + 1e-3·|tape| leaves a margin of ~4 over the expected error (measured: the worst
    /// coordinate used 0.15 of its bound), while local instead of global means in the backward moved dx by 0.8–1.2
    /// when broken on purpose.
    func testFiniteDifferencesAcrossTwoRanks() {
        let h: Float = 1e-2, atol = 5e-4, rtol = 1e-3
        var problem = BatchNormProblem(shape: [6, 3, 2, 3], residual: true, relu: false, seed: 53)
        let split = 2
        let (ranks, _) = runOnTwoRanks([problem.samples(0..<split), problem.samples(split..<6)])
        let tape: [String: [Float]] = [
            "x": ranks[0].dx + ranks[1].dx, "gamma": elementwiseSum(ranks[0].dGamma, ranks[1].dGamma),
            "beta": elementwiseSum(ranks[0].dBeta, ranks[1].dBeta), "residual": ranks[0].dResidual + ranks[1].dResidual,
        ]

        // The loss of the current `problem` on two ranks, forward only (no tensor wants a gradient: no tape).
        func loss() -> Double {
            let exchange = TwoRankExchange()
            let parts = ThreadHandOff([problem.samples(0..<split), problem.samples(split..<6)])
            let sums = onTwoRanks { rank -> Double in
                let part = parts.value[rank], c = part.channels
                let y = batchNorm2d(Tensor(shape: part.shape, data: part.x), weight: Tensor(shape: [c], data: part.gamma),
                                    bias: Tensor(shape: [c], data: part.beta), runningMean: nil, runningVar: nil, training: true,
                                    residual: part.residual.map { Tensor(shape: part.shape, data: $0) }, relu: false,
                                    sync: BatchNormSync(reducer: RankSum(exchange, rank: rank)))
                return zip(y.data, part.upstream).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            }
            return sums[0] + sums[1]
        }
        var worst = 0.0, checked = 0
        let residualSamples = Array(stride(from: 0, to: problem.x.count, by: 9))
        for (name, indices) in [("x", Array(problem.x.indices)), ("gamma", Array(problem.gamma.indices)),
                                ("beta", Array(problem.beta.indices)), ("residual", residualSamples)] {
            for i in indices {
                func perturb(_ delta: Float) {
                    switch name {
                    case "x": problem.x[i] += delta
                    case "gamma": problem.gamma[i] += delta
                    case "beta": problem.beta[i] += delta
                    default: problem.residual![i] += delta
                    }
                }
                perturb(h)
                let plus = loss()
                perturb(-2 * h)
                let minus = loss()
                perturb(h)
                let fd = (plus - minus) / (2 * Double(h)), analytic = Double(tape[name]![i])
                let bound = atol + rtol * abs(analytic)
                worst = max(worst, abs(fd - analytic) / bound)
                checked += 1
                XCTAssertLessThanOrEqual(abs(fd - analytic), bound, "\(name)[\(i)]: finite difference \(fd) vs tape \(analytic)")
            }
        }
        print("finite differences across two ranks: \(checked) coordinates, max |fd − tape| / (atol + rtol·|tape|) = \(String(format: "%.3f", worst))")
    }

    /// The same check in one process through the shared helper (its tolerances: atol 2e-3 + rtol 1e-2, see
    /// `checkGradients`), with both kernel tables: x, γ, β and the residual.
    func testFiniteDifferencesSingleProcess() {
        let generator = RandomGenerator(seed: 61)
        forEachBackend { backend in
            for shape in [[3, 4, 3, 2], [7, 4]] {
                let count = shape.reduce(1, *)
                let x = Tensor(shape: shape, data: generator.normalArray(count: count, mean: 1, std: 2))
                let gamma = Tensor(shape: [4], data: generator.normalArray(count: 4))
                let beta = Tensor(shape: [4], data: generator.normalArray(count: 4))
                let residual = Tensor(shape: shape, data: generator.normalArray(count: count))
                let sync = BatchNormSync(reducer: SingleProcessSum())
                checkGradients([x, gamma, beta, residual], "synchronized batchnorm \(backend) \(shape)") {
                    batchNorm2d(x, weight: gamma, bias: beta, runningMean: nil, runningVar: nil, training: true,
                                residual: residual, sync: sync)
                }
            }
        }
    }
}
