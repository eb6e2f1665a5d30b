import Foundation
import XCTest
import WeightFiles

/// Sizes, offsets, counts and nesting read from a file are checked with overflow-checked arithmetic; each
/// violation is one error naming the file and the entry, never a trap, a hang or a huge allocation.
final class HostileInputTests: XCTestCase {
    private func safetensorsError(_ header: String, data: [UInt8] = [], kind: WeightFileError.Kind,
                                  _ fragments: String..., line: UInt = #line) {
        let bytes = safetensorsBytes(header: header, data: data)
        let url = URL(fileURLWithPath: "hostile.safetensors")
        for fragment in fragments {
            assertWeightFileError(try SafetensorsFile.load(data: bytes, name: url.path), file: url, kind: kind,
                                  fragment, line: line)
        }
        assertWeightFileError(try StateDict.load(data: bytes, name: url.path), file: url, kind: kind, line: line)
    }

    private func pthError(_ pickle: [UInt8], storages: [(String, [UInt8])] = [], kind: WeightFileError.Kind,
                          _ fragments: String..., line: UInt = #line) {
        let bytes = Pickle.torchZip(pickle, storages: storages)
        let url = URL(fileURLWithPath: "hostile.pth")
        for fragment in fragments {
            assertWeightFileError(try TorchCheckpoint.load(data: bytes, name: url.path), file: url, kind: kind,
                                  fragment, line: line)
        }
        assertWeightFileError(try StateDict.load(data: bytes, name: url.path), file: url, kind: kind, line: line)
    }

    // MARK: - safetensors header: JSON

    func testDeeplyNestedJSONIsAnErrorNotAStackOverflow() {
        let deep = String(repeating: "[", count: 200_000)
        safetensorsError("{\"a\":" + deep, kind: .corrupt, "nesting deeper than 32")
        safetensorsError("{\"__metadata__\":{\"x\":" + String(repeating: "{\"y\":", count: 100_000) + "1",
                         kind: .corrupt, "nesting deeper than 32")
    }

    func testNumbersOutsideJSONsGrammarAreRefused() {
        for bad in ["NaN", "Infinity", "-Infinity", "01", "1.", "-", "+1", ".5", "1e", "0x10", "1e+"] {
            safetensorsError("{\"a\":{\"dtype\":\"F32\",\"shape\":[\(bad)],\"data_offsets\":[0,4]}}",
                             data: floatBytes([1]), kind: .corrupt, "not valid JSON")
        }
    }

    func testShapeEntriesThatAreNotSizes() {
        let cases: [(String, String)] = [
            ("-1", "shape entry 0 = -1"),
            ("2.0", "shape entry 0 = 2.0"),
            ("1e3", "shape entry 0 = 1e3"),
            ("99999999999999999999", "shape entry 0 = 99999999999999999999"),
            ("\"4\"", "shape entry 0 = \"4\""),
        ]
        for (entry, fragment) in cases {
            safetensorsError("{\"w\":{\"dtype\":\"F32\",\"shape\":[\(entry)],\"data_offsets\":[0,4]}}",
                             data: floatBytes([1]), kind: .corrupt, "tensor 'w'", fragment, "non-negative integer")
        }
    }

    func testElementCountAndByteSizeOverflowAreCaught() {
        safetensorsError("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,2],\"data_offsets\":[0,4]}}",
                         data: floatBytes([1]), kind: .corrupt, "tensor 'w'", "element count overflows")
        // 2^61 elements fit an Int; their 2^64 bytes do not.
        safetensorsError("{\"w\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952],\"data_offsets\":[0,8]}}",
                         data: [UInt8](repeating: 0, count: 8), kind: .tensor, "tensor 'w'", "overflowing")
        safetensorsError("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,18446744073709551615]}}",
                         data: floatBytes([1]), kind: .corrupt, "tensor 'w'", "data_offsets [0, 18446744073709551615]")
        safetensorsError("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}",
                         data: floatBytes([1, 2]), kind: .corrupt, "tensor 'w'", "begin <= end")
    }

    func testTooManyDimensions() {
        let shape = Array(repeating: "1", count: 65).joined(separator: ",")
        safetensorsError("{\"w\":{\"dtype\":\"F32\",\"shape\":[\(shape)],\"data_offsets\":[0,4]}}",
                         data: floatBytes([1]), kind: .unsupported, "tensor 'w' has 65 dimensions")
    }

