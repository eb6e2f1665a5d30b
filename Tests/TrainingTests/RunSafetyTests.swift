import DataPipeline
import Foundation
import Models
import Training
import WeightFiles
import XCTest

/// What a careless or hostile run must not do to the user's files: replace an input, leave a half-written or
/// mixed set of outputs, run twice on one output, resume from a checkpoint of other data, or loop on NaN.
final class RunSafetyTests: XCTestCase {
    private var folder: URL!

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("rnf-safety-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        _ = try DemoDataGenerator(seed: 4).write(to: folder, count: 12)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: folder)
    }

    private func p(_ name: String) -> String { folder.appendingPathComponent(name).path }

    private func options(epochs: Int = 2, output: String = "models/m.safetensors") -> TrainingOptions {
        var o = TrainingOptions(imagesDirectory: p("images"), csvPath: p("labels.csv"))
        o.epochs = epochs
        o.weights = .none
        o.backbone = .narrow(numClasses: nil)
        o.freezeBackbone = true
        o.output = p(output)
        o.featureCacheDirectory = p("cache")
        o.seed = 3
        return o
    }

    private func run(_ options: TrainingOptions) throws -> TrainingResult {
        try Trainer(options: options).run()
    }

    /// The error of a run that must fail, as its one line.
    private func failure(_ options: TrainingOptions) -> String {
        do {
            _ = try run(options)
            return "(no error)"
        } catch {
            return "\(error)"
        }
    }

