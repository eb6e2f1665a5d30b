import Foundation
import SeededRandom
import XCTest
import WeightFiles

/// The committed fixtures written by Tests/TorchFixtureScripts/make_weight_fixtures.py.
enum Fixtures {
    static let directory: URL = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!

    static func url(_ name: String) -> URL { directory.appendingPathComponent(name) }

    /// expected.json: what torch.load saw in each fixture.
    static let expected: [String: Any] = {
        let data = try! Data(contentsOf: url("expected.json"))
        return try! JSONSerialization.jsonObject(with: data) as! [String: Any]
    }()

    struct ExpectedTensor {
        let key: String
        let dtype: String
        let shape: [Int]
        let values: [Double]
    }

    static func tensors(of file: String) -> [ExpectedTensor] {
        let entry = expected[file] as! [String: Any]
        return (entry["tensors"] as! [[Any]]).map { pair in
            let info = pair[1] as! [String: Any]
            return ExpectedTensor(key: pair[0] as! String, dtype: info["dtype"] as! String,
                                  shape: (info["shape"] as! [NSNumber]).map(\.intValue),
                                  values: (info["values"] as! [NSNumber]).map(\.doubleValue))
        }
    }
}

/// Torch dtype names as `torch.float32` prints them, without the module.
func torchName(_ dtype: WeightDType) -> String {
    switch dtype {
    case .float64: return "float64"
    case .float32: return "float32"
    case .float16: return "float16"
    case .bfloat16: return "bfloat16"
    case .int64: return "int64"
    case .int32: return "int32"
    case .int16: return "int16"
    case .int8: return "int8"
    case .uint8: return "uint8"
    case .bool: return "bool"
    }
}

/// Asserts `tensor` is exactly what torch saw: same dtype, shape and values. Tolerance: none — every
/// fixture value is a float16/bfloat16/float32 value, exact in Float, or a float64 compared after the
/// same rounding to Float the reader documents.
func assertMatches(_ tensor: WeightTensor?, _ expected: Fixtures.ExpectedTensor, file: StaticString = #filePath, line: UInt = #line) {
    guard let tensor else { return XCTFail("missing tensor \(expected.key)", file: file, line: line) }
    XCTAssertEqual(torchName(tensor.dtype), expected.dtype, expected.key, file: file, line: line)
    XCTAssertEqual(tensor.shape, expected.shape, expected.key, file: file, line: line)
    XCTAssertEqual(tensor.count, expected.values.count, expected.key, file: file, line: line)
    if tensor.dtype.isFloatingPoint {
        XCTAssertNil(tensor.integers, expected.key, file: file, line: line)
        XCTAssertEqual(tensor.floats, expected.values.map { Float($0) }, expected.key, file: file, line: line)
    } else {
        XCTAssertEqual(tensor.integers, expected.values.map { Int64($0) }, expected.key, file: file, line: line)
    }
}

/// A fresh temporary directory, removed at the end of the test.
func temporaryDirectory(_ test: XCTestCase) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("WeightFilesTests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    return url
}

/// Asserts `body` throws a `WeightFileError` whose one-line description names the file and contains
/// every one of `fragments`.
func assertWeightFileError<T>(_ body: @autoclosure () throws -> T, file url: URL, kind: WeightFileError.Kind,
                              _ fragments: String..., sourceFile: StaticString = #filePath, line: UInt = #line) {
    do {
        _ = try body()
        XCTFail("\(url.lastPathComponent) loaded without an error", file: sourceFile, line: line)
    } catch let error as WeightFileError {
        let message = error.description
        XCTAssertTrue(message.contains(url.lastPathComponent), "no file name in: \(message)", file: sourceFile, line: line)
        XCTAssertFalse(message.contains("\n"), "not one line: \(message)", file: sourceFile, line: line)
        XCTAssertEqual(error.kind, kind, message, file: sourceFile, line: line)
        for fragment in fragments {
            XCTAssertTrue(message.contains(fragment), "'\(fragment)' missing from: \(message)", file: sourceFile, line: line)
        }
    } catch {
        XCTFail("unexpected error type \(type(of: error)): \(error)", file: sourceFile, line: line)
    }
}

