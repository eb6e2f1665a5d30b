import Foundation

/// A value stored next to the state dict in a checkpoint, e.g. the seed's `meta_dim` and `max_boxes`.
public enum CheckpointValue: Equatable, Sendable {
    case int(Int64)
    case float(Double)
    case bool(Bool)
    case string(String)
    case none
    case tensor(WeightTensor)
    /// A value this reader keeps no copy of (a list, a nested dict, …), by Python type name.
    case other(String)

    public var intValue: Int? {
        if case .int(let v) = self { return Int(exactly: v) }
        return nil
    }
}

/// The contents of a PyTorch `.pth` file written by `torch.save` (zip format, torch ≥ 1.6).
///
/// Two layouts are accepted: a bare state dict (what torchvision publishes) and a dict holding one under
/// `"state_dict"` next to other entries (the seed's `{"state_dict", "meta_dim", "max_boxes"}`).
public struct TorchCheckpoint: Sendable {
    /// The tensors, in file order.
    public var stateDict: StateDict
    /// The top-level entries other than the state dict, in file order (for a bare state dict: its
    /// non-tensor entries, usually none).
    public var extras: [(key: String, value: CheckpointValue)]
    /// Whether the state dict sat under a `"state_dict"` key.
    public var isNested: Bool

    /// A checkpoint to write: `stateDict`, nested under `"state_dict"` next to `extras` when `isNested`.
    public init(stateDict: StateDict, extras: [(key: String, value: CheckpointValue)] = [], isNested: Bool) {
        self.stateDict = stateDict
        self.extras = extras
        self.isNested = isNested
    }

    /// The extra entry named `key`.
    public subscript(extra key: String) -> CheckpointValue? {
        extras.first { $0.key == key }?.value
    }

    /// Reads a `.pth` file.
    ///
    /// The pickle is read by an allowlist unpickler: only `collections.OrderedDict`,
    /// `torch._utils._rebuild_tensor_v2` / `_rebuild_parameter` and `torch.*Storage` globals are
    /// accepted, and nothing in the file is ever executed. Strided and offset views are materialised
    /// as contiguous row-major tensors; a `byteorder` record of `big` is byte-swapped.
    /// - Parameter url: the file.
    /// - Throws: `WeightFileError` naming the file and the problem.
    public static func load(from url: URL) throws -> TorchCheckpoint {
        let data = try readFile(url)
        return try naming(url.path) { try parse(data) }
    }

    /// Reads `.pth` bytes already in memory; `name` is used in error messages.
    public static func load(data: Data, name: String) throws -> TorchCheckpoint {
        try naming(name) { try parse(data) }
    }

