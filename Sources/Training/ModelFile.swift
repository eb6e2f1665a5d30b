import Foundation
import Models
import NN
import Tensors
import WeightFiles

/// The files a training run leaves next to `--output X.safetensors`.
public struct RunFiles: Sendable {
    /// The last epoch's model (the seed's file).
    public let last: URL

    public init(output: URL) { last = output }

    private func sibling(_ suffix: String) -> URL {
        let base = last.deletingPathExtension()
        return base.deletingLastPathComponent().appendingPathComponent(base.lastPathComponent + suffix)
    }

    /// The best epoch's model by `--select-by`.
    public var best: URL { sibling(".best.safetensors") }
    /// Model, optimizer and run state after the last finished epoch, for `--resume`.
    public var resume: URL { sibling(".resume.safetensors") }
    /// One row per epoch.
    public var epochLog: URL { sibling(".epochs.csv") }
    /// Flags, split, best epoch, thresholds, final metrics, wall time.
    public var summary: URL { sibling(".summary.json") }
    /// Loss and F1 per epoch, training vs validation.
    public var curves: URL { sibling(".curves.svg") }
    /// Validation precision–recall curve of the best model with its threshold marked.
    public var precisionRecall: URL { sibling(".pr.svg") }
}

/// The backbone shape as model metadata (`backbone`), so `predict` and `evaluate` rebuild the same network.
enum BackboneCodec {
    static func encode(_ config: ResNetConfig) -> String {
        let block = config.block == .bottleneck ? "bottleneck" : "basic"
        return "\(block) layers=\(config.layers.map(String.init).joined(separator: ",")) stem=\(config.stemWidth) "
            + "widths=\(config.widths.map(String.init).joined(separator: ","))"
    }

    static func decode(_ text: String) -> ResNetConfig? {
        let parts = text.split(separator: " ")
        guard parts.count == 4, parts[0] == "bottleneck" || parts[0] == "basic" else { return nil }
        func ints(_ part: Substring, _ name: String) -> [Int]? {
            guard part.hasPrefix(name + "=") else { return nil }
            let values = part.dropFirst(name.count + 1).split(separator: ",").compactMap { Int($0) }
            return values.allSatisfy { $0 >= 1 && $0 <= 4096 } ? values : nil
        }
        guard let layers = ints(parts[1], "layers"), layers.count == 4, let stem = ints(parts[2], "stem"), stem.count == 1,
              let widths = ints(parts[3], "widths"), widths.count == 4 else { return nil }
        return ResNetConfig(block: parts[0] == "bottleneck" ? .bottleneck : .basic, layers: layers, stemWidth: stem[0],
                            widths: widths, numClasses: nil)
    }
}

/// A trained model read back from its safetensors file, with what its metadata says about it.
public struct TrainedModel {
    public let model: FusionModel
    public let maxBoxes: Int
    /// The tuned decision threshold on P(interesting); nil in files written before thresholds were stored.
    public let threshold: Double?
    /// The feature-cache identity of its backbone when it is the unchanged, eval-mode backbone of training.
    public let featureCacheKey: String?
    public let metadata: [String: String]

    /// Loads and checks a model written by `resnet50 train`.
    /// - Throws: `TrainingError` naming the file and what is wrong.
    public static func load(_ url: URL) throws -> TrainedModel {
        guard FileManager.default.isReadableFile(atPath: url.path) else {
            throw TrainingError("--model \(url.path): no such readable file")
        }
        let file: SafetensorsFile
        do { file = try SafetensorsFile.load(from: url) } catch { throw TrainingError("--model \(error)") }
        let m = file.metadata
        guard let metaDim = m["meta_dim"].flatMap(Int.init), let maxBoxes = m["max_boxes"].flatMap(Int.init),
              metaDim == 4 + 8 * maxBoxes else {
            throw TrainingError("--model \(url.path): not a resnet50 model (metadata meta_dim/max_boxes missing or inconsistent)")
        }
        // Files from before the backbone was recorded are ResNet-50.
        let config: ResNetConfig
        if let text = m["backbone"] {
            guard let decoded = BackboneCodec.decode(text) else {
                throw TrainingError("--model \(url.path): unknown backbone '\(text)'")
            }
            config = decoded
        } else {
            config = .depth(50, numClasses: nil)
        }
        var threshold: Double?
        if let text = m["threshold"] {
            guard let t = Double(text), t.isFinite, (0 ... 1).contains(t) else {
                throw TrainingError("--model \(url.path): threshold '\(text)' is not a probability")
            }
            threshold = t
        }
        let model = FusionModel(metaDim: metaDim, backbone: ResNet(config: config, generator: RandomGenerator(seed: 0)),
                                generator: RandomGenerator(seed: 0))
        do {
            try model.loadStateDict(file.stateDict, strict: true)
        } catch {
            throw TrainingError("--model \(url.path): \(error)")
        }
        model.eval()
        return TrainedModel(model: model, maxBoxes: maxBoxes, threshold: threshold,
                            featureCacheKey: m["feature_cache_key"], metadata: m)
    }
}

/// Writes `text` atomically (temporary file in the same folder, then rename), creating the folder.
func writeAtomically(_ text: String, to url: URL) throws {
    try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    try Data(text.utf8).write(to: url, options: .atomic)
}

/// P(class 1) from a (N, 2) logits tensor: 1 / (1 + exp(z₀ − z₁)).
func positiveProbabilities(_ logits: Tensor) -> [Double] {
    let z = logits.data
    return (0 ..< logits.shape[0]).map { i -> Double in
        let margin: Double = Double(z[2 * i]) - Double(z[2 * i + 1])
        return 1 / (1 + exp(margin))
    }
}
