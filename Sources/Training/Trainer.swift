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
public struct EpochRecord: Sendable, Equatable {
    public let epoch: Int
    public let training: EpochMetrics
    public let validation: EpochMetrics
    /// The learning rate of the epoch's steps.
    public let learningRate: Float
    public let seconds: Double
}

/// What a run produced.
public struct TrainingResult {
    /// Every finished epoch, including those of the run a `--resume` continued.
    public let records: [EpochRecord]
    public let outputURL: URL
    public let files: RunFiles
    /// The last epoch's model (the one saved at `outputURL`).
    public let model: FusionModel
    /// The epoch whose model is in `files.best`.
    public let bestEpoch: Int
    /// Threshold tuned for F1 on the validation split: for the best model and for the last one.
    public let bestThreshold: ThresholdChoice
    public let lastThreshold: ThresholdChoice
    /// True when `--patience` ended the run before `--epochs`.
    public let stoppedEarly: Bool
    /// The class-1 weight of the loss (nil: unweighted).
    public let positiveWeight: Float?
    /// Backbone passes the run needed (cached-feature mode: images not found in the on-disk cache).
    public let featuresComputed: Int
    /// Images whose features came from the on-disk cache.
    public let featuresReused: Int
}

/// The seed's training loop (ARCHITECTURE §4) in three modes: frozen backbone on cached features (default with
/// --freeze-backbone), the seed's frozen backbone with BatchNorm in training mode, and full fine-tuning.
/// Beyond the seed: best-epoch selection, an F1-tuned threshold, class weights, early stopping, a learning-rate
/// schedule, AdamW, resumable checkpoints, pictures and a JSON summary of the run.
///
/// Every random draw of an epoch is a function of (seed, epoch): the split and initialisation of the seed, the
/// loader's per-epoch order and a dropout stream reseeded at each epoch. So a resumed run needs only the
/// model, the optimizer state and the history to end where an uninterrupted run ends.
public final class Trainer {
    public let options: TrainingOptions
    private let printLine: (String) -> Void
    private let warn: (String) -> Void
    private let progress: ProgressReporter

    /// - Parameters:
    ///   - options: the run's flags.
    ///   - printLine: where the seed's stdout lines go (nothing else is printed there).
    ///   - warn: where warnings and the end-of-run notes go (stderr in the command).
    public init(options: TrainingOptions, printLine: @escaping (String) -> Void = { print($0) },
                warn: @escaping (String) -> Void = { FileHandle.standardError.write(($0 + "\n").data(using: .utf8)!) }) {
        self.options = options
        self.printLine = printLine
        self.warn = warn
        progress = ProgressReporter()
    }

    /// Trains, then commits the run's files together (see `OutputSet`). A failure leaves an earlier run's files as
    /// they were; SIGINT or SIGTERM (after `InterruptSignal.install()`) stops after the current step, keeps the
    /// resume checkpoint of the last finished epoch and throws `RunInterrupted`.
    public func run() throws -> TrainingResult {
        let wallStart = Date()
        try validateOptions()
        if let threads = options.threads { Kernels.setNumThreads(threads) }
        Kernels.retainFreedMemory()

        let table = try LabelsTable(csvURL: URL(fileURLWithPath: options.csvPath),
                                    imagesDirectory: URL(fileURLWithPath: options.imagesDirectory),
                                    maxBoxes: options.maxBoxes)
        if let warning = table.boxWarning { warn(warning) }
        let files = RunFiles(output: URL(fileURLWithPath: options.output))
        var inputs = [("--csv-path file", URL(fileURLWithPath: options.csvPath))] + table.samples.map { ("image", $0.imageURL) }
        if let weights = resolveWeightsPath() { inputs.append(("--weights file", URL(fileURLWithPath: weights))) }
        // Resuming rewrites its own checkpoint: that one input is meant to be replaced.
        if let resume = options.resumePath, URL(fileURLWithPath: resume).standardizedFileURL != files.resume.standardizedFileURL {
            inputs.append(("--resume file", URL(fileURLWithPath: resume)))
        }
        try refuseOutputsOverInputs(outputs: files.all.map { ("--output", $0) }, inputs: inputs)
        let outputs = try OutputSet(files: files)
        do {
            return try train(table: table, outputs: outputs, wallStart: wallStart)
        } catch let interrupted as RunInterrupted {
            outputs.keepResumable()
            throw interrupted
        } catch {
            outputs.discard()
            throw error
        }
    }

