import Foundation
import WeightFiles

/// Backbone features kept on disk between runs, so that a second run over the same images with the same
/// weights skips the backbone entirely.
///
/// One safetensors file per (weights, preprocessing, backbone) identity, holding a `features` matrix
/// (rows × width) and, in its metadata, the identity of the image each row came from: absolute path, size and
/// modification time (an edited or replaced file gets a new row). Files are written atomically.
public struct FeatureCache {
    /// `$XDG_CACHE_HOME/resnetfusion/features`, else `~/.cache/resnetfusion/features`.
    public static var defaultDirectory: String {
        let environment = ProcessInfo.processInfo.environment
        let cacheHome = environment["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (environment["HOME"] ?? NSHomeDirectory()) + "/.cache"
        return cacheHome + "/resnetfusion/features"
    }

    public let directory: URL
    /// What the features depend on besides the image: weights identity, preprocessing, backbone.
    public let modelKey: String
    public let width: Int

    /// - Parameters:
    ///   - directory: where cache files live (created on first write).
    ///   - modelKey: a string that changes whenever the features would (weights file identity, preprocessing).
    ///   - width: feature length (2048 for ResNet-50).
    public init(directory: URL, modelKey: String, width: Int) {
        self.directory = directory
        self.modelKey = modelKey
        self.width = width
    }

    var fileURL: URL { directory.appendingPathComponent("features-\(stableHash(modelKey)).safetensors") }

    /// The identity of an image file: path, size and modification time. nil if it cannot be read.
    public static func imageKey(_ url: URL) -> String? {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: url.path),
              let size = attributes[.size] as? NSNumber,
              let modified = attributes[.modificationDate] as? Date else { return nil }
        return "\(url.standardizedFileURL.path)|\(size.int64Value)|\(modified.timeIntervalSince1970)"
    }

    /// The cached rows for these image keys; missing keys map to nil. A missing, stale or unreadable
    /// cache file is an empty cache, never an error: the features are recomputed.
    public func lookup(_ keys: [String]) -> [[Float]?] {
        guard let file = try? SafetensorsFile.load(from: fileURL),
              file.metadata["model_key"] == modelKey,
              let keysJSON = file.metadata["image_keys"]?.data(using: .utf8),
              let storedKeys = try? JSONDecoder().decode([String].self, from: keysJSON),
              let features = file.stateDict["features"],
              features.shape == [storedKeys.count, width] else {
            return Array(repeating: nil, count: keys.count)
        }
        var rowOf = [String: Int]()
        for (row, key) in storedKeys.enumerated() { rowOf[key] = row }
        return keys.map { key in
            rowOf[key].map { row in Array(features.floats[row * width ..< (row + 1) * width]) }
        }
    }

    /// Adds rows (merging with what the file holds) and rewrites the file atomically.
    public func store(_ rows: [(key: String, features: [Float])]) throws {
        var merged = [(String, [Float])]()
        var seen = Set<String>()
        for row in rows where seen.insert(row.key).inserted { merged.append((row.key, row.features)) }
        if let file = try? SafetensorsFile.load(from: fileURL), file.metadata["model_key"] == modelKey,
           let keysJSON = file.metadata["image_keys"]?.data(using: .utf8),
           let storedKeys = try? JSONDecoder().decode([String].self, from: keysJSON),
           let features = file.stateDict["features"], features.shape == [storedKeys.count, width] {
            for (row, key) in storedKeys.enumerated() where seen.insert(key).inserted {
                merged.append((key, Array(features.floats[row * width ..< (row + 1) * width])))
            }
        }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var state = StateDict()
        state["features"] = WeightTensor(shape: [merged.count, width], floats: merged.flatMap(\.1))
        let keysJSON = String(decoding: try JSONEncoder().encode(merged.map(\.0)), as: UTF8.self)
        try SafetensorsFile.save(state, metadata: ["model_key": modelKey, "image_keys": keysJSON], to: fileURL)
    }
}

/// FNV-1a, 64 bits, as hex: a short file name for a long key (not a security boundary).
func stableHash(_ text: String) -> String {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in text.utf8 {
        hash ^= UInt64(byte)
        hash &*= 0x100_0000_01b3
    }
    return String(hash, radix: 16)
}
