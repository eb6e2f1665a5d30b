// bench-mpi: what data-parallel training costs on this machine (Open MPI, shared-memory transport between ranks),
// and a model of what it would cost across machines, computed from those measurements.
//
//   bench-mpi [--rounds N] [--reps N] [--steps N] [--warmup N] [--hop-latency-us U]   (the driver)
//   bench-mpi --measure allreduce|features|train-step|head-step [--sync-bn] …      (one measurement; spawned)
//
// The driver spawns this same executable once per measurement: under `mpirun -np 2` for the two-rank cases, under
// `mpirun -np 1` and as a plain process for the one-rank comparisons (a group of one never initialises MPI, so the
// plain run shows what mpirun itself adds). Every mpirun child runs with `--bind-to none`: Open MPI binds each rank
// to one core by default when there are at most 2 ranks, which would leave a 1-rank × 2-thread run on one core.
// Rank 0 of each child prints one JSON line; the driver collects them and prints the tables and the scaling model.
// Each measurement is timed per repetition or step after a barrier, taking the slowest rank's time (a collective
// step is as slow as its slowest rank), and reduced to a median; rounds repeat the whole set and the driver
// prints the median over rounds (this machine is shared and noisy).
import ArgumentParser
import CPUFeatures
import DataParallel
import Foundation
import Models
import NN
import SeededRandom
import Tensors

// The kernels are compiled for x86-64-v3: on an older CPU, one line and status 1 instead of SIGILL.
cpu_features_require_x86_64_v3("bench-mpi")

/// The measurements a child process can run.
enum Measurement: String, ExpressibleByArgument, CaseIterable {
    /// Blocking and bucketed all-reduce of the whole model's and the fusion head's gradients.
    case allreduce
    /// ResNet-50 feature extraction (inference, no gradients) of a global batch, then the all-gather of features.
    case features
    /// One full fine-tuning step (forward, backward, gradient all-reduce overlapping backward, Adam).
    case trainStep = "train-step"
    /// One step of the frozen-backbone head training on cached features (meta_net + head only), batch 8 and 32.
    case headStep = "head-step"
}

/// The metadata width of the fusion model the benchmarks build: 4 + 8 × 10 boxes, as `make demo` trains.
let metaDim = 84
/// ResNet-50's feature width: what feature extraction gathers per image.
let featureWidth = 2048
/// The global batch of the feature-extraction and training cases.
let globalBatch = 8

