// RunSetup.swift — from options to a model ready to train: labels, split, class weight, backbone weights,
// optimizer, the resumed state and the cached backbone features.
import DataPipeline
import FeatureStore
import Foundation
import Models
import NN
import Tensors
import WeightFiles

/// Everything an epoch needs that stays fixed for the run.
struct PreparedRun {
    let table: LabelsTable
    let split: DatasetSplit
    let dataset: ImageDataset
    /// The class-1 weight of the loss (nil: unweighted).
    let positiveWeight: Float?
    let model: FusionModel
    /// Reseeded at every epoch (`Trainer.dropoutSeed`).
    let dropoutGenerator: RandomGenerator
    let optimizer: Adam
    /// What a resume must match (see `Trainer.runSettings`).
    let settings: [String: String]
    /// The identity of the backbone's features: weights, architecture and preprocessing.
    let featureCacheKey: String

    var classWeights: [Float]? { positiveWeight.map { [1, $0] } }
    var validationLabels: [Int] { split.validation.map { table.samples[$0].label } }
}

extension Trainer {
    /// labels.csv with every image resolved; its warning, if any, goes to `events`.
    func readLabels() throws -> LabelsTable {
        let table = try LabelsTable(csvURL: URL(fileURLWithPath: options.csvPath),
                                    imagesDirectory: URL(fileURLWithPath: options.imagesDirectory),
                                    maxBoxes: options.maxBoxes)
        if let warning = table.boxWarning { events(.warning(warning)) }
        return table
    }

    /// (role, path) of every file the run reads, for `refuseOutputsOverInputs`.
    func inputFiles(table: LabelsTable) -> [(FileRole, URL)] {
        var inputs = [(FileRole.option(.csvPath), URL(fileURLWithPath: options.csvPath))] + table.samples.map { (.image, $0.imageURL) }
        if let weights = resolveWeightsPath() { inputs.append((.option(.weights), URL(fileURLWithPath: weights))) }
        return inputs
    }

    func prepare(table: LabelsTable) throws -> PreparedRun {
        let split = try DatasetSplit(count: table.samples.count, seed: options.seed)
        let dataset = ImageDataset(table: table, cacheBudgetBytes: options.usesCachedFeatures ? 0 : options.cropCacheBytes)
        let positiveWeight = try resolvePositiveWeight(table: table, split: split)
        let (model, weightsKey, dropoutGenerator) = try buildModel(metaDim: table.metaDim)
        if options.freezeBackbone { model.backbone.freeze() }
        if options.usesCachedFeatures && options.standardizeInputs { model.standardizeInputs() }
        let optimizer = Adam(parameters: model.trainableParameters(), learningRate: options.learningRate,
                             weightDecay: options.weightDecay, decoupled: options.weightDecay > 0)
        return PreparedRun(table: table, split: split, dataset: dataset, positiveWeight: positiveWeight, model: model,
                           dropoutGenerator: dropoutGenerator, optimizer: optimizer,
                           settings: runSettings(table: table, weightsKey: weightsKey),
                           featureCacheKey: featureCacheKey(weightsKey: weightsKey))
    }

    /// The finished epochs, best model and optimizer state of the checkpoint being resumed (loaded into `run`);
    /// an empty history for a new run.
    func restoredState(_ run: PreparedRun) throws -> RunState {
        guard let resumePath = options.resumePath else { return RunState() }
        return try ResumeCheckpoint.restore(from: URL(fileURLWithPath: resumePath), settings: run.settings, epochs: options.epochs,
                                            model: run.model, optimizer: run.optimizer, backboneStored: !options.usesCachedFeatures)
    }

