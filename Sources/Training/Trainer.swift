import DataPipeline
import Foundation
import Models
import NN
import Tensors
import WeightFiles

/// A training failure with one line for the user (file, row, key or flag named in it).
public struct TrainingError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One finished epoch.
public struct EpochRecord: Sendable {
    public let epoch: Int
    public let training: EpochMetrics
    public let validation: EpochMetrics
    public let seconds: Double
}

/// What a run produced.
public struct TrainingResult {
    public let records: [EpochRecord]
    public let outputURL: URL
    public let model: FusionModel
    /// Backbone passes the run needed (cached-feature mode: images not found in the on-disk cache).
    public let featuresComputed: Int
    /// Images whose features came from the on-disk cache.
    public let featuresReused: Int
}

/// The seed's training loop (DESIGN §4) in three modes: frozen backbone on cached features (default with
/// --freeze-backbone), the seed's frozen backbone with BatchNorm in training mode, and full fine-tuning.
public final class Trainer {
    public let options: TrainingOptions
    private let printLine: (String) -> Void
    private let warn: (String) -> Void
    private let progress: ProgressReporter

    /// - Parameters:
    ///   - options: the run's flags.
    ///   - printLine: where the seed's stdout lines go.
    ///   - warn: where warnings go (stderr in the command).
    public init(options: TrainingOptions, printLine: @escaping (String) -> Void = { print($0) },
                warn: @escaping (String) -> Void = { FileHandle.standardError.write(($0 + "\n").data(using: .utf8)!) }) {
        self.options = options
        self.printLine = printLine
        self.warn = warn
        progress = ProgressReporter()
    }

    public func run() throws -> TrainingResult {
        try validateOptions()
        if let threads = options.threads { Kernels.setNumThreads(threads) }
        Kernels.retainFreedMemory()

        let table = try LabelsTable(csvURL: URL(fileURLWithPath: options.csvPath),
                                    imagesDirectory: URL(fileURLWithPath: options.imagesDirectory),
                                    maxBoxes: options.maxBoxes)
        if let warning = table.boxWarning { warn(warning) }
        let split = try DatasetSplit(count: table.samples.count, seed: options.seed)
        let dataset = ImageDataset(table: table, cacheBudgetBytes: options.usesCachedFeatures ? 0 : options.cropCacheBytes)

        let (model, weightsKey) = try buildModel(metaDim: table.metaDim)
        printLine("Using device: cpu (\(Kernels.numThreads) threads)")

        var featureStats = (computed: 0, reused: 0)
        var features: [Float] = []
        if options.freezeBackbone {
            model.backbone.freeze()
        }
        if options.usesCachedFeatures {
            (features, featureStats) = try computeFeatures(model: model, dataset: dataset, weightsKey: weightsKey)
        }
        let optimizer = Adam(parameters: model.trainableParameters(), learningRate: options.learningRate)
        let trainLoader = try DataLoader(dataset: dataset, indices: split.train, batchSize: options.batchSize, shuffle: true,
                                     seed: options.seed, numWorkers: options.numWorkers)
        let validationLoader = try DataLoader(dataset: dataset, indices: split.validation, batchSize: options.batchSize,
                                          shuffle: false, seed: options.seed, numWorkers: options.numWorkers)
        let outputURL = URL(fileURLWithPath: options.output)
        let log = EpochLog(url: EpochLog.url(forModel: outputURL))

        var records = [EpochRecord]()
        for epoch in 1 ... options.epochs {
            let start = Date()
            model.train()
            if options.usesCachedFeatures { model.backbone.eval() }
            let training = try runEpoch(model: model, loader: trainLoader, epoch: epoch - 1, features: features,
                                        optimizer: optimizer, label: "epoch \(epoch)/\(options.epochs) train")
            model.eval()
            let validation = try withNoGrad {
                try runEpoch(model: model, loader: validationLoader, epoch: 0, features: features, optimizer: nil,
                             label: "epoch \(epoch)/\(options.epochs) validation")
            }
            let record = EpochRecord(epoch: epoch, training: training, validation: validation,
                                     seconds: Date().timeIntervalSince(start))
            records.append(record)
            progress.clear()
            printLine(seedEpochLine(epoch: epoch, epochs: options.epochs, training: training, validation: validation))
            try log.write(records)
        }
        try saveModel(model, to: outputURL, metaDim: table.metaDim, split: split, records: records)
        printLine("Saved: \(options.output)")
        return TrainingResult(records: records, outputURL: outputURL, model: model,
                              featuresComputed: featureStats.computed, featuresReused: featureStats.reused)
    }

