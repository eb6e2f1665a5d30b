import DataPipeline
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Models
import NN
import Tensors
import Training
import WeightFiles
import XCTest

/// What `resnet50 train` adds to the seed's run: the best epoch kept, the tuned threshold stored, the epoch CSV
/// and JSON summary, the pictures, class weights, early stopping, the schedule, and resuming an interrupted run.
/// Narrow ResNet, frozen backbone on cached features: each run takes well under a second.
final class RunOutputsTests: XCTestCase {
    private var folder: URL!

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("rnf-run-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: folder)
    }

    /// Demo frames with a labels.csv whose label is visible in the metadata, but noisily: `num_person` is high
    /// for positives, with every fifth label flipped, so validation numbers move from epoch to epoch.
    private func noisyDataset(count: Int) throws -> (images: URL, csv: URL) {
        _ = try DemoDataGenerator(seed: 3).write(to: folder, count: count)
        var csv = "image_name,interesting/not interesting,num_person,num_vehicles,avg_person_conf,total_boxes,bounding_boxes\n"
        for i in 0 ..< count {
            let signal = i % 3 == 0 ? 1 : 0
            let label = i % 5 == 2 ? 1 - signal : signal
            csv += String(format: "frame_%05d.jpg,%d,%d,%d,0.%d,%d,\"[]\"\n", i + 1, label, signal * 3 + i % 2, i % 4, i % 10,
                          signal * 3 + i % 4)
        }
        let url = folder.appendingPathComponent("noisy.csv")
        try csv.write(to: url, atomically: true, encoding: .utf8)
        return (folder.appendingPathComponent("images"), url)
    }

    private func options(images: URL, csv: URL, epochs: Int, output: String = "models/model.safetensors") -> TrainingOptions {
        var o = TrainingOptions(imagesDirectory: images.path, csvPath: csv.path)
        o.epochs = epochs
        o.weights = .none
        o.backbone = .narrow(numClasses: nil)
        o.output = folder.appendingPathComponent(output).path
        o.featureCacheDirectory = folder.appendingPathComponent("cache").path
        o.freezeBackbone = true
        o.learningRate = 1e-2
        o.seed = 11
        return o
    }

    /// Runs to the end; `onEvent` sees each event as it happens. Returns the result and the transcript's tags.
    private func run(_ options: TrainingOptions, onEvent: @escaping (TrainingEvent) -> Void = { _ in }) throws
        -> (TrainingResult, [String])
    {
        var events = [TrainingEvent]()
        let result = try Trainer(options: options, events: { events.append($0); onEvent($0) }).run()
        return (result, transcriptTags(events))
    }

    private func weights(_ path: URL) throws -> [String: [Float]] {
        var out = [String: [Float]]()
        for entry in try SafetensorsFile.load(from: path).stateDict { out[entry.key] = entry.tensor.floats }
        return out
    }

    private func assertClose(_ a: [String: [Float]], _ b: [String: [Float]], tolerance: Float = 1e-6,
                             file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(Set(a.keys), Set(b.keys), file: file, line: line)
        var worst: Float = 0
        for (key, x) in a {
            guard let y = b[key], x.count == y.count else { XCTFail("\(key) differs in size", file: file, line: line); continue }
            for (u, v) in zip(x, y) {
                // A NaN on one side only must fail: max(worst, .nan) would keep worst.
                if u.isNaN || v.isNaN { worst = u.isNaN && v.isNaN ? worst : .infinity; continue }
                worst = max(worst, abs(u - v) / max(1, abs(u)))
            }
        }
        XCTAssertLessThanOrEqual(worst, tolerance, file: file, line: line)
    }

