import DataPipeline
import FileIO
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

    /// Every file of the set.
    public var all: [URL] { [last, best, resume, epochLog, summary, curves, precisionRecall] }
}

/// The backbone shape as model metadata (`backbone`), so `predict` and `evaluate` rebuild the same network.
enum BackboneCodec {
    static func encode(_ config: ResNetConfig) -> String {
        let block = config.block == .bottleneck ? "bottleneck" : "basic"
        return "\(block) layers=\(config.layers.map(String.init).joined(separator: ",")) stem=\(config.stemWidth) "
            + "widths=\(config.widths.map(String.init).joined(separator: ","))"
    }

    /// Blocks per stage, stem and stage widths a model file may ask for: torchvision's largest ResNet (152) uses
    /// 36 blocks and width 512; these leave room for wider variants while keeping a hostile file from allocating
    /// gigabytes before anything is checked.
    static let maxBlocksPerStage = 64
    static let maxWidth = 2048
    /// ResNet-152 has 60 M parameters.
    static let maxParameters = 150_000_000

    /// - Returns: the configuration, or the reason the text is malformed or out of range.
    static func decode(_ text: String) -> Result<ResNetConfig, TrainingError> {
        let parts = text.split(separator: " ")
        guard parts.count == 4, parts[0] == "bottleneck" || parts[0] == "basic" else {
            return .failure(TrainingError("unknown backbone '\(oneLine(text, limit: 200))'"))
        }
        func ints(_ part: Substring, _ name: String, count: Int, limit: Int) -> [Int]? {
            guard part.hasPrefix(name + "=") else { return nil }
            let fields = part.dropFirst(name.count + 1).split(separator: ",", omittingEmptySubsequences: false)
            let values = fields.compactMap { Int($0) }
            return values.count == count && fields.count == count && values.allSatisfy({ (1 ... limit).contains($0) }) ? values : nil
        }
        guard let layers = ints(parts[1], "layers", count: 4, limit: maxBlocksPerStage),
              let stem = ints(parts[2], "stem", count: 1, limit: maxWidth),
              let widths = ints(parts[3], "widths", count: 4, limit: maxWidth) else {
            return .failure(TrainingError("backbone '\(oneLine(text, limit: 200))': expected 4 stages of 1…\(maxBlocksPerStage) blocks, "
                + "a stem and 4 widths in 1…\(maxWidth)"))
        }
        let config = ResNetConfig(block: parts[0] == "bottleneck" ? .bottleneck : .basic, layers: layers, stemWidth: stem[0],
                                  widths: widths, numClasses: nil)
        guard let parameters = parameterCount(config), parameters <= maxParameters else {
            return .failure(TrainingError("backbone '\(oneLine(text, limit: 200))' has over \(maxParameters / 1_000_000) M parameters"))
        }
        return .success(config)
    }