    private func train(table: LabelsTable, outputs: OutputSet, wallStart: Date) throws -> TrainingResult {
        let files = outputs.files
        let split = try DatasetSplit(count: table.samples.count, seed: options.seed)
        let dataset = ImageDataset(table: table, cacheBudgetBytes: options.usesCachedFeatures ? 0 : options.cropCacheBytes)
        let positiveWeight = try resolvePositiveWeight(table: table, split: split)
        let classWeights = positiveWeight.map { [Float(1), $0] }

        let (model, weightsKey, dropoutGenerator) = try buildModel(metaDim: table.metaDim)
        let featureCacheKey = "\(weightsKey) | \(options.backbone) | resize 256, center crop 224, ImageNet mean/std"
        let settings = runSettings(table: table, weightsKey: weightsKey)
        if options.freezeBackbone {
            model.backbone.freeze()
        }
        if options.usesCachedFeatures && options.standardizeInputs { model.standardizeInputs() }
        let optimizer = Adam(parameters: model.trainableParameters(), learningRate: options.learningRate,
                             weightDecay: options.weightDecay, decoupled: options.weightDecay > 0)

        var state = RunState()
        if let resumePath = options.resumePath {
            state = try ResumeCheckpoint.restore(from: URL(fileURLWithPath: resumePath), settings: settings, epochs: options.epochs,
                                                 model: model, optimizer: optimizer, backboneStored: !options.usesCachedFeatures)
        }
        printLine("Using device: cpu")
        warn("Kernel threads: \(Kernels.numThreads)")
        // A resumed run prints the finished epochs again: its stdout is the uninterrupted run's.
        for r in state.records {
            printLine(seedEpochLine(epoch: r.epoch, epochs: options.epochs, training: r.training, validation: r.validation))
        }

        var featureStats = (computed: 0, reused: 0)
        var features: [Float] = []
        if options.usesCachedFeatures {
            let cache = options.featureCacheDirectory.map {
                FeatureCache(directory: URL(fileURLWithPath: $0), modelKey: featureCacheKey, width: model.backbone.featureCount)
            }
            let computed: (features: [Float], computed: Int, reused: Int)
            do {
                computed = try backboneFeatures(model: model, dataset: dataset, indices: Array(0 ..< dataset.samples.count),
                                                cache: cache, batchSize: options.batchSize, numWorkers: options.numWorkers,
                                                progress: progress, warn: warn)
            } catch var interrupted as RunInterrupted {
                interrupted.detail = " while computing backbone features: no files written"
                    + (cache == nil ? "" : "; the features computed so far are in the feature cache")
                throw interrupted
            }
            features = computed.features
            featureStats = (computed.computed, computed.reused)
            // A resumed run keeps the statistics its checkpoint restored: the model was trained in their units.
            if state.records.isEmpty, let featureMap = model.featureStandardization, let metaMap = model.metaStandardization {
                let width = model.backbone.featureCount
                featureMap.setStatistics(rows: split.train.flatMap { features[$0 * width ..< ($0 + 1) * width] }, count: split.train.count)
                metaMap.setStatistics(rows: split.train.flatMap { table.samples[$0].metadata }, count: split.train.count)
            }
        }
        let trainLoader = try DataLoader(dataset: dataset, indices: split.train, batchSize: options.batchSize, shuffle: true,
                                         seed: options.seed, numWorkers: options.numWorkers)
        let validationLoader = try DataLoader(dataset: dataset, indices: split.validation, batchSize: options.batchSize,
                                              shuffle: false, seed: options.seed, numWorkers: options.numWorkers)
        let validationLabels = split.validation.map { table.samples[$0].label }
        let log = EpochLog(url: outputs.staged(files.epochLog))

        var lastProbabilities = [Double]()
        for epoch in state.records.count + 1 ... options.epochs {
            let start = Date()
            let learningRate = options.learningRateSchedule.learningRate(epoch: epoch, epochs: options.epochs,
                                                                         warmup: options.warmupEpochs, base: options.learningRate)
            optimizer.learningRate = learningRate
            dropoutGenerator.reseed(Self.dropoutSeed(options.seed, epoch: epoch))
            model.train()
            if options.usesCachedFeatures { model.backbone.eval() }
            let finished = state.records.count
            func interrupted(_ error: RunInterrupted) -> RunInterrupted {
                var error = error
                error.detail = finished == 0
                    ? " during epoch \(epoch), before any epoch finished: nothing to resume, no files written"
                    : " during epoch \(epoch): \(files.resume.path) holds the run after epoch \(finished); "
                        + "rerun the command with --resume \(files.resume.path) to continue"
                return error
            }
            let training: EpochMetrics
            do {
                (training, _) = try runEpoch(model: model, loader: trainLoader, epoch: epoch - 1, features: features,
                                             optimizer: optimizer, classWeights: classWeights,
                                             label: "epoch \(epoch)/\(options.epochs) train")
            } catch let error as RunInterrupted { throw interrupted(error) }
            model.eval()
            let (validation, probabilities): (EpochMetrics, [Double])
            do {
                (validation, probabilities) = try withNoGrad {
                    try runEpoch(model: model, loader: validationLoader, epoch: 0, features: features, optimizer: nil,
                                 classWeights: classWeights, label: "epoch \(epoch)/\(options.epochs) validation")
                }
            } catch let error as RunInterrupted { throw interrupted(error) }
            let record = EpochRecord(epoch: epoch, training: training, validation: validation, learningRate: learningRate,
                                     seconds: Date().timeIntervalSince(start))
            state.records.append(record)
            lastProbabilities = probabilities
            if state.bestEpoch == 0 || options.selectBy.prefers(validation, over: state.records[state.bestEpoch - 1].validation) {
                state.bestEpoch = epoch
                state.bestState = model.stateDict()
                state.bestProbabilities = probabilities
            }
            progress.clear()
            printLine(seedEpochLine(epoch: epoch, epochs: options.epochs, training: training, validation: validation))
            do { try log.write(state.records, bestEpoch: state.bestEpoch) } catch {
                throw TrainingError("\(files.epochLog.path): \(error.localizedDescription)")
            }
            if let patience = options.patience, epoch < options.epochs, epoch - state.bestEpoch >= patience {
                state.stoppedEarly = true
            }
            do {
                try ResumeCheckpoint.save(state, settings: settings, model: model, optimizer: optimizer,
                                          storeBackbone: !options.usesCachedFeatures,
                                          wallSeconds: state.wallSeconds + Date().timeIntervalSince(wallStart),
                                          to: outputs.staged(files.resume))
            } catch {
                throw TrainingError("\(files.resume.path): \(error)")
            }
            if state.stoppedEarly { break }
        }

        let bestThreshold = withMargin(bestF1Threshold(probabilities: state.bestProbabilities, labels: validationLabels),
                                       probabilities: state.bestProbabilities)
        let lastThreshold = withMargin(bestF1Threshold(probabilities: lastProbabilities, labels: validationLabels),
                                       probabilities: lastProbabilities)
        let last = state.records[state.records.count - 1], best = state.records[state.bestEpoch - 1]
        var common = modelMetadata(table: table, split: split, records: state.records, positiveWeight: positiveWeight)
        if options.usesCachedFeatures { common["feature_cache_key"] = featureCacheKey }
        func metadata(_ record: EpochRecord, _ choice: ThresholdChoice, role: String) -> [String: String] {
            common.merging(["role": role, "epoch": String(record.epoch), "epoch_metrics": record.jsonSummary,
                            "threshold": String(choice.threshold), "threshold_val_f1": String(choice.f1)]) { $1 }
        }
        try save(model.exportedStateDict(state.bestState!), metadata: metadata(best, bestThreshold, role: "best"),
                 to: outputs.staged(files.best))
        try save(model.exportedStateDict(), metadata: metadata(last, lastThreshold, role: "last"),
                 to: outputs.staged(files.last))
        try writePictures(outputs: outputs, records: state.records, bestEpoch: state.bestEpoch,
                          probabilities: state.bestProbabilities, labels: validationLabels, threshold: bestThreshold)
        let wallSeconds = state.wallSeconds + Date().timeIntervalSince(wallStart)
        try writeSummary(outputs: outputs, split: split, state: state, positiveWeight: positiveWeight,
                         thresholds: (bestThreshold, lastThreshold), wallSeconds: wallSeconds)
        try outputs.commit()
        printLine("Saved: \(options.output)")

        func f(_ v: Double) -> String { String(format: "%.3f", v) }
        if state.stoppedEarly {
            warn("Stopped early after epoch \(String(format: "%02d", last.epoch)): \(options.selectBy.rawValue) has not improved "
                + "for \(options.patience ?? 0) epochs")
        }
        warn("Best epoch \(String(format: "%02d", best.epoch)) by \(options.selectBy.rawValue) (val-F1 \(f(best.validation.confusion.f1)), "
            + "val-loss \(String(format: "%.4f", best.validation.loss))): "
            + ((options.output as NSString).deletingPathExtension + ".best.safetensors"))
        warn("Threshold \(f(bestThreshold.threshold)) gives val-F1 \(f(bestThreshold.f1)) (argmax \(f(best.validation.confusion.f1))) "
            + "for the best model; \(f(lastThreshold.threshold)) gives \(f(lastThreshold.f1)) (argmax \(f(last.validation.confusion.f1))) "
            + "for the last")
        warn("Wrote \(files.epochLog.lastPathComponent), \(files.summary.lastPathComponent), \(files.curves.lastPathComponent), "
            + "\(files.precisionRecall.lastPathComponent), \(files.resume.lastPathComponent) next to the model")
        return TrainingResult(records: state.records, outputURL: files.last, files: files, model: model, bestEpoch: state.bestEpoch,
                              bestThreshold: bestThreshold, lastThreshold: lastThreshold, stoppedEarly: state.stoppedEarly,
                              positiveWeight: positiveWeight, featuresComputed: featureStats.computed,
                              featuresReused: featureStats.reused)
    }