    /// The backbone's 2048-d features (inference mode) of every image the CSV lists, in CSV order, through the
    /// on-disk cache: what `resnet50 features` writes.
    /// - Returns: image names, the (N × width) features row-major, and the width.
    public func extractFeatures() throws -> (names: [String], features: [Float], width: Int) {
        try validateOptions()
        if let threads = options.threads { Kernels.setNumThreads(threads) }
        let table = try LabelsTable(csvURL: URL(fileURLWithPath: options.csvPath),
                                    imagesDirectory: URL(fileURLWithPath: options.imagesDirectory),
                                    maxBoxes: options.maxBoxes)
        let dataset = ImageDataset(table: table, cacheBudgetBytes: 0)
        let (model, weightsKey) = try buildModel(metaDim: table.metaDim)
        model.backbone.freeze()
        let (features, _) = try computeFeatures(model: model, dataset: dataset, weightsKey: weightsKey)
        return (table.samples.map(\.imageName), features, model.backbone.featureCount)
    }

    // MARK: Set-up

    private func validateOptions() throws {
        guard options.epochs >= 1 else { throw TrainingError("--epochs must be at least 1 (got \(options.epochs))") }
        guard options.batchSize >= 1 else { throw TrainingError("--batch-size must be at least 1 (got \(options.batchSize))") }
        guard options.numWorkers >= 0 else { throw TrainingError("--num-workers must be 0 or more (got \(options.numWorkers))") }
        guard options.maxBoxes >= 0 else { throw TrainingError("--max-boxes must be 0 or more (got \(options.maxBoxes))") }
        guard options.learningRate > 0, options.learningRate.isFinite else {
            throw TrainingError("--lr must be a positive number (got \(options.learningRate))")
        }
        if let threads = options.threads, threads < 1 { throw TrainingError("--threads must be at least 1 (got \(threads))") }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: options.imagesDirectory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw TrainingError("--images-dir \(options.imagesDirectory): no such folder")
        }
        guard FileManager.default.isReadableFile(atPath: options.csvPath) else {
            throw TrainingError("--csv-path \(options.csvPath): no such readable file")
        }
    }

    /// The fusion model with its backbone weights loaded; also the identity of those weights for the cache.
    private func buildModel(metaDim: Int) throws -> (FusionModel, String) {
        let generator = RandomGenerator(seed: options.seed)
        let model = FusionModel(metaDim: metaDim, backbone: ResNet(config: options.backbone, generator: generator),
                                generator: generator, dropoutGenerator: RandomGenerator(seed: options.seed ^ 0xD509_0E75))
        let path: String
        switch options.weights {
        case .none:
            warn("warning: --weights none: the backbone starts from random weights, not ImageNet; expect far lower accuracy")
            return (model, "random-init seed \(options.seed)")
        case .file(let given):
            path = given
        case .torchvisionDefault:
            let candidates = TorchvisionWeights.candidatePaths()
            guard let found = candidates.first(where: { FileManager.default.isReadableFile(atPath: $0) }) else {
                throw TrainingError("ImageNet weights \(TorchvisionWeights.fileName) not found; looked in "
                    + candidates.joined(separator: " and ")
                    + ". Put torchvision's file there, pass --weights PATH, or --weights none to start from random weights")
            }
            path = found
        }
        let url = URL(fileURLWithPath: path)
        guard FileManager.default.isReadableFile(atPath: path) else { throw TrainingError("--weights \(path): no such readable file") }
        let file: WeightFiles.StateDict
        do {
            file = try WeightFiles.StateDict.load(from: url)
        } catch {
            throw TrainingError("\(error)")
        }
        do {
            try model.loadBackbone(file)
        } catch {
            throw TrainingError("\(path): \(error)")
        }
        return (model, "weights \(FeatureCache.imageKey(url) ?? path)")
    }

    // MARK: Features

    /// Backbone features (inference mode) of every sample, rows in sample order, from the on-disk cache
    /// where present; the rest computed now and added to the cache.
    private func computeFeatures(model: FusionModel, dataset: ImageDataset, weightsKey: String) throws
        -> ([Float], (computed: Int, reused: Int))
    {
        let width = model.backbone.featureCount
        let count = dataset.samples.count
        var features = [Float](repeating: 0, count: count * width)
        let cache = options.featureCacheDirectory.map {
            FeatureCache(directory: URL(fileURLWithPath: $0),
                         modelKey: "\(weightsKey) | \(options.backbone) | resize 256, center crop 224, ImageNet mean/std",
                         width: width)
        }
        let keys = dataset.samples.map { FeatureCache.imageKey($0.imageURL) ?? $0.imageURL.path }
        let cached = cache?.lookup(keys) ?? Array(repeating: nil, count: count)
        var missing = [Int]()
        for (i, row) in cached.enumerated() {
            if let row { features.replaceSubrange(i * width ..< (i + 1) * width, with: row) } else { missing.append(i) }
        }
        if !missing.isEmpty {
            model.backbone.eval()
            let loader = try DataLoader(dataset: dataset, indices: missing, batchSize: max(options.batchSize, 8), shuffle: false,
                                    seed: options.seed, numWorkers: options.numWorkers)
            let iterator = loader.epoch(0)
            var done = 0
            let start = Date()
            var newRows = [(key: String, features: [Float])]()
            while let batch = try iterator.next() {
                let images = Tensor(shape: [batch.count, 3, batch.imageSize, batch.imageSize], data: batch.images)
                let out = withNoGrad { model.imageFeatures(images) }
                for (j, sample) in batch.sampleIndices.enumerated() {
                    let row = Array(out.data[j * width ..< (j + 1) * width])
                    features.replaceSubrange(sample * width ..< (sample + 1) * width, with: row)
                    newRows.append((keys[sample], row))
                }
                done += batch.count
                progress.report("backbone features", done: done, total: missing.count, since: start)
            }
            progress.clear()
            if let cache {
                do { try cache.store(newRows) } catch { warn("warning: feature cache not written: \(error)") }
            }
        }
        return (features, (missing.count, count - missing.count))
    }

    // MARK: Epochs

    /// One pass over a loader: training when an optimizer is given, evaluation otherwise.
    private func runEpoch(model: FusionModel, loader: DataLoader, epoch: Int, features: [Float],
                          optimizer: Optimizer?, label: String) throws -> EpochMetrics {
        var metrics = MetricsAccumulator()
        let start = Date()
        var done = 0
        let total = loader.indices.count
        func step(logits: Tensor, labels: [Int]) {
            let loss = crossEntropy(logits, labels: labels)
            if let optimizer {
                optimizer.zeroGrad()
                loss.backward()
                optimizer.step()
            }
            let predictions = (0 ..< labels.count).map { logits.data[2 * $0 + 1] > logits.data[2 * $0] ? 1 : 0 }
            metrics.add(batchMeanLoss: Double(loss.item), predictions: predictions, labels: labels)
            done += labels.count
            progress.report(label, done: done, total: total, since: start)
        }
        if options.usesCachedFeatures {
            let width = model.backbone.featureCount, metaDim = model.metaDim
            let order = loader.shuffle ? loader.order(epoch: epoch) : loader.indices
            let samples = loader.dataset.samples
            for batchStart in stride(from: 0, to: order.count, by: loader.batchSize) {
                let indices = order[batchStart ..< min(batchStart + loader.batchSize, order.count)]
                var rows = [Float](), meta = [Float](), labels = [Int]()
                rows.reserveCapacity(indices.count * width)
                for i in indices {
                    rows.append(contentsOf: features[i * width ..< (i + 1) * width])
                    meta.append(contentsOf: samples[i].metadata)
                    labels.append(samples[i].label)
                }
                let logits = model.classify(features: Tensor(shape: [indices.count, width], data: rows),
                                            meta: Tensor(shape: [indices.count, metaDim], data: meta))
                step(logits: logits, labels: labels)
            }
        } else {
            let iterator = loader.epoch(epoch)
            while let batch = try iterator.next() {
                let images = Tensor(shape: [batch.count, 3, batch.imageSize, batch.imageSize], data: batch.images)
                let meta = Tensor(shape: [batch.count, batch.metaDim], data: batch.metadata)
                step(logits: model(images, meta), labels: batch.labels)
            }
        }
        return metrics.result
    }

    // MARK: Saving

    private func saveModel(_ model: FusionModel, to url: URL, metaDim: Int, split: DatasetSplit,
                           records: [EpochRecord]) throws {
        var metadata = [
            "format": "pt",
            "meta_dim": String(metaDim),
            "max_boxes": String(options.maxBoxes),
            "freeze_backbone": String(options.freezeBackbone),
            "bn_mode": options.freezeBackbone ? options.batchNormMode.rawValue : "train",
            "seed": String(options.seed),
            "epochs": String(options.epochs),
            "train_size": String(split.train.count),
            "val_size": String(split.validation.count),
        ]
        if let last = records.last {
            metadata["final_metrics"] = last.jsonSummary
        }
        do {
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try SafetensorsFile.save(model.weightFileStateDict(), metadata: metadata, to: url)
        } catch {
            throw TrainingError("--output \(url.path): \(error)")
        }
    }
}

extension EpochRecord {
    /// The record's numbers as a one-line JSON object.
    var jsonSummary: String {
        func split(_ m: EpochMetrics) -> [String: Double] {
            let c = m.confusion
            return ["loss": m.loss, "accuracy": c.accuracy, "precision": c.precision, "recall": c.recall, "f1": c.f1,
                    "tp": Double(c.truePositives), "fp": Double(c.falsePositives), "fn": Double(c.falseNegatives),
                    "tn": Double(c.trueNegatives)]
        }
        let object: [String: Any] = ["epoch": epoch, "train": split(training), "val": split(validation), "seconds": seconds]
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}