struct BenchMPI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-mpi",
        abstract: "Data-parallel costs on this machine under mpirun, and a scaling model across machines built from them.")

    @Option(help: "Rounds of the whole set of measurements (the tables show the median over rounds).")
    var rounds = 2

    @Option(help: "Timed repetitions of each all-reduce.")
    var reps = 10

    @Option(help: "Timed steps of feature extraction and of the head-only step; a train step gets --train-steps.")
    var steps = 8

    @Option(help: "Timed full train steps.")
    var trainSteps = 5

    @Option(help: "Untimed warm-up repetitions or steps before each measurement.")
    var warmup = 2

    @Option(help: "Scaling model: the per-hop latency of a ring all-reduce step between machines, in microseconds (TCP: 20-50).")
    var hopLatencyUs = 50.0

    // The child's flags: set by the driver, hidden from --help.
    @Option(name: .customLong("measure"), help: .hidden)
    var measurement: Measurement?

    @Option(help: .hidden)
    var threads = 1

    @Flag(name: .customLong("sync-bn"), help: .hidden)
    var syncBN = false

    func validate() throws {
        for (flag, value) in [("--rounds", rounds), ("--reps", reps), ("--steps", steps), ("--train-steps", trainSteps),
                              ("--threads", threads)] where value <= 0 {
            throw ValidationError("\(flag) needs a positive integer")
        }
        if warmup < 0 { throw ValidationError("--warmup needs a non-negative integer") }
        if !(hopLatencyUs >= 0) { throw ValidationError("--hop-latency-us needs a non-negative number") }
    }

    func run() throws {
        if let measurement {
            try runChild(measurement)
        } else {
            try drive(self)
        }
    }

    /// One measurement in a process the driver started (under mpirun or alone); rank 0 prints the JSON line.
    func runChild(_ measurement: Measurement) throws {
        let group = ProcessGroup.world
        Kernels.setNumThreads(threads)
        Kernels.retainFreedMemory()
        do {
            var result: [String: Double]
            switch measurement {
            case .allreduce: result = try measureAllReduce(group: group, reps: reps, warmup: warmup)
            case .features: result = measureFeatures(group: group, steps: steps, warmup: warmup)
            case .trainStep: result = measureTrainStep(group: group, steps: trainSteps, warmup: warmup, syncBN: syncBN)
            case .headStep: result = measureHeadStep(steps: steps, warmup: warmup)
            }
            result["ranks"] = Double(group.size)
            result["threads"] = Double(Kernels.numThreads)
            if group.isWriter {
                let data = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
                print(String(decoding: data, as: UTF8.self))
            }
            group.finish()
        } catch {
            FileHandle.standardError.write(Data("bench-mpi (rank \(group.rank) of \(group.size)): \(error)\n".utf8))
            group.abort(exitCode: 1)
        }
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

func median(_ values: [Double]) -> Double {
    precondition(!values.isEmpty, "median of nothing")
    let s = values.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

// MARK: Measurements (child processes)

/// Times `body` `warmup + reps` times, each after a barrier, and returns the timed repetitions' seconds, each the
/// slowest rank's: a collective finishes on the group only when it has finished on every rank.
func timedRepetitions(group: ProcessGroup, reps: Int, warmup: Int, _ body: () throws -> Void) rethrows -> [Double] {
    var seconds = [Double]()
    for rep in 0 ..< warmup + reps {
        group.barrier()
        let start = now()
        try body()
        if rep >= warmup { seconds.append(now() - start) }
    }
    return slowestRank(seconds, group: group)
}

/// Element-wise maximum over ranks of a per-repetition series (every rank passes the same count).
func slowestRank(_ values: [Double], group: ProcessGroup) -> [Double] { acrossRanks(values, group: group, max) }

/// Element-wise `combine` over ranks of a per-repetition series (every rank passes the same count).
func acrossRanks(_ values: [Double], group: ProcessGroup, _ combine: (Double, Double) -> Double) -> [Double] {
    let all = group.gather(values, counts: Array(repeating: values.count, count: group.size))
    return values.indices.map { i in (1 ..< group.size).reduce(all[i]) { combine($0, all[$1 * values.count + i]) } }
}

/// The fusion model's trainable parameters, and those of its head alone (`meta_net` + `head`, what frozen-backbone
/// training updates), both in the model's registration order, which is the order the gradient reducer buckets.
func parameterSets(_ model: FusionModel) -> (all: [Tensor], head: [Tensor]) {
    let named = model.namedParameters().filter { $0.1.requiresGrad }
    let head = named.filter { $0.0.hasPrefix("meta_net.") || $0.0.hasPrefix("head.") }.map(\.1)
    return (named.map(\.1), head)
}

/// Bucket sizes in floats, in the order they are reduced, by GradientReducer's own rule. The scaling model needs
/// the last bucket: it holds the first layers' gradients, ready only when backward ends, so it can never overlap.
func bucketSizes(_ parameters: [Tensor]) -> [Int] {
    var sizes = [Int](), next = parameters.count
    for members in GradientReducer.bucketParameterCounts(parameters.map(\.count)) {
        sizes.append(parameters[next - members ..< next].map(\.count).reduce(0, +))
        next -= members
    }
    return sizes
}

/// (i) one blocking `ProcessGroup.sum` of the whole gradient vector and (ii) GradientReducer's bucketed path without
/// a backward to overlap (gradients set, `finish()`: copy into buckets, all-reduce each, copy back), for the whole
/// fusion model and for its head.
func measureAllReduce(group: ProcessGroup, reps: Int, warmup: Int) throws -> [String: Double] {
    let model = FusionModel(metaDim: metaDim, generator: RandomGenerator(seed: 0))
    let sets = parameterSets(model)
    var result = [String: Double]()
    for (name, parameters) in [("model", sets.all), ("head", sets.head)] {
        let count = parameters.reduce(0) { $0 + $1.count }
        result["\(name)_floats"] = Double(count)
        let buckets = bucketSizes(parameters)
        result["\(name)_buckets"] = Double(buckets.count)
        result["\(name)_last_bucket_floats"] = Double(buckets.last ?? 0)

        // A wrong sum would make every time meaningless: check one before timing.
        var vector = [Float](repeating: Float(group.rank + 1), count: count)
        group.sum(&vector)
        let expected = Float(group.size * (group.size + 1) / 2)
        guard vector.first == expected, vector.last == expected else {
            throw BenchError("all-reduce of \(count) floats gave \(vector.first ?? .nan), expected \(expected)")
        }
        let blocking = timedRepetitions(group: group, reps: reps, warmup: warmup) { group.sum(&vector) }
        result["\(name)_blocking_ms"] = 1000 * median(blocking)

        let reducer = GradientReducer(parameters: parameters, group: group)
        guard reducer.bucketCount == buckets.count else {
            throw BenchError("GradientReducer made \(reducer.bucketCount) buckets, the scaling model's rule \(buckets.count)")
        }
        reducer.attach()
        defer { reducer.detach() }
        let gradients = parameters.map { [Float](repeating: Float(group.rank + 1), count: $0.count) }
        let bucketed = timedRepetitions(group: group, reps: reps, warmup: warmup) {
            for (parameter, gradient) in zip(parameters, gradients) { parameter.grad = gradient }
            reducer.finish()
        }
        guard parameters.allSatisfy({ $0.grad?.first == expected }) else {
            throw BenchError("GradientReducer's sums are wrong")
        }
        result["\(name)_bucketed_ms"] = 1000 * median(bucketed)
    }
    return result
}

/// Feature extraction of a global batch of 8 synthetic 224×224 images, each rank its share, then the all-gather
/// of the 2048-wide features so every rank holds the whole batch's (what `resnet50 features` does per batch).
func measureFeatures(group: ProcessGroup, steps: Int, warmup: Int) -> [String: Double] {
    let model = FusionModel(metaDim: metaDim, generator: RandomGenerator(seed: 0))
    model.eval()
    let localCount = group.share(of: globalBatch).count
    let images = Tensor.randn([localCount, 3, 224, 224], generator: RandomGenerator(seed: 100 + UInt64(group.rank)))
    var computeSeconds = [Double](), gatherSeconds = [Double]()
    for step in 0 ..< warmup + steps {
        group.barrier()
        let start = now()
        let features = withNoGrad { model.imageFeatures(images) }
        let computed = now()
        let all = group.gather(features.data, counts: group.shareCounts(of: globalBatch), unit: featureWidth)
        precondition(all.count == globalBatch * featureWidth)
        if step >= warmup {
            computeSeconds.append(computed - start)
            gatherSeconds.append(now() - computed)
        }
    }
    // A step ends when the slowest rank's gather returns: the step time is the slowest rank's compute + gather.
    let stepSeconds = slowestRank(zip(computeSeconds, gatherSeconds).map { $0 + $1 }, group: group)
    let step = median(stepSeconds)
    return ["step_ms": 1000 * step, "images_per_second": Double(globalBatch) / step,
            "compute_ms": 1000 * median(slowestRank(computeSeconds, group: group)),
            // On the faster rank this includes waiting for the slower one: the rank-0 view, not the wire time.
            "gather_ms": 1000 * median(gatherSeconds)]
}

/// BatchNormSync's collective with a stopwatch: the synchronised BatchNorm's blocking sums are communication the
/// gradient reducer's `exposedWaitSeconds` does not see.
final class TimedCrossProcessSum: CrossProcessSum {
    let group: ProcessGroup
    private(set) var seconds = 0.0
    private(set) var calls = 0
    init(group: ProcessGroup) { self.group = group }
    func sum(_ values: inout [Double]) {
        let start = now()
        group.sum(&values)
        seconds += now() - start
        calls += 1
    }
}

/// Full fine-tuning steps of the fusion model with Adam on a global batch of 8, each rank its share; with several
/// ranks the gradients are summed by GradientReducer during backward, as `resnet50 train` does.
func measureTrainStep(group: ProcessGroup, steps: Int, warmup: Int, syncBN: Bool) -> [String: Double] {
    // The same seed on every rank: identical initial weights, as training's broadcast would give.
    let model = FusionModel(metaDim: metaDim, generator: RandomGenerator(seed: 0))
    model.train()
    let share = group.share(of: globalBatch)
    let generator = RandomGenerator(seed: 100 + UInt64(group.rank))
    let images = Tensor.randn([share.count, 3, 224, 224], generator: generator)
    let meta = Tensor.randn([share.count, metaDim], generator: generator)
    let labels = share.map { $0 % 2 }
    let timedSum = TimedCrossProcessSum(group: group)
    if syncBN && group.isParallel { model.backbone.setBatchNormSync(BatchNormSync(reducer: timedSum)) }
    let parameters = model.trainableParameters()
    let optimizer = Adam(parameters: parameters, learningRate: 1e-4)
    let reducer = group.isParallel ? GradientReducer(parameters: parameters, group: group) : nil
    reducer?.attach()
    defer { reducer?.detach() }
    var stepSeconds = [Double](), exposedSeconds = [Double](), batchNormSeconds = [Double]()
    for step in 0 ..< warmup + steps {
        group.barrier()
        let exposedBefore = reducer?.exposedWaitSeconds ?? 0, batchNormBefore = timedSum.seconds
        let start = now()
        optimizer.zeroGrad()
        // Each rank's loss is its part of the global batch's mean, so the summed gradients are one process's.
        let loss = crossEntropy(model(images, meta), labels: labels, weightTotal: group.isParallel ? Double(globalBatch) : nil)
        loss.backward()
        reducer?.finish()
        optimizer.step()
        if step >= warmup {
            stepSeconds.append(now() - start)
            exposedSeconds.append((reducer?.exposedWaitSeconds ?? 0) - exposedBefore)
            batchNormSeconds.append(timedSum.seconds - batchNormBefore)
        }
    }
    let step = median(slowestRank(stepSeconds, group: group))
    return ["step_ms": 1000 * step, "images_per_second": Double(globalBatch) / step,
            "exposed_ms": 1000 * median(slowestRank(exposedSeconds, group: group)),
            // A blocking sum also waits for the other rank to reach the same layer: the rank that waited less per
            // step is the closer bound on what the sums themselves cost.
            "batchnorm_sync_ms": 1000 * median(acrossRanks(batchNormSeconds, group: group, min)),
            "batchnorm_sync_calls_per_step": Double(timedSum.calls) / Double(warmup + steps),
            "buckets": Double(reducer?.bucketCount ?? 0)]
}

/// Frozen-backbone training on cached features: forward, backward and Adam through meta_net + head only, at a
/// per-machine batch of 8 and 32 (the scaling model's compute of that case; it is too small to measure per image).
func measureHeadStep(steps: Int, warmup: Int) -> [String: Double] {
    let model = FusionModel(metaDim: metaDim, generator: RandomGenerator(seed: 0))
    model.train()
    let head = parameterSets(model).head
    let optimizer = Adam(parameters: head, learningRate: 1e-3)
    var result = [String: Double]()
    for batch in [8, 32] {
        let generator = RandomGenerator(seed: 7)
        let features = Tensor.randn([batch, featureWidth], generator: generator)
        let meta = Tensor.randn([batch, metaDim], generator: generator)
        let labels = (0 ..< batch).map { $0 % 2 }
        let seconds = timedRepetitions(group: .single, reps: steps, warmup: warmup) {
            optimizer.zeroGrad()
            crossEntropy(model.classify(features: features, meta: meta), labels: labels).backward()
            optimizer.step()
        }
        result["step_ms_batch\(batch)"] = 1000 * median(seconds)
    }
    return result
}

// MARK: Driver

/// How a child runs: a plain process, or under mpirun with some ranks.
enum Launch: Hashable {
    case plain
    case mpirun(ranks: Int)
    var label: String {
        switch self {
        case .plain: "1 process (no mpirun)"
        case .mpirun(let ranks): "mpirun -np \(ranks)"
        }
    }
}

/// One child run: a measurement, how it is launched, and its flags.
struct ChildRun: Hashable {
    let measurement: Measurement
    let launch: Launch
    let threads: Int
    var syncBN = false
    var label: String { "\(launch.label) × \(threads) thread\(threads == 1 ? "" : "s")" + (syncBN ? ", sync BN" : "") }
}

/// The executable on the PATH named `name`.
func onPath(_ name: String) -> String? {
    let paths = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
    return paths.map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
}

/// Runs a child and returns the last line of its stdout parsed as a JSON object of numbers; stderr passes through.
func runChild(_ run: ChildRun, me: String, mpirun: String, flags: [String]) throws -> [String: Double] {
    let process = Process()
    var arguments = flags + ["--measure", run.measurement.rawValue, "--threads", String(run.threads)]
    if run.syncBN { arguments.append("--sync-bn") }
    var environment = ProcessInfo.processInfo.environment
    switch run.launch {
    case .plain:
        process.executableURL = URL(fileURLWithPath: me)
        process.arguments = arguments
        // A plain child must not look like one of mpirun's ranks if the driver itself was started by mpirun.
        for key in environment.keys where key.hasPrefix("OMPI_") || key.hasPrefix("PMIX_") { environment[key] = nil }
    case .mpirun(let ranks):
        process.executableURL = URL(fileURLWithPath: mpirun)
        process.arguments = ["-np", String(ranks), "--oversubscribe", "--bind-to", "none", me] + arguments
        // Open MPI refuses to run as root without both of these (containers, CI).
        environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    }
    process.environment = environment
    let pipe = Pipe()
    process.standardOutput = pipe
    try process.run()
    let output = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0,
          let line = String(decoding: output, as: UTF8.self).split(separator: "\n").last,
          let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
        throw BenchError("\(run.measurement.rawValue) (\(run.label)) failed with status \(process.terminationStatus)")
    }
    return object.compactMapValues { ($0 as? NSNumber)?.doubleValue }
}

func cell(_ text: String, _ width: Int) -> String { String(repeating: " ", count: max(1, width - text.count)) + text }
func fixed(_ value: Double, _ decimals: Int) -> String { String(format: "%.\(decimals)f", value) }

func drive(_ arguments: BenchMPI) throws {
    guard let mpirun = onPath("mpirun") else {
        throw BenchError("mpirun is not on the PATH (make deps installs openmpi-bin)")
    }
    let me = URL(fileURLWithPath: CommandLine.arguments[0]).path
    let cores = ProcessInfo.processInfo.activeProcessorCount
    let flags = ["--reps", String(arguments.reps), "--steps", String(arguments.steps),
                 "--train-steps", String(arguments.trainSteps), "--warmup", String(arguments.warmup)]
    // One rank uses both cores; two ranks one core each: the same cores, split two ways.
    let runs: [ChildRun] = [
        ChildRun(measurement: .allreduce, launch: .mpirun(ranks: 2), threads: 1),
        ChildRun(measurement: .features, launch: .plain, threads: cores),
        ChildRun(measurement: .features, launch: .mpirun(ranks: 1), threads: cores),
        ChildRun(measurement: .features, launch: .mpirun(ranks: 2), threads: max(1, cores / 2)),
        ChildRun(measurement: .trainStep, launch: .plain, threads: cores),
        ChildRun(measurement: .trainStep, launch: .mpirun(ranks: 1), threads: cores),
        ChildRun(measurement: .trainStep, launch: .mpirun(ranks: 2), threads: max(1, cores / 2)),
        ChildRun(measurement: .trainStep, launch: .mpirun(ranks: 2), threads: max(1, cores / 2), syncBN: true),
        ChildRun(measurement: .headStep, launch: .plain, threads: cores),
    ]
    print("bench-mpi: \(cores) cores, Open MPI shared memory between ranks on this machine, mpirun --bind-to none; "
          + "\(arguments.rounds) rounds, median over rounds")
    print("all-reduce: \(arguments.reps) reps; features: \(arguments.steps) steps; train step: \(arguments.trainSteps) steps; "
          + "\(arguments.warmup) warm-up each; every time is the slowest rank's, median")
    print("load average at the start (1 min): \(fixed(loadAverage(), 2)) on \(cores) cores (other jobs share this machine)")
    var results = [ChildRun: [[String: Double]]]()
    let started = now()
    for round in 1 ... arguments.rounds {
        // Each round starts one run later, so a burst of load from other jobs does not always hit the same case.
        for i in runs.indices {
            let run = runs[(i + round - 1) % runs.count]
            results[run, default: []].append(try runChild(run, me: me, mpirun: mpirun, flags: flags))
        }
        FileHandle.standardError.write(Data("round \(round)/\(arguments.rounds) done (\(Int(now() - started)) s)\n".utf8))
    }
    /// The median over rounds of one number of one run.
    func value(_ run: ChildRun, _ key: String) -> Double {
        median(results[run]!.map { $0[key] ?? .nan })
    }

    // All-reduce.
    let allReduce = runs[0]
    let modelFloats = value(allReduce, "model_floats"), headFloats = value(allReduce, "head_floats")
    print("")
    print("FusionModel(metaDim: \(metaDim)) trainable parameters: \(Int(modelFloats)) floats "
          + "(\(fixed(4 * modelFloats / 1e6, 1)) MB); meta_net + head: \(Int(headFloats)) floats (\(fixed(4 * headFloats / 1e6, 2)) MB)")
    print("a. all-reduce, 2 ranks on this machine (shared memory), median of \(arguments.reps) after \(arguments.warmup) warm-up")
    print("   algbw = bytes / time; busbw = algbw × 2(N-1)/N (nccl-tests; N = 2: busbw = algbw)")
    let ranks = 2.0, busFactor = 2 * (ranks - 1) / ranks
    print("gradients            path                               buckets       ms   algbw GB/s   busbw GB/s")
    for (name, label) in [("model", "whole model"), ("head", "meta_net + head")] {
        let bytes = 4 * value(allReduce, "\(name)_floats")
        for (key, path, buckets) in [("blocking", "one blocking ProcessGroup.sum", "1"),
                                     ("bucketed", "GradientReducer.finish, no overlap", fixed(value(allReduce, "\(name)_buckets"), 0))] {
            let ms = value(allReduce, "\(name)_\(key)_ms"), algbw = bytes / (ms / 1000) / 1e9
            print(label.padding(toLength: 21, withPad: " ", startingAt: 0) + path.padding(toLength: 35, withPad: " ", startingAt: 0)
                  + cell(buckets, 7) + cell(fixed(ms, 2), 9) + cell(fixed(algbw, 2), 13) + cell(fixed(algbw * busFactor, 2), 13))
        }
    }

    // Feature extraction.
    print("")
    print("b. feature extraction: ResNet-50 forward, no grad, global batch \(globalBatch), 224x224, + all-gather of \(featureWidth)-d features")
    print("run                                      img/s   step ms   compute ms   gather ms   vs 1 process")
    let featureRuns = runs.filter { $0.measurement == .features }
    let featureBaseline = value(featureRuns[0], "images_per_second")
    for run in featureRuns {
        let rate = value(run, "images_per_second")
        print(run.label.padding(toLength: 36, withPad: " ", startingAt: 0) + cell(fixed(rate, 1), 10)
              + cell(fixed(value(run, "step_ms"), 0), 10) + cell(fixed(value(run, "compute_ms"), 0), 13)
              + cell(fixed(value(run, "gather_ms"), 1), 12) + cell(fixed(rate / featureBaseline, 2) + "x", 15))
    }
    print("gather ms: rank 0's time in the all-gather, including waiting for the slower rank")

    // Train step.
    print("")
    print("c. full train step: fusion model, all parameters, Adam, global batch \(globalBatch); 2 ranks: 4 images each, "
          + "GradientReducer overlapping backward")
    print("run                                          img/s   step ms   exposed comm ms   sync-BN comm ms   vs 1 process")
    let trainRuns = runs.filter { $0.measurement == .trainStep }
    let trainBaseline = value(trainRuns[0], "images_per_second")
    for run in trainRuns {
        let rate = value(run, "images_per_second")
        let parallel = run.launch == .mpirun(ranks: 2)
        print(run.label.padding(toLength: 40, withPad: " ", startingAt: 0) + cell(fixed(rate, 2), 10)
              + cell(fixed(value(run, "step_ms"), 0), 10)
              + cell(parallel ? fixed(value(run, "exposed_ms"), 1) : "-", 18)
              + cell(run.syncBN ? fixed(value(run, "batchnorm_sync_ms"), 0) : "-", 18)
              + cell(fixed(rate / trainBaseline, 2) + "x", 15))
    }
    if let syncRun = trainRuns.first(where: \.syncBN) {
        print("exposed comm: time in GradientReducer.finish() per step (waiting for what backward did not hide, copying "
              + "sums back); sync-BN comm: time in the \(Int(value(syncRun, "batchnorm_sync_calls_per_step"))) blocking BatchNorm "
              + "statistic sums per step, waiting for the other rank included (the rank that waited less)")
    }
    let headRun = runs.first { $0.measurement == .headStep }!
    print("")
    print("frozen-backbone head step on cached features (meta_net + head, Adam, 1 process × \(headRun.threads) threads): "
          + "batch 8 \(fixed(value(headRun, "step_ms_batch8"), 2)) ms, batch 32 \(fixed(value(headRun, "step_ms_batch32"), 2)) ms")

    // The scaling model.
    let step8 = value(trainRuns[0], "step_ms") / 1000
    let perImageFeatures = 1 / featureBaseline
    printScalingModel(modelFloats: modelFloats, modelBuckets: value(allReduce, "model_buckets"),
                      lastBucketFloats: value(allReduce, "model_last_bucket_floats"),
                      headFloats: headFloats, headBuckets: value(allReduce, "head_buckets"),
                      step8: step8, headStep8: value(headRun, "step_ms_batch8") / 1000,
                      headStep32: value(headRun, "step_ms_batch32") / 1000,
                      perImageFeatures: perImageFeatures, hopLatency: arguments.hopLatencyUs * 1e-6)
    print("")
    print("bench-mpi: \(Int(now() - started)) s; load average at the end (1 min): \(fixed(loadAverage(), 2))")
}

/// The 1-minute load average: how busy the shared machine was.
func loadAverage() -> Double {
    var loads = [Double](repeating: .nan, count: 1)
    _ = getloadavg(&loads, 1)
    return loads[0]
}

/// Ring all-reduce over `machines` of `floats` float32 in `buckets` all-reduces: each moves 2(N-1)/N of its bytes
/// over every link and takes 2(N-1) hops (N-1 reduce-scatter, N-1 all-gather), each paying `hopLatency`.
func ringAllReduceSeconds(floats: Double, buckets: Double, machines: Double, linkBytesPerSecond: Double,
                          hopLatency: Double) -> Double {
    2 * (machines - 1) / machines * 4 * floats / linkBytesPerSecond + buckets * 2 * (machines - 1) * hopLatency
}

func printScalingModel(modelFloats: Double, modelBuckets: Double, lastBucketFloats: Double, headFloats: Double,
                       headBuckets: Double, step8: Double, headStep8: Double, headStep32: Double,
                       perImageFeatures: Double, hopLatency: Double) {
    let machineCounts = [8.0, 64.0], linksGbps = [10.0, 25.0]
    let backwardShare = 2.0 / 3
    print("")
    print("SCALING MODEL (computed from the numbers above; assumptions, not measurements):")
    print("  machines like this one (2 cores), one rank each, ring all-reduce over TCP at the full link rate,")
    print("  \(fixed(hopLatency * 1e6, 0)) µs per hop; one all-reduce per bucket (\(Int(modelBuckets)) buckets of the whole model, "
          + "the last \(fixed(4 * lastBucketFloats / 1e6, 1)) MB)")
    print("  compute per step: the measured 1-process step at batch 8 (\(fixed(step8 * 1000, 0)) ms); batch 32 = 4 × that "
          + "(the measured per-image time scaled, not measured)")
    print("  backward = 2/3 of the step; buckets start after the head's gradients and run one after another while backward")
    print("  runs; the last bucket (the first layers) is ready only when backward ends, so it is always exposed:")
    print("  exposed = max(comm - backward, last bucket's comm); efficiency = compute / (compute + exposed);")
    print("  hidden-from ms: the step time from which backward is long enough to hide all but the last bucket")
    print("")
    print("full fine-tuning, \(fixed(4 * modelFloats / 1e6, 1)) MB of gradients per step")
    print("machines   link   batch/machine   compute ms   comm ms   overlapped   exposed ms   efficiency   hidden-from ms")
    for machines in machineCounts {
        for link in linksGbps {
            let bytesPerSecond = link * 1e9 / 8
            let comm = ringAllReduceSeconds(floats: modelFloats, buckets: modelBuckets, machines: machines,
                                            linkBytesPerSecond: bytesPerSecond, hopLatency: hopLatency)
            let lastBucket = ringAllReduceSeconds(floats: lastBucketFloats, buckets: 1, machines: machines,
                                                  linkBytesPerSecond: bytesPerSecond, hopLatency: hopLatency)
            for perMachineBatch in [8.0, 32.0] {
                let compute = step8 * perMachineBatch / 8
                let exposed = min(comm, max(comm - backwardShare * compute, lastBucket))
                print(cell(fixed(machines, 0), 8) + cell(fixed(link, 0) + " Gb/s", 10) + cell(fixed(perMachineBatch, 0), 11)
                      + cell(fixed(compute * 1000, 0), 16) + cell(fixed(comm * 1000, 1), 10)
                      + cell(fixed(100 * (comm - exposed) / comm, 0) + "%", 13) + cell(fixed(exposed * 1000, 1), 13)
                      + cell(fixed(100 * compute / (compute + exposed), 1) + "%", 13)
                      + cell(fixed((comm - lastBucket) / backwardShare * 1000, 0), 17))
            }
        }
    }
    print("")
    print("frozen-backbone head training on cached features, \(fixed(4 * headFloats / 1e6, 2)) MB of gradients in "
          + "\(Int(headBuckets)) buckets; no overlap (the head's backward takes well under a millisecond)")
    print("machines   link   batch/machine   compute ms   comm ms   latency share   efficiency")
    for machines in machineCounts {
        for link in linksGbps {
            let bytesPerSecond = link * 1e9 / 8
            let comm = ringAllReduceSeconds(floats: headFloats, buckets: headBuckets, machines: machines,
                                            linkBytesPerSecond: bytesPerSecond, hopLatency: hopLatency)
            let latency = headBuckets * 2 * (machines - 1) * hopLatency
            for (perMachineBatch, compute) in [(8.0, headStep8), (32.0, headStep32)] {
                print(cell(fixed(machines, 0), 8) + cell(fixed(link, 0) + " Gb/s", 10) + cell(fixed(perMachineBatch, 0), 11)
                      + cell(fixed(compute * 1000, 2), 16) + cell(fixed(comm * 1000, 2), 10)
                      + cell(fixed(100 * latency / comm, 0) + "%", 16) + cell(fixed(100 * compute / (compute + comm), 1) + "%", 13))
            }
        }
    }
    print("")
    print("sharded feature extraction: each machine extracts 1/N of the images (measured \(fixed(perImageFeatures * 1000, 1)) "
          + "ms per image on one machine), then one ring all-gather of \(featureWidth * 4) bytes per image;")
    print("efficiency = t / (t + (N-1) × \(featureWidth * 4) B / link), whatever the image count (the gather's "
          + "(N-1) hop latencies, once per job, left out)")
    print("machines   link   efficiency")
    for machines in machineCounts {
        for link in linksGbps {
            let gatherPerImage = (machines - 1) * Double(featureWidth * 4) / (link * 1e9 / 8)
            print(cell(fixed(machines, 0), 8) + cell(fixed(link, 0) + " Gb/s", 10)
                  + cell(fixed(100 * perImageFeatures / (perImageFeatures + gatherPerImage), 2) + "%", 13))
        }
    }
}

BenchMPI.main()
