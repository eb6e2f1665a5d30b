import Foundation

extension TorchCheckpoint {
    /// Writes the checkpoint in the zip format of `torch.save` (torch ≥ 1.6), so that
    /// `torch.load(path, weights_only=True)` reads it: a bare `OrderedDict` of tensors, or (nested)
    /// `{"state_dict": OrderedDict, **extras}` like the seed script's checkpoint. Tensors are written in
    /// their dtype, one storage each, 64-byte aligned as torch aligns them. The write is atomic
    /// (temporary file in the same directory, then rename).
    /// - Parameter url: the destination; its directory must exist.
    /// - Throws: `WeightFileError` naming the file and the problem (an `.other` extra cannot be written;
    ///   archives past 4 GiB are not written).
    public func save(to url: URL) throws {
        let path = url.path
        var pickle = PickleWriter()
        var storages: [(String, WeightTensor)] = []
        func tensor(_ key: String, _ t: WeightTensor) throws {
            let stored = t.integers?.count ?? t.floats.count
            guard let count = WeightTensor.elementCount(t.shape), count == stored else {
                throw WeightFileError(path: path, kind: .tensor, problem: "tensor '\(key)' has shape \(t.shape) but \(stored) values")
            }
            pickle.tensor(t, storageKey: String(storages.count))
            storages.append((key, t))
        }
        func stateDictValue() throws {
            pickle.orderedDictStart()
            for (key, t) in stateDict {
                pickle.string(key)
                try tensor(key, t)
            }
            pickle.setItemsEnd()
        }
        func value(_ key: String, _ v: CheckpointValue) throws {
            switch v {
            case .int(let n): pickle.int(n)
            case .float(let x): pickle.float(x)
            case .bool(let b): pickle.bool(b)
            case .string(let s): pickle.string(s)
            case .none: pickle.none()
            case .tensor(let t): try tensor(key, t)
            case .other(let type):
                throw WeightFileError(path: path, kind: .unsupported, problem: "extra '\(key)' (a \(type)) cannot be written")
            }
        }

        if isNested {
            pickle.dictStart()
            pickle.string("state_dict")
            try stateDictValue()
            for (key, v) in extras where key != "state_dict" {
                pickle.string(key)
                try value(key, v)
            }
            pickle.setItemsEnd()
        } else {
            pickle.orderedDictStart()
            for (key, t) in stateDict {
                pickle.string(key)
                try tensor(key, t)
            }
            for (key, v) in extras {
                pickle.string(key)
                try value(key, v)
            }
            pickle.setItemsEnd()
        }
        pickle.stop()

        var zip = ZipWriter()
        try naming(path) {
            try writeAtomically(to: url) { sink in
                try zip.add("archive/data.pkl", Data(pickle.bytes), sink)
                try zip.add("archive/byteorder", Data("little".utf8), sink)
                for (index, (_, t)) in storages.enumerated() {
                    var bytes = Data()
                    bytes.reserveCapacity(t.count * t.dtype.byteCount)
                    ElementCodec.encode(t, into: &bytes)
                    try zip.add("archive/data/\(index)", bytes, sink)
                }
                try zip.add("archive/version", Data("3\n".utf8), sink)
                try zip.finish(sink)
            }
        }
    }
}

/// Emits the protocol-2 pickle opcodes torch.save uses for a state dict (see `Unpickler`).
struct PickleWriter {
    private(set) var bytes: [UInt8] = [0x80, 2]   // PROTO 2

    mutating func global(_ module: String, _ name: String) {
        bytes.append(0x63)
        bytes.append(contentsOf: Array((module + "\n" + name + "\n").utf8))
    }

    mutating func string(_ s: String) {
        let utf8 = Array(s.utf8)
        bytes.append(0x58)   // BINUNICODE
        append32(UInt32(utf8.count))
        bytes.append(contentsOf: utf8)
    }

    mutating func int(_ n: Int64) {
        if n >= 0 && n < 256 {
            bytes.append(contentsOf: [0x4B, UInt8(n)])   // BININT1
        } else if n >= 0 && n < 65536 {
            bytes.append(0x4D)                           // BININT2
            bytes.append(contentsOf: [UInt8(n & 0xFF), UInt8(n >> 8)])
        } else if n >= Int64(Int32.min) && n <= Int64(Int32.max) {
            bytes.append(0x4A)                           // BININT
            append32(UInt32(bitPattern: Int32(n)))
        } else {
            bytes.append(contentsOf: [0x8A, 8])          // LONG1, 8 bytes two's complement
            for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: n >> (8 * Int64(i)))) }
        }
    }

    mutating func float(_ x: Double) {
        bytes.append(0x47)   // BINFLOAT, big-endian
        let bits = x.bitPattern
        for i in (0..<8).reversed() { bytes.append(UInt8(truncatingIfNeeded: bits >> (8 * UInt64(i)))) }
    }

    mutating func bool(_ b: Bool) { bytes.append(b ? 0x88 : 0x89) }
    mutating func none() { bytes.append(0x4E) }
    mutating func stop() { bytes.append(0x2E) }

    /// `{` MARK: the caller then pushes key/value pairs and calls `setItemsEnd()`.
    mutating func dictStart() { bytes.append(contentsOf: [0x7D, 0x28]) }

    /// `collections.OrderedDict()` MARK: the caller then pushes key/value pairs and calls `setItemsEnd()`.
    mutating func orderedDictStart() {
        global("collections", "OrderedDict")
        bytes.append(contentsOf: [0x29, 0x52, 0x28])   // EMPTY_TUPLE REDUCE MARK
    }

    mutating func setItemsEnd() { bytes.append(0x75) }   // SETITEMS

    /// `torch._utils._rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())` over a
    /// contiguous storage record `data/<storageKey>`.
    mutating func tensor(_ t: WeightTensor, storageKey: String) {
        global("torch._utils", "_rebuild_tensor_v2")
        bytes.append(0x28)                                // MARK (arguments)
        bytes.append(0x28)                                // MARK (persistent id)
        string("storage")
        global("torch", PickleWriter.storageName(t.dtype))
        string(storageKey)
        string("cpu")
        int(Int64(t.count))
        bytes.append(contentsOf: [0x74, 0x51])            // TUPLE BINPERSID
        int(0)
        intTuple(t.shape)
        intTuple(TensorLayout(contiguous: t.shape).strides)
        bool(false)
        global("collections", "OrderedDict")
        bytes.append(contentsOf: [0x29, 0x52])            // EMPTY_TUPLE REDUCE
        bytes.append(contentsOf: [0x74, 0x52])            // TUPLE REDUCE
    }

    private mutating func intTuple(_ values: [Int]) {
        bytes.append(0x28)
        for v in values { int(Int64(v)) }
        bytes.append(0x74)
    }

    private mutating func append32(_ v: UInt32) {
        for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(i)))) }
    }

    static func storageName(_ dtype: WeightDType) -> String {
        switch dtype {
        case .float64: return "DoubleStorage"
        case .float32: return "FloatStorage"
        case .float16: return "HalfStorage"
        case .bfloat16: return "BFloat16Storage"
        case .int64: return "LongStorage"
        case .int32: return "IntStorage"
        case .int16: return "ShortStorage"
        case .int8: return "CharStorage"
        case .uint8: return "ByteStorage"
        case .bool: return "BoolStorage"
        }
    }
}
