import DataPipeline
import Foundation
import WeightFiles
import XCTest

/// `resnet50` under `mpirun -np 2 --oversubscribe` against one process with the same global batch and seed: the
/// same transcript byte for byte, the same weights within float tolerance, the same features bit for bit; a rank
/// killed mid-epoch, and a resume with another rank count.
final class DataParallelTests: XCTestCase {
    private var folder: URL!

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("rnf-mpi-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: folder)
    }

    private func p(_ name: String) -> String { folder.appendingPathComponent(name).path }

    /// Open MPI refuses to start as root without these (its own documented switch).
    private static let mpiEnvironment = ["OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"]

    /// mpirun on the PATH; missing, a failure (`make deps` installs openmpi-bin), not a skip.
    private func mpirun() throws -> URL {
        let paths = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":")
        guard let found = paths.map({ URL(fileURLWithPath: String($0)).appendingPathComponent("mpirun") })
            .first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
            XCTFail("mpirun is not on the PATH; make deps installs openmpi-bin")
            throw CocoaError(.fileNoSuchFile)
        }
        return found
    }

    /// Runs `resnet50 arguments…` in `directory` (created), as `ranks` ranks under mpirun, or as one plain process
    /// when `ranks` is nil.
    private func run(ranks: Int?, in directory: String, _ arguments: [String], environment: [String: String] = [:]) throws
        -> (status: Int32, stdout: String, stderr: String)
    {
        if let ranks {
            return try run(mpirunArguments: ["-np", String(ranks), "--oversubscribe", try ResNet50Executable.url().path] + arguments,
                           in: directory, environment: environment)
        }
        return try run(executable: ResNet50Executable.url(), arguments, in: directory, environment: environment)
    }

    private func run(mpirunArguments: [String], in directory: String, environment: [String: String] = [:]) throws
        -> (status: Int32, stdout: String, stderr: String)
    {
        var environment = environment
        // Under `make test-asan`: Open MPI leaves its own allocations at exit from plugins it loaded itself, where fast
        // unwinding stops; full unwinding reaches the Open MPI library frames the suppressions name. Our own code's
        // leaks are still reported (and the one-process runs check it with the default unwinder).
        if let leakOptions = ProcessInfo.processInfo.environment["LSAN_OPTIONS"] {
            environment["LSAN_OPTIONS"] = leakOptions + ":fast_unwind_on_malloc=0"
        }
        return try run(executable: mpirun(), mpirunArguments, in: directory, environment: environment)
    }

    private func run(executable: URL, _ arguments: [String], in directory: String, environment: [String: String]) throws
        -> (status: Int32, stdout: String, stderr: String)
    {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        process.environment = ProcessInfo.processInfo.environment.merging(Self.mpiEnvironment.merging(environment) { $1 }) { $1 }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile(), stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
    }

    /// Demo frames and the flags that read them (random backbone weights: no ImageNet file here).
    private func data(count: Int) throws -> [String] {
        _ = try DemoDataGenerator(seed: 11).write(to: folder.appendingPathComponent("data"), count: count)
        return ["--images-dir", p("data/images"), "--csv-path", p("data/labels.csv"), "--weights", "none"]
    }

    /// Largest |a − b| over every tensor of two weight files with the same keys and shapes, and how many values
    /// differ by more than `close`.
    private func difference(_ a: String, _ b: String, close: Float) throws -> (max: Float, far: Int, count: Int) {
        let x = try SafetensorsFile.load(from: URL(fileURLWithPath: a)).stateDict
        let y = try SafetensorsFile.load(from: URL(fileURLWithPath: b)).stateDict
        XCTAssertEqual(Set(x.keys), Set(y.keys))
        var worst: Float = 0, far = 0, count = 0
        for key in x.keys {
            guard let u = x[key], let v = y[key] else { continue }
            XCTAssertEqual(u.shape, v.shape, key)
            for (s, t) in zip(u.floats, v.floats) {
                let d = abs(s - t)
                worst = max(worst, d.isNaN ? .infinity : d)
                if !(d <= close) { far += 1 }
                count += 1
            }
        }
        return (worst, far, count)
    }

    /// Frozen backbone, cached features: 2 ranks × batch 4 against 1 process × batch 8, three epochs.
    ///
    /// The gradient sums differ from one process's only in rounding order, and Adam divides each gradient by its own
    /// running magnitude, so a gradient that is rounding noise can still move its weight by up to the learning rate
    /// (1e-3) per step. Hence two bounds: nearly every value agrees to 1e-5, and none is off by more than the steps
    /// taken times the learning rate could explain.
    func testFrozenCachedTrainingMatchesOneProcess() throws {
        let common = ["train"] + (try data(count: 24)) + ["--seed", "3", "--freeze-backbone", "--epochs", "3", "--no-feature-cache", "--output", "m.safetensors"]
        let one = try run(ranks: nil, in: p("one"), common + ["--batch-size", "8"])
        let two = try run(ranks: 2, in: p("two"), common + ["--batch-size", "4"])
        XCTAssertEqual(one.status, 0, one.stderr)
        XCTAssertEqual(two.status, 0, two.stderr)
        XCTAssertEqual(two.stdout, one.stdout, "the transcript must be byte-identical")
        XCTAssertEqual(two.stdout.split(separator: "\n").count, 5, two.stdout)
        XCTAssertTrue(two.stderr.contains("Kernel threads: 1"), "rank 0 reports its share of the cores: \(two.stderr)")
        XCTAssertEqual(two.stderr.components(separatedBy: "Kernel threads").count, 2, "only rank 0 reports: \(two.stderr)")
        for file in ["m.safetensors", "m.best.safetensors"] {
            let d = try difference(p("one/" + file), p("two/" + file), close: 1e-5)
            XCTAssertLessThanOrEqual(d.max, 12 * 1e-3 / 4, file)
            XCTAssertLessThanOrEqual(Double(d.far), 1e-3 * Double(d.count), "\(file): \(d.far) of \(d.count) values differ by > 1e-5")
        }
        // Ranks on different machines read different feature caches: rank 0's holds every row, rank 1's nothing.
        // Only rows cached on every rank count as cached, so both compute the same missing rows and train the same.
        let warm = try run(ranks: nil, in: p("warm"), common + ["--batch-size", "8", "--feature-cache", p("cache0")]
            .filter { $0 != "--no-feature-cache" })
        XCTAssertEqual(warm.status, 0, warm.stderr)
        let exe = try ResNet50Executable.url().path
        let cached = common.filter { $0 != "--no-feature-cache" } + ["--batch-size", "4"]
        let mixed = try run(mpirunArguments: ["--oversubscribe", "-np", "1", exe] + cached + ["--feature-cache", p("cache0"), ":",
                                              "-np", "1", exe] + cached + ["--feature-cache", p("cache1")], in: p("mixed"))
        XCTAssertEqual(mixed.status, 0, mixed.stderr)
        XCTAssertEqual(mixed.stdout, one.stdout)

        // Rank 0 alone writes: no second set of files, nothing left staged.
        let written = try FileManager.default.contentsOfDirectory(atPath: p("two")).filter { !$0.hasPrefix(".") }.sorted()
        XCTAssertEqual(written, ["m.best.safetensors", "m.curves.svg", "m.epochs.csv", "m.pr.svg", "m.resume.safetensors",
                                 "m.safetensors", "m.summary.json"])
    }

    /// Full fine-tuning with --sync-bn: 2 ranks × batch 4 against 1 process × batch 8, one step of the whole ResNet-50.
    ///
    /// The forward pass is the same computation, so the epoch's training numbers print the same. The step's weights
    /// cannot agree to the last bit: Adam moves each weight by about ±lr whatever the size of its gradient, so a
    /// gradient that is mostly rounding noise (many are, in a randomly initialised ResNet-50 on 8 images) can flip
    /// sign under any change of summation order. Measured on this data: 0.33% of the 24 M values move apart, against
    /// 0.41% between one process on AVX-512 and one on AVX2 kernels (the same run, other rounding); without
    /// --sync-bn (each rank normalising its 4 images alone) 45% do. The bound, 1%, sits between.
    func testSyncBatchNormFineTuningMatchesOneProcess() throws {
        let common = try data(count: 10) + ["--seed", "3", "--epochs", "1", "--no-feature-cache", "--output", "m.safetensors"]
        let one = try run(ranks: nil, in: p("one"), ["train"] + common + ["--batch-size", "8"])
        let two = try run(ranks: 2, in: p("two"), ["train"] + common + ["--batch-size", "4", "--sync-bn"])
        XCTAssertEqual(one.status, 0, one.stderr)
        XCTAssertEqual(two.status, 0, two.stderr)
        func trainingPart(_ stdout: String) -> [String] {
            stdout.split(separator: "\n").map { $0.components(separatedBy: " | Validation").first ?? "" }
        }
        XCTAssertEqual(trainingPart(two.stdout), trainingPart(one.stdout))
        XCTAssertEqual(trainingPart(one.stdout).count, 3, one.stdout)
        let d = try difference(p("one/m.safetensors"), p("two/m.safetensors"), close: 1e-5)
        XCTAssertLessThanOrEqual(d.max, 2.5e-3, "one Adam step moves a weight by at most about the learning rate")
        XCTAssertLessThanOrEqual(Double(d.far), 0.01 * Double(d.count), "\(d.far) of \(d.count) values differ by > 1e-5")
    }

    /// Sharded feature extraction: the file two ranks write is the file one process writes, byte for byte.
    func testFeatureExtractionIsBitIdentical() throws {
        let common = try data(count: 21) + ["--no-feature-cache", "--out", "f.safetensors"]
        let one = try run(ranks: nil, in: p("one"), ["features"] + common)
        let two = try run(ranks: 2, in: p("two"), ["features"] + common)
        XCTAssertEqual(one.status, 0, one.stderr)
        XCTAssertEqual(two.status, 0, two.stderr)
        XCTAssertEqual(two.stdout, one.stdout)
        let a = try Data(contentsOf: URL(fileURLWithPath: p("one/f.safetensors")))
        let b = try Data(contentsOf: URL(fileURLWithPath: p("two/f.safetensors")))
        XCTAssertGreaterThan(a.count, 21 * 2048 * 4)
        XCTAssertTrue(a == b, "2-rank features differ from 1-process features")
    }

    /// A feature store written by two ranks is the one a single process writes; training from it (memory-mapped, each
    /// rank reading its rows) prints what training on computed features prints; fp16 stores train; a store that does
    /// not belong to the run is refused by name.
    func testFeatureStoreWrittenByRanksTrainsLikeComputedFeatures() throws {
        let data = try data(count: 20)
        let one = try run(ranks: nil, in: p("s"), ["features"] + data + ["--no-feature-cache", "--store", "--out", "one.rnfstore"])
        let two = try run(ranks: 2, in: p("s"), ["features"] + data + ["--no-feature-cache", "--store", "--out", "two.rnfstore"])
        XCTAssertEqual(one.status, 0, one.stderr)
        XCTAssertEqual(two.status, 0, two.stderr)
        let storeOne = try Data(contentsOf: URL(fileURLWithPath: p("s/one.rnfstore")))
        XCTAssertEqual(storeOne.count, 4096 + 20 * 2048 * 4)
        XCTAssertTrue(storeOne == (try Data(contentsOf: URL(fileURLWithPath: p("s/two.rnfstore")))))
        XCTAssertEqual(try String(contentsOfFile: p("s/one.index.json"), encoding: .utf8),
                       try String(contentsOfFile: p("s/two.index.json"), encoding: .utf8))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: p("s")).filter { $0.hasPrefix(".") }, [],
                       "the ranks' part files are removed")

        let train = ["train"] + data + ["--freeze-backbone", "--epochs", "2", "--output", "m.safetensors"]
        let computed = try run(ranks: nil, in: p("computed"), train + ["--no-feature-cache", "--batch-size", "8"])
        let fromStore = try run(ranks: 2, in: p("stored"), train + ["--features", p("s/one.rnfstore"), "--batch-size", "4"])
        XCTAssertEqual(computed.status, 0, computed.stderr)
        XCTAssertEqual(fromStore.status, 0, fromStore.stderr)
        XCTAssertEqual(fromStore.stdout, computed.stdout)

        let half = try run(ranks: nil, in: p("s"), ["features"] + data + ["--no-feature-cache", "--store", "--feature-dtype", "fp16",
                                                                          "--out", "half.rnfstore"])
        XCTAssertEqual(half.status, 0, half.stderr)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: p("s/half.rnfstore"))).count, 4096 + 20 * 2048 * 2)
        let fromHalf = try run(ranks: nil, in: p("half"), train + ["--features", p("s/half.rnfstore")])
        XCTAssertEqual(fromHalf.status, 0, fromHalf.stderr)
        XCTAssertEqual(fromHalf.stdout.split(separator: "\n").count, 4, fromHalf.stdout)

        // Not this run's store: other images, no index, a cut file, the wrong mode. One line each, nothing written.
        _ = try DemoDataGenerator(seed: 12).write(to: folder.appendingPathComponent("other"), count: 12)
        let otherData = ["--images-dir", p("other/images"), "--csv-path", p("other/labels.csv"), "--weights", "none"]
        try FileManager.default.copyItem(atPath: p("s/one.rnfstore"), toPath: p("s/orphan.rnfstore"))
        let cut = try Data(contentsOf: URL(fileURLWithPath: p("s/one.rnfstore"))).prefix(5000)
        try cut.write(to: URL(fileURLWithPath: p("s/cut.rnfstore")))
        try FileManager.default.copyItem(atPath: p("s/one.index.json"), toPath: p("s/cut.index.json"))
        let refusals: [([String], String)] = [
            (["train"] + otherData + ["--freeze-backbone", "--features", p("s/one.rnfstore")], "20 rows, labels.csv lists 12 images"),
            (train + ["--features", p("s/orphan.rnfstore")], "the store's index cannot be read"),
            (train + ["--features", p("s/cut.rnfstore")], "header says 20 rows"),
            (["train"] + data + ["--features", p("s/one.rnfstore")], "it needs --freeze-backbone"),
        ]
        for (arguments, expected) in refusals {
            let r = try run(ranks: nil, in: p("refused"), arguments + ["--output", "m.safetensors"])
            XCTAssertEqual(r.status, 1, "\(arguments): \(r.stderr)")
            let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("resnet50: error: ") }
            XCTAssertEqual(errors.count, 1, r.stderr)
            XCTAssertTrue(errors.first?.hasPrefix("resnet50: error: --features ") ?? false, r.stderr)
            XCTAssertTrue(r.stderr.contains(expected), "\(expected) not in \(r.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: p("refused/m.safetensors")))
        }
    }

    /// Rank 1 killed at the start of epoch 2: the job stops with rank 0's message naming the checkpoint of epoch 1,
    /// an earlier run's model is untouched, and the checkpoint resumes with one process (the same global batch) to
    /// the transcript of an uninterrupted one-process run.
    func testKilledRankLeavesResumableCheckpointAndResumesWithOtherRankCount() throws {
        let common = try data(count: 24) + ["--freeze-backbone", "--no-feature-cache", "--output", "m.safetensors"]
        // An earlier, finished run at the same output: a failed run must leave its model as it was.
        let earlier = try run(ranks: 2, in: p("killed"), ["train"] + common + ["--batch-size", "4", "--epochs", "1", "--seed", "4"])
        XCTAssertEqual(earlier.status, 0, earlier.stderr)
        let earlierModel = try Data(contentsOf: URL(fileURLWithPath: p("killed/m.safetensors")))

        let killed = try run(ranks: 2, in: p("killed"), ["train"] + common + ["--batch-size", "4", "--epochs", "3"],
                             environment: ["RESNETFUSION_KILL_RANK": "1:2:1"])
        XCTAssertNotEqual(killed.status, 0)
        XCTAssertEqual(killed.stdout.split(separator: "\n").count, 2, "Using device and epoch 1 only: \(killed.stdout)")
        XCTAssertTrue(killed.stderr.contains("during epoch 2: \(p("killed/m.resume.safetensors")) holds the run after epoch 1"),
                      killed.stderr)
        XCTAssertTrue(killed.stderr.contains("--resume"), killed.stderr)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: p("killed/m.safetensors"))), earlierModel)

        let uninterrupted = try run(ranks: nil, in: p("one"), ["train"] + common + ["--batch-size", "8", "--epochs", "3"])
        XCTAssertEqual(uninterrupted.status, 0, uninterrupted.stderr)
        let resumed = try run(ranks: nil, in: p("killed"), ["train"] + common
            + ["--batch-size", "8", "--epochs", "3", "--resume", "m.resume.safetensors"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertEqual(resumed.stdout, uninterrupted.stdout)
        let d = try difference(p("one/m.safetensors"), p("killed/m.safetensors"), close: 1e-5)
        XCTAssertLessThanOrEqual(d.max, 12 * 1e-3 / 4)

        // Another global batch is another run: refused, naming the global batch.
        let other = try run(ranks: 2, in: p("killed"), ["train"] + common
            + ["--batch-size", "8", "--epochs", "3", "--resume", "m.resume.safetensors"])
        XCTAssertNotEqual(other.status, 0)
        XCTAssertTrue(other.stderr.contains("global batch"), other.stderr)
    }

    /// Ranks started with different flags (mpirun's MPMD form) or different data are refused by name before training.
    func testRanksThatDisagreeAreRefused() throws {
        let common = ["train"] + (try data(count: 10)) + ["--freeze-backbone", "--epochs", "1", "--no-feature-cache", "--output", "m.safetensors"]
        let exe = try ResNet50Executable.url().path
        let seeds = try run(mpirunArguments: ["--oversubscribe", "-np", "1", exe] + common + ["--seed", "1", ":", "-np", "1", exe] + common
            + ["--seed", "2"], in: p("seeds"))
        XCTAssertNotEqual(seeds.status, 0)
        XCTAssertTrue(seeds.stderr.contains("rank 1 of 2 has another --seed than rank 0"), seeds.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: p("seeds/m.safetensors")))
        let flags = try run(mpirunArguments: ["--oversubscribe", "-np", "1", exe] + common + [":", "-np", "1", exe] + common
            + ["--sync-bn"], in: p("flags"))
        XCTAssertNotEqual(flags.status, 0)
        XCTAssertTrue(flags.stderr.contains("rank 1 of 2 was started with other flags than rank 0"), flags.stderr)
    }

    /// Commands that run in one process refuse to run as several ranks.
    func testEvaluateRefusesToRunAsSeveralRanks() throws {
        let r = try run(ranks: 2, in: p("eval"), ["evaluate", "--model", p("none.safetensors"), "--csv-path", p("none.csv"),
                                                 "--images-dir", p("none")])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("resnet50: error: predict and evaluate run in one process"), r.stderr)
    }
}