    /// Every file in the models folder with its bytes, hidden ones included.
    private func snapshot(_ sub: String = "models") throws -> [String: Data] {
        let dir = folder.appendingPathComponent(sub)
        var result = [String: Data]()
        for name in try FileManager.default.contentsOfDirectory(atPath: dir.path) {
            let url = dir.appendingPathComponent(name)
            var isDirectory: ObjCBool = false
            FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory)
            result[name] = isDirectory.boolValue ? Data("(folder)".utf8) : try Data(contentsOf: url)
        }
        return result
    }

    func testOutputThatIsAnInputIsRefusedBeforeAnyWork() throws {
        let csvBefore = try Data(contentsOf: URL(fileURLWithPath: p("labels.csv")))
        let imageBefore = try Data(contentsOf: URL(fileURLWithPath: p("images/frame_00003.jpg")))
        try FileManager.default.createSymbolicLink(atPath: p("link.safetensors"), withDestinationPath: p("labels.csv"))
        try FileManager.default.linkItem(atPath: p("images/frame_00003.jpg"), toPath: p("hard.safetensors"))
        for (output, expected) in [("labels.csv", "TrainingOptions.csvPath file"), ("images/frame_00003.jpg", "image"),
                                   ("link.safetensors", "TrainingOptions.csvPath file"),
                                   ("images/../labels.csv", "TrainingOptions.csvPath file"),
                                   ("hard.safetensors", "image")] {
            let message = failure(options(output: output))
            XCTAssertTrue(message.contains("is the \(expected) this run reads"), "\(output): \(message)")
        }
        // The model's siblings count too: X.epochs.csv of --output X.safetensors would be labels.csv's neighbour here.
        try FileManager.default.copyItem(atPath: p("labels.csv"), toPath: p("data.epochs.csv"))
        var o = options(output: "data.safetensors")
        o.csvPath = p("data.epochs.csv")
        XCTAssertTrue(failure(o).contains("data.epochs.csv is the TrainingOptions.csvPath file"), failure(o))
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: p("labels.csv"))), csvBefore)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: p("images/frame_00003.jpg"))), imageBefore)
        XCTAssertFalse(FileManager.default.fileExists(atPath: p("cache")), "refused before any feature was computed")
    }

    func testUnwritableOutputFolderIsFoundBeforeTheFirstEpoch() {
        // A regular file where a folder must go: creating the folder fails, as on a read-only mount.
        let message = failure(options(output: "labels.csv/m.safetensors"))
        XCTAssertTrue(message.hasPrefix("TrainingOptions.output \(p("labels.csv/m.safetensors")): cannot create the folder"), message)
        XCTAssertFalse(FileManager.default.fileExists(atPath: p("cache")))
    }

    func testSecondRunOnTheSameOutputIsRefusedWhileTheFirstHoldsTheLock() throws {
        do {
            let holder = try OutputSet(files: RunFiles(output: URL(fileURLWithPath: p("models/m.safetensors"))))
            let message = failure(options())
            XCTAssertTrue(message.contains("another run is writing this model now"), message)
            holder.discard()
        }
        XCTAssertNoThrow(try run(options()), "the lock is released with its holder")
    }

    /// A run that fails after some epochs (here: the loss turns non-finite) leaves the previous run's complete
    /// set byte for byte, no temporary files, and one line naming the epoch and the batch.
    func testNonFiniteLossStopsWithoutTouchingThePreviousSet() throws {
        _ = try run(options())
        let before = try snapshot()
        XCTAssertEqual(Set(before.keys), Set(["m.safetensors", "m.best.safetensors", "m.resume.safetensors", "m.epochs.csv",
                                              "m.summary.json", "m.curves.svg", "m.pr.svg", ".m.safetensors.lock"]))
        var o = options(epochs: 5)
        o.learningRate = 1e30
        let message = failure(o)
        XCTAssertTrue(message.range(of: #"^epoch \d+/5 (train|validation), batch \d+ of \d+: the loss is (nan|inf|-inf); stopping"#,
                                    options: .regularExpression) != nil, message)
        XCTAssertEqual(try snapshot(), before)
    }

    /// A run killed while renaming its set into place is finished by the next run on that output.
    func testInterruptedCommitIsRolledForward() throws {
        let files = RunFiles(output: URL(fileURLWithPath: p("models/m.safetensors")))
        do {
            let set = try OutputSet(files: files)
            for url in [files.last, files.best, files.summary] { try Data(url.lastPathComponent.utf8).write(to: set.staged(url)) }
            try Data().write(to: set.staging.appendingPathComponent("COMMIT"))
            // Only the summary made it before the "kill".
            XCTAssertEqual(rename(set.staged(files.summary).path, files.summary.path), 0)
        }
        do {
            let next = try OutputSet(files: files)
            XCTAssertEqual(try Data(contentsOf: files.last), Data("m.safetensors".utf8))
            XCTAssertEqual(try Data(contentsOf: files.best), Data("m.best.safetensors".utf8))
            next.discard()
            XCTAssertFalse(FileManager.default.fileExists(atPath: next.staging.path))
        }
        // Without the marker the run was still training: its files are dropped, nothing is moved.
        do {
            let stale = try OutputSet(files: files)
            try Data("half".utf8).write(to: stale.staged(files.last))
        }
        do {
            let recovered = try OutputSet(files: files)
            XCTAssertEqual(try Data(contentsOf: files.last), Data("m.safetensors".utf8))
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: recovered.staging.path), [])
            recovered.discard()
        }
    }

    func testResumeRefusesOtherDataAndDamagedCheckpoints() throws {
        _ = try run(options(epochs: 2))
        let checkpoint = p("models/m.resume.safetensors")
        try FileManager.default.copyItem(atPath: checkpoint, toPath: p("saved.resume.safetensors"))
        var resumed = options(epochs: 3)
        resumed.resumePath = p("saved.resume.safetensors")

        // A metadata value changed in one row (the label and the name unchanged).
        let csv = try String(contentsOfFile: p("labels.csv"), encoding: .utf8)
        var rows = csv.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var fields = rows[2].split(separator: ",", maxSplits: 3, omittingEmptySubsequences: false).map(String.init)
        fields[2] = String((Int(fields[2]) ?? 0) + 1)
        rows[2] = fields.joined(separator: ",")
        try rows.joined(separator: "\n").write(toFile: p("edited.csv"), atomically: true, encoding: .utf8)
        var edited = resumed
        edited.csvPath = p("edited.csv")
        XCTAssertTrue(failure(edited).contains("has labels.csv "), failure(edited))

        // The same frames in another folder.
        try FileManager.default.copyItem(atPath: p("images"), toPath: p("images-copy"))
        var moved = resumed
        moved.imagesDirectory = p("images-copy")
        XCTAssertTrue(failure(moved).contains("has images "), failure(moved))

        // One flipped bit in the last tensor's data.
        var bytes = try Data(contentsOf: URL(fileURLWithPath: p("saved.resume.safetensors")))
        bytes[bytes.count - 3] ^= 0x10
        try bytes.write(to: URL(fileURLWithPath: p("flipped.resume.safetensors")))
        var flipped = resumed
        flipped.resumePath = p("flipped.resume.safetensors")
        XCTAssertTrue(failure(flipped).contains("tensor data is damaged"), failure(flipped))

        XCTAssertNoThrow(try run(resumed), "the intact checkpoint with the same data resumes")
    }

    func testFlagAndModelFileSizesAreRangeChecked() throws {
        for (change, expected): ((inout TrainingOptions) -> Void, String) in [
            ({ $0.maxBoxes = 2_305_843_009_213_693_952 }, "TrainingOptions.maxBoxes must be in 0…"),
            ({ $0.maxBoxes = 1_000_000_000 }, "TrainingOptions.maxBoxes must be in 0…"),
            ({ $0.threads = 100_000 }, "TrainingOptions.threads must be in 1…1024"),
            ({ $0.numWorkers = 1 << 40 }, "TrainingOptions.numWorkers must be in 0…256"),
            ({ $0.batchSize = 1 << 62 }, "TrainingOptions.batchSize must be in 1…4096"),
            ({ $0.epochs = Int.max }, "TrainingOptions.epochs must be in 1…100000"),
        ] {
            var o = options()
            change(&o)
            XCTAssertTrue(failure(o).contains(expected), "\(expected): \(failure(o))")
        }

        // Model metadata: max_boxes 2^61, a negative meta_dim, widths that would allocate gigabytes, NaN weights.
        _ = try run(options(epochs: 1))
        let file = try SafetensorsFile.load(from: URL(fileURLWithPath: p("models/m.safetensors")))
        func rewritten(_ metadata: [String: String], tensors: WeightFiles.StateDict? = nil) throws -> URL {
            let url = folder.appendingPathComponent("hostile-\(UUID().uuidString).safetensors")
            try SafetensorsFile.save(tensors ?? file.stateDict, metadata: file.metadata.merging(metadata) { $1 }, to: url)
            return url
        }
        var nanWeights = file.stateDict
        let head = nanWeights["head.3.weight"]!
        var values = head.floats
        values[1] = .nan
        nanWeights["head.3.weight"] = WeightTensor(shape: head.shape, floats: values)
        for (url, expected) in [
            (try rewritten(["max_boxes": "2305843009213693952", "meta_dim": "4"]), "max_boxes 2305843009213693952 and meta_dim 4 do not fit"),
            (try rewritten(["meta_dim": "-4"]), "meta_dim -4 do not fit"),
            (try rewritten(["backbone": "bottleneck layers=3,4,6,3 stem=64 widths=4096,4096,4096,4096"]), "widths in 1…2048"),
            (try rewritten(["backbone": "bottleneck layers=64,64,64,64 stem=64 widths=2048,2048,2048,2048"]), "M parameters"),
            (try rewritten(["backbone": "basic layers=1,1,1 stem=8 widths=8,8,8,8"]), "expected 4 stages"),
            (try rewritten([:], tensors: nanWeights), "tensor head.3.weight holds a non-finite value"),
        ] {
            XCTAssertThrowsError(try TrainedModel.load(url)) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(expected): \(error)")
            }
        }
    }

    /// A FIFO would block `open` until a writer appears and a device would be read forever: both are refused at once.
    func testFIFOsAndDevicesAreRefusedWithoutBlocking() throws {
        try FileManager.default.removeItem(atPath: p("images/frame_00004.jpg"))
        XCTAssertEqual(mkfifo(p("images/frame_00004.jpg"), 0o644), 0)
        let fifoMessage = failure(options())
        XCTAssertTrue(fifoMessage.contains("frame_00004.jpg: is a FIFO (named pipe), not a regular file"), fifoMessage)

        try FileManager.default.removeItem(atPath: p("images/frame_00004.jpg"))
        try FileManager.default.createSymbolicLink(atPath: p("images/frame_00004.jpg"), withDestinationPath: "/dev/zero")
        let deviceMessage = failure(options())
        XCTAssertTrue(deviceMessage.contains("frame_00004.jpg: is a device, not a regular file"), deviceMessage)

        XCTAssertEqual(mkfifo(p("pipe.csv"), 0o644), 0)
        var o = options()
        o.csvPath = p("pipe.csv")
        XCTAssertTrue(failure(o).contains("pipe.csv: cannot read: is a FIFO (named pipe), not a regular file"), failure(o))
    }

    /// NaN scores (a diverged model) must neither hang the threshold sweep nor the curves.
    func testMetricsTerminateOnNaNScores() {
        let scores: [Double] = [0.9, .nan, 0.2, .nan, 0.7, -.nan, 0.4]
        let labels = [1, 1, 0, 0, 1, 0, 0]
        let choice = bestF1Threshold(probabilities: scores, labels: labels)
        XCTAssertTrue(choice.threshold.isFinite)
        XCTAssertEqual(choice.f1, 0.8, accuracy: 1e-12, "0.9 and 0.7 of the 3 positives: P 1, R 2/3")
        XCTAssertEqual(precisionRecallCurve(scores: scores, labels: labels).count, 5, "four distinct scores and the NaN group")
        XCTAssertNotNil(rocAUC(scores: scores, labels: labels))
        XCTAssertNotNil(averagePrecision(scores: scores, labels: labels))
        XCTAssertEqual(bestF1Threshold(probabilities: [.nan, .nan], labels: [1, 0]).threshold, 0.5)
    }
}