    /// The best file holds the model of the best epoch: a second run stopped at that epoch (same seed, constant
    /// rate) ends with exactly those weights, while the last model differs. The CSV marks that epoch alone.
    func testBestEpochIsKeptNextToTheLast() throws {
        let (images, csv) = try noisyDataset(count: 40)
        for selectBy in SelectionMetric.allCases {
            var o = options(images: images, csv: csv, epochs: 12, output: "models/\(selectBy.rawValue).safetensors")
            o.selectBy = selectBy
            let (result, lines) = try run(o)
            XCTAssertEqual(lines, ["started"] + (1 ... 12).map { "epoch \($0)/12" } + ["finished"])
            let records = result.records
            let expected: Int
            switch selectBy {
            case .valF1:
                let f1 = records.map(\.validation.confusion.f1), top = f1.max()!
                expected = records.filter { $0.validation.confusion.f1 == top }.min { $0.validation.loss < $1.validation.loss }!.epoch
            case .valLoss:
                expected = records.min { $0.validation.loss < $1.validation.loss }!.epoch
            }
            XCTAssertEqual(result.bestEpoch, expected, "\(selectBy): \(records.map { ($0.validation.confusion.f1, $0.validation.loss) })")
            XCTAssertLessThan(result.bestEpoch, 12, "\(selectBy): the data is built so that the best epoch is not the last")

            let best = try weights(result.files.best), last = try weights(result.files.last)
            XCTAssertNotEqual(best["head.3.weight"], last["head.3.weight"])
            var replay = o
            replay.epochs = result.bestEpoch
            replay.output = folder.appendingPathComponent("models/replay-\(selectBy.rawValue).safetensors").path
            let (replayed, _) = try run(replay)
            XCTAssertEqual(try weights(replayed.files.last), best, "\(selectBy): best file = the model after epoch \(result.bestEpoch)")

            let rows = try String(contentsOf: result.files.epochLog, encoding: .utf8).split(separator: "\n")
            XCTAssertTrue(rows[0].hasSuffix(",val_tn,lr,seconds,best"), String(rows[0]))
            let marks = rows.dropFirst().map { $0.split(separator: ",").last! }
            XCTAssertEqual(marks.firstIndex(of: "1").map { $0 + 1 }, result.bestEpoch)
            XCTAssertEqual(marks.filter { $0 == "1" }.count, 1)

            let metadata = try SafetensorsFile.load(from: result.files.best).metadata
            XCTAssertEqual(metadata["epoch"], String(result.bestEpoch))
            XCTAssertEqual(metadata["role"], "best")
            XCTAssertEqual(try SafetensorsFile.load(from: result.files.last).metadata["epoch"], "12")
        }
    }

    /// The stored threshold is the F1-best one on the best model's validation probabilities, recomputed here from
    /// the saved file; it never does worse than argmax on that split.
    func testThresholdIsTunedOnValidationAndStored() throws {
        let (images, csv) = try noisyDataset(count: 40)
        let o = options(images: images, csv: csv, epochs: 8)
        let (result, _) = try run(o)
        var inference = InferenceOptions(modelPath: result.files.best.path, imagesDirectory: images.path, csvPath: csv.path)
        inference.featureCacheDirectory = o.featureCacheDirectory
        let scores = try Inference(options: inference, warn: { _ in }).score(requireLabels: true)
        let split = try DatasetSplit(count: 40, seed: o.seed)
        let p = split.validation.map { scores.probabilities[$0] }, y = split.validation.map { scores.labels[$0] }
        let expected = bestF1Threshold(probabilities: p, labels: y)
        // evaluate --split val scores exactly those rows.
        inference.split = .val
        let validation = try Inference(options: inference, warn: { _ in }).score(requireLabels: true)
        XCTAssertEqual(validation.probabilities.count, p.count)
        // Other batch compositions round differently in the last bits.
        for (a, b) in zip(validation.probabilities, p) { XCTAssertEqual(a, b, accuracy: 1e-6) }
        XCTAssertEqual(validation.names, split.validation.map { scores.names[$0] })
        XCTAssertEqual(EvaluationReport(scores: validation).atThreshold.f1, expected.f1, accuracy: 1e-12)
        // A CSV with other rows cannot be split as the model was.
        let fewer = folder.appendingPathComponent("fewer.csv")
        try String(decoding: try Data(contentsOf: csv), as: UTF8.self).split(separator: "\n").dropLast().joined(separator: "\n")
            .write(to: fewer, atomically: true, encoding: .utf8)
        inference.csvPath = fewer.path
        XCTAssertThrowsError(try Inference(options: inference, warn: { _ in }).score(requireLabels: true)) {
            XCTAssertTrue("\($0)".contains("trained on 40 rows, this CSV has 39"), "\($0)")
        }
        XCTAssertEqual(scores.thresholdSource, .model)
        XCTAssertEqual(scores.threshold, result.bestThreshold.threshold, accuracy: 1e-6)
        // Stored halfway down to the next lower validation score: the same samples on each side.
        let below = p.filter { $0 < expected.threshold - 1e-6 }.max() ?? 0
        XCTAssertEqual(result.bestThreshold.threshold, (expected.threshold + below) / 2, accuracy: 1e-5)
        XCTAssertEqual(p.filter { $0 >= result.bestThreshold.threshold }.count, p.filter { $0 >= expected.threshold - 1e-6 }.count)
        XCTAssertEqual(result.bestThreshold.f1, expected.f1, accuracy: 1e-12)
        XCTAssertGreaterThanOrEqual(result.bestThreshold.f1, result.records[result.bestEpoch - 1].validation.confusion.f1)
        let metadata = try SafetensorsFile.load(from: result.files.best).metadata
        XCTAssertEqual(Double(metadata["threshold_val_f1"]!)!, expected.f1, accuracy: 1e-12)
    }

