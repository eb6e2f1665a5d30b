import FileIO
import Foundation
import XCTest

final class FileIOTests: XCTestCase {
    private func temporaryFolder() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("FileIOTests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    private func readError(_ url: URL, file: StaticString = #filePath, line: UInt = #line) -> String {
        do {
            _ = try RegularFile.read(url)
            XCTFail("\(url.path) was read", file: file, line: line)
            return ""
        } catch {
            return "\(error)"
        }
    }

    func testRegularFilesAreReadWholeOrByPrefix() throws {
        let url = try temporaryFolder().appendingPathComponent("a.bin")
        try Data([1, 2, 3, 4, 5]).write(to: url)
        XCTAssertEqual(try RegularFile.read(url), Data([1, 2, 3, 4, 5]))
        XCTAssertEqual(try RegularFile.read(url, mapped: true), Data([1, 2, 3, 4, 5]))
        XCTAssertEqual(try RegularFile.read(url, firstBytes: 2), Data([1, 2]))
        XCTAssertTrue(readError(url.deletingLastPathComponent().appendingPathComponent("missing")).contains("No such file"))
        XCTAssertThrowsError(try RegularFile.read(url, byteLimit: 4)) { error in
            XCTAssertTrue("\(error)".hasSuffix("a.bin: is 5 bytes, over the limit of 4 bytes"), "\(error)")
        }
    }

    /// A FIFO would block `open`, a device would never end, a directory cannot be read: each is refused at once.
    func testNonRegularFilesAreRefused() throws {
        let folder = try temporaryFolder()
        XCTAssertTrue(readError(folder).hasSuffix(": is a directory, not a regular file"), readError(folder))
        let fifo = folder.appendingPathComponent("pipe")
        XCTAssertEqual(mkfifo(fifo.path, 0o600), 0)
        XCTAssertTrue(readError(fifo).hasSuffix("pipe: is a FIFO (named pipe), not a regular file"), readError(fifo))
        let zero = URL(fileURLWithPath: "/dev/zero")
        XCTAssertEqual(readError(zero), "/dev/zero: is a device, not a regular file")
    }

    func testAtomicWriteReplacesTheFileAndLeavesNoTemporary() throws {
        let folder = try temporaryFolder()
        let url = folder.appendingPathComponent("out.txt")
        try AtomicFile.write(Data("old".utf8), to: url)
        try AtomicFile.write(to: url) { sink in
            try sink(Data("n".utf8))
            try sink(Data("ew".utf8))
        }
        XCTAssertEqual(try Data(contentsOf: url), Data("new".utf8))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.path), ["out.txt"])
        // A failing producer leaves the old file and no temporary.
        struct Stop: Error {}
        XCTAssertThrowsError(try AtomicFile.write(to: url) { sink in
            try sink(Data("half".utf8))
            throw Stop()
        })
        XCTAssertEqual(try Data(contentsOf: url), Data("new".utf8))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.path), ["out.txt"])
        let nested = folder.appendingPathComponent("a/b/c.txt")
        XCTAssertThrowsError(try AtomicFile.write(Data(), to: nested)) { error in
            XCTAssertTrue("\(error)".contains("creating a temporary file"), "\(error)")
        }
        try AtomicFile.write(Data("x".utf8), to: nested, createFolder: true)
        XCTAssertEqual(try Data(contentsOf: nested), Data("x".utf8))
    }

    /// Temporaries of a killed write (`.NAME.tmp-PID-…`, PID gone) are removed by the next write of NAME; those of a
    /// live process and unrelated files stay.
    func testAbandonedTemporariesAreRemoved() throws {
        let folder = try temporaryFolder()
        let url = folder.appendingPathComponent("model.safetensors")
        XCTAssertEqual(AtomicFile.temporaryPrefix(for: url), ".model.safetensors.tmp-")
        let dead = ".model.safetensors.tmp-99999999-7", live = ".model.safetensors.tmp-\(getpid())-8"
        let other = ".other.tmp-99999999-9"
        for name in [dead, live, other] { try Data().write(to: folder.appendingPathComponent(name)) }
        try AtomicFile.write(Data("w".utf8), to: url)
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: folder.path)),
                       ["model.safetensors", live, other])
    }

    func testCRC32MatchesZlib() {
        XCTAssertEqual(CRC32.checksum(Array("123456789".utf8)), 0xCBF4_3926)
        XCTAssertEqual(CRC32.checksum(Data()), 0)
        XCTAssertEqual(CRC32.checksum(Data("The quick brown fox jumps over the lazy dog".utf8)), 0x414F_A339)
        let bytes: [UInt8] = Array("xx123456789".utf8)
        XCTAssertEqual(CRC32.checksum(bytes[2...]), 0xCBF4_3926, "slices start where they start")
    }
}