    /// Cached-feature mode: every image's backbone features, computed once (or read from the on-disk cache), or
    /// memory-mapped from the feature store `featureStorePath` names; with `standardizing` the input statistics of
    /// the training split set on the model. Other modes: no rows.
    func cachedFeatures(_ run: PreparedRun, standardizing: Bool) throws -> (rows: FeatureRows, computed: Int, reused: Int) {
        guard options.usesCachedFeatures else { return (.none, 0, 0) }
        let model = run.model, width = model.backbone.featureCount
        let features: FeatureRows, computedCount: Int, reusedCount: Int
        if let storePath = options.featureStorePath {
            let keys = run.table.samples.map { FeatureCache.imageKey($0.imageURL) ?? $0.imageURL.path }
            let store: FeatureRows.Store
            do {
                store = try FeatureStoreIndex.open(URL(fileURLWithPath: storePath), imageKeys: keys, modelKey: run.featureCacheKey,
                                                   width: width)
            } catch let error as TrainingError {
                let problem = error.description
                throw OptionNamingError { name in "\(name(.featureStorePath)) \(problem)" }
            }
            (features, computedCount, reusedCount) = (FeatureRows(store: store), 0, store.rowCount)
        } else {
            let cache = featureCache(key: run.featureCacheKey, width: width)
            let computed: (features: [Float], computed: Int, reused: Int)
            do {
                // Batches of the global batch size: the features a group computes are those one process would compute
                // with that batch size.
                computed = try backboneFeatures(model: model, dataset: run.dataset, indices: Array(0 ..< run.dataset.samples.count),
                                                cache: cache, batchSize: options.batchSize * group.size, numWorkers: options.numWorkers,
                                                group: group, progress: progress, warn: { self.events(.warning($0)) })
            } catch var interrupted as RunInterrupted {
                interrupted.detail = " while computing backbone features: no files written"
                    + (cache == nil ? "" : "; the features computed so far are in the feature cache")
                throw interrupted
            }
            (features, computedCount, reusedCount) = (FeatureRows(memory: computed.features, width: width), computed.computed, computed.reused)
        }
        // A resumed run keeps the statistics its checkpoint restored: the model was trained in their units.
        if standardizing, let featureMap = model.featureStandardization, let metaMap = model.metaStandardization {
            let train = run.split.train
            features.setStatistics(of: featureMap, rows: train)
            metaMap.setStatistics(rows: train.flatMap { run.table.samples[$0].metadata }, count: train.count)
        }
        return (features, computedCount, reusedCount)
    }

    /// "weights … | backbone | preprocessing": features are reusable only when all three are the same.
    func featureCacheKey(weightsKey: String) -> String {
        "\(weightsKey) | \(options.backbone) | resize 256, center crop 224, ImageNet mean/std"
    }

    func featureCache(weightsKey: String, width: Int) -> FeatureCache? {
        featureCache(key: featureCacheKey(weightsKey: weightsKey), width: width)
    }

    private func featureCache(key: String, width: Int) -> FeatureCache? {
        options.featureCacheDirectory.map { FeatureCache(directory: URL(fileURLWithPath: $0), modelKey: key, width: width) }
    }

    /// `positiveWeight`: auto is negatives / positives of the training split.
    private func resolvePositiveWeight(table: LabelsTable, split: DatasetSplit) throws -> Float? {
        switch options.positiveWeight {
        case nil: return nil
        case .value(let w)?: return w
        case .auto?:
            let positives = split.train.filter { table.samples[$0].label == 1 }.count, total = split.train.count
            guard positives > 0, positives < total else {
                throw OptionNamingError { name in
                    "\(name(.positiveWeight)) auto: the training split has \(positives) positives of \(total); give a number instead"
                }
            }
            return Float(total - positives) / Float(positives)
        }
    }

