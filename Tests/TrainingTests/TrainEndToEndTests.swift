import DataPipeline
import Foundation
import Models
import NN
import Tensors
import Training
import WeightFiles
import XCTest

/// `Trainer` end to end on generated frames: the seed's output format, falling loss, the saved model, the
/// feature cache, the three backbone modes and the errors. A narrow ResNet keeps each run to seconds; the
/// ResNet-50 path is the same code with a bigger config.
final class TrainEndToEndTests: XCTestCase {
    private var folder: URL!

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("rnf-train-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: folder)
    }

    /// Demo frames with a labels.csv rewritten so the label is plain in the metadata (num_person 5 vs 0):
    /// an easy task on which the loss must fall within a few epochs.
    private func easyDataset(count: Int) throws -> (images: URL, csv: URL) {
        _ = try DemoDataGenerator(seed: 3).write(to: folder, count: count)
        var csv = "image_name,interesting/not interesting,num_person,num_vehicles,avg_person_conf,total_boxes,bounding_boxes\n"
        for i in 0 ..< count {
            let label = i % 3 == 0 ? 1 : 0
            csv += String(format: "frame_%05d.jpg,%d,%d,1,0.9,%d,\"[]\"\n", i + 1, label, label * 5, label * 5 + 1)
        }
        let url = folder.appendingPathComponent("easy.csv")
        try csv.write(to: url, atomically: true, encoding: .utf8)
        return (folder.appendingPathComponent("images"), url)
    }

    private func options(images: URL, csv: URL, epochs: Int) -> TrainingOptions {
        var o = TrainingOptions(imagesDirectory: images.path, csvPath: csv.path)
        o.epochs = epochs
        o.weights = .none
        o.backbone = .narrow(numClasses: nil)
        o.output = folder.appendingPathComponent("models/model.safetensors").path
        o.featureCacheDirectory = folder.appendingPathComponent("cache").path
        o.numWorkers = 2
        o.seed = 7
        return o
    }

    /// Runs to the end: the result and the transcript's event tags.
    private func run(_ options: TrainingOptions) throws -> (TrainingResult, [String]) {
        var events = [TrainingEvent]()
        let result = try Trainer(options: options, events: { events.append($0) }).run()
        return (result, transcriptTags(events))
    }

