import Foundation
import Models

/// How BatchNorm behaves in a frozen backbone (DESIGN §4).
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

    public init(imagesDirectory: String, csvPath: String) {
        self.imagesDirectory = imagesDirectory
        self.csvPath = csvPath
    }

    /// True when the backbone's features are fixed for the whole run and can be computed once.
    public var usesCachedFeatures: Bool { freezeBackbone && batchNormMode == .eval }
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