    static func parse(_ data: Data) throws -> TorchCheckpoint {
        let format = WeightFileFormat(data)
        if format == .safetensors || format == .truncatedSafetensors {
            throw FormatProblem.unsupported(
                "this is a safetensors file, not a torch.save .pth; read it with SafetensorsFile or StateDict.load")
        }
        // Unknown bytes go on to the zip reader, which says what it expected and did not find.
        if format != .unknown, let problem = format.unreadable { throw problem }
        let archive = try ZipArchive(data)
        // torch puts every record under one folder, named after the file it saved to ("archive" for a
        // file object); the pickle is <folder>/data.pkl.
        guard let pickleEntry = archive.entries.first(where: {
            $0.name == "data.pkl" || ($0.name.hasSuffix("/data.pkl") && $0.name.dropLast(9).firstIndex(of: "/") == nil)
        }) else {
            throw FormatProblem.corrupt("no data.pkl record in the zip archive (not a torch.save file)")
        }
        let folder = String(pickleEntry.name.dropLast("data.pkl".count))
        guard pickleEntry.size <= Unpickler.maximumPickleBytes else {
            throw FormatProblem.unsupported(
                "\(shown(pickleEntry.name)) is a \(pickleEntry.size)-byte pickle; more than \(Unpickler.maximumPickleBytes) bytes is refused (a state dict's pickle is far smaller)")
        }
        // Storage records by key (`<folder>/data/<key>`), found once rather than by building each
        // record's full name per tensor.
        let storagePrefix = folder + "data/"
        var storageRecords: [Substring: ZipArchive.Entry] = [:]
        for entry in archive.entries where entry.name.hasPrefix(storagePrefix) {
            let key = entry.name.dropFirst(storagePrefix.count)
            if storageRecords[key] == nil { storageRecords[key] = entry }
        }

        var byteSwapped = false
        if let order = archive.entry(named: folder + "byteorder") {
            let text = try archive.withBytes(of: order) { String(decoding: $0, as: UTF8.self) }
                .trimmingCharacters(in: .whitespacesAndNewlines)
            switch text {
            case "little": byteSwapped = false
            case "big": byteSwapped = true
            default: throw FormatProblem.corrupt("byteorder record says \(shown(String(text.prefix(40)))), expected 'little' or 'big'")
            }
        }
        #if _endian(big)
        byteSwapped.toggle()
        #endif

        let (top, pickle) = try archive.withBytes(of: pickleEntry) { try Unpickler.load($0) }
        guard case .dict(let topID) = top else {
            throw FormatProblem.unsupported("the file holds a \(top.typeName), not a state dict (a dict of tensors)")
        }
        let topDict = pickle.dicts[topID]

        // Views (stride 0, or many tensors over one storage) could ask for far more memory than the
        // file holds; torch shares storage there, this reader copies, so it refuses beyond a budget.
        var budget = MaterializeBudget(fileBytes: data.count)
        var verified = Set<Int>()
        // One tensor object of the pickle reached under several keys (tied weights) is read once and
        // shared, as torch shares it.
        var materialized: [Int: WeightTensor] = [:]
        func materialize(_ key: String, _ id: Int) throws -> WeightTensor {
            if let known = materialized[id] { return known }
            let ref = pickle.tensors[id]
            let tensor = try tensor(named: key, ref, records: storageRecords, archive: archive,
                                    byteSwapped: byteSwapped, budget: &budget, verified: &verified)
            materialized[id] = tensor
            return tensor
        }
        func describe(_ value: Unpickler.Value, key: String) throws -> CheckpointValue {
            switch value {
            case .int(let v): return .int(v)
            case .float(let v): return .float(v)
            case .bool(let v): return .bool(v)
            case .string(let v): return .string(v)
            case .none: return .none
            case .tensor(let id): return .tensor(try materialize(key, id))
            default: return .other(value.typeName)
            }
        }
        func stringKey(_ key: Unpickler.DictKey) throws -> String {
            guard case .string(let s) = key else {
                throw FormatProblem.unsupported("state dict key \(key) is not a string")
            }
            return s
        }

        var stateDict = StateDict()
        var extras: [(key: String, value: CheckpointValue)] = []
        if let nested = topDict["state_dict"], case .dict(let innerID) = nested {
            let inner = pickle.dicts[innerID]
            for (key, value) in zip(inner.keys, inner.values) {
                let name = try stringKey(key)
                guard case .tensor(let id) = value else {
                    throw FormatProblem.unsupported("state_dict entry \(shown(name)) is a \(value.typeName), not a tensor")
                }
                stateDict[name] = try materialize(name, id)
            }
            for (key, value) in zip(topDict.keys, topDict.values) {
                let name: String
                switch key {
                case .string(let s): name = s
                case .int(let n): name = String(n)
                }
                if name == "state_dict" { continue }
                extras.append((name, try describe(value, key: name)))
            }
            return TorchCheckpoint(stateDict: stateDict, extras: extras, isNested: true)
        }
        for (key, value) in zip(topDict.keys, topDict.values) {
            let name = try stringKey(key)
            if case .tensor(let id) = value {
                stateDict[name] = try materialize(name, id)
            } else {
                extras.append((name, try describe(value, key: name)))
            }
        }
        return TorchCheckpoint(stateDict: stateDict, extras: extras, isNested: false)
    }

