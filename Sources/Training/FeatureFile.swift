import Foundation
import WeightFiles

/// The file `resnet50 features` writes: safetensors with tensor `features` (N × width) and metadata
/// `image_names`, a JSON list in the same order.
public enum FeatureFile {
    public static func write(names: [String], features: [Float], width: Int, to url: URL) throws {
        var state = StateDict()
        state["features"] = WeightTensor(shape: [names.count, width], floats: features)
        let namesJSON = String(decoding: try JSONEncoder().encode(names), as: UTF8.self)
        do {
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try SafetensorsFile.save(state, metadata: ["image_names": namesJSON, "format": "pt"], to: url)
        } catch {
            let problem = "\(error)"
            throw OptionNamingError { name in "\(name(.outputPath)) \(url.path): \(problem)" }
        }
    }
}
