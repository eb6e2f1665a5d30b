import DataPipeline
import Foundation
import XCTest

/// The `resnet50` executable as a user runs it: train → evaluate → predict on a few generated frames, and bad
/// inputs giving one `resnet50: error:` line, a non-zero status and no output file.
final class CommandLineTests: XCTestCase {
    private var folder: URL!

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("rnf-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: folder)
    }

    /// The executable sits next to the test bundle in the build folder (`swift build --build-tests` builds both).
    private func executable() throws -> URL {
        let url = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("resnet50")
        guard FileManager.default.isExecutableFile(atPath: url.path) else {
            throw XCTSkip("\(url.path) not built; run swift build --build-tests first")
        }
        return url
    }

    private func run(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let process = Process()
        process.executableURL = try executable()
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile(), stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
    }

    private func p(_ name: String) -> String { folder.appendingPathComponent(name).path }

    func testTrainEvaluatePredictAndErrors() throws {
        _ = try DemoDataGenerator(seed: 5).write(to: folder, count: 10)
        let common = ["--images-dir", p("images"), "--feature-cache", p("cache"), "--threads", "2"]
        let train = try run(["train", "--csv-path", p("labels.csv"), "--epochs", "2", "--freeze-backbone", "--weights", "none",
                             "--output", p("models/m.safetensors"), "--pos-weight", "1.5"] + common)
        XCTAssertEqual(train.status, 0, train.stderr)
        let lines = train.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 4, train.stdout)
        XCTAssertEqual(lines.last.map(String.init), "Saved: \(p("models/m.safetensors"))")
        XCTAssertTrue(train.stderr.contains("Threshold "), train.stderr)
        for name in ["m.safetensors", "m.best.safetensors", "m.resume.safetensors", "m.epochs.csv", "m.summary.json", "m.curves.svg", "m.pr.svg"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: p("models/" + name)), name)
        }

        let evaluate = try run(["evaluate", "--model", p("models/m.best.safetensors"), "--csv-path", p("labels.csv")] + common)
        XCTAssertEqual(evaluate.status, 0, evaluate.stderr)
        XCTAssertTrue(evaluate.stdout.contains("Images: 10 ("), evaluate.stdout)
        XCTAssertTrue(evaluate.stdout.contains("PR-AUC (average precision): "), evaluate.stdout)
        XCTAssertTrue(evaluate.stderr.contains("images/s"), evaluate.stderr)

        let predict = try run(["predict", "--model", p("models/m.best.safetensors"), "--out", p("preds.csv")] + common)
        XCTAssertEqual(predict.status, 0, predict.stderr)
        XCTAssertEqual(predict.stdout, "Saved: \(p("preds.csv"))\n")
        XCTAssertEqual(try String(contentsOfFile: p("preds.csv"), encoding: .utf8).split(separator: "\n").count, 11)

        // Bad inputs: one line on stderr, status 1, nothing written.
        let cases: [([String], String)] = [
            (["predict", "--model", p("missing.safetensors"), "--out", p("bad1.csv")] + common, "missing.safetensors"),
            (["predict", "--model", p("models/m.epochs.csv"), "--out", p("bad2.csv")] + common, "m.epochs.csv"),
            (["predict", "--model", p("models/m.best.safetensors"), "--threshold", "2", "--out", p("bad3.csv")] + common, "--threshold"),
            (["evaluate", "--model", p("models/m.best.safetensors"), "--csv-path", p("nowhere.csv")] + common, "nowhere.csv"),
            (["train", "--csv-path", p("labels.csv"), "--weights", "none", "--freeze-backbone", "--output", p("bad4.safetensors"),
              "--resume", p("models/m.best.safetensors"), "--epochs", "3"] + common, "not a resume checkpoint"),
            (["train", "--csv-path", p("labels.csv"), "--weights", "none", "--output", p("bad5.safetensors"), "--epochs", "3",
              "--warmup-epochs", "3"] + common, "--warmup-epochs"),
        ]
        for (arguments, expected) in cases {
            let r = try run(arguments)
            XCTAssertEqual(r.status, 1, "\(arguments)")
            XCTAssertEqual(r.stdout, "", "\(arguments)")
            let errorLines = r.stderr.split(separator: "\n").filter { !$0.hasPrefix("warning:") }
            XCTAssertEqual(errorLines.count, 1, r.stderr)
            XCTAssertTrue(errorLines.first?.hasPrefix("resnet50: error: ") ?? false, r.stderr)
            XCTAssertTrue(r.stderr.contains(expected), "\(expected) not in: \(r.stderr)")
        }
        for name in ["bad1.csv", "bad2.csv", "bad3.csv", "bad4.safetensors", "bad4.best.safetensors", "bad5.safetensors"] {
            XCTAssertFalse(FileManager.default.fileExists(atPath: p(name)), name)
        }
        // A flag value the parser refuses: non-zero status, the flag named.
        let parse = try run(["train", "--csv-path", p("labels.csv"), "--pos-weight", "heavy"] + common)
        XCTAssertNotEqual(parse.status, 0)
        XCTAssertTrue(parse.stderr.contains("--pos-weight"), parse.stderr)
    }
}
