import DataPipeline
import Foundation
import Models
import Tensors

/// Settings shared by `predict` and `evaluate`.
public struct InferenceOptions: Sendable {
    public var modelPath: String
    public var imagesDirectory: String
    /// labels.csv with the detector metadata; nil (predict only): every JPEG and PNG of the folder, metadata zeros.
    public var csvPath: String?
    /// Overrides the model's stored threshold.
    public var threshold: Double?
    public var batchSize = 8
    public var numWorkers = 2
    public var threads: Int?
    /// Folder of the on-disk feature cache; nil disables it.
    public var featureCacheDirectory: String? = FeatureCache.defaultDirectory
    /// Which rows of the CSV: all, or the training or validation part of the model's own split (its seed).
    public var split: SplitPart = .all
    /// The file the command will write (`predict --out`), checked against every input before any image is read.
    public var outputPath: String?

    public init(modelPath: String, imagesDirectory: String, csvPath: String? = nil) {
        self.modelPath = modelPath
        self.imagesDirectory = imagesDirectory
        self.csvPath = csvPath
    }
}

/// Rows of labels.csv to score.
public enum SplitPart: String, Sendable, CaseIterable {
    case all
    /// The rows the model was trained on (same CSV, the seed stored in the model).
    case train
    /// The rows it was validated on: where its threshold was tuned and its best epoch chosen.
    case val
}

/// A model's scores on a set of images.
public struct Scores: Sendable {
    public let names: [String]
    /// From the CSV (0 for every image when predicting without labels).
    public let labels: [Int]
    /// P(interesting) per image.
    public let probabilities: [Double]
    /// Cross-entropy of each image's label (meaningful only with real labels).
    public let losses: [Double]
    /// The decision threshold in force and where it came from.
    public let threshold: Double
    public let thresholdSource: ThresholdSource
    public let seconds: Double
    public let featuresReused: Int
}

/// Where the decision threshold in force came from.
public enum ThresholdSource: Sendable, Equatable {
    /// `InferenceOptions.threshold`.
    case option
    /// The threshold training tuned and stored in the model file.
    case model
    /// 0.5, because the model file stores none.
    case defaultHalf

    /// The source in a sentence, the option named by `naming`.
    public func description(naming: (InvalidOption.Name) -> String) -> String {
        switch self {
        case .option: return naming(.threshold)
        case .model: return "stored in the model"
        case .defaultHalf: return "0.5: the model stores none"
        }
    }
}

/// Runs a trained model file on images: what `resnet50 predict` and `resnet50 evaluate` share.
public final class Inference {
    public let options: InferenceOptions
    private let warn: (String) -> Void
    private let progress = ProgressReporter()

    public init(options: InferenceOptions,
                warn: @escaping (String) -> Void = { FileHandle.standardError.write(($0 + "\n").data(using: .utf8)!) }) {
        self.options = options
        self.warn = warn
    }

