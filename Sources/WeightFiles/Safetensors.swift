import Foundation
import UntrustedJSON

/// A safetensors file: tensors plus a string-to-string `__metadata__` map.
///
/// Layout (https://github.com/huggingface/safetensors, "Format"): an 8-byte little-endian header
/// length N, N bytes of JSON (`{"name": {"dtype", "shape", "data_offsets": [begin, end]}, …}`), then
/// the data section; offsets are relative to the data section, and the tensors must tile it exactly
/// (contiguous, no overlap, no gap, nothing left over). Values are little-endian, row-major.
public struct SafetensorsFile: Sendable {
    /// The tensors in data-section order (the order `save` wrote them).
    public var stateDict: StateDict
    /// The `__metadata__` map (empty when the file has none).
    public var metadata: [String: String]

    public init(stateDict: StateDict, metadata: [String: String] = [:]) {
        self.stateDict = stateDict
        self.metadata = metadata
    }

    /// Headers larger than this are refused before parsing (the reference implementation's limit).
    static let maximumHeaderBytes = 100_000_000
    /// A header needs 3 levels of nesting (header, tensor, shape); anything past this is a corrupt file, refused
    /// before it is recursed into.
    static let maximumHeaderNesting = 32

    /// Reads and validates a safetensors file.
    /// - Throws: `WeightFileError` naming the file and the problem.
    public static func load(from url: URL) throws -> SafetensorsFile {
        let data = try readFile(url)
        return try naming(url.path) { try parse(data) }
    }

    /// Reads safetensors bytes already in memory; `name` is used in error messages.
    public static func load(data: Data, name: String) throws -> SafetensorsFile {
        try naming(name) { try parse(data) }
    }

    /// Writes `stateDict` (in its order) and `metadata` to `url`, atomically: the bytes go to a temporary
    /// file in the same directory, which is flushed and renamed over `url`, so a crash leaves either the
    /// old file or the new one.
    /// - Parameters:
    ///   - stateDict: the tensors; each is written in its `dtype`.
    ///   - metadata: stored as `__metadata__` (omitted when empty).
    ///   - url: the destination; its directory must exist.
    /// - Throws: `WeightFileError` naming the file and the problem.
    public static func save(_ stateDict: StateDict, metadata: [String: String] = [:], to url: URL) throws {
        try SafetensorsFile(stateDict: stateDict, metadata: metadata).save(to: url)
    }

    /// Writes this file to `url` atomically (see `save(_:metadata:to:)`).
    public func save(to url: URL) throws {
        let path = url.path
        var header = "{"
        var members: [String] = []
        if !metadata.isEmpty {
            let entries = metadata.keys.sorted().map { JSONValue.quote($0) + ":" + JSONValue.quote(metadata[$0]!) }
            members.append("\"__metadata__\":{" + entries.joined(separator: ",") + "}")
        }
        var offset = 0
        for (key, tensor) in stateDict {
            guard key != "__metadata__" else {
                throw WeightFileError(path: path, kind: .unsupported, problem: "a tensor cannot be named '__metadata__'")
            }
            let count = WeightTensor.elementCount(tensor.shape)
            let stored = tensor.integers?.count ?? tensor.floats.count
            guard let count, count == stored else {
                throw WeightFileError(path: path, kind: .tensor,
                                      problem: "tensor '\(key)' has shape \(tensor.shape) but \(stored) values")
            }
            let end = offset + count * tensor.dtype.byteCount
            members.append(JSONValue.quote(key) + ":{\"dtype\":\"\(tensor.dtype.safetensorsName)\",\"shape\":["
                + tensor.shape.map(String.init).joined(separator: ",") + "],\"data_offsets\":[\(offset),\(end)]}")
            offset = end
        }
        header += members.joined(separator: ",") + "}"
        // Pad with spaces so the data section starts 8-byte aligned, as the reference writer does.
        var headerBytes = Array(header.utf8)
        headerBytes.append(contentsOf: repeatElement(UInt8(ascii: " "), count: (8 - headerBytes.count % 8) % 8))

        try writeAtomically(to: url) { sink in
            var prefix = Data()
            withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { prefix.append(contentsOf: $0) }
            prefix.append(contentsOf: headerBytes)
            try sink(prefix)
            for (_, tensor) in stateDict {
                var chunk = Data()
                chunk.reserveCapacity(tensor.count * tensor.dtype.byteCount)
                ElementCodec.encode(tensor, into: &chunk)
                try sink(chunk)
            }
        }
    }