    /// The convolution weights of `config` (the bulk of its parameters), with overflow checks; nil on overflow.
    static func parameterCount(_ config: ResNetConfig) -> Int? {
        var total = 0, overflow = false
        func add(_ factors: Int...) {
            var product = 1
            for f in factors {
                let (p, o) = product.multipliedReportingOverflow(by: f)
                overflow = overflow || o
                product = p
            }
            let (sum, o) = total.addingReportingOverflow(product)
            overflow = overflow || o
            total = sum
        }
        add(3, 49, config.stemWidth)
        var inputs = config.stemWidth
        for (stage, width) in config.widths.enumerated() {
            let outputs = config.block == .bottleneck ? 4 * width : width
            for block in 0 ..< config.layers[stage] {
                if config.block == .bottleneck {
                    add(inputs, width); add(9, width, width); add(width, outputs)
                } else {
                    add(9, inputs, width); add(9, width, width)
                }
                if block == 0 && (inputs != outputs || stage > 0) { add(inputs, outputs) }
                inputs = outputs
            }
        }
        return overflow ? nil : total
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
    /// - Throws: an error naming the file and what is wrong.
    public static func load(_ url: URL) throws -> TrainedModel {
        guard FileManager.default.isReadableFile(atPath: url.path) else {
            throw modelFileError(url.path, "no such readable file")
        }
        let file: SafetensorsFile
        do { file = try SafetensorsFile.load(from: url) } catch { throw modelFileError(error) }
        return try load(file, name: url.path)
    }

    /// Loads and checks a model file already in memory (the `modelfile` fuzz target's entry point); `name` stands
    /// for the path in error messages.
    /// - Throws: an error naming `name` and what is wrong.
    public static func load(data: Data, name: String) throws -> TrainedModel {
        let file: SafetensorsFile
        do { file = try SafetensorsFile.load(data: data, name: name) } catch { throw modelFileError(error) }
        return try load(file, name: name)
    }

    /// An error about the model file `name`; the command line puts the flag that named the file in front (`--model`).
    private static func modelFileError(_ name: String, _ problem: String) -> OptionNamingError {
        OptionNamingError { option in "\(option(.modelPath)) \(name): \(problem)" }
    }

    /// A safetensors reader's error, which names the file itself.
    private static func modelFileError(_ error: Error) -> OptionNamingError {
        let description = "\(error)"
        return OptionNamingError { option in "\(option(.modelPath)) \(description)" }
    }

    /// The checks after the safetensors parse: metadata, backbone, strict state-dict load, finite weights.
    private static func load(_ file: SafetensorsFile, name: String) throws -> TrainedModel {
        let m = file.metadata
        guard let metaDim = m["meta_dim"].flatMap(Int.init), let maxBoxes = m["max_boxes"].flatMap(Int.init) else {
            throw modelFileError(name, "not a resnet50 model (metadata meta_dim or max_boxes missing)")
        }
        guard (0 ... BoxEncoding.maxBoxesLimit).contains(maxBoxes), metaDim == BoxEncoding.metaDim(maxBoxes: maxBoxes) else {
            throw modelFileError(name, "metadata max_boxes \(maxBoxes) and meta_dim \(metaDim) do not fit "
                + "(max_boxes must be in 0…\(BoxEncoding.maxBoxesLimit) and meta_dim = 4 + 8·max_boxes)")
        }
        // Files from before the backbone was recorded are ResNet-50.
        let config: ResNetConfig
        if let text = m["backbone"] {
            switch BackboneCodec.decode(text) {
            case .success(let decoded): config = decoded
            case .failure(let error): throw modelFileError(name, "\(error)")
            }
        } else {
            config = .depth(50, numClasses: nil)
        }
        var threshold: Double?
        if let text = m["threshold"] {
            guard let t = Double(text), t.isFinite, (0 ... 1).contains(t) else {
                throw modelFileError(name, "threshold '\(oneLine(text, limit: 200))' is not a probability")
            }
            threshold = t
        }
        // The strict load below needs every backbone convolution in the file, so a file holding fewer backbone values
        // than those convolutions' weights cannot load: refuse it before building the network, or a few hundred bytes
        // of metadata make this allocate and initialise up to `maxParameters` weights (seconds, gigabytes) first.
        let needed = BackboneCodec.parameterCount(config) ?? Int.max
        let held = file.stateDict.reduce(0) { $0 + ($1.key.hasPrefix("backbone.") ? $1.tensor.count : 0) }
        guard held >= needed else {
            throw modelFileError(name, "backbone '\(BackboneCodec.encode(config))' needs \(needed) convolution "
                + "weights but the file holds \(held) backbone values")
        }
        let model = FusionModel(metaDim: metaDim, backbone: ResNet(config: config, generator: RandomGenerator(seed: 0)),
                                generator: RandomGenerator(seed: 0))
        do {
            try model.loadStateDict(file.stateDict, strict: true)
        } catch {
            // The mismatch lists the file's tensor names as they are.
            throw modelFileError(name, "\(oneLine("\(error)"))")
        }
        try requireFinite(file.stateDict) { modelFileError(name, $0) }
        model.eval()
        return TrainedModel(model: model, maxBoxes: maxBoxes, threshold: threshold,
                            featureCacheKey: m["feature_cache_key"], metadata: m)
    }
}

/// Refuses a state dict with a NaN or infinite value: a diverged run's or a damaged file's weights would turn
/// every score into NaN.
/// - Parameter fileError: the error naming the file, for a sentence saying what is wrong with it.
func requireFinite(_ state: WeightFiles.StateDict, fileError: (String) -> Error) throws {
    for entry in state where entry.tensor.dtype.isFloatingPoint {
        if let bad = entry.tensor.floats.firstIndex(where: { !$0.isFinite }) {
            throw fileError("tensor \(oneLine(entry.key, limit: 200)) holds a non-finite value (\(entry.tensor.floats[bad]) at element \(bad)); "
                + "the file is damaged or comes from a run that diverged")
        }
    }
}

/// Text from a file as an error message shows it: control characters (line breaks, escapes) escaped so the message
/// stays one line, and cut to `limit` characters, because a hostile file's metadata or tensor names can be megabytes.
func oneLine(_ text: String, limit: Int = .max) -> String {
    var out = ""
    var length = 0
    for scalar in text.unicodeScalars {
        if length == limit {
            out += "…(\(text.utf8.count) bytes)"
            break
        }
        let v = scalar.value
        if v < 0x20 || (0x7F ... 0x9F).contains(v) || v == 0x2028 || v == 0x2029 {
            out += scalar.escaped(asASCII: true)
        } else {
            out.unicodeScalars.append(scalar)
        }
        length += 1
    }
    return out
}

/// Writes `text` atomically (FileIO's `AtomicFile`: temporary file in the same folder, flushed, renamed),
/// creating the folder.
func writeAtomically(_ text: String, to url: URL) throws {
    try AtomicFile.write(Data(text.utf8), to: url, createFolder: true)
}

/// P(class 1) from a (N, 2) logits tensor: 1 / (1 + exp(z₀ − z₁)).
func positiveProbabilities(_ logits: Tensor) -> [Double] {
    let z = logits.data
    return (0 ..< logits.shape[0]).map { i -> Double in
        let margin: Double = Double(z[2 * i]) - Double(z[2 * i + 1])
        return 1 / (1 + exp(margin))
    }
}
