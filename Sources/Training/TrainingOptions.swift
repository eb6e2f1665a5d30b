import Foundation
import Models

/// How BatchNorm behaves in a frozen backbone (ARCHITECTURE §4).
public enum BatchNormMode: String, Sendable, CaseIterable {
    /// Running statistics, nothing updated: features are a pure function of the image and get cached.
    /// The practice PyTorch's and Keras's transfer-learning guides recommend.
    case eval
    /// The seed's exact behaviour: backbone parameters frozen but BatchNorm left in training mode (batch
    /// statistics, running statistics updated every batch), at the seed's per-epoch cost.
    case train
}

/// Where the backbone's starting weights come from.
public enum WeightsSource: Equatable, Sendable {
    /// torchvision's ImageNet file `resnet50-0676ba61.pth`, looked up where torchvision caches it.
    case torchvisionDefault
    /// A torchvision ResNet-50 state dict (.pth or .safetensors) at this path.
    case file(String)
    /// Random initialisation (a warning is printed: accuracy will be far lower).
    case none
}

/// Everything `resnet50 train` takes; names and defaults are the seed's where it has them.
public struct TrainingOptions: Sendable {
    public var imagesDirectory: String
    public var csvPath: String
    public var epochs = 10
    public var batchSize = 8
    public var numWorkers = 2
    public var maxBoxes = 10
    public var freezeBackbone = false
    public var learningRate: Float = 1e-3
    public var weights: WeightsSource = .torchvisionDefault
    public var seed: UInt64 = 0
    public var output = "models/resnet50_fused_image_meta.safetensors"
    /// Kernel threads; nil: all cores.
    public var threads: Int?
    public var batchNormMode: BatchNormMode = .eval
    /// Folder of the on-disk feature cache; nil disables it.
    public var featureCacheDirectory: String? = FeatureCache.defaultDirectory
    /// Memory for decoded 224x224 crops kept between epochs (image-path modes).
    public var cropCacheBytes = 2 << 30
    /// The image network, without its classifier. ResNet-50 is the product; tests use a narrow one.
    public var backbone = ResNetConfig.depth(50, numClasses: nil)
    /// Which epoch's model is kept as the best one (`X.best.safetensors`).
    public var selectBy: SelectionMetric = .valF1
    /// Weight of class 1 in the cross-entropy; nil: unweighted (the seed).
    public var positiveWeight: PositiveWeight?
    /// Stop when the selection metric has not improved for this many epochs; nil: never.
    public var patience: Int?
    public var learningRateSchedule: LearningRateSchedule = .constant
    /// Epochs of linear warm-up before the schedule (0: none).
    public var warmupEpochs = 0
    /// AdamW's decoupled weight decay; 0 keeps the seed's plain Adam.
    public var weightDecay: Float = 0
    /// With cached features: train `head` and `meta_net` on inputs standardised with the training split's
    /// statistics (folded into the saved weights). Off: the raw features, as the seed feeds them.
    public var standardizeInputs = true
    /// A resume checkpoint (`X.resume.safetensors`) to continue from; nil starts a new run.
    public var resumePath: String?
    /// Data-parallel runs: BatchNorm in training mode normalises with the statistics of the global batch (summed
    /// over the ranks), so N ranks train as one process with the global batch. Off: each rank its own (DDP's default).
    public var syncBatchNorm = false
    /// Cached-feature mode: read the backbone's features from this feature store (`resnet50 features --store`),
    /// memory-mapped, instead of computing them; nil computes them (through the feature cache).
    public var featureStorePath: String?

    public init(imagesDirectory: String, csvPath: String) {
        self.imagesDirectory = imagesDirectory
        self.csvPath = csvPath
    }

    /// True when the backbone's features are fixed for the whole run and can be computed once.
    public var usesCachedFeatures: Bool { freezeBackbone && batchNormMode == .eval }
}

/// The validation number that picks the best epoch.
public enum SelectionMetric: String, Sendable, CaseIterable {
    /// Highest validation F1; among equal F1, the lower validation loss.
    case valF1 = "val-f1"
    /// Lowest validation loss.
    case valLoss = "val-loss"
}

/// The class-1 weight of the loss: a fixed number, or negatives/positives of the training split.
public enum PositiveWeight: Equatable, Sendable, CustomStringConvertible {
    case auto
    case value(Float)

    /// "auto" or a positive number; nil otherwise.
    public init?(argument: String) {
        if argument == "auto" { self = .auto; return }
        guard let v = Float(argument), v.isFinite, v > 0 else { return nil }
        self = .value(v)
    }

    public var description: String {
        switch self {
        case .auto: return "auto"
        case .value(let v): return "\(v)"
        }
    }
}

/// The learning rate per epoch (constant within an epoch, as Keras's LearningRateScheduler and timm's
/// epoch-based schedulers do): `warmup` epochs rising linearly to the base rate, then the schedule.
public enum LearningRateSchedule: String, Sendable, CaseIterable {
    case constant
    /// Cosine decay from the base rate over the epochs after warm-up (Loshchilov & Hutter, SGDR,
    /// https://arxiv.org/abs/1608.03983, without restarts).
    case cosine

    /// - Parameters:
    ///   - epoch: 1-based epoch.
    ///   - epochs: the run's epochs.
    ///   - warmup: warm-up epochs (epoch e ≤ warmup gets base · e / (warmup + 1)).
    ///   - base: the base learning rate (`TrainingOptions.learningRate`).
    public func learningRate(epoch: Int, epochs: Int, warmup: Int, base: Float) -> Float {
        if epoch <= warmup { return base * Float(epoch) / Float(warmup + 1) }
        switch self {
        case .constant:
            return base
        case .cosine:
            // Epoch warmup+1 gets the base rate; later epochs follow ½(1 + cos(π·t/T)), t = 0 … T−1.
            let t = Double(epoch - warmup - 1), total = Double(max(1, epochs - warmup))
            return Float(Double(base) * 0.5 * (1 + cos(Double.pi * t / total)))
        }
    }
}

/// torchvision's file name and cache folders for the ImageNet ResNet-50 weights.
public enum TorchvisionWeights {
    public static let fileName = "resnet50-0676ba61.pth"

    /// `$TORCH_HOME/hub/checkpoints`, then `~/.cache/torch/hub/checkpoints` (torchvision's own order).
    public static func candidatePaths(environment: [String: String] = ProcessInfo.processInfo.environment) -> [String] {
        var folders = [String]()
        if let torchHome = environment["TORCH_HOME"], !torchHome.isEmpty {
            folders.append(torchHome + "/hub/checkpoints")
        }
        let home = environment["HOME"] ?? NSHomeDirectory()
        let cacheHome = environment["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? home + "/.cache"
        folders.append(cacheHome + "/torch/hub/checkpoints")
        return folders.map { $0 + "/" + fileName }
    }
}
