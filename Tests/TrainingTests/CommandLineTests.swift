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

    private func run(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try ResNet50Executable.run(arguments)
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

    /// Each out-of-range flag is refused while the flags are parsed, before any data is read: one line naming the
    /// flag, status 1, nothing on stdout, no file written.
    func testOutOfRangeFlagsAreRefusedBeforeAnythingRuns() throws {
        _ = try DemoDataGenerator(seed: 8).write(to: folder, count: 4)
        let data = ["--images-dir", p("images"), "--csv-path", p("labels.csv"), "--feature-cache", p("cache"), "--weights", "none"]
        let train = ["train", "--output", p("models/m.safetensors")] + data
        let cases: [([String], String)] = [
            (train + ["--epochs", "0"], "--epochs must be in 1…100000 (got 0)"),
            (train + ["--batch-size", "5000"], "--batch-size must be in 1…4096 (got 5000)"),
            (train + ["--num-workers", "257"], "--num-workers must be in 0…256 (got 257)"),
            (train + ["--threads", "0"], "--threads must be in 1…1024 (got 0)"),
            (train + ["--max-boxes", "1000000000"], "--max-boxes must be in 0…"),
            (train + ["--lr", "0"], "--lr must be a positive number (got 0.0)"),
            (train + ["--patience", "0"], "--patience must be in 1…100000 (got 0)"),
            (train + ["--epochs", "2", "--warmup-epochs", "2"], "--warmup-epochs must be 0 or more and below --epochs (got 2)"),
            (train + ["--weight-decay=-1"], "--weight-decay must be 0 or a positive number (got -1.0)"),
            (train + ["--resume", p("nowhere.resume.safetensors")], "--resume \(p("nowhere.resume.safetensors")): no such readable file"),
            (["train", "--images-dir", p("nowhere"), "--csv-path", p("labels.csv")], "--images-dir \(p("nowhere")): no such folder"),
            (["features", "--out", p("f.safetensors"), "--threads", "2000"] + data, "--threads must be in 1…1024 (got 2000)"),
            (["predict", "--model", p("m.safetensors"), "--images-dir", p("images"), "--out", p("p.csv"), "--threshold", "2"],
             "--threshold must be a probability in [0, 1] (got 2.0)"),
            (["evaluate", "--model", p("m.safetensors"), "--images-dir", p("images"), "--csv-path", p("labels.csv"),
              "--num-workers", "300"], "--num-workers must be in 0…256 (got 300)"),
        ]
        for (arguments, expected) in cases {
            let r = try run(arguments)
            XCTAssertEqual(r.status, 1, "\(arguments): \(r.stderr)")
            XCTAssertEqual(r.stdout, "", "\(arguments)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
            XCTAssertTrue(r.stderr.hasPrefix("resnet50: error: " + expected), "\(expected) not in: \(r.stderr)")
        }
        for name in ["models", "cache", "f.safetensors", "p.csv"] {
            XCTAssertFalse(FileManager.default.fileExists(atPath: p(name)), "\(name): nothing runs before the flags are checked")
        }
    }

    /// Starts `resnet50 train` in the background and returns once its stdout shows `marker`.
    private func startTraining(_ arguments: [String], until marker: String) throws -> (Process, Pipe, Pipe) {
        let (process, out, err) = try ResNet50Executable.process(["train"] + arguments)
        try process.run()
        var seen = Data()
        let deadline = Date().addingTimeInterval(120)
        while !String(decoding: seen, as: UTF8.self).contains(marker) {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty {
                XCTFail("training ended before printing \(marker): \(String(decoding: seen, as: UTF8.self))")
                break
            }
            seen.append(chunk)
            if Date() > deadline { XCTFail("no \(marker) within 120 s"); break }
        }
        return (process, out, err)
    }

    private func finish(_ process: Process, _ err: Pipe) -> (status: Int32, reason: Process.TerminationReason, stderr: String) {
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, process.terminationReason, String(decoding: stderr, as: UTF8.self))
    }

    /// Real signals to a real process: SIGINT and SIGTERM stop after the current step with the resume checkpoint of
    /// the last finished epoch, no temporary files, exit 130 / 143; the checkpoint resumes. SIGKILL leaves the
    /// previous complete set as it was, and the next run clears what the killed one left.
    func testSignalsStopCleanlyAndKillLeavesThePreviousSet() throws {
        _ = try DemoDataGenerator(seed: 6).write(to: folder, count: 10)
        let common = ["--images-dir", p("images"), "--csv-path", p("labels.csv"), "--feature-cache", p("cache"),
                      "--freeze-backbone", "--weights", "none", "--threads", "2", "--output", p("models/s.safetensors")]
        for (signal, status, name) in [(SIGINT, Int32(130), "SIGINT"), (SIGTERM, Int32(143), "SIGTERM")] {
            try? FileManager.default.removeItem(atPath: p("models"))
            let (process, _, err) = try startTraining(common + ["--epochs", "100000"], until: "Epoch 03/")
            kill(process.processIdentifier, signal)
            let result = finish(process, err)
            XCTAssertEqual(result.status, status, result.stderr)
            XCTAssertTrue(result.stderr.contains("resnet50: interrupted by \(name) during epoch "), result.stderr)
            XCTAssertTrue(result.stderr.contains("--resume \(p("models/s.resume.safetensors"))"), result.stderr)
            let left = try FileManager.default.contentsOfDirectory(atPath: p("models")).filter { !$0.hasSuffix(".lock") }.sorted()
            XCTAssertEqual(left, ["s.epochs.csv", "s.resume.safetensors"], "only what resumes the run")
            let finished = try String(contentsOfFile: p("models/s.epochs.csv"), encoding: .utf8).split(separator: "\n").count - 1
            XCTAssertGreaterThanOrEqual(finished, 2)
            let resumed = try run(["train"] + common + ["--epochs", String(finished + 1), "--resume", p("models/s.resume.safetensors")])
            XCTAssertEqual(resumed.status, 0, resumed.stderr)
            XCTAssertEqual(resumed.stdout.split(separator: "\n").count, finished + 3, "device, every epoch, Saved")
        }

        // The last resumed run left a complete set; a run killed outright must not touch it.
        let complete = try FileManager.default.contentsOfDirectory(atPath: p("models")).sorted()
        let before = try complete.map { try Data(contentsOf: URL(fileURLWithPath: p("models/" + $0))) }
        let (process, _, err) = try startTraining(common + ["--epochs", "100000", "--seed", "9"], until: "Epoch 02/")
        kill(process.processIdentifier, SIGKILL)
        let killed = finish(process, err)
        XCTAssertEqual(killed.reason, .uncaughtSignal)
        XCTAssertEqual(try complete.map { try Data(contentsOf: URL(fileURLWithPath: p("models/" + $0))) }, before)
        XCTAssertTrue(FileManager.default.fileExists(atPath: p("models/.s.safetensors.partial")), "the killed run's staging folder")
        let next = try run(["train"] + common + ["--epochs", "2", "--seed", "9"])
        XCTAssertEqual(next.status, 0, next.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: p("models/.s.safetensors.partial")), "cleared by the next run")
    }

    /// The flags and paths a careless user gets wrong: one line, status 1, the input untouched.
    func testHostileFlagsAndPathsGiveOneLine() throws {
        _ = try DemoDataGenerator(seed: 7).write(to: folder, count: 6)
        let csv = try Data(contentsOf: URL(fileURLWithPath: p("labels.csv")))
        let common = ["--images-dir", p("images"), "--csv-path", p("labels.csv"), "--feature-cache", p("cache"), "--weights", "none"]
        let cases: [([String], String)] = [
            (["train", "--max-boxes", "2305843009213693952", "--output", p("a.safetensors")] + common, "--max-boxes must be in 0…"),
            (["train", "--max-boxes", "1000000000", "--output", p("a.safetensors")] + common, "--max-boxes must be in 0…"),
            (["train", "--threads", "100000", "--output", p("a.safetensors")] + common, "--threads must be in 1…1024"),
            (["train", "--num-workers", "100000", "--output", p("a.safetensors")] + common, "--num-workers must be in 0…256"),
            (["train", "--output", p("labels.csv")] + common, "is the --csv-path file this run reads"),
            (["train", "--output", p("images/frame_00002.jpg")] + common, "is the image this run reads"),
        ]
        for (arguments, expected) in cases {
            let r = try run(arguments)
            XCTAssertEqual(r.status, 1, "\(arguments): \(r.stderr)")
            XCTAssertEqual(r.stdout, "")
            let errorLines = r.stderr.split(separator: "\n").filter { !$0.hasPrefix("warning:") }
            XCTAssertEqual(errorLines.count, 1, r.stderr)
            XCTAssertTrue(r.stderr.contains(expected), "\(expected) not in: \(r.stderr)")
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: p("labels.csv"))), csv)
        XCTAssertFalse(FileManager.default.fileExists(atPath: p("a.safetensors")))

        // predict --out onto the model it reads.
        let train = try run(["train", "--epochs", "1", "--freeze-backbone", "--output", p("m.safetensors")] + common)
        XCTAssertEqual(train.status, 0, train.stderr)
        let model = try Data(contentsOf: URL(fileURLWithPath: p("m.safetensors")))
        let predict = try run(["predict", "--model", p("m.safetensors"), "--images-dir", p("images"), "--out", p("m.safetensors"),
                               "--feature-cache", p("cache")])
        XCTAssertEqual(predict.status, 1, predict.stderr)
        XCTAssertTrue(predict.stderr.contains("is the --model file"), predict.stderr)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: p("m.safetensors"))), model)
    }
}