    func testHeaderLengthsPastTheFile() {
        let url = URL(fileURLWithPath: "huge.safetensors")
        let huge = safetensorsBytes(header: "{}", declaredLength: UInt64.max)
        assertWeightFileError(try SafetensorsFile.load(data: huge, name: url.path), file: url, kind: .corrupt,
                              "header length 18446744073709551615 runs past the end")
        let overLimit = safetensorsBytes(header: "{}", declaredLength: 100_000_001)
        assertWeightFileError(try SafetensorsFile.load(data: overLimit, name: url.path), file: url, kind: .corrupt,
                              "runs past the end")
    }

    /// A name megabytes long, or with line breaks, is shortened and escaped in the one-line message.
    func testLongAndMultilineNamesStayShortInErrors() throws {
        let longName = String(repeating: "x", count: 1_000_000)
        let bytes = safetensorsBytes(header: "{\"\(longName)\":{\"dtype\":\"Q9\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                                     data: floatBytes([1]))
        do {
            _ = try SafetensorsFile.load(data: bytes, name: "long.safetensors")
            XCTFail("loaded")
        } catch let error as WeightFileError {
            XCTAssertLessThan(error.description.utf8.count, 400, error.description)
            XCTAssertTrue(error.description.contains("(1000000 bytes)"), error.description)
        }
        let multiline = safetensorsBytes(header: "{\"a\\nb\\rc\":{\"dtype\":\"Q9\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                                         data: floatBytes([1]))
        do {
            _ = try SafetensorsFile.load(data: multiline, name: "lines.safetensors")
            XCTFail("loaded")
        } catch let error as WeightFileError {
            XCTAssertTrue(error.description.contains("'a\\u{a}b\\u{d}c'"), error.description)
            XCTAssertFalse(error.description.contains("\r"))
        }
    }

    // MARK: - Non-finite values: loaded, and findable

    func testNonFiniteWeightsLoadAndAreReported() throws {
        let bytes = safetensorsBytes(
            header: "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
                + "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]},"
                + "\"c\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[20,22]},"
                + "\"n\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[22,30]}}",
            data: floatBytes([1, .nan, 2]) + floatBytes([3, 4]) + [0x00, 0x7C] + [UInt8](repeating: 0xFF, count: 8))
        let sd = try StateDict.load(data: bytes, name: "nonfinite.safetensors")
        XCTAssertFalse(try XCTUnwrap(sd["a"]).allFinite)
        XCTAssertTrue(try XCTUnwrap(sd["b"]).allFinite)
        XCTAssertEqual(try XCTUnwrap(sd["c"]).floats, [.infinity])
        XCTAssertTrue(try XCTUnwrap(sd["n"]).allFinite)
        XCTAssertEqual(sd.keysWithNonFiniteValues, ["a", "c"])
        XCTAssertEqual(try StateDict.load(from: Fixtures.url("header_0x280.safetensors")).keysWithNonFiniteValues, [])
    }

    // MARK: - .pth: pickle

    func testMemoIndexThatWasNeverStored() {
        pthError(Pickle.proto2 + Pickle.binget(0xFFFF_FFFF) + Pickle.stop, kind: .corrupt,
                 "memo index 4294967295 read at offset 2 was never stored")
    }

    func testStringLengthsPastTheEnd() {
        pthError(Pickle.proto2 + [0x58, 0xFF, 0xFF, 0xFF, 0x7F] + Array("abc".utf8) + Pickle.stop, kind: .corrupt,
                 "pickle is truncated")
        pthError(Pickle.proto2 + [0x8D] + [UInt8](repeating: 0xFF, count: 8) + Pickle.stop, kind: .corrupt,
                 "pickle is truncated")
    }

    func testDeepNestingInAPickleIsNotRecursive() throws {
        // [[[[…]]]] 200 000 deep as an extra: read without recursion (and freed without it).
        var pickle = Pickle.proto2 + Pickle.emptyDict + Pickle.string("nested")
        pickle += Array(repeating: Pickle.emptyList[0], count: 200_000)
        pickle += Array(repeating: Pickle.append[0], count: 199_999)
        pickle += Pickle.setItem + Pickle.stop
        let checkpoint = try TorchCheckpoint.load(data: Pickle.torchZip(pickle), name: "deep.pth")
        XCTAssertEqual(checkpoint[extra: "nested"], .other("list"))
        // 100 000 nested MARKs closed by nothing: one error.
        pthError(Pickle.proto2 + Array(repeating: Pickle.mark[0], count: 100_000) + Pickle.stop, kind: .corrupt,
                 "STOP")
    }

    func testStorageRecordFieldsOutOfRange() {
        func entry(numel: Int64, offset: Int64 = 0, shape: [Int64], strides: [Int64], type: String = "FloatStorage",
                   key: String = "0") -> [UInt8] {
            Pickle.dict([("w", Pickle.tensor(type, key: key, numel: numel, offset: offset, shape: shape, strides: strides))])
        }
        let four = [("0", floatBytes([1, 2, 3, 4]))]
        pthError(entry(numel: -1, shape: [1], strides: [1]), storages: four, kind: .corrupt, "element count >= 0")
        pthError(entry(numel: 4, shape: [-2], strides: [1]), storages: four, kind: .tensor, "tensor 'w'", "negative size")
        pthError(entry(numel: 4, offset: -1, shape: [1], strides: [1]), storages: four, kind: .tensor,
                 "tensor 'w'", "negative storage offset")
        pthError(entry(numel: 4, shape: [2], strides: [-1]), storages: four, kind: .tensor, "tensor 'w'", "negative stride")
        pthError(entry(numel: 4, shape: [2, 2], strides: [1]), storages: four, kind: .tensor, "tensor 'w'", "differ in rank")
        pthError(entry(numel: Int64.max, shape: [1], strides: [1]), storages: four, kind: .tensor,
                 "tensor 'w'", "overflow bytes")
        pthError(entry(numel: 4, shape: [3037000500, 3037000500], strides: [1, 1]), storages: four, kind: .tensor,
                 "tensor 'w'", "more elements than an Int can count")
        pthError(entry(numel: 4, shape: [2, 2], strides: [Int64.max, 1]), storages: four, kind: .tensor,
                 "tensor 'w'", "overflows")
        pthError(entry(numel: 4, shape: Array(repeating: 1, count: 65), strides: Array(repeating: 1, count: 65)),
                 storages: four, kind: .unsupported, "65 dimensions")
        pthError(entry(numel: 4, shape: [1], strides: [1], key: String(repeating: "k", count: 300)), storages: four,
                 kind: .corrupt, "300-byte key")
    }

    /// A size-1 dimension may carry any stride; reading it must not step past the end of `Int` (this
    /// trapped in the strided copy before: it stepped to the next row before checking it was the last).
    func testHugeStridesOnSizeOneDimensionsLoad() throws {
        let storage = [("0", [UInt8](repeating: 0, count: 6) + [0x00, 0x3C])]   // float16: 0, 0, 0, 1.0
        for (shape, strides, offset): ([Int64], [Int64], Int64) in [([1], [Int64.max], 3), ([1, 1], [Int64.max - 2, 1], 3),
                                                                     ([1, 1], [1, Int64.max], 3)] {
            let pickle = Pickle.dict([("w", Pickle.tensor("HalfStorage", numel: 4, offset: offset, shape: shape, strides: strides))])
            let sd = try TorchCheckpoint.load(data: Pickle.torchZip(pickle, storages: storage), name: "stride.pth").stateDict
            XCTAssertEqual(sd["w"]?.floats, [1.0], "shape \(shape) strides \(strides)")
        }
    }

    /// One tensor object under many keys (tied weights) is read once and shared, as torch shares it.
    func testSharedTensorIsReadOnce() throws {
        var pickle = Pickle.proto2 + Pickle.emptyDict + Pickle.mark
        pickle += Pickle.string("k0") + Pickle.tensor(numel: 4, shape: [4], strides: [1]) + Pickle.binput(0)
        for i in 1..<50_000 { pickle += Pickle.string("k\(i)") + Pickle.binget(0) }
        pickle += Pickle.setItems + Pickle.stop
        let sd = try TorchCheckpoint.load(data: Pickle.torchZip(pickle, storages: [("0", floatBytes([1, 2, 3, 4]))]),
                                          name: "tied.pth").stateDict
        XCTAssertEqual(sd.count, 50_000)
        XCTAssertEqual(sd["k49999"]?.floats, [1, 2, 3, 4])
    }

    /// `OrderedDict(list)` over one shared list, again and again: quadratic work from a small file. It is
    /// stopped by the work budget.
    func testRepeatedWorkOnASharedValueIsBounded() {
        var pickle = Pickle.proto2 + Pickle.emptyList + Pickle.binput(0) + Pickle.mark
        for i in 0..<20_000 { pickle += Pickle.mark + Pickle.string("k\(i)") + [0x4B, 1] + Pickle.tuple }
        pickle += [0x65] + [0x30]   // APPENDS, POP: the list now holds 20 000 (key, 1) pairs
        pickle += Pickle.global("collections", "OrderedDict") + Pickle.binput(1) + [0x30]
        pickle += Pickle.emptyDict + Pickle.mark
        // 20 000 more dicts of 20 000 entries each: 4·10^8 copies from a 0.7 MB file.
        for i in 0..<20_000 {
            pickle += Pickle.string("d\(i)") + Pickle.binget(1) + Pickle.binget(0) + Pickle.tuple1 + Pickle.reduce
        }
        pickle += Pickle.setItems + Pickle.stop
        let started = Date()
        pthError(pickle, kind: .corrupt, "repeats work on shared values")
        XCTAssertLessThan(Date().timeIntervalSince(started), 10)
    }

    /// A memoized key megabytes long, set again and again (2 bytes each time), is hashed each time: bounded.
    func testRepeatedLongKeyIsBounded() {
        var pickle = Pickle.proto2 + Pickle.emptyDict + Pickle.string(String(repeating: "k", count: 1 << 20))
            + Pickle.binput(0) + [0x4E] + Pickle.setItem
        for _ in 0..<100_000 { pickle += Pickle.binget(0) + [0x4E] + Pickle.setItem }
        pickle += Pickle.stop
        pthError(pickle, kind: .corrupt, "repeats work on shared values")
    }

    func testOversizedPickleIsRefused() {
        let pickle = Pickle.proto2 + [UInt8](repeating: 0x4E, count: 16 << 20) + Pickle.stop
        pthError(pickle, kind: .unsupported, "'archive/data.pkl' is a 16777219-byte pickle")
    }

    // MARK: - .pth: zip

    /// Two directory entries over the same bytes (the uncompressed zip bomb: each would be CRC-checked
    /// in full) are refused.
    func testOverlappingZipEntriesAreRefused() throws {
        let pickle = Pickle.dict([("a", Pickle.tensor(key: "0", numel: 1, shape: [1], strides: [1])),
                                  ("b", Pickle.tensor(key: "1", numel: 1, shape: [1], strides: [1]))])
        var bytes = [UInt8](Pickle.torchZip(pickle, storages: [("0", floatBytes([1])), ("1", floatBytes([1]))]))
        // Point data/1's central record at data/0's local header (same size and CRC).
        func u32(_ o: Int) -> Int { Int(bytes[o]) | Int(bytes[o + 1]) << 8 | Int(bytes[o + 2]) << 16 | Int(bytes[o + 3]) << 24 }
        let end = bytes.count - 22
        var cursor = u32(end + 16)
        var localOffsets: [Int] = []
        var centralOffsets: [Int] = []
        while cursor < end {
            centralOffsets.append(cursor)
            localOffsets.append(u32(cursor + 42))
            cursor += 46 + Int(bytes[cursor + 28]) + Int(bytes[cursor + 29]) << 8
        }
        XCTAssertEqual(centralOffsets.count, 4)
        let (storage0, storage1) = (2, 3)
        for i in 0..<4 { bytes[centralOffsets[storage1] + 42 + i] = UInt8(truncatingIfNeeded: localOffsets[storage0] >> (8 * i)) }
        let url = URL(fileURLWithPath: "overlap.pth")
        assertWeightFileError(try TorchCheckpoint.load(data: Data(bytes), name: url.path), file: url, kind: .corrupt,
                              "'archive/data/0' and 'archive/data/1' overlap")
    }

    func testZip64FieldsOutOfRange() {
        // An end record saturated to 0xFFFF… with a locator pointing past the file.
        var bytes: [UInt8] = Array(repeating: 0, count: 20)
        bytes.replaceSubrange(0..<4, with: [0x50, 0x4B, 0x06, 0x07])
        bytes.replaceSubrange(8..<16, with: [UInt8](repeating: 0xFF, count: 8))
        bytes += [0x50, 0x4B, 0x05, 0x06] + [UInt8](repeating: 0xFF, count: 16) + [0, 0]
        let url = URL(fileURLWithPath: "zip64.pth")
        assertWeightFileError(try StateDict.load(data: Data(bytes), name: url.path), file: url, kind: .corrupt,
                              "zip64 end-of-central-directory record out of bounds")
    }
}