    /// Loads the model, reads the images (and the CSV when given) and scores every image.
    /// - Parameter requireLabels: evaluate needs the CSV and its label column; predict does not.
    public func score(requireLabels: Bool) throws -> Scores {
        try options.validate()
        if let threads = options.threads { Kernels.setNumThreads(threads) }
        let trained = try TrainedModel.load(URL(fileURLWithPath: options.modelPath))
        let table = try readTable(maxBoxes: trained.maxBoxes, requireLabels: requireLabels)
        if let warning = table.boxWarning { warn(warning) }

        let indices = try rows(of: table, trained: trained)
        if let out = options.outputPath {
            var inputs = [(FileRole.option(.modelPath), URL(fileURLWithPath: options.modelPath))]
                + table.samples.map { (.image, $0.imageURL) }
            if let csv = options.csvPath { inputs.append((.option(.csvPath), URL(fileURLWithPath: csv))) }
            try refuseOutputsOverInputs(outputs: [(.option(.outputPath), URL(fileURLWithPath: out))], inputs: inputs)
        }
        let start = Date()
        let model = trained.model
        model.eval()
        let dataset = ImageDataset(table: table, cacheBudgetBytes: 0)
        let cache = trained.featureCacheKey.flatMap { key in
            options.featureCacheDirectory.map {
                FeatureCache(directory: URL(fileURLWithPath: $0), modelKey: key, width: model.backbone.featureCount)
            }
        }
        let computed = try backboneFeatures(model: model, dataset: dataset, indices: indices, cache: cache,
                                            batchSize: options.batchSize, numWorkers: options.numWorkers, progress: progress,
                                            warn: warn)
        let samples = indices.map { table.samples[$0] }
        let width = model.backbone.featureCount, metaDim = model.metaDim, count = samples.count
        var probabilities = [Double](), losses = [Double]()
        let chunk = 256
        for first in stride(from: 0, to: count, by: chunk) {
            let n = min(chunk, count - first)
            let rows = Array(computed.features[first * width ..< (first + n) * width])
            let meta = samples[first ..< first + n].flatMap(\.metadata)
            let logits = withNoGrad {
                model.classify(features: Tensor(shape: [n, width], data: rows), meta: Tensor(shape: [n, metaDim], data: meta))
            }
            probabilities += positiveProbabilities(logits)
            for i in 0 ..< n {
                let z0 = Double(logits.data[2 * i]), z1 = Double(logits.data[2 * i + 1])
                let top = max(z0, z1), logSum = top + log(exp(z0 - top) + exp(z1 - top))
                losses.append(logSum - (samples[first + i].label == 1 ? z1 : z0))
            }
        }
        // Weights and metadata were checked finite when read, so a non-finite score means a decoded image or the
        // arithmetic went wrong: refuse rather than write `nan` into a predictions file.
        if let bad = probabilities.firstIndex(where: { !$0.isFinite }) {
            throw TrainingError("\(samples[bad].imageURL.path): the model's score is not a number; "
                + "\(probabilities.filter { !$0.isFinite }.count) of \(count) images are affected")
        }
        let threshold: (Double, ThresholdSource)
        if let t = options.threshold {
            threshold = (t, .option)
        } else if let t = trained.threshold {
            threshold = (t, .model)
        } else {
            threshold = (0.5, .defaultHalf)
        }
        return Scores(names: samples.map(\.imageName), labels: samples.map(\.label), probabilities: probabilities,
                      losses: losses, threshold: threshold.0, thresholdSource: threshold.1,
                      seconds: Date().timeIntervalSince(start), featuresReused: computed.reused)
    }

    /// The rows `split` selects: the model's own split of this CSV, redrawn from the seed it stores.
    private func rows(of table: LabelsTable, trained: TrainedModel) throws -> [Int] {
        let count = table.samples.count
        guard options.split != .all else { return Array(0 ..< count) }
        let m = trained.metadata
        guard let seed = m["seed"].flatMap(UInt64.init), let trainSize = m["train_size"].flatMap(Int.init),
              let valSize = m["val_size"].flatMap(Int.init) else {
            let split = options.split.rawValue, model = options.modelPath
            throw OptionNamingError { name in "\(name(.split)) \(split): \(model) does not record its seed and split" }
        }
        guard trainSize + valSize == count else {
            let split = options.split.rawValue, trained = trainSize + valSize
            throw OptionNamingError { name in
                "\(name(.split)) \(split): the model was trained on \(trained) rows, this CSV has \(count); "
                    + "use the labels.csv it was trained on, or \(name(.split)) all"
            }
        }
        let split = try DatasetSplit(count: count, seed: seed)
        return options.split == .train ? split.train : split.validation
    }

    /// The CSV as labels.csv, or (predict without a CSV) every JPEG and PNG of the folder with zero metadata.
    private func readTable(maxBoxes: Int, requireLabels: Bool) throws -> LabelsTable {
        let folder = URL(fileURLWithPath: options.imagesDirectory)
        guard let csvPath = options.csvPath else {
            let names: [String]
            do {
                names = try FileManager.default.contentsOfDirectory(atPath: folder.path)
                    .filter { ["jpg", "jpeg", "png"].contains(($0 as NSString).pathExtension.lowercased()) }.sorted()
            } catch {
                let problem = error.localizedDescription
                throw OptionNamingError { name in "\(name(.imagesDirectory)) \(folder.path): \(problem)" }
            }
            guard !names.isEmpty else {
                throw OptionNamingError { name in "\(name(.imagesDirectory)) \(folder.path): no .jpg, .jpeg or .png files" }
            }
            warn("No labels CSV: detector metadata is all zeros for the \(names.count) images of \(folder.path)")
            let csv = try csvText(header: LabelsTable.requiredColumns, rows: names.map { [$0, "0", "0", "0", "0", "0", ""] })
            return try LabelsTable(csvData: Data(csv.utf8), csvName: "(the images of \(folder.path))",
                                   imagesDirectory: folder, maxBoxes: maxBoxes)
        }
        try InvalidOption.requireReadableFile(csvPath, .csvPath, of: "InferenceOptions")
        // New frames have no label: without the label column they are read as labelled 0 (predictions do not use it).
        return try LabelsTable(csvURL: URL(fileURLWithPath: csvPath), imagesDirectory: folder, maxBoxes: maxBoxes,
                               labelsOptional: !requireLabels)
    }
}