    /// The dropout stream of an epoch: a function of the seed and the epoch alone.
    static func dropoutSeed(_ seed: UInt64, epoch: Int) -> UInt64 {
        (seed ^ 0xD509_0E75) &+ UInt64(epoch) &* 0xA076_1D64_78BD_642F
    }

    /// The backbone's 2048-d features (inference mode) of every image the CSV lists, in CSV order, through the
    /// on-disk cache: what `resnet50 features` writes.
    /// - Returns: image names, the (N × width) features row-major, and the width.
    /// - Parameter outputPath: the file the caller will write, refused when it names an input.
    public func extractFeatures(outputPath: String? = nil) throws -> (names: [String], features: [Float], width: Int) {
        try validateOptions()
        if let threads = options.threads { Kernels.setNumThreads(threads) }
        let table = try LabelsTable(csvURL: URL(fileURLWithPath: options.csvPath),
                                    imagesDirectory: URL(fileURLWithPath: options.imagesDirectory),
                                    maxBoxes: options.maxBoxes)
        if let outputPath {
            var inputs = [("--csv-path file", URL(fileURLWithPath: options.csvPath))] + table.samples.map { ("image", $0.imageURL) }
            if let weights = resolveWeightsPath() { inputs.append(("--weights file", URL(fileURLWithPath: weights))) }
            try refuseOutputsOverInputs(outputs: [("--out", URL(fileURLWithPath: outputPath))], inputs: inputs)
        }
        let dataset = ImageDataset(table: table, cacheBudgetBytes: 0)
        let (model, weightsKey, _) = try buildModel(metaDim: table.metaDim)
        model.backbone.freeze()
        let cache = options.featureCacheDirectory.map {
            FeatureCache(directory: URL(fileURLWithPath: $0),
                         modelKey: "\(weightsKey) | \(options.backbone) | resize 256, center crop 224, ImageNet mean/std",
                         width: model.backbone.featureCount)
        }
        let computed = try backboneFeatures(model: model, dataset: dataset, indices: Array(0 ..< dataset.samples.count),
                                            cache: cache, batchSize: options.batchSize, numWorkers: options.numWorkers,
                                            progress: progress, warn: warn)
        return (table.samples.map(\.imageName), computed.features, model.backbone.featureCount)
    }