    static func parse(_ data: Data) throws -> SafetensorsFile {
        try data.withUnsafeBytes { raw in
            let bytes = Bytes(raw)
            guard bytes.count >= 8 else {
                throw FormatProblem.corrupt("file is \(bytes.count) bytes, too short for the 8-byte header length")
            }
            let declared = bytes.u64(0)
            guard declared <= UInt64(bytes.count - 8) else {
                throw FormatProblem.corrupt(
                    "header length \(declared) runs past the end of the file (\(bytes.count) bytes); truncated or not a safetensors file")
            }
            let headerLength = Int(declared)
            guard headerLength <= maximumHeaderBytes else {
                throw FormatProblem.unsupported("header of \(headerLength) bytes is larger than the \(maximumHeaderBytes)-byte limit")
            }
            // The header is a JSON object; writers pad it with trailing spaces, and leading whitespace is
            // still JSON.
            var first = 8
            while first < 8 + headerLength, JSONValue.isWhitespace(bytes.u8(first)) { first += 1 }
            guard headerLength >= 2, first < 8 + headerLength, bytes.u8(first) == UInt8(ascii: "{") else {
                throw FormatProblem.corrupt("header does not start with '{'; not a safetensors file")
            }
            let header: JSONValue
            do {
                header = try JSONValue.parse(bytes.slice(8, headerLength), dialect: .strict(maximumNesting: maximumHeaderNesting))
            } catch let error as JSONSyntaxError {
                let problem = error.duplicateName.map { "duplicate name \(shown($0))" } ?? error.description
                throw FormatProblem.corrupt("header is not valid JSON: \(problem)")
            }
            guard case .object(let members) = header else {
                throw FormatProblem.corrupt("header is \(header.typeName), not an object")
            }
            let dataStart = 8 + headerLength
            let dataSize = bytes.count - dataStart

            struct Entry {
                let name: String
                let dtype: WeightDType
                let shape: [Int]
                let begin: Int
                let end: Int
            }
            var metadata: [String: String] = [:]
            var entries: [Entry] = []
            for member in members {
                let (name, value) = (member.name, member.value)
                if name == "__metadata__" {
                    guard case .object(let pairs) = value else {
                        throw FormatProblem.corrupt("__metadata__ is \(value.typeName), not an object of strings")
                    }
                    for pair in pairs {
                        let (key, item) = (pair.name, pair.value)
                        guard case .string(let text) = item else {
                            throw FormatProblem.corrupt("__metadata__ entry \(shown(key)) is \(item.typeName), not a string")
                        }
                        metadata[key] = text
                    }
                    continue
                }
                let tensor = shown(name)
                guard case .object(let fields) = value else {
                    throw FormatProblem.corrupt("tensor \(tensor) is described by \(value.typeName), not an object")
                }
                func field(_ key: String) -> JSONValue? { fields.first { $0.name == key }?.value }
                guard case .string(let dtypeName)? = field("dtype") else {
                    throw FormatProblem.corrupt("tensor \(tensor) has no dtype")
                }
                guard let dtype = WeightDType(safetensorsName: dtypeName) else {
                    throw FormatProblem.unsupported("tensor \(tensor) has unsupported dtype \(shown(String(dtypeName.prefix(20))))")
                }
                guard case .array(let sizes)? = field("shape") else {
                    throw FormatProblem.corrupt("tensor \(tensor) has no shape")
                }
                guard sizes.count <= WeightTensor.maximumRank else {
                    throw FormatProblem.unsupported(
                        "tensor \(tensor) has \(sizes.count) dimensions (at most \(WeightTensor.maximumRank) are supported)")
                }
                var shape: [Int] = []
                for (axis, size) in sizes.enumerated() {
                    guard let value = size.nonNegativeInt else {
                        throw FormatProblem.corrupt(
                            "tensor \(tensor) has shape entry \(axis) = \(size.shortDescription), not a non-negative integer that fits in 64 bits")
                    }
                    shape.append(value)
                }
                guard case .array(let offsets)? = field("data_offsets"), offsets.count == 2 else {
                    throw FormatProblem.corrupt("tensor \(tensor) has no data_offsets [begin, end]")
                }
                guard let begin = offsets[0].nonNegativeInt, let end = offsets[1].nonNegativeInt, begin <= end else {
                    throw FormatProblem.corrupt(
                        "tensor \(tensor) has data_offsets [\(offsets[0].shortDescription), \(offsets[1].shortDescription)], not non-negative integers with begin <= end")
                }
                guard end <= dataSize else {
                    throw FormatProblem.corrupt(
                        "tensor \(tensor) data_offsets [\(begin), \(end)] run past the end of the \(dataSize)-byte data section; truncated?")
                }
                guard let count = WeightTensor.elementCount(shape) else {
                    throw FormatProblem.corrupt("tensor \(tensor) has shape \(shape) whose element count overflows")
                }
                let (expected, overflow) = count.multipliedReportingOverflow(by: dtype.byteCount)
                guard !overflow, expected == end - begin else {
                    throw FormatProblem.tensor(
                        "tensor \(tensor) has shape \(shape) of \(dtypeName) (\(overflow ? "overflowing" : String(expected)) bytes) but data_offsets [\(begin), \(end)] span \(end - begin) bytes")
                }
                entries.append(Entry(name: name, dtype: dtype, shape: shape, begin: begin, end: end))
            }

            // The tensors must tile the data section: sorted by offset, each starts where the last ended.
            let ordered = entries.enumerated().sorted {
                ($0.element.begin, $0.element.end, $0.offset) < ($1.element.begin, $1.element.end, $1.offset)
            }.map(\.element)
            var cursor = 0
            for entry in ordered {
                if entry.begin < cursor {
                    throw FormatProblem.corrupt(
                        "tensor \(shown(entry.name)) at bytes [\(entry.begin), \(entry.end)] overlaps the tensor before it (which ends at \(cursor))")
                }
                if entry.begin > cursor {
                    throw FormatProblem.corrupt(
                        "tensor \(shown(entry.name)) starts at byte \(entry.begin), leaving a gap after byte \(cursor) (offsets must be contiguous)")
                }
                cursor = entry.end
            }
            guard cursor == dataSize else {
                throw FormatProblem.corrupt(
                    "the tensors cover \(cursor) bytes but the data section has \(dataSize) (offsets must cover it exactly)")
            }

            var stateDict = StateDict()
            for entry in ordered {
                let section = bytes.slice(dataStart + entry.begin, entry.end - entry.begin)
                let count = WeightTensor.elementCount(entry.shape) ?? 0
                #if _endian(big)
                let swap = true
                #else
                let swap = false
                #endif
                let values = ElementCodec.decode(section, dtype: entry.dtype, byteSwapped: swap,
                                                 layout: TensorLayout(contiguous: entry.shape), count: count)
                stateDict[entry.name] = WeightTensor(shape: entry.shape, dtype: entry.dtype, storage: values)
            }
            return SafetensorsFile(stateDict: stateDict, metadata: metadata)
        }
    }
}

extension JSONValue {
    /// A safetensors size or offset: the value as a non-negative `Int` if it is an integer literal that fits
    /// (`-0` is 0; `2.0`, `1e3` and anything past `Int.max` are not). Converted from the literal text, so a
    /// size is never rounded through a Double.
    var nonNegativeInt: Int? {
        guard case .number(let text) = self, let value = Int(text), value >= 0 else { return nil }
        return value
    }
}