/// What `resnet50 evaluate` reports.
public struct EvaluationReport: Sendable {
    public let scores: Scores
    /// Mean cross-entropy (unweighted).
    public let loss: Double
    public let atThreshold: BinaryConfusion
    public let atHalf: BinaryConfusion
    public let rocAUC: Double?
    public let averagePrecision: Double?

    public init(scores: Scores) {
        self.scores = scores
        loss = scores.losses.isEmpty ? 0 : scores.losses.reduce(0, +) / Double(scores.losses.count)
        func confusion(_ t: Double) -> BinaryConfusion {
            var c = BinaryConfusion()
            for (p, l) in zip(scores.probabilities, scores.labels) { c.add(prediction: p >= t ? 1 : 0, label: l) }
            return c
        }
        atThreshold = confusion(scores.threshold)
        atHalf = confusion(0.5)
        rocAUC = Training.rocAUC(scores: scores.probabilities, labels: scores.labels)
        averagePrecision = Training.averagePrecision(scores: scores.probabilities, labels: scores.labels)
    }

    /// The report as printed: one block, fixed columns; options named by `naming`.
    public func text(naming: (InvalidOption.Name) -> String) -> String {
        func f(_ v: Double) -> String { String(format: "%.3f", v) }
        func row(_ name: String, _ t: Double, _ c: BinaryConfusion) -> String {
            name.padding(toLength: 22, withPad: " ", startingAt: 0)
                + [f(t), f(c.accuracy), f(c.precision), f(c.recall)].map { $0.padding(toLength: 11, withPad: " ", startingAt: 0) }
                .joined() + f(c.f1) + "\n"
        }
        let c = atThreshold
        let positives = scores.labels.filter { $0 == 1 }.count
        var s = "Images: \(scores.labels.count) (\(positives) interesting)\n"
        s += "Loss: \(String(format: "%.4f", loss))\n"
        s += "                      threshold  accuracy   precision  recall     F1\n"
        s += row(scores.thresholdSource == .option ? naming(.threshold) : "stored threshold", scores.threshold, atThreshold)
        s += row("0.5 (argmax)", 0.5, atHalf)
        s += "Confusion matrix at threshold \(f(scores.threshold)) (rows: true class, columns: predicted)\n"
        s += "              predicted 0  predicted 1\n"
        s += "  true 0      " + String(c.trueNegatives).padding(toLength: 13, withPad: " ", startingAt: 0) + String(c.falsePositives) + "\n"
        s += "  true 1      " + String(c.falseNegatives).padding(toLength: 13, withPad: " ", startingAt: 0) + String(c.truePositives) + "\n"
        s += "ROC-AUC: \(rocAUC.map { String(format: "%.3f", $0) } ?? "n/a (needs both classes)")\n"
        s += "PR-AUC (average precision): \(averagePrecision.map { String(format: "%.3f", $0) } ?? "n/a (needs positives)")\n"
        return s
    }
}

/// `image_name,probability,prediction` for every image, written atomically.
public func writePredictions(_ scores: Scores, to url: URL) throws {
    let rows = zip(scores.names, scores.probabilities).map { name, p in
        [name, String(format: "%.6f", p), p >= scores.threshold ? "1" : "0"]
    }
    do {
        try writeAtomically(try csvText(header: ["image_name", "probability", "prediction"], rows: rows), to: url)
    } catch {
        let problem = error.localizedDescription
        throw OptionNamingError { name in "\(name(.outputPath)) \(url.path): \(problem)" }
    }
}