/// Hand-written pickles for malformed-input tests: opcodes as torch.save emits them (protocol 2).
enum Pickle {
    static let proto2: [UInt8] = [0x80, 0x02]
    static let stop: [UInt8] = [0x2E]
    static let mark: [UInt8] = [0x28]
    static let emptyDict: [UInt8] = [0x7D]
    static let emptyList: [UInt8] = [0x5D]
    static let emptyTuple: [UInt8] = [0x29]
    static let tuple: [UInt8] = [0x74]
    static let tuple1: [UInt8] = [0x85]
    static let reduce: [UInt8] = [0x52]
    static let setItem: [UInt8] = [0x73]
    static let setItems: [UInt8] = [0x75]
    static let append: [UInt8] = [0x61]
    static let binPersID: [UInt8] = [0x51]
    static let newFalse: [UInt8] = [0x89]

    /// BINUNICODE: a 4-byte length, then UTF-8.
    static func string(_ text: String) -> [UInt8] {
        let utf8 = Array(text.utf8)
        return [0x58] + le32(UInt32(utf8.count)) + utf8
    }

    /// LONG1 with 8 bytes: any Int64.
    static func int(_ value: Int64) -> [UInt8] {
        [0x8A, 8] + (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * Int64($0))) }
    }

    static func global(_ module: String, _ name: String) -> [UInt8] {
        [0x63] + Array("\(module)\n\(name)\n".utf8)
    }

    static func binput(_ index: UInt32) -> [UInt8] { [0x72] + le32(index) }
    static func binget(_ index: UInt32) -> [UInt8] { [0x6A] + le32(index) }

    static func intTuple(_ values: [Int64]) -> [UInt8] {
        mark + values.flatMap(int) + tuple
    }

    /// `_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())` over storage record
    /// `data/<key>` of `numel` elements of `storageType` (e.g. "FloatStorage").
    static func tensor(_ storageType: String = "FloatStorage", key: String = "0", numel: Int64,
                       offset: Int64 = 0, shape: [Int64], strides: [Int64]) -> [UInt8] {
        global("torch._utils", "_rebuild_tensor_v2") + mark
            + mark + string("storage") + global("torch", storageType) + string(key) + string("cpu") + int(numel)
            + tuple + binPersID
            + int(offset) + intTuple(shape) + intTuple(strides) + newFalse
            + global("collections", "OrderedDict") + emptyTuple + reduce
            + tuple + reduce
    }

    /// A pickle of `{key: value, …}` (a plain dict, as torch.save writes a checkpoint's top level).
    static func dict(_ entries: [(String, [UInt8])]) -> [UInt8] {
        proto2 + emptyDict + mark + entries.flatMap { string($0.0) + $0.1 } + setItems + stop
    }

    /// A torch.save-style zip: `archive/data.pkl` plus `archive/data/<key>` records.
    static func torchZip(_ pickle: [UInt8], storages: [(String, [UInt8])] = []) -> Data {
        let entries: [(name: String, content: Data)] = [("archive/data.pkl", Data(pickle)), ("archive/byteorder", Data("little".utf8))]
            + storages.map { (name: "archive/data/" + $0.0, content: Data($0.1)) }
        return try! ZipWriter.archive(entries)
    }

    static func le32(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * UInt32($0))) } }
}

/// Safetensors bytes from a header text and a data section, with an optional declared length.
func safetensorsBytes(header: String, data: [UInt8] = [], declaredLength: UInt64? = nil) -> Data {
    let headerBytes = Array(header.utf8)
    let length = declaredLength ?? UInt64(headerBytes.count)
    return Data((0..<8).map { UInt8(truncatingIfNeeded: length >> (8 * UInt64($0))) } + headerBytes + data)
}

/// Little-endian bytes of floats.
func floatBytes(_ values: [Float]) -> [UInt8] {
    values.flatMap { value in (0..<4).map { UInt8(truncatingIfNeeded: value.bitPattern >> (8 * UInt32($0))) } }
}