    private static let seedLine = try! NSRegularExpression(pattern:
        #"^Epoch \d{2,}/\d+ \| Training: train-loss \d+\.\d{4}, train-accuracy \d\.\d{3} train-precision \d\.\d{3}, "#
        + #"train-recall \d\.\d{3}, train-F1 \d\.\d{3} \| Validation: val-loss \d+\.\d{4}, val-accuracy \d\.\d{3} "#
        + #"val-precision \d\.\d{3} val-recall \d\.\d{3} val-F1 \d\.\d{3}$"#)

    func testFrozenRunPrintsSeedLinesLearnsSavesAndReloads() throws {
        let (images, csv) = try easyDataset(count: 30)
        var o = options(images: images, csv: csv, epochs: 6)
        o.freezeBackbone = true
        o.learningRate = 3e-3
        let (result, lines) = try run(o)

        XCTAssertEqual(lines, ["started"] + (1 ... 6).map { "epoch \($0)/6" } + ["finished"])
        for (i, record) in result.records.enumerated() {
            let line = seedEpochLine(epoch: record.epoch, epochs: 6, training: record.training, validation: record.validation)
            XCTAssertEqual(Self.seedLine.numberOfMatches(in: line, range: NSRange(line.startIndex..., in: line)), 1, line)
            XCTAssertTrue(line.hasPrefix(String(format: "Epoch %02d/6 |", i + 1)), line)
        }
        let losses = result.records.map(\.training.loss)
        XCTAssertLessThan(losses.last!, losses.first! * 0.8, "training loss should fall on the easy task: \(losses)")
        XCTAssertEqual(result.featuresComputed, 30)

        // The epoch log: header + one row per epoch, with the confusion counts.
        let log = try String(contentsOf: folder.appendingPathComponent("models/model.epochs.csv"), encoding: .utf8)
        let rows = log.split(separator: "\n")
        XCTAssertEqual(rows.count, 7)
        XCTAssertTrue(rows[0].hasPrefix("epoch,train_loss,"))
        let last = rows[6].split(separator: ",")
        let tp = Int(last[15])!, fp = Int(last[16])!, fn = Int(last[17])!, tn = Int(last[18])!
        XCTAssertEqual(tp + fp + fn + tn, 6, "validation is max(1, floor(0.2·30)) = 6 frames")

        // The saved file: the seed's keys, metadata, and identical logits after loading into a fresh model.
        let file = try SafetensorsFile.load(from: URL(fileURLWithPath: o.output))
        XCTAssertEqual(file.metadata["meta_dim"], "84")
        XCTAssertEqual(file.metadata["max_boxes"], "10")
        XCTAssertEqual(file.metadata["bn_mode"], "eval")
        XCTAssertTrue(file.stateDict.keys.contains("meta_net.0.weight"))
        XCTAssertTrue(file.stateDict.keys.contains("head.3.bias"))
        XCTAssertTrue(file.stateDict.keys.contains("backbone.layer1.0.downsample.1.running_var"))
        let reloaded = FusionModel(metaDim: 84, backbone: ResNet(config: .narrow(numClasses: nil), generator: RandomGenerator(seed: 99)))
        try reloaded.loadStateDict(file.stateDict, strict: true)
        let rng = RandomGenerator(seed: 5)
        let x = Tensor.randn([2, 3, 64, 64], generator: rng), meta = Tensor.randn([2, 84], generator: rng)
        result.model.eval(); reloaded.eval()
        // The run trained on standardised inputs; the file holds them folded into head.0 and meta_net.0.
        let featureMap = try XCTUnwrap(result.model.featureStandardization), metaMap = try XCTUnwrap(result.model.metaStandardization)
        XCTAssertTrue(featureMap.std.data.contains { $0 != 1 } && metaMap.mean.data.contains { $0 != 0 },
                      "statistics come from the training split")
        XCTAssertFalse(file.stateDict.keys.contains { $0.contains("standardization") })
        let a = withNoGrad { result.model(x, meta) }, b = withNoGrad { reloaded(x, meta) }
        for (u, v) in zip(a.data, b.data) { XCTAssertEqual(u, v, accuracy: 1e-5 * max(1, abs(u)), "logits \(a.data) vs \(b.data)") }
    }

    /// A second run on the same images and weights takes every feature from the disk cache and, with the
    /// same seed, prints the same numbers.
    func testSecondRunReusesCachedFeatures() throws {
        let (images, csv) = try easyDataset(count: 12)
        var o = options(images: images, csv: csv, epochs: 2)
        o.freezeBackbone = true
        let (first, firstLines) = try run(o)
        let (second, secondLines) = try run(o)
        XCTAssertEqual(first.featuresComputed, 12)
        XCTAssertEqual(second.featuresComputed, 0)
        XCTAssertEqual(second.featuresReused, 12)
        XCTAssertEqual(Array(firstLines.dropFirst()), Array(secondLines.dropFirst()))
        // Without the cache everything is computed again, with the same result.
        o.featureCacheDirectory = nil
        let (third, thirdLines) = try run(o)
        XCTAssertEqual(third.featuresComputed, 12)
        XCTAssertEqual(Array(firstLines.dropFirst()), Array(thirdLines.dropFirst()))
    }

    /// The seed's --freeze-backbone: parameters frozen, BatchNorm in training mode, so the running statistics
    /// move while the weights do not.
    func testSeedBatchNormModeUpdatesRunningStatisticsOnly() throws {
        let (images, csv) = try easyDataset(count: 10)
        var o = options(images: images, csv: csv, epochs: 1)
        o.freezeBackbone = true
        o.batchNormMode = .train
        let (result, lines) = try run(o)
        XCTAssertEqual(lines, ["started", "epoch 1/1", "finished"])
        let state = result.model.stateDict()
        let fresh = ResNet(config: .narrow(numClasses: nil), generator: RandomGenerator(seed: 7)).stateDict()
        XCTAssertEqual(state["backbone.conv1.weight"]?.floats, fresh["conv1.weight"]?.floats, "frozen weights must not move")
        XCTAssertNotEqual(state["backbone.bn1.running_mean"]?.floats, fresh["bn1.running_mean"]?.floats,
                          "BatchNorm in training mode updates its running mean")
        XCTAssertEqual(state["backbone.bn1.num_batches_tracked"]?.floats, [1], "8 training frames at batch 8: one batch")
    }

    /// Without --freeze-backbone everything trains.
    func testFullFineTuningMovesTheBackbone() throws {
        let (images, csv) = try easyDataset(count: 10)
        let (result, lines) = try run(options(images: images, csv: csv, epochs: 1))
        XCTAssertEqual(lines, ["started", "epoch 1/1", "finished"])
        XCTAssertTrue(result.records[0].training.loss.isFinite)
        let fresh = ResNet(config: .narrow(numClasses: nil), generator: RandomGenerator(seed: 7)).stateDict()
        XCTAssertNotEqual(result.model.stateDict()["backbone.conv1.weight"]?.floats, fresh["conv1.weight"]?.floats)
    }

    func testErrorsNameTheProblemAndLeaveNoModelFile() throws {
        let (images, csv) = try easyDataset(count: 10)
        var o = options(images: images, csv: csv, epochs: 1)
        o.imagesDirectory = folder.appendingPathComponent("nowhere").path
        XCTAssertThrowsError(try run(o)) { XCTAssertTrue("\($0)".contains("nowhere"), "\($0)") }

        o = options(images: images, csv: csv, epochs: 1)
        o.weights = .file(folder.appendingPathComponent("missing.pth").path)
        XCTAssertThrowsError(try run(o)) { XCTAssertTrue("\($0)".contains("missing.pth"), "\($0)") }

        o = options(images: images, csv: csv, epochs: 0)
        XCTAssertThrowsError(try run(o)) { XCTAssertEqual("\($0)", "TrainingOptions.epochs must be in 1…100000 (got 0)") }

        // A frame cut short: the error names it, and no model file appears.
        let victim = images.appendingPathComponent("frame_00004.jpg")
        let bytes = try Data(contentsOf: victim)
        try bytes.prefix(bytes.count / 3).write(to: victim)
        o = options(images: images, csv: csv, epochs: 1)
        o.freezeBackbone = true
        XCTAssertThrowsError(try run(o)) { XCTAssertTrue("\($0)".contains("frame_00004"), "\($0)") }
        XCTAssertFalse(FileManager.default.fileExists(atPath: o.output))
    }

    func testTorchvisionWeightLocations() {
        let paths = TorchvisionWeights.candidatePaths(environment: ["TORCH_HOME": "/t", "HOME": "/h"])
        XCTAssertEqual(paths, ["/t/hub/checkpoints/resnet50-0676ba61.pth", "/h/.cache/torch/hub/checkpoints/resnet50-0676ba61.pth"])
        XCTAssertEqual(TorchvisionWeights.candidatePaths(environment: ["HOME": "/h", "XDG_CACHE_HOME": "/x"]),
                       ["/x/torch/hub/checkpoints/resnet50-0676ba61.pth"])
    }
}
