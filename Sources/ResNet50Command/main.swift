import ArgumentParser
import CPUFeatures
import DataPipeline
import Foundation

// Before anything that may run AVX2 code: on an older CPU, one line on stderr and status 1 instead of SIGILL.
// Top-level code of main.swift runs first; the check lives in CPUFeatures, compiled for baseline x86-64.
cpu_features_require_x86_64_v3("resnet50")

/// `resnet50`: the command that replaces the seed's `python resnet50.py`.
struct ResNet50: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resnet50",
        abstract: "ResNet-50 fused with object-detector metadata, trained on the CPU.",
        subcommands: [Train.self, Evaluate.self, Predict.self, Features.self, MakeDemoData.self])
}

/// `resnet50 make-demo-data --out DIR --count N --seed S [--force]`
struct MakeDemoData: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "make-demo-data",
        abstract: "Write synthetic construction-site frames (1280x960 JPEGs) and a labels.csv in the seed's schema.",
        discussion: "Writes DIR/images/frame_NNNNN.jpg and DIR/labels.csv; use --images-dir DIR/images "
            + "--csv-path DIR/labels.csv to train on them. A DIR that already holds a labels.csv or a non-empty "
            + "images/ folder is refused unless --force is given.")

    @Option(help: "Output folder (created if missing).")
    var out: String

    @Option(help: "Number of frames, 1…\(DemoDataGenerator.maxCount).")
    var count: Int = 200

    @Option(help: "Seed of the site and of every frame.")
    var seed: UInt64 = 0

    @Option(help: "JPEG quality, 1…100.")
    var quality: Int = 85

    @Flag(help: ArgumentHelp("Write into a folder that already holds a data set: labels.csv and same-named frames are "
        + "replaced, other files are kept."))
    var force = false

    /// --count and --quality out of range: one line before anything is written (see `reportingErrors`).
    func validate() throws {
        try reportingErrors { try DemoDataGenerator.validate(count: count, quality: quality) }
    }

    func run() throws {
        try reportingErrors {
            let start = Date()
            let dir = URL(fileURLWithPath: out)
            let positives = try DemoDataGenerator(seed: seed).write(to: dir, count: count, quality: quality,
                                                                    overwrite: force)
            let secs = Date().timeIntervalSince(start)
            print("Wrote \(count) frames (\(positives) interesting) and labels.csv to \(dir.path) "
                + "in \(String(format: "%.1f", secs)) s")
        }
    }
}

ResNet50.main()
