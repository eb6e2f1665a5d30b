import Foundation
import XCTest
import WeightFiles

/// `StateDict.load` recognises a format by its structure, never by its first byte.
final class FormatDetectionTests: XCTestCase {
    /// The bug report's case: ResNet-50-style weights written by the safetensors package with no metadata,
    /// whose header length's low byte is 0x80. With a 0x280-byte header the file starts `80 02`, exactly a
    /// protocol-2 pickle's opening, and was refused as "legacy torch.save format".
    func testSafetensorsWhoseHeaderLengthStartsWith0x80Loads() throws {
        for (name, secondByte) in [("header_0x180.safetensors", 0x01), ("header_0x280.safetensors", 0x02)] {
            let url = Fixtures.url(name)
            let bytes = [UInt8](try Data(contentsOf: url).prefix(2))
            XCTAssertEqual(bytes, [0x80, UInt8(secondByte)], name)
            let expected = Fixtures.tensors(of: name)

            let viaSafetensors = try SafetensorsFile.load(from: url)
            XCTAssertEqual(viaSafetensors.stateDict.keys, expected.map(\.key), name)
            XCTAssertEqual(viaSafetensors.metadata, [:], name)
            for tensor in expected { assertMatches(viaSafetensors.stateDict[tensor.key], tensor) }

            XCTAssertEqual(try StateDict.load(from: url), viaSafetensors.stateDict, name)
            XCTAssertEqual(try StateDict.load(data: Data(contentsOf: url), name: name), viaSafetensors.stateDict, name)
        }
    }

    /// The same for every header length whose low byte is 0x80, built from a file this module wrote.
    func testEveryHeaderLengthWithLowByte0x80() throws {
        var sd = StateDict()
        // Short names: the whole header must fit in 0x80 bytes.
        sd["w"] = WeightTensor(shape: [2], floats: [0.25, -1.5])
        sd["n"] = WeightTensor(shape: [], integers: [5])
        let url = try temporaryDirectory(self).appendingPathComponent("small.safetensors")
        try SafetensorsFile.save(sd, to: url)
        let original = [UInt8](try Data(contentsOf: url))
        let headerLength = Int(original[0]) | Int(original[1]) << 8
        let header = String(decoding: original[8..<(8 + headerLength)], as: UTF8.self)
            .trimmingCharacters(in: .whitespaces)
        let payload = Array(original[(8 + headerLength)...])
        for length in [0x80, 0x180, 0x280, 0x380, 0x480, 0x8080] {
            let padded = header + String(repeating: " ", count: length - header.utf8.count)
            let bytes = safetensorsBytes(header: padded, data: payload)
            XCTAssertEqual(bytes.first, 0x80)
            XCTAssertEqual(try StateDict.load(data: bytes, name: "h\(length).safetensors"), sd, "header length \(length)")
            XCTAssertEqual(try SafetensorsFile.load(data: bytes, name: "h\(length).safetensors").stateDict, sd)
        }
    }

    /// Leading whitespace before the header's `{` is still JSON.
    func testHeaderWithLeadingWhitespaceLoads() throws {
        let bytes = safetensorsBytes(header: " \n\t{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                                     data: floatBytes([2]))
        XCTAssertEqual(try StateDict.load(data: bytes, name: "ws.safetensors")["a"]?.floats, [2])
    }

    /// A .pth is recognised by its content, whatever its name, and a safetensors file named .pth is too.
    func testFormatComesFromContentNotName() throws {
        let safetensors = try Data(contentsOf: Fixtures.url("header_0x280.safetensors"))
        XCTAssertEqual(try StateDict.load(data: safetensors, name: "resnet50.pth").count, 5)
        let pth = try Data(contentsOf: Fixtures.url("archive_folder.pth"))
        XCTAssertEqual(try StateDict.load(data: pth, name: "weights.safetensors").count, 4)
    }

    func testLegacyPickleIsNamedAsSuch() {
        let url = Fixtures.url("malformed/not_a_zip.pth")
        assertWeightFileError(try StateDict.load(from: url), file: url, kind: .unsupported, "legacy", "not supported")
        assertWeightFileError(try TorchCheckpoint.load(from: url), file: url, kind: .unsupported, "legacy")
        // A protocol-2 pickle too short to be anything else.
        let tiny = Data([0x80, 0x02, 0x7D, 0x2E])
        assertWeightFileError(try StateDict.load(data: tiny, name: "tiny.pt"), file: URL(fileURLWithPath: "tiny.pt"),
                              kind: .unsupported, "legacy")
    }

    func testUnknownAndEmptyFiles() {
        let text = Data("hello, this is not a weight file at all".utf8)
        assertWeightFileError(try StateDict.load(data: text, name: "notes.txt"), file: URL(fileURLWithPath: "notes.txt"),
                              kind: .unsupported, "not a .pth (zip) or safetensors file")
        assertWeightFileError(try StateDict.load(data: Data(), name: "empty.pth"), file: URL(fileURLWithPath: "empty.pth"),
                              kind: .corrupt, "empty")
        // 0x80 followed by something that is not a pickle protocol is neither.
        let odd = Data([0x80, 0x37, 0, 0, 0, 0, 0, 0, 0x20])
        assertWeightFileError(try StateDict.load(data: odd, name: "odd.bin"), file: URL(fileURLWithPath: "odd.bin"),
                              kind: .unsupported, "not a .pth (zip) or safetensors file")
    }

    /// A cut safetensors download is reported as one, not as an unknown format.
    func testTruncatedSafetensorsIsReportedAsTruncated() throws {
        let full = try Data(contentsOf: Fixtures.url("header_0x280.safetensors"))
        let cut = full.prefix(300)
        assertWeightFileError(try StateDict.load(data: cut, name: "cut.safetensors"),
                              file: URL(fileURLWithPath: "cut.safetensors"), kind: .corrupt,
                              "header length 640 runs past the end of the file (300 bytes)")
    }

    /// The .pth reader names a safetensors file rather than calling it a damaged zip or a legacy pickle.
    func testTorchCheckpointNamesASafetensorsFile() {
        let url = Fixtures.url("header_0x280.safetensors")
        assertWeightFileError(try TorchCheckpoint.load(from: url), file: url, kind: .unsupported,
                              "this is a safetensors file, not a torch.save .pth")
    }

    /// A zip whose first local header is damaged is still found by its end record, and reported as a zip.
    func testZipFoundByItsEndRecord() throws {
        var bytes = [UInt8](try Data(contentsOf: Fixtures.url("archive_folder.pth")))
        bytes[0] = 0x00
        assertWeightFileError(try StateDict.load(data: Data(bytes), name: "damaged.pth"),
                              file: URL(fileURLWithPath: "damaged.pth"), kind: .corrupt, "zip local header")
    }

    /// Paths that are not regular files are refused up front: a FIFO would block forever, /dev/zero
    /// would never end.
    func testNonRegularFilesAreRefused() throws {
        let directory = try temporaryDirectory(self)
        assertWeightFileError(try StateDict.load(from: directory), file: directory, kind: .io, "a directory")
        let fifo = directory.appendingPathComponent("weights.pth")
        XCTAssertEqual(mkfifo(fifo.path, 0o600), 0)
        assertWeightFileError(try StateDict.load(from: fifo), file: fifo, kind: .io, "not a regular file")
        let zero = URL(fileURLWithPath: "/dev/zero")
        assertWeightFileError(try SafetensorsFile.load(from: zero), file: zero, kind: .io, "not a regular file")
    }
}
