import DataPipeline
import Foundation
import Models
import NN
import Tensors
import Training
import WeightFiles
import XCTest

/// `predict` and `evaluate` on a model whose output is known by construction:
/// every weight zero except a path num_person → meta_net → head, so z₁ − z₀ = num_person − 2.5 and
/// P(interesting) = σ(num_person − 2.5): σ(2.5) = 0.924142 with 5 persons, σ(−2.5) = 0.075858 with none.
final class InferenceTests: XCTestCase {
    private var folder: URL!
    private var images: URL { folder.appendingPathComponent("images") }
    private let high = 1 / (1 + exp(-2.5)), low = 1 / (1 + exp(2.5))

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("rnf-infer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        _ = try DemoDataGenerator(seed: 4).write(to: folder, count: 12)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: folder)
    }

    /// 12 frames: 5 persons on frames 1, 4, 7, 10; labels agree except frame 1 (labelled 0) and frame 2
    /// (labelled 1). At 0.5: TP 3, FP 1, FN 1, TN 7.
    private func writeCSV(labels: Bool = true) throws -> URL {
        var csv = "image_name," + (labels ? "interesting/not interesting," : "") + "num_person,num_vehicles,avg_person_conf,total_boxes,bounding_boxes\n"
        for i in 0 ..< 12 {
            let persons = i % 3 == 0 ? 5 : 0
            let label = i == 0 ? 0 : i == 1 ? 1 : (persons > 0 ? 1 : 0)
            csv += "frame_\(String(format: "%05d", i + 1)).jpg," + (labels ? "\(label)," : "") + "\(persons),0,0,\(persons),\"[]\"\n"
        }
        let url = folder.appendingPathComponent(labels ? "labels.csv" : "unlabelled.csv")
        try csv.write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    private func writeModel(threshold: String?) throws -> URL {
        let model = FusionModel(metaDim: 84, backbone: ResNet(config: .narrow(numClasses: nil), generator: RandomGenerator(seed: 1)),
                                generator: RandomGenerator(seed: 2))
        var state = model.stateDict()
        func set(_ key: String, _ values: (Int) -> Float) {
            let t = state[key]!
            state[key] = WeightTensor(shape: t.shape, floats: (0 ..< t.count).map(values))
        }
        let features = model.backbone.featureCount
        set("meta_net.0.weight") { $0 == 0 ? 1 : 0 }  // hidden 0 = num_person (column 0 of row 0)
        set("meta_net.0.bias") { _ in 0 }
        set("meta_net.3.weight") { $0 == 0 ? 1 : 0 }
        set("meta_net.3.bias") { _ in 0 }
        set("head.0.weight") { $0 == features ? 1 : 0 }  // row 0 reads the first metadata feature
        set("head.0.bias") { _ in 0 }
        set("head.3.weight") { $0 == 256 ? 1 : 0 }  // z₁ = h₀
        set("head.3.bias") { $0 == 1 ? -2.5 : 0 }
        try model.loadStateDict(state)
        var metadata = ["meta_dim": "84", "max_boxes": "10", "backbone": "bottleneck layers=2,1,1,1 stem=8 widths=4,8,8,16"]
        metadata["threshold"] = threshold
        let url = folder.appendingPathComponent("known.safetensors")
        try SafetensorsFile.save(model.stateDict(), metadata: metadata, to: url)
        return url
    }

    private func options(model: URL, csv: URL?) -> InferenceOptions {
        var o = InferenceOptions(modelPath: model.path, imagesDirectory: images.path, csvPath: csv?.path)
        o.featureCacheDirectory = nil
        return o
    }

    func testEvaluateKnownModel() throws {
        let model = try writeModel(threshold: "0.95")
        let csv = try writeCSV()
        let report = EvaluationReport(scores: try Inference(options: options(model: model, csv: csv), warn: { _ in }).score(requireLabels: true))
        XCTAssertEqual(report.scores.probabilities[0], high, accuracy: 1e-6)
        XCTAssertEqual(report.scores.probabilities[1], low, accuracy: 1e-6)
        // Stored threshold 0.95 is above both scores: nothing predicted positive.
        XCTAssertEqual(report.scores.threshold, 0.95)
        XCTAssertEqual(report.atThreshold, BinaryConfusion(truePositives: 0, falsePositives: 0, falseNegatives: 4, trueNegatives: 8))
        XCTAssertEqual(report.atHalf, BinaryConfusion(truePositives: 3, falsePositives: 1, falseNegatives: 1, trueNegatives: 7))
        XCTAssertEqual(report.atHalf.f1, 0.75, accuracy: 1e-12)
        // Loss: 10 frames scored right (−log σ(2.5)), 2 wrong (−log σ(−2.5)).
        XCTAssertEqual(report.loss, (10 * -log(high) + 2 * -log(low)) / 12, accuracy: 1e-6)
        // Positives {high×3, low}, negatives {high, low×7}: wins 3·7, ties 3·1 + 1·7 at one half → 26/32.
        XCTAssertEqual(report.rocAUC!, 26.0 / 32.0, accuracy: 1e-12)
        // AP: at high P = 3/4, R = 3/4; at low P = 4/12, R = 1 → 0.75·0.75 + 0.25·(1/3).
        XCTAssertEqual(report.averagePrecision!, 0.75 * 0.75 + 0.25 / 3, accuracy: 1e-12)
        XCTAssertTrue(report.text(naming: { "\($0)" }).contains("ROC-AUC: 0.812"), report.text(naming: { "\($0)" }))
        XCTAssertTrue(report.text(naming: { "\($0)" }).contains("  true 1      4            0\n"), report.text(naming: { "\($0)" }))

        // --threshold overrides the stored one: 0.05 calls everything positive.
        var o = options(model: model, csv: csv)
        o.threshold = 0.05
        let overridden = EvaluationReport(scores: try Inference(options: o, warn: { _ in }).score(requireLabels: true))
        XCTAssertEqual(overridden.scores.thresholdSource, .option)
        XCTAssertEqual(overridden.atThreshold, BinaryConfusion(truePositives: 4, falsePositives: 8, falseNegatives: 0, trueNegatives: 0))
    }

    func testPredictWithAndWithoutCSV() throws {
        let model = try writeModel(threshold: "0.5")
        var notes = [String]()
        let withCSV = try Inference(options: options(model: model, csv: try writeCSV(labels: false)), warn: { notes.append($0) })
            .score(requireLabels: false)
        XCTAssertEqual(withCSV.names.count, 12)
        let out = folder.appendingPathComponent("out/preds.csv")
        try writePredictions(withCSV, to: out)
        let rows = try String(contentsOf: out, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(rows[0], "image_name,probability,prediction")
        XCTAssertEqual(rows[1], "frame_00001.jpg,\(String(format: "%.6f", high)),1")
        XCTAssertEqual(rows[2], "frame_00002.jpg,\(String(format: "%.6f", low)),0")
        XCTAssertEqual(rows.count, 13)
        XCTAssertTrue(notes.isEmpty, "\(notes)")

        // No CSV: every JPEG of the folder, metadata zeros (said once), so every score is σ(−2.5).
        try Data([0xFF]).write(to: images.appendingPathComponent("notes.txt"))
        let bare = try Inference(options: options(model: model, csv: nil), warn: { notes.append($0) }).score(requireLabels: false)
        XCTAssertEqual(bare.names, (1 ... 12).map { String(format: "frame_%05d.jpg", $0) })
        for p in bare.probabilities { XCTAssertEqual(p, low, accuracy: 1e-6) }
        XCTAssertEqual(notes.count, 1)
        XCTAssertTrue(notes[0].contains("metadata is all zeros"), notes[0])
    }

    /// predictions.csv quotes a name only when it must (RFC 4180: a comma, a quote or a line break; quotes doubled),
    /// ends every record with "\n" alone, and reads back as the same names.
    func testPredictionsQuoteOnlyWhatNeedsQuoting() throws {
        let model = try writeModel(threshold: "0.5")
        let odd = "a, \"b\".jpg"
        try FileManager.default.copyItem(at: images.appendingPathComponent("frame_00001.jpg"), to: images.appendingPathComponent(odd))
        let scores = try Inference(options: options(model: model, csv: nil), warn: { _ in }).score(requireLabels: false)
        let out = folder.appendingPathComponent("preds.csv")
        try writePredictions(scores, to: out)
        let text = try String(contentsOf: out, encoding: .utf8)
        let p = String(format: "%.6f", low)
        XCTAssertTrue(text.hasPrefix("image_name,probability,prediction\n\"a, \"\"b\"\".jpg\",\(p),0\nframe_00001.jpg,\(p),0\n"), text)
        XCTAssertTrue(text.hasSuffix("frame_00012.jpg,\(p),0\n"), text)
        XCTAssertFalse(text.contains("\r"))
    }

    func testBadInputsNameTheProblem() throws {
        let model = try writeModel(threshold: nil)
        let csv = try writeCSV()
        func message(_ o: InferenceOptions, requireLabels: Bool = true) -> String {
            do { _ = try Inference(options: o, warn: { _ in }).score(requireLabels: requireLabels); return "no error" } catch { return "\(error)" }
        }
        XCTAssertTrue(message(options(model: folder.appendingPathComponent("nope.safetensors"), csv: csv)).contains("nope.safetensors"))
        var o = options(model: model, csv: csv)
        o.threshold = 1.5
        XCTAssertEqual(message(o), "InferenceOptions.threshold must be a probability in [0, 1] (got 1.5)")
        // A safetensors file that is not a resnet50 model.
        let features = folder.appendingPathComponent("features.safetensors")
        try FeatureFile.write(names: ["a"], features: [1, 2], width: 2, to: features)
        XCTAssertTrue(message(options(model: features, csv: csv)).contains("not a resnet50 model"))
        // evaluate needs labels; predict does not.
        let unlabelled = try writeCSV(labels: false)
        XCTAssertTrue(message(options(model: model, csv: unlabelled)).contains("interesting/not interesting"))
        XCTAssertEqual(message(options(model: model, csv: unlabelled), requireLabels: false), "no error")
        // A model without a stored threshold falls back to 0.5 and says so.
        let scores = try Inference(options: options(model: model, csv: csv), warn: { _ in }).score(requireLabels: true)
        XCTAssertEqual(scores.threshold, 0.5)
        XCTAssertEqual(scores.thresholdSource, .defaultHalf)
    }
}
