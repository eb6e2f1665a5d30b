import DataPipeline
import Foundation
import Training
import XCTest

/// What a library caller sees of a run: the events in order, and option errors in the library's own terms.
final class TrainingEventTests: XCTestCase {
    private var folder: URL!

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("rnf-events-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        _ = try DemoDataGenerator(seed: 2).write(to: folder, count: 8)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: folder)
    }

    private func options() -> TrainingOptions {
        var o = TrainingOptions(imagesDirectory: folder.appendingPathComponent("images").path,
                                csvPath: folder.appendingPathComponent("labels.csv").path)
        o.epochs = 2
        o.weights = .none
        o.backbone = .narrow(numClasses: nil)
        o.freezeBackbone = true
        o.output = folder.appendingPathComponent("models/m.safetensors").path
        o.featureCacheDirectory = folder.appendingPathComponent("cache").path
        return o
    }

    /// The random-backbone warning first, then start, each epoch as it finishes, and the result once the files are
    /// in place: the same result `run()` returns.
    func testATinyRunReportsItsEventsInOrder() throws {
        var events = [TrainingEvent]()
        var filesInPlaceAtFinish = false
        let result = try Trainer(options: options(), events: { event in
            events.append(event)
            if case .finished(let finished) = event {
                filesInPlaceAtFinish = FileManager.default.fileExists(atPath: finished.files.best.path)
            }
        }).run()
        XCTAssertEqual(events.map(tag), ["random backbone", "started", "epoch 1/2", "epoch 2/2", "finished"])
        let reported = events.compactMap { event -> EpochRecord? in
            if case .epochFinished(let record, _, _) = event { return record } else { return nil }
        }
        XCTAssertEqual(reported, result.records)
        guard case .finished(let finished)? = events.last else { return XCTFail("no finished event") }
        XCTAssertEqual(finished.records, result.records)
        XCTAssertEqual(finished.bestEpoch, result.bestEpoch)
        XCTAssertTrue(filesInPlaceAtFinish, "finished comes after the commit")
    }

    /// A run refused for its options reports nothing: no start, no epoch.
    func testRefusedOptionsReportNoEvents() {
        var o = options()
        o.batchSize = 0
        var events = [TrainingEvent]()
        XCTAssertThrowsError(try Trainer(options: o, events: { events.append($0) }).run()) { error in
            XCTAssertEqual(error as? InvalidOption,
                           InvalidOption(owner: "TrainingOptions", name: .batchSize, problem: .outsideRange(1 ... 4096), value: "0"))
        }
        XCTAssertEqual(events.map(tag), [])
    }

    /// Every refused value names its option in the library's terms, or in any caller's (the command uses flags).
    func testOptionErrorsNameTheOption() {
        var cases: [(TrainingOptions, String)] = []
        func refused(_ change: (inout TrainingOptions) -> Void, _ expected: String) {
            var o = options()
            change(&o)
            cases.append((o, expected))
        }
        refused({ $0.epochs = 0 }, "TrainingOptions.epochs must be in 1…100000 (got 0)")
        refused({ $0.learningRate = 0 }, "TrainingOptions.learningRate must be a positive number (got 0.0)")
        refused({ $0.patience = 0 }, "TrainingOptions.patience must be in 1…100000 (got 0)")
        refused({ $0.warmupEpochs = 2 }, "TrainingOptions.warmupEpochs must be 0 or more and below TrainingOptions.epochs (got 2)")
        refused({ $0.weightDecay = -1 }, "TrainingOptions.weightDecay must be 0 or a positive number (got -1.0)")
        refused({ $0.positiveWeight = .value(-2) }, "TrainingOptions.positiveWeight must be 'auto' or a positive number (got -2.0)")
        refused({ $0.csvPath = "/nowhere.csv" }, "TrainingOptions.csvPath /nowhere.csv: no such readable file")
        refused({ $0.resumePath = "/nowhere.resume.safetensors" },
                "TrainingOptions.resumePath /nowhere.resume.safetensors: no such readable file")
        for (o, expected) in cases {
            XCTAssertThrowsError(try o.validate()) { XCTAssertEqual("\($0)", expected) }
        }
        let warmup = InvalidOption(owner: "TrainingOptions", name: .warmupEpochs, problem: .notBelowEpochs, value: "3")
        XCTAssertEqual(warmup.message { "-\($0.rawValue)" }, "-warmupEpochs must be 0 or more and below -epochs (got 3)")
    }
}