    /// Copies the elements a tensor's view selects out of its storage record, after checking that the
    /// record exists, holds the elements its persistent id claims, and covers the view.
    private static func tensor(named key: String, _ ref: Unpickler.TensorRef, records: [Substring: ZipArchive.Entry],
                               archive: ZipArchive, byteSwapped: Bool, budget: inout MaterializeBudget,
                               verified: inout Set<Int>) throws -> WeightTensor {
        let storage = ref.storage
        let dtype = storage.dtype
        let name = shown(key)
        guard let record = records[Substring(storage.key)] else {
            throw FormatProblem.corrupt("tensor \(name): storage record \(shown("data/" + storage.key)) is missing from the archive")
        }
        let (storageBytes, overflow) = storage.count.multipliedReportingOverflow(by: dtype.byteCount)
        guard !overflow, record.size >= storageBytes else {
            throw FormatProblem.tensor(
                "tensor \(name): storage \(shown("data/" + storage.key)) has \(record.size) bytes but should hold \(storage.count) \(dtype) elements (\(overflow ? "overflow" : String(storageBytes)) bytes): storage shorter than the tensor")
        }
        let layout = ref.layout
        let needed: Int
        do {
            needed = try layout.requiredElements()
        } catch let problem as FormatProblem {
            throw FormatProblem(problem.kind, "tensor \(name): \(problem.message)")
        }
        guard needed <= storage.count else {
            throw FormatProblem.tensor(
                "tensor \(name) (shape \(layout.shape), offset \(layout.offset), strides \(layout.strides)) needs \(needed) elements but storage \(shown("data/" + storage.key)) holds \(storage.count): storage shorter than the tensor")
        }
        let count = WeightTensor.elementCount(layout.shape) ?? 0
        try budget.spend(count, of: dtype, tensor: key)
        let verify = verified.insert(record.dataOffset).inserted
        let values = try archive.withBytes(of: record, verify: verify) {
            ElementCodec.decode($0, dtype: dtype, byteSwapped: byteSwapped, layout: layout, count: count)
        }
        return WeightTensor(shape: layout.shape, dtype: dtype, storage: values)
    }
}

extension StateDict {
    /// Loads a state dict from a `.pth` (zip) or `.safetensors` file, recognised by its content. A `.pth`
    /// checkpoint holding `"state_dict"` gives that state dict.
    /// - Throws: `WeightFileError` naming the file and the problem.
    public static func load(from url: URL) throws -> StateDict {
        let data = try readFile(url)
        return try load(data: data, name: url.path)
    }

    /// Loads a state dict from bytes already in memory; `name` is used in error messages.
    ///
    /// The format is recognised from the bytes' structure (see `WeightFileFormat`), not from the name or a
    /// single leading byte.
    /// - Throws: `WeightFileError` naming `name` and the problem.
    public static func load(data: Data, name: String) throws -> StateDict {
        try naming(name) {
            let format = WeightFileFormat(data)
            if let problem = format.unreadable { throw problem }
            if format == .torchZip { return try TorchCheckpoint.parse(data).stateDict }
            return try SafetensorsFile.parse(data).stateDict
        }
    }
}

/// How many bytes of tensors a file may expand to: four times its size plus 256 MiB (a state dict
/// expands to about its own size; tied weights to a few times that).
struct MaterializeBudget {
    private var remaining: Int

    init(fileBytes: Int) {
        remaining = fileBytes.multipliedReportingOverflow(by: 4).partialValue &+ (256 << 20)
    }

    mutating func spend(_ count: Int, of dtype: WeightDType, tensor key: String) throws {
        // Values are held as Float (4 bytes) or Int64 (8 bytes).
        let width = dtype.isFloatingPoint ? 4 : 8
        let (bytes, overflow) = count.multipliedReportingOverflow(by: width)
        guard !overflow, bytes <= remaining else {
            throw FormatProblem.tensor(
                "tensor \(shown(key)) would expand to \(count) elements, past the memory budget of a file this size (views repeating a storage?)")
        }
        remaining -= bytes
    }
}
