import FileIO
import Foundation
import XCTest

final class AtomicFileWriterTests: XCTestCase {
    private func temporaryFolder() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("AtomicFileWriterTests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    private func names(_ folder: URL) throws -> Set<String> {
        Set(try FileManager.default.contentsOfDirectory(atPath: folder.path))
    }

    /// Appends, a patch of bytes written earlier, a reservation larger than the file: the committed file is exactly
    /// what was written, patched, with no reserved tail, and no temporary is left.
    func testAppendPatchReserveCommit() throws {
        let folder = try temporaryFolder()
        let url = folder.appendingPathComponent("store.bin")
        let file = try AtomicFileWriter(url: url)
        XCTAssertTrue(file.temporaryPath.hasPrefix(folder.path + "/.store.bin.tmp-\(getpid())-"), file.temporaryPath)
        try file.reserve(byteCount: 1 << 20)
        try [UInt8](repeating: 0, count: 4).withUnsafeBytes { try file.write($0) }
        try [UInt8]([5, 6, 7]).withUnsafeBytes { try file.write($0) }
        try [UInt8]([1, 2]).withUnsafeBytes { try file.write($0, atOffset: 1) }
        XCTAssertEqual(file.length, 7)
        XCTAssertFalse(FileManager.default.fileExists(atPath: url.path), "nothing at the destination before commit")
        try file.commit()
        XCTAssertEqual(try Data(contentsOf: url), Data([0, 1, 2, 0, 5, 6, 7]))
        XCTAssertEqual(try names(folder), ["store.bin"])
    }

    /// A writer dropped or abandoned without commit removes its temporary and leaves the old file as it was.
    func testUncommittedWriterLeavesTheOldFile() throws {
        let folder = try temporaryFolder()
        let url = folder.appendingPathComponent("store.bin")
        try AtomicFile.write(Data("old".utf8), to: url)
        do {
            let file = try AtomicFileWriter(url: url)
            try [UInt8]([9, 9]).withUnsafeBytes { try file.write($0) }
            XCTAssertEqual(try names(folder).count, 2, "the temporary exists while writing")
        }
        XCTAssertEqual(try names(folder), ["store.bin"])
        let abandoned = try AtomicFileWriter(url: url)
        abandoned.abandon()
        abandoned.abandon()
        XCTAssertEqual(try names(folder), ["store.bin"])
        XCTAssertEqual(try Data(contentsOf: url), Data("old".utf8))
    }

    /// openForReading returns a descriptor and the size of a regular file, and refuses a directory and a FIFO.
    func testOpenForReading() throws {
        let folder = try temporaryFolder()
        let url = folder.appendingPathComponent("a.bin")
        try Data([1, 2, 3]).write(to: url)
        let (descriptor, size) = try RegularFile.openForReading(url)
        XCTAssertEqual(size, 3)
        var byte: UInt8 = 0
        XCTAssertEqual(read(descriptor, &byte, 1), 1)
        XCTAssertEqual(byte, 1)
        close(descriptor)
        XCTAssertThrowsError(try RegularFile.openForReading(folder)) { error in
            XCTAssertTrue("\(error)".hasSuffix(": is a directory, not a regular file"), "\(error)")
        }
        let fifo = folder.appendingPathComponent("pipe")
        XCTAssertEqual(mkfifo(fifo.path, 0o600), 0)
        XCTAssertThrowsError(try RegularFile.openForReading(fifo)) { error in
            XCTAssertTrue("\(error)".hasSuffix("pipe: is a FIFO (named pipe), not a regular file"), "\(error)")
        }
    }
}