    // MARK: Set-up

    private func validateOptions() throws {
        try FlagLimits.check(options.epochs, FlagLimits.epochs, flag: "--epochs")
        try FlagLimits.check(options.batchSize, FlagLimits.batchSize, flag: "--batch-size")
        try FlagLimits.check(options.numWorkers, FlagLimits.numWorkers, flag: "--num-workers")
        try FlagLimits.check(options.maxBoxes, 0 ... BoxEncoding.maxBoxesLimit, flag: "--max-boxes")
        guard options.learningRate > 0, options.learningRate.isFinite else {
            throw TrainingError("--lr must be a positive number (got \(options.learningRate))")
        }
        if let patience = options.patience { try FlagLimits.check(patience, FlagLimits.epochs, flag: "--patience") }
        guard options.warmupEpochs >= 0, options.warmupEpochs < options.epochs else {
            throw TrainingError("--warmup-epochs must be 0 or more and below --epochs (got \(options.warmupEpochs))")
        }
        guard options.weightDecay >= 0, options.weightDecay.isFinite else {
            throw TrainingError("--weight-decay must be 0 or a positive number (got \(options.weightDecay))")
        }
        if case .value(let w)? = options.positiveWeight, !(w > 0 && w.isFinite) {
            throw TrainingError("--pos-weight must be 'auto' or a positive number (got \(w))")
        }
        if let threads = options.threads { try FlagLimits.check(threads, FlagLimits.threads, flag: "--threads") }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: options.imagesDirectory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw TrainingError("--images-dir \(options.imagesDirectory): no such folder")
        }
        guard FileManager.default.isReadableFile(atPath: options.csvPath) else {
            throw TrainingError("--csv-path \(options.csvPath): no such readable file")
        }
        if let resume = options.resumePath, !FileManager.default.isReadableFile(atPath: resume) {
            throw TrainingError("--resume \(resume): no such readable file")
        }
    }

    /// `--pos-weight`: auto is negatives / positives of the training split.
    private func resolvePositiveWeight(table: LabelsTable, split: DatasetSplit) throws -> Float? {
        switch options.positiveWeight {
        case nil: return nil
        case .value(let w)?: return w
        case .auto?:
            let positives = split.train.filter { table.samples[$0].label == 1 }.count
            guard positives > 0, positives < split.train.count else {
                throw TrainingError("--pos-weight auto: the training split has \(positives) positives of \(split.train.count); "
                    + "give a number instead")
            }
            return Float(split.train.count - positives) / Float(positives)
        }
    }

    /// What defines the run: a `--resume` must match all of these (flag name → value).
    private func runSettings(table: LabelsTable, weightsKey: String) -> [String: String] {
        // Every parsed column of every row (metadata by bit pattern), and each image file's path, size and mtime:
        // an edited labels.csv, a replaced frame or another --images-dir is another run.
        let rows = table.samples.map { sample in
            "\(sample.imageName)\t\(sample.label)\t" + sample.metadata.map { String($0.bitPattern, radix: 16) }.joined(separator: ",")
        }
        let images = table.samples.map { FeatureCache.imageKey($0.imageURL) ?? $0.imageURL.path }
        var settings = [
            "labels.csv": "\(table.samples.count) rows, digest \(stableHash(rows.joined(separator: "\n")))",
            "images": "\(images.count) files, digest \(stableHash(images.joined(separator: "\n")))",
            "--seed": String(options.seed), "--batch-size": String(options.batchSize), "--max-boxes": String(options.maxBoxes),
            "--freeze-backbone": String(options.freezeBackbone), "--bn-mode": options.batchNormMode.rawValue,
            "--lr": String(options.learningRate), "--lr-schedule": options.learningRateSchedule.rawValue,
            "--warmup-epochs": String(options.warmupEpochs), "--weight-decay": String(options.weightDecay),
            "--pos-weight": options.positiveWeight?.description ?? "none", "--select-by": options.selectBy.rawValue,
            "--weights": weightsKey, "backbone": BackboneCodec.encode(options.backbone),
            "--no-standardize": String(!options.standardizeInputs),
        ]
        // A cosine schedule is spread over --epochs: a different count is a different run.
        if options.learningRateSchedule == .cosine { settings["--epochs"] = String(options.epochs) }
        return settings
    }

    /// The backbone weights file the run reads: `--weights PATH`, or torchvision's file where torchvision keeps it;
    /// nil for `--weights none` or when the default file is not found.
    private func resolveWeightsPath() -> String? {
        switch options.weights {
        case .none: return nil
        case .file(let given): return given
        case .torchvisionDefault: return TorchvisionWeights.candidatePaths().first { FileManager.default.isReadableFile(atPath: $0) }
        }
    }

    /// The fusion model with its backbone weights loaded; also the identity of those weights for the cache and
    /// the dropout stream (reseeded every epoch).
    private func buildModel(metaDim: Int) throws -> (FusionModel, String, RandomGenerator) {
        let generator = RandomGenerator(seed: options.seed)
        let dropoutGenerator = RandomGenerator(seed: options.seed ^ 0xD509_0E75)
        let model = FusionModel(metaDim: metaDim, backbone: ResNet(config: options.backbone, generator: generator),
                                generator: generator, dropoutGenerator: dropoutGenerator)
        if case .none = options.weights {
            warn("warning: --weights none: the backbone starts from random weights, not ImageNet; expect far lower accuracy")
            return (model, "random-init seed \(options.seed)", dropoutGenerator)
        }
        guard let path = resolveWeightsPath() else {
            throw TrainingError("ImageNet weights \(TorchvisionWeights.fileName) not found; looked in "
                + TorchvisionWeights.candidatePaths().joined(separator: " and ")
                + ". Put torchvision's file there, pass --weights PATH, or --weights none to start from random weights")
        }
        let url = URL(fileURLWithPath: path)
        guard FileManager.default.isReadableFile(atPath: path) else { throw TrainingError("--weights \(path): no such readable file") }
        let file: WeightFiles.StateDict
        do {
            file = try WeightFiles.StateDict.load(from: url)
        } catch {
            throw TrainingError("\(error)")
        }
        try requireFinite(file, file: "--weights \(path)")
        do {
            try model.loadBackbone(file)
        } catch {
            throw TrainingError("\(path): \(error)")
        }
        return (model, "weights \(FeatureCache.imageKey(url) ?? path)", dropoutGenerator)
    }

    // MARK: Epochs

    /// One pass over a loader: training when an optimizer is given, evaluation otherwise.
    /// - Returns: the metrics and P(class 1) per sample in the loader's order of that epoch.
    private func runEpoch(model: FusionModel, loader: DataLoader, epoch: Int, features: [Float], optimizer: Optimizer?,
                          classWeights: [Float]?, label: String) throws -> (EpochMetrics, [Double]) {
        var metrics = MetricsAccumulator()
        var probabilities = [Double]()
        let start = Date()
        var done = 0, batch = 0
        let total = loader.indices.count
        func step(logits: Tensor, labels: [Int]) throws {
            let loss = crossEntropy(logits, labels: labels, classWeights: classWeights)
            batch += 1
            // A non-finite loss poisons every weight the step touches, and every later number with it: stop here.
            guard loss.item.isFinite else {
                throw TrainingError("\(label), batch \(batch) of \(loader.batchCount): the loss is \(pythonFixed(Double(loss.item), decimals: 4)); "
                    + "stopping. Lower --lr, or check the weights and labels.csv for non-finite values. "
                    + "Nothing was written: an earlier run's files at \(options.output) are unchanged")
            }
            if let optimizer {
                optimizer.zeroGrad()
                loss.backward()
                optimizer.step()
            } else {
                probabilities += positiveProbabilities(logits)
            }
            let predictions = (0 ..< labels.count).map { logits.data[2 * $0 + 1] > logits.data[2 * $0] ? 1 : 0 }
            metrics.add(batchMeanLoss: Double(loss.item), predictions: predictions, labels: labels)
            done += labels.count
            progress.report(label, done: done, total: total, since: start)
            try InterruptSignal.check()
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
                try step(logits: logits, labels: labels)
            }
        } else {
            let iterator = loader.epoch(epoch)
            while let batch = try iterator.next() {
                let images = Tensor(shape: [batch.count, 3, batch.imageSize, batch.imageSize], data: batch.images)
                let meta = Tensor(shape: [batch.count, batch.metaDim], data: batch.metadata)
                try step(logits: model(images, meta), labels: batch.labels)
            }
        }
        return (metrics.result, probabilities)
    }

    // MARK: Saving

    private func modelMetadata(table: LabelsTable, split: DatasetSplit, records: [EpochRecord],
                               positiveWeight: Float?) -> [String: String] {
        var metadata = [
            "format": "pt",
            "meta_dim": String(table.metaDim),
            "max_boxes": String(options.maxBoxes),
            "freeze_backbone": String(options.freezeBackbone),
            "bn_mode": options.freezeBackbone ? options.batchNormMode.rawValue : "train",
            "backbone": BackboneCodec.encode(options.backbone),
            "seed": String(options.seed),
            "epochs": String(records.count),
            "train_size": String(split.train.count),
            "val_size": String(split.validation.count),
            "selected_by": options.selectBy.rawValue,
        ]
        if let positiveWeight { metadata["pos_weight"] = String(positiveWeight) }
        if let last = records.last { metadata["final_metrics"] = last.jsonSummary }
        return metadata
    }

    private func save(_ state: WeightFiles.StateDict, metadata: [String: String], to url: URL) throws {
        do {
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try SafetensorsFile.save(state, metadata: metadata, to: url)
        } catch {
            throw TrainingError("--output \(url.path): \(error)")
        }
    }

    private func writePictures(outputs: OutputSet, records: [EpochRecord], bestEpoch: Int, probabilities: [Double], labels: [Int],
                               threshold: ThresholdChoice) throws {
        do {
            let files = outputs.files
            try writeAtomically(learningCurvesSVG(records: records, bestEpoch: bestEpoch, selectBy: options.selectBy),
                                to: outputs.staged(files.curves))
            try writeAtomically(precisionRecallSVG(probabilities: probabilities, labels: labels, threshold: threshold,
                                                   title: "Validation precision–recall, best model (epoch \(bestEpoch))"),
                                to: outputs.staged(files.precisionRecall))
        } catch {
            throw TrainingError("--output \(outputs.files.curves.deletingLastPathComponent().path): \(error)")
        }
    }

    private func writeSummary(outputs: OutputSet, split: DatasetSplit, state: RunState, positiveWeight: Float?,
                              thresholds: (best: ThresholdChoice, last: ThresholdChoice), wallSeconds: Double) throws {
        let files = outputs.files
        let best = state.records[state.bestEpoch - 1], last = state.records[state.records.count - 1]
        var flags: [String: Any] = [
            "images_dir": options.imagesDirectory, "csv_path": options.csvPath, "epochs": options.epochs,
            "batch_size": options.batchSize, "max_boxes": options.maxBoxes, "freeze_backbone": options.freezeBackbone,
            "bn_mode": options.batchNormMode.rawValue, "lr": Double("\(options.learningRate)") ?? 0,
            "lr_schedule": options.learningRateSchedule.rawValue, "warmup_epochs": options.warmupEpochs,
            "weight_decay": Double("\(options.weightDecay)") ?? 0, "pos_weight": options.positiveWeight?.description ?? "none",
            "select_by": options.selectBy.rawValue, "output": options.output, "backbone": BackboneCodec.encode(options.backbone),
        ]
        switch options.weights {
        case .none: flags["weights"] = "none"
        case .file(let path): flags["weights"] = path
        case .torchvisionDefault: flags["weights"] = "torchvision default"
        }
        if let patience = options.patience { flags["patience"] = patience }
        if let resume = options.resumePath { flags["resume"] = resume }
        func threshold(_ c: ThresholdChoice, _ r: EpochRecord) -> [String: Any] {
            ["threshold": c.threshold, "val_f1": c.f1, "val_f1_argmax": r.validation.confusion.f1]
        }
        var summary: [String: Any] = [
            "flags": flags, "seed": options.seed, "train_size": split.train.count, "val_size": split.validation.count,
            "epochs_run": state.records.count, "stopped_early": state.stoppedEarly, "best_epoch": state.bestEpoch,
            "threshold": threshold(thresholds.best, best), "last_model_threshold": threshold(thresholds.last, last),
            "best_metrics": best.jsonObject, "final_metrics": last.jsonObject, "wall_seconds": wallSeconds,
            "files": ["last": files.last.lastPathComponent, "best": files.best.lastPathComponent,
                      "resume": files.resume.lastPathComponent, "epochs_csv": files.epochLog.lastPathComponent,
                      "curves_svg": files.curves.lastPathComponent, "pr_svg": files.precisionRecall.lastPathComponent],
        ]
        if let positiveWeight { summary["pos_weight_value"] = Double("\(positiveWeight)") ?? 0 }
        do {
            let data = try JSONSerialization.data(withJSONObject: summary, options: [.sortedKeys, .prettyPrinted])
            try writeAtomically(String(decoding: data, as: UTF8.self) + "\n", to: outputs.staged(files.summary))
        } catch {
            throw TrainingError("--output \(files.summary.path): \(error)")
        }
    }
}

extension SelectionMetric {
    /// True when `candidate` is strictly better than `best`.
    func prefers(_ candidate: EpochMetrics, over best: EpochMetrics) -> Bool {
        switch self {
        case .valF1:
            let f = candidate.confusion.f1, g = best.confusion.f1
            return f > g || (f == g && candidate.loss < best.loss)
        case .valLoss:
            return candidate.loss < best.loss
        }
    }
}

extension EpochRecord {
    /// The record's numbers as a JSON object.
    var jsonObject: [String: Any] {
        func split(_ m: EpochMetrics) -> [String: Double] {
            let c = m.confusion
            return ["loss": m.loss, "accuracy": c.accuracy, "precision": c.precision, "recall": c.recall, "f1": c.f1,
                    "tp": Double(c.truePositives), "fp": Double(c.falsePositives), "fn": Double(c.falseNegatives),
                    "tn": Double(c.trueNegatives)]
        }
        return ["epoch": epoch, "train": split(training), "val": split(validation), "lr": Double("\(learningRate)") ?? 0, "seconds": seconds]
    }

    /// The record's numbers as a one-line JSON object.
    var jsonSummary: String {
        let data = (try? JSONSerialization.data(withJSONObject: jsonObject, options: [.sortedKeys])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}
