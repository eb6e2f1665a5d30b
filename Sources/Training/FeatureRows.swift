// FeatureRows.swift — the backbone features a cached-feature run trains on: in memory, or memory-mapped from a
// feature store so a training set larger than memory keeps resident memory flat (each rank reads only its rows).
import DataParallel
import FeatureStore
import FileIO
import Foundation
import NN
import UntrustedJSON

/// Every sample's backbone features, row i for sample i.
final class FeatureRows {
    /// The module's class, named where the module's own name would hide it.
    typealias Store = FeatureStore
    let width: Int
    private let memory: [Float]
    private let store: FeatureStore?

    init(memory: [Float], width: Int) {
        self.memory = memory
        self.width = width
        store = nil
    }

    init(store: FeatureStore) {
        memory = []
        width = store.width
        self.store = store
    }

    /// No rows: the modes that run the backbone every step.
    static let none = FeatureRows(memory: [], width: 0)

    /// The rows of `indices`, concatenated.
    func rows<Indices: Collection>(_ indices: Indices) -> [Float] where Indices.Element == Int {
        if let store { return store.rows(indices) }
        var rows = [Float]()
        rows.reserveCapacity(indices.count * width)
        for i in indices { rows.append(contentsOf: memory[i * width ..< (i + 1) * width]) }
        return rows
    }

    /// Sets `map`'s statistics from the rows of `indices`: streamed from a store a chunk at a time, or over the rows
    /// in memory (the same sums in the same order either way).
    func setStatistics(of map: Standardize, rows indices: [Int]) {
        if let store {
            let (mean, std) = store.columnMeanAndStd(rows: indices)
            map.setStatistics(mean: mean, std: std)
        } else {
            map.setStatistics(rows: rows(indices), count: indices.count)
        }
    }
}

/// A feature store `resnet50 features --store` writes, with its index `X.index.json` next to it: what the rows
/// are (row count, width, element type), which weights and preprocessing made them (`model_key`) and which images,
/// in CSV order (`images_digest` over each image's path, size and modification time). Training with `--features`
/// refuses a store whose index does not match its own labels.csv, images and weights.
enum FeatureStoreIndex {
    static let format = "resnetfusion-feature-store"

    static func indexURL(for store: URL) -> URL {
        store.deletingPathExtension().appendingPathExtension("index.json")
    }

    /// The digest of the images in CSV order: path, size and modification time of each.
    static func imagesDigest(_ imageKeys: [String]) -> String { stableHash(imageKeys.joined(separator: "\n")) }

    /// Writes the index atomically (after the store itself: a store without its index is refused).
    static func write(for store: URL, rows: Int, width: Int, elementType: FeatureElementType, modelKey: String,
                      imagesDigest: String) throws {
        let object: [String: Any] = ["format": format, "version": 1, "rows": rows, "width": width,
                                     "element_type": elementType.description, "model_key": modelKey,
                                     "images_digest": imagesDigest]
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])
        try writeAtomically(String(decoding: data, as: UTF8.self) + "\n", to: indexURL(for: store))
    }

    /// Opens `url` and checks it against its index and this run's images and weights.
    /// - Throws: one line naming the store or its index and what does not match.
    static func open(_ url: URL, imageKeys: [String], modelKey: String, width: Int) throws -> FeatureStore {
        let indexURL = indexURL(for: url)
        let store: FeatureStore
        do { store = try FeatureStore(url: url) } catch { throw TrainingError("\(error)") }
        let bytes: [UInt8]
        do { bytes = Array(try RegularFile.read(indexURL, byteLimit: 1 << 20)) } catch {
            throw TrainingError("\(indexURL.path): the store's index cannot be read (\(error)); write the store with resnet50 features --store")
        }
        let value: JSONValue
        do { value = try bytes.withUnsafeBytes { try JSONValue.parse($0, dialect: .strict(maximumNesting: 4)) } } catch {
            throw TrainingError("\(indexURL.path): not valid JSON (\(error))")
        }
        guard case .object(let members) = value else { throw TrainingError("\(indexURL.path): not a JSON object") }
        func field(_ name: String) -> JSONValue? { members.last { $0.name == name }?.value }
        func text(_ name: String) throws -> String {
            guard case .string(let s)? = field(name) else { throw TrainingError("\(indexURL.path): key \(name) is missing or not a string") }
            return s
        }
        func integer(_ name: String) throws -> Int {
            guard case .number(let s)? = field(name), let n = Int(s) else {
                throw TrainingError("\(indexURL.path): key \(name) is missing or not an integer")
            }
            return n
        }
        guard try text("format") == format else { throw TrainingError("\(indexURL.path): not a feature-store index (format)") }
        let rows = try integer("rows"), indexWidth = try integer("width"), type = try text("element_type")
        guard rows == store.rowCount, indexWidth == store.width, type == store.elementType.description else {
            throw TrainingError("\(indexURL.path): says \(rows) rows × \(indexWidth) \(type), but \(url.path) holds "
                + "\(store.rowCount) × \(store.width) \(store.elementType): the two files are not a pair")
        }
        guard store.width == width else {
            throw TrainingError("\(url.path): rows of \(store.width) features, the backbone makes \(width)")
        }
        guard store.rowCount == imageKeys.count else {
            throw TrainingError("\(url.path): \(store.rowCount) rows, labels.csv lists \(imageKeys.count) images")
        }
        guard try text("images_digest") == imagesDigest(imageKeys) else {
            throw TrainingError("\(url.path): made from other images than labels.csv lists (a path, size or modification "
                + "time differs, or the order): write it again with resnet50 features --store")
        }
        guard try text("model_key") == modelKey else {
            throw TrainingError("\(url.path): made with other weights or preprocessing than this run's (\(try text("model_key"))); "
                + "write it again with this run's --weights")
        }
        return store
    }
}
