import ArgumentParser
import Foundation
import Training

/// Options shared by `predict` and `evaluate`.
struct ModelInputOptions: ParsableArguments {
    @Option(help: "A model written by 'resnet50 train' (X.safetensors or X.best.safetensors).")
    var model: String

    @Option(help: "Folder of the frames.")
    var imagesDir: String

    @Option(help: "Decision threshold on P(interesting) (default: the one stored in the model).")
    var threshold: Double?

    @Option(help: "Images per backbone batch.")
    var batchSize: Int = 8

    @OptionGroup var compute: ComputeOptions

    /// Out-of-range values and a missing images folder are refused before anything runs (see `reportingErrors`).
    func validate() throws {
        try requireOneProcess("predict and evaluate run")
        try reportingErrors { try options(csvPath: nil).validate() }
    }

    func options(csvPath: String?) -> InferenceOptions {
        var o = InferenceOptions(modelPath: model, imagesDirectory: imagesDir, csvPath: csvPath)
        o.threshold = threshold
        o.batchSize = batchSize
        o.numWorkers = compute.numWorkers
        o.threads = compute.threads
        o.featureCacheDirectory = compute.featureCacheDirectory
        return o
    }
}

extension SplitPart: ExpressibleByArgument {}

private func throughput(_ scores: Scores) -> String {
    String(format: "Scored %d images in %.1f s (%.1f images/s; %d backbone features from the cache)", scores.names.count,
           scores.seconds, Double(scores.names.count) / max(scores.seconds, 1e-9), scores.featuresReused)
}

/// `resnet50 predict`: P(interesting) and the decision for every frame.
struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Score new frames with a trained model: image_name, probability, prediction per image.",
        discussion: """
            With --csv-path, the frames it lists with their detector metadata (the label column may be absent). \
            Without it, every .jpg/.jpeg/.png of --images-dir with zero metadata. prediction is 1 when probability ≥ \
            the threshold (stored in the model, or --threshold). stdout: 'Saved: OUT'; throughput on stderr.
            """)

    @OptionGroup var input: ModelInputOptions

    @Option(help: "labels.csv-style file with the detector metadata of the frames.")
    var csvPath: String?

    @Option(help: "Output CSV (written atomically).")
    var out: String

    func run() throws {
        try reportingErrors {
            var options = input.options(csvPath: csvPath)
            options.outputPath = out
            let scores = try Inference(options: options).score(requireLabels: false)
            try writePredictions(scores, to: URL(fileURLWithPath: out))
            note(throughput(scores))
            note(String(format: "Threshold %.3f (%@): %d of %d predicted interesting", scores.threshold, scores.thresholdSource.description(naming: flag),
                        scores.probabilities.filter { $0 >= scores.threshold }.count, scores.names.count))
            print("Saved: \(out)")
        }
    }
}

/// `resnet50 evaluate`: the model's numbers on a labelled set.
struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate a trained model on labelled frames: loss, accuracy, precision, recall, F1 at the stored "
            + "threshold and at 0.5, confusion matrix, ROC-AUC and PR-AUC.",
        discussion: "The report goes to stdout, throughput to stderr. Loss is the unweighted cross-entropy; a "
            + "prediction is 1 when P(interesting) ≥ the threshold.")

    @OptionGroup var input: ModelInputOptions

    @Option(help: "labels.csv of the frames (the label column is required).")
    var csvPath: String

    @Option(help: "Rows to evaluate: all, or the model's own train or val part of this CSV (redrawn from the seed it stores).")
    var split: SplitPart = .all

    func run() throws {
        try reportingErrors {
            var options = input.options(csvPath: csvPath)
            options.split = split
            let scores = try Inference(options: options).score(requireLabels: true)
            note(throughput(scores))
            print("Model: \(input.model) (threshold \(String(format: "%.3f", scores.threshold)), \(scores.thresholdSource.description(naming: flag))); rows: \(split.rawValue)")
            print(EvaluationReport(scores: scores).text(naming: flag), terminator: "")
        }
    }
}
