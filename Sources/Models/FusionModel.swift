// FusionModel.swift — the image + detector-metadata classifier of ARCHITECTURE §3.
import NN
import Tensors
import WeightFiles

/// A ResNet backbone (fc = identity) fused with an MLP over the detector metadata:
/// `meta_net` = Linear(metaDim, 128), ReLU, Dropout(0.2), Linear(128, 64), ReLU;
/// `head` = Linear(features + 64, 256), ReLU, Dropout(0.3), Linear(256, 2) on [image features, meta features].
/// State-dict keys: `backbone.…` (torchvision's ResNet keys without `fc`), `meta_net.0/3.{weight,bias}`,
/// `head.0/3.{weight,bias}`.
///
/// Freezing, two ways (ARCHITECTURE §4): the seed's `--freeze-backbone` is `backbone.freeze()` with the model left in
/// training mode (BatchNorm still uses and updates batch statistics); the recommended one adds
/// `backbone.eval()` after every `train()`, which makes `imageFeatures` a fixed function (cacheable).
public final class FusionModel: Module {
    public let backbone: ResNet
    @ModuleInfo(key: "meta_net") public var metaNet: Sequential
    public let head: Sequential
    /// Length of the metadata vector (4 + 8·max_boxes).
    public let metaDim: Int
    /// Standardisation of the image features and of the metadata in front of `head` and `meta_net`, when training
    /// asked for it (`standardizeInputs()`). Not part of the seed's model: `exportedStateDict()` folds both into
    /// `head.0` and `meta_net.0`, so a saved file has exactly the seed's keys.
    @ModuleInfo(key: "feature_standardization") public private(set) var featureStandardization: Standardize?
    @ModuleInfo(key: "meta_standardization") public private(set) var metaStandardization: Standardize?

    /// - Parameters:
    ///   - metaDim: metadata width.
    ///   - backbone: the image network; its `fc` must be nil (default: ResNet-50 features, 2048 wide).
    ///   - generator: initialisation stream of `meta_net` and `head` (PyTorch's Linear default).
    ///   - dropoutGenerator: mask stream of both dropouts (nil: `Dropout.defaultGenerator`).
    public init(metaDim: Int, backbone: ResNet? = nil, generator: RandomGenerator = Initializer.defaultGenerator,
                dropoutGenerator: RandomGenerator? = nil) {
        let backbone = backbone ?? ResNet(config: .depth(50, numClasses: nil), generator: generator)
        precondition(backbone.fc == nil, "FusionModel: the backbone must have no fc (numClasses: nil)")
        self.backbone = backbone
        self.metaDim = metaDim
        let metaNet = Sequential(Linear(metaDim, 128, generator: generator), ReLU(), Dropout(p: 0.2, generator: dropoutGenerator),
                                 Linear(128, 64, generator: generator), ReLU())
        head = Sequential(Linear(backbone.featureCount + 64, 256, generator: generator), ReLU(),
                          Dropout(p: 0.3, generator: dropoutGenerator), Linear(256, 2, generator: generator))
        super.init()
        self.metaNet = metaNet
        featureStandardization = nil
        metaStandardization = nil
    }

    /// Puts an identity `Standardize` in front of `head`'s image-feature columns and of `meta_net`; set their
    /// statistics from the training split before training.
    public func standardizeInputs() {
        featureStandardization = Standardize(width: backbone.featureCount)
        metaStandardization = Standardize(width: metaDim)
    }

    /// The state dict in the seed's layout: the input standardisation, if any, folded into `head.0` (its image
    /// columns) and `meta_net.0`, its own keys dropped. Logits are unchanged up to float rounding.
    /// - Parameter state: this model's `stateDict()` (default), or one taken earlier (a best epoch's).
    public func exportedStateDict(_ state: StateDict? = nil) -> StateDict {
        var state = state ?? stateDict()
        func fold(_ prefix: String, into layer: String, firstColumn: Int, width: Int) {
            guard let mean = state[prefix + ".mean"], let std = state[prefix + ".std"] else { return }
            let map = Standardize(width: width)
            map.mean.data = mean.floats
            map.std.data = std.floats
            let folded = map.fold(weight: state[layer + ".weight"]!, bias: state[layer + ".bias"]!, firstColumn: firstColumn)
            state[layer + ".weight"] = folded.weight
            state[layer + ".bias"] = folded.bias
            state[prefix + ".mean"] = nil
            state[prefix + ".std"] = nil
        }
        fold("feature_standardization", into: "head.0", firstColumn: 0, width: backbone.featureCount)
        fold("meta_standardization", into: "meta_net.0", firstColumn: 0, width: metaDim)
        return state
    }

    /// Loads a torchvision ResNet state dict (e.g. `resnet50-0676ba61.pth`) into the backbone: every backbone
    /// key must be present with its shape; the file's `fc.*` classifier is ignored; any other extra key is an error.
    /// Also accepts the keys with a `backbone.` prefix (a slice of a saved fusion model).
    /// - Parameter stateDict: the file's tensors.
    /// - Returns: the report (its `unexpectedKeys` lists the ignored `fc.*` keys).
    @discardableResult
    public func loadBackbone(_ stateDict: StateDict) throws -> StateDictMismatch {
        let own = stateDict.keys.contains { $0.hasPrefix("backbone.") } ? stateDict.strippingPrefix("backbone.") : stateDict
        var report = try backbone.loadStateDict(own.filtered { !$0.hasPrefix("fc.") })
        report.unexpectedKeys = own.keys.filter { $0.hasPrefix("fc.") }
        return report
    }

    /// In data-parallel training: this process's rows are rows `before ..< total − after` of the global batch. Both
    /// dropouts skip the other rows' mask draws, so a sample's mask is the one a single process would draw for it.
    public func setRowsOutside(before: Int, after: Int) {
        for case let dropout as Dropout in metaNet.layers + head.layers { dropout.rowsOutside = (before, after) }
    }

    /// Backbone features of a batch of images; what a feature cache stores when the backbone is frozen in eval mode.
    /// - Parameter images: (N, 3, H, W).
    /// - Returns: (N, backbone.featureCount).
    public func imageFeatures(_ images: Tensor) -> Tensor { backbone(images) }

    /// The fusion part alone, from image features.
    /// - Parameters:
    ///   - features: (N, backbone.featureCount).
    ///   - meta: (N, metaDim).
    /// - Returns: logits (N, 2).
    public func classify(features: Tensor, meta: Tensor) -> Tensor {
        precondition(meta.shape.count == 2 && meta.shape[1] == metaDim, "FusionModel: meta \(meta.shape), expected (N, \(metaDim))")
        let features = featureStandardization.map { $0(features) } ?? features
        let meta = metaStandardization.map { $0(meta) } ?? meta
        return head(concat([features, metaNet(meta)], axis: 1))
    }

    /// - Parameters:
    ///   - images: (N, 3, H, W).
    ///   - meta: (N, metaDim).
    /// - Returns: logits (N, 2).
    public func callAsFunction(_ images: Tensor, _ meta: Tensor) -> Tensor {
        classify(features: imageFeatures(images), meta: meta)
    }
}