    /// Summary JSON and pictures: the JSON names the run; the SVGs are well-formed XML with the curves drawn.
    func testSummaryAndPictures() throws {
        let (images, csv) = try noisyDataset(count: 30)
        var o = options(images: images, csv: csv, epochs: 5)
        o.positiveWeight = .auto
        let (result, _) = try run(o)
        let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: result.files.summary)) as! [String: Any]
        XCTAssertEqual(summary["best_epoch"] as? Int, result.bestEpoch)
        XCTAssertEqual(summary["train_size"] as? Int, 24)
        XCTAssertEqual(summary["val_size"] as? Int, 6)
        XCTAssertEqual(summary["seed"] as? Int, 11)
        XCTAssertEqual((summary["flags"] as? [String: Any])?["pos_weight"] as? String, "auto")
        XCTAssertEqual((summary["threshold"] as? [String: Any])?["threshold"] as? Double ?? -1, result.bestThreshold.threshold,
                       accuracy: 1e-12, "JSON keeps 16 significant digits")
        XCTAssertNotNil((summary["final_metrics"] as? [String: Any])?["val"])
        XCTAssertGreaterThan(summary["wall_seconds"] as? Double ?? 0, 0)
        for url in [result.files.curves, result.files.precisionRecall] {
            let svg = try String(contentsOf: url, encoding: .utf8)
            XCTAssertTrue(svg.hasPrefix("<svg xmlns=\"http://www.w3.org/2000/svg\""))
            XCTAssertTrue(svg.hasSuffix("</svg>\n"))
            XCTAssertFalse(svg.contains("nan"), "no NaN coordinates")
            XCTAssertTrue(XMLParser(data: Data(svg.utf8)).parse(), "\(url.lastPathComponent) is well-formed XML")
        }
        let curves = try String(contentsOf: result.files.curves, encoding: .utf8)
        XCTAssertEqual(curves.components(separatedBy: "<polyline").count - 1, 4, "loss and F1, training and validation")
        XCTAssertTrue(try String(contentsOf: result.files.precisionRecall, encoding: .utf8).contains("tuned threshold"))
    }

    /// --pos-weight auto is negatives/positives of the training split and changes the loss.
    func testPositiveWeightAuto() throws {
        let (images, csv) = try noisyDataset(count: 30)
        var o = options(images: images, csv: csv, epochs: 1)
        let (plain, _) = try run(o)
        o.positiveWeight = .auto
        o.output = folder.appendingPathComponent("models/weighted.safetensors").path
        let (weighted, _) = try run(o)
        let table = try LabelsTable(csvURL: csv, imagesDirectory: images, maxBoxes: 10)
        let split = try DatasetSplit(count: 30, seed: o.seed)
        let positives = split.train.filter { table.samples[$0].label == 1 }.count
        XCTAssertEqual(weighted.positiveWeight!, Float(split.train.count - positives) / Float(positives), accuracy: 1e-6)
        XCTAssertNil(plain.positiveWeight)
        XCTAssertNotEqual(plain.records[0].training.loss, weighted.records[0].training.loss)
    }

    /// Warm-up then cosine, per epoch; the CSV logs it.
    func testLearningRateSchedule() throws {
        let s = LearningRateSchedule.cosine
        XCTAssertEqual(s.learningRate(epoch: 1, epochs: 6, warmup: 2, base: 0.3), 0.1, accuracy: 1e-7)
        XCTAssertEqual(s.learningRate(epoch: 2, epochs: 6, warmup: 2, base: 0.3), 0.2, accuracy: 1e-7)
        XCTAssertEqual(s.learningRate(epoch: 3, epochs: 6, warmup: 2, base: 0.3), 0.3, accuracy: 1e-7)
        // Epochs 3…6 are t = 0…3 of T = 4: ½(1 + cos(π·2/4)) = 0.5 at epoch 5.
        XCTAssertEqual(s.learningRate(epoch: 5, epochs: 6, warmup: 2, base: 0.3), 0.15, accuracy: 1e-7)
        XCTAssertEqual(LearningRateSchedule.constant.learningRate(epoch: 6, epochs: 6, warmup: 2, base: 0.3), 0.3)

        let (images, csv) = try noisyDataset(count: 20)
        var o = options(images: images, csv: csv, epochs: 4)
        o.learningRateSchedule = .cosine
        o.warmupEpochs = 1
        let (result, _) = try run(o)
        XCTAssertEqual(result.records.map(\.learningRate), (1 ... 4).map { s.learningRate(epoch: $0, epochs: 4, warmup: 1, base: 1e-2) })
        let row2 = try String(contentsOf: result.files.epochLog, encoding: .utf8).split(separator: "\n")[2].split(separator: ",")
        XCTAssertEqual(Float(row2[19])!, 1e-2, accuracy: 1e-7, "epoch 2 is the first after warm-up")
    }

    /// --patience stops once the selection metric has not improved for N epochs.
    func testPatienceStopsEarly() throws {
        let (images, csv) = try noisyDataset(count: 40)
        var o = options(images: images, csv: csv, epochs: 30)
        o.patience = 2
        let (result, lines) = try run(o)
        XCTAssertTrue(result.stoppedEarly)
        XCTAssertLessThan(result.records.count, 30)
        XCTAssertEqual(result.records.count, result.bestEpoch + 2, "stops exactly 2 epochs after the last improvement")
        XCTAssertEqual(lines, ["started"] + (1 ... result.records.count).map { "epoch \($0)/30" } + ["finished"])
    }

    /// Stop after epoch 3 (a 3-epoch run), resume to 7: the same weights, thresholds, history and stdout as the
    /// uninterrupted 7-epoch run. Dropout, class weights and AdamW all carry state across the break.
    func testResumeEndsWhereTheUninterruptedRunEnds() throws {
        let (images, csv) = try noisyDataset(count: 40)
        var base = options(images: images, csv: csv, epochs: 7, output: "models/full.safetensors")
        base.positiveWeight = .auto
        base.weightDecay = 0.05
        let (full, fullLines) = try run(base)

        var first = base
        first.epochs = 3
        first.output = folder.appendingPathComponent("models/split.safetensors").path
        let (interrupted, _) = try run(first)
        var second = first
        second.epochs = 7
        second.resumePath = interrupted.files.resume.path
        let (resumed, resumedLines) = try run(second)

        assertClose(try weights(full.files.last), try weights(resumed.files.last))
        assertClose(try weights(full.files.best), try weights(resumed.files.best))
        XCTAssertEqual(full.bestEpoch, resumed.bestEpoch)
        XCTAssertEqual(full.bestThreshold.threshold, resumed.bestThreshold.threshold, accuracy: 1e-6)
        XCTAssertEqual(full.records.map(\.validation), resumed.records.map(\.validation))
        XCTAssertEqual(resumedLines, ["started"] + (1 ... 3).map { "epoch \($0)/7 replayed" } + (4 ... 7).map { "epoch \($0)/7" }
            + ["finished"], "the finished epochs are reported again, marked as replayed")
        XCTAssertEqual(fullLines, resumedLines.map { $0.replacingOccurrences(of: " replayed", with: "") })
        func seedLines(_ result: TrainingResult) -> [String] {
            result.records.map { seedEpochLine(epoch: $0.epoch, epochs: 7, training: $0.training, validation: $0.validation) }
        }
        XCTAssertEqual(seedLines(full), seedLines(resumed), "the seed's transcript as the uninterrupted run's")
    }

    /// The same with a cosine schedule and the full network training (backbone and BatchNorm statistics stored
    /// in the checkpoint): the checkpoint of epoch 2 is copied while the uninterrupted run goes on.
    func testResumeMidRunWithCosineScheduleAndFullFineTuning() throws {
        let (images, csv) = try noisyDataset(count: 12)
        var o = options(images: images, csv: csv, epochs: 4, output: "models/cosine.safetensors")
        o.freezeBackbone = false
        o.learningRate = 1e-3
        o.learningRateSchedule = .cosine
        o.warmupEpochs = 1
        let files = RunFiles(output: URL(fileURLWithPath: o.output))
        let copy = folder.appendingPathComponent("after-epoch-2.resume.safetensors")
        // The checkpoint of epoch k is written (into the run's staging folder) after epoch k's event, so when epoch 3's
        // event arrives it holds epoch 2.
        let staged = OutputSet.stagingFolder(for: files).appendingPathComponent(files.resume.lastPathComponent)
        let (full, _) = try run(o) { event in
            if tag(event) == "epoch 3/4" { try? FileManager.default.copyItem(at: staged, to: copy) }
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: copy.path))
        var resume = o
        resume.output = folder.appendingPathComponent("models/cosine-resumed.safetensors").path
        resume.resumePath = copy.path
        let (resumed, lines) = try run(resume)
        XCTAssertEqual(lines, ["started", "epoch 1/4 replayed", "epoch 2/4 replayed", "epoch 3/4", "epoch 4/4", "finished"])
        assertClose(try weights(full.files.last), try weights(resumed.files.last), tolerance: 1e-5)
        XCTAssertEqual(resumed.records.map(\.learningRate), full.records.map(\.learningRate))
        XCTAssertNotEqual(try weights(full.files.last)["backbone.conv1.weight"],
                          ResNet(config: .narrow(numClasses: nil), generator: RandomGenerator(seed: o.seed)).stateDict()["conv1.weight"]?.floats)
    }

    /// A checkpoint from different flags or data, a finished run, or a file that is not a checkpoint: one line
    /// naming the problem, and no model written.
    func testResumeRefusesAnotherRun() throws {
        let (images, csv) = try noisyDataset(count: 20)
        var o = options(images: images, csv: csv, epochs: 2, output: "models/a.safetensors")
        let (first, _) = try run(o)
        o.output = folder.appendingPathComponent("models/b.safetensors").path
        o.resumePath = first.files.resume.path

        var other = o
        other.epochs = 4
        other.learningRate = 3e-2
        XCTAssertThrowsError(try run(other)) { XCTAssertTrue("\($0)".contains("--lr"), "\($0)") }
        other = o
        other.epochs = 4
        other.seed = 12
        XCTAssertThrowsError(try run(other)) { XCTAssertTrue("\($0)".contains("--seed"), "\($0)") }
        XCTAssertThrowsError(try run(o)) { XCTAssertTrue("\($0)".contains("already finished epoch 2"), "\($0)") }
        other = o
        other.epochs = 4
        other.resumePath = first.files.best.path
        XCTAssertThrowsError(try run(other)) { XCTAssertTrue("\($0)".contains("not a resume checkpoint"), "\($0)") }
        XCTAssertFalse(FileManager.default.fileExists(atPath: o.output))
        XCTAssertFalse(FileManager.default.fileExists(atPath: RunFiles(output: URL(fileURLWithPath: o.output)).best.path))
    }
}