    /// What defines the run: a resume must match all of these. The keys are the command's flag names because
    /// checkpoints already on disk store them so; they are data here, not wording.
    func runSettings(table: LabelsTable, weightsKey: String) -> [String: String] {
        // Every parsed column of every row (metadata by bit pattern), and each image file's path, size and mtime:
        // an edited labels.csv, a replaced frame or another images folder is another run.
        let rows = table.samples.map { sample in
            "\(sample.imageName)\t\(sample.label)\t" + sample.metadata.map { String($0.bitPattern, radix: 16) }.joined(separator: ",")
        }
        let images = table.samples.map { FeatureCache.imageKey($0.imageURL) ?? $0.imageURL.path }
        var settings = [
            "labels.csv": "\(table.samples.count) rows, digest \(stableHash(rows.joined(separator: "\n")))",
            "images": "\(images.count) files, digest \(stableHash(images.joined(separator: "\n")))",
            "--seed": String(options.seed), "--max-boxes": String(options.maxBoxes),
            // The global batch (ranks × --batch-size): a run may resume with another rank count that keeps it.
            "--batch-size": String(options.batchSize * group.size),
            "--freeze-backbone": String(options.freezeBackbone), "--bn-mode": options.batchNormMode.rawValue,
            "--lr": String(options.learningRate), "--lr-schedule": options.learningRateSchedule.rawValue,
            "--warmup-epochs": String(options.warmupEpochs), "--weight-decay": String(options.weightDecay),
            "--pos-weight": options.positiveWeight?.description ?? "none", "--select-by": options.selectBy.rawValue,
            "--weights": weightsKey, "backbone": BackboneCodec.encode(options.backbone),
            "--no-standardize": String(!options.standardizeInputs),
        ]
        if options.syncBatchNorm { settings["--sync-bn"] = "true" }
        // A store may hold fp16 features: another input than the computed ones.
        if options.featureStorePath != nil { settings["--features"] = "store" }
        // A cosine schedule is spread over the epochs: a different count is a different run.
        if options.learningRateSchedule == .cosine { settings["--epochs"] = String(options.epochs) }
        return settings
    }

    /// The backbone weights file the run reads: the given file, or torchvision's file where torchvision keeps it;
    /// nil for `WeightsSource.none` or when the default file is not found.
    private func resolveWeightsPath() -> String? {
        switch options.weights {
        case .none: return nil
        case .file(let given): return given
        case .torchvisionDefault: return TorchvisionWeights.candidatePaths().first { FileManager.default.isReadableFile(atPath: $0) }
        }
    }

    /// The fusion model with its backbone weights loaded; also the identity of those weights for the cache and
    /// the dropout stream (reseeded every epoch).
    func buildModel(metaDim: Int) throws -> (FusionModel, String, RandomGenerator) {
        let generator = RandomGenerator(seed: options.seed)
        let dropoutGenerator = RandomGenerator(seed: options.seed ^ 0xD509_0E75)
        let model = FusionModel(metaDim: metaDim, backbone: ResNet(config: options.backbone, generator: generator),
                                generator: generator, dropoutGenerator: dropoutGenerator)
        if case .none = options.weights {
            events(.randomBackbone)
            return (model, "random-init seed \(options.seed)", dropoutGenerator)
        }
        guard let path = resolveWeightsPath() else {
            throw OptionNamingError { name in
                "ImageNet weights \(TorchvisionWeights.fileName) not found; looked in "
                    + TorchvisionWeights.candidatePaths().joined(separator: " and ")
                    + ". Put torchvision's file there, pass \(name(.weights)) PATH, or \(name(.weights)) none to start from random weights"
            }
        }
        let url = URL(fileURLWithPath: path)
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw InvalidOption(owner: "TrainingOptions", name: .weights, problem: .noSuchReadableFile, value: path)
        }
        let file: WeightFiles.StateDict
        do {
            file = try WeightFiles.StateDict.load(from: url)
        } catch {
            throw TrainingError("\(error)")
        }
        try requireFinite(file) { problem in OptionNamingError { name in "\(name(.weights)) \(path): \(problem)" } }
        do {
            try model.loadBackbone(file)
        } catch {
            throw TrainingError("\(path): \(error)")
        }
        return (model, "weights \(FeatureCache.imageKey(url) ?? path)", dropoutGenerator)
    }
}
