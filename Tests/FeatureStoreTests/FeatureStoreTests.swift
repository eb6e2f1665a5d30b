import FeatureStore
import FileIO
import Foundation
import NN
import SeededRandom
import XCTest

final class FeatureStoreTests: XCTestCase {
    private func temporaryFolder() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("FeatureStoreTests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    private func names(_ folder: URL) throws -> Set<String> {
        Set(try FileManager.default.contentsOfDirectory(atPath: folder.path))
    }

    /// `count` draws from a normal distribution scaled by `scale`.
    private func normals(_ count: Int, seed: UInt64, scale: Float = 1, shift: Float = 0) -> [Float] {
        var random = SplitMix64(seed: seed)
        return (0 ..< count).map { _ in random.normal() * scale + shift }
    }

    private func write(_ values: [Float], width: Int, _ type: FeatureElementType, to url: URL) throws {
        let writer = try FeatureStoreWriter(url: url, width: width, elementType: type, expectedRows: values.count / width)
        try writer.append(values)
        try writer.finish()
    }

    // MARK: Round trips

    /// fp32 rows come back bit for bit, in any order, appended in several calls through both append functions;
    /// the header's counts and the file's size are the format's.
    func testFloat32RoundTripIsExact() throws {
        let url = try temporaryFolder().appendingPathComponent("features.store")
        let width = 5, rows = 40
        var values = normals(rows * width, seed: 1, scale: 100)
        // Values a conversion would change: negative zero, the smallest subnormal, infinities, the largest float, a NaN payload.
        let specials: [Float] = [-0.0, .leastNonzeroMagnitude, .infinity, -.infinity, .greatestFiniteMagnitude,
                                 Float(bitPattern: 0x7FC0_1234)]
        values.replaceSubrange(0 ..< specials.count, with: specials)
        let writer = try FeatureStoreWriter(url: url, width: width)
        try writer.append(Array(values[0 ..< 15 * width]))
        try values[15 * width ..< rows * width].withUnsafeBufferPointer { try writer.append(rows: $0) }
        XCTAssertEqual(writer.rowCount, rows)
        try writer.finish()

        let store = try FeatureStore(url: url)
        XCTAssertEqual(store.rowCount, rows)
        XCTAssertEqual(store.width, width)
        XCTAssertEqual(store.elementType, .float32)
        XCTAssertEqual(store.dataOffset, 4096)
        XCTAssertEqual(store.fileSize, 4096 + rows * width * 4)
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int, store.fileSize)
        var order = Array(0 ..< rows)
        var random = SplitMix64(seed: 2)
        random.shuffle(&order)
        order += [3, 3, 0]
        let read = store.rows(order)
        XCTAssertEqual(read.count, order.count * width)
        for (position, row) in order.enumerated() {
            for c in 0 ..< width {
                XCTAssertEqual(read[position * width + c].bitPattern, values[row * width + c].bitPattern, "row \(row) column \(c)")
            }
        }
    }

    /// fp16 rows come back as exactly Float(Float16(x)), within half precision's rounding of x, with ties to even;
    /// the file holds 2 bytes per element.
    func testFloat16RoundTripRoundsToNearestHalf() throws {
        let url = try temporaryFolder().appendingPathComponent("features.store")
        let width = 8, rows = 50
        var values = normals(rows * width, seed: 3, scale: 10)
        // 1 + 2⁻¹¹ lies halfway between 1 and the next half (1 + 2⁻¹⁰): ties go to the even one, 1. 1 + 3·2⁻¹¹ lies
        // halfway between 1 + 2⁻¹⁰ and 1 + 2⁻⁹: the even one is 1 + 2⁻⁹. 65520 is halfway from 65504 to 2¹⁶: infinity.
        let ties: [(Float, Float)] = [(1 + 0x1p-11, 1), (1 + 3 * 0x1p-11, 1 + 0x1p-9), (-(1 + 0x1p-11), -1),
                                      (65520, .infinity), (65519, 65504), (0x1p-25, 0), (0x1p-24, 0x1p-24)]
        for (i, tie) in ties.enumerated() { values[i] = tie.0 }
        try write(values, width: width, .float16, to: url)
        let store = try FeatureStore(url: url)
        XCTAssertEqual(store.elementType, .float16)
        XCTAssertEqual(store.fileSize, 4096 + rows * width * 2)
        let read = store.rows(Array((0 ..< rows).reversed()))
        for row in 0 ..< rows {
            for c in 0 ..< width {
                let x = values[row * width + c], y = read[(rows - 1 - row) * width + c]
                XCTAssertEqual(y.bitPattern, Float(Float16(x)).bitPattern, "row \(row) column \(c): \(x)")
                if abs(x) >= 0x1p-14 && abs(x) <= 65504 {  // normal halves: relative error at most 2⁻¹¹
                    XCTAssertLessThanOrEqual(abs(y - x), abs(x) * 0x1p-11, "\(x) → \(y)")
                }
            }
        }
        for (i, tie) in ties.enumerated() { XCTAssertEqual(read[(rows - 1) * width + i], tie.1, "\(tie.0)") }
    }

    /// A store of no rows is a header alone and opens as such.
    func testZeroRows() throws {
        let url = try temporaryFolder().appendingPathComponent("empty.store")
        try write([], width: 2048, .float16, to: url)
        let store = try FeatureStore(url: url)
        XCTAssertEqual(store.rowCount, 0)
        XCTAssertEqual(store.width, 2048)
        XCTAssertEqual(store.fileSize, 4096)
        XCTAssertEqual(store.rows([Int]()), [])
    }

    // MARK: Hostile files

    /// The 44 header bytes with any field replaced; the CRC is recomputed unless `crc` is given.
    private func header(magic: String = "RNFSTORE", version: UInt32 = 1, type: UInt32 = 1, rows: UInt64, width: UInt64,
                        dataOffset: UInt64 = 4096, crc: UInt32? = nil) -> [UInt8] {
        var bytes = Array(magic.utf8)
        func append<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
        append(version)
        append(type)
        append(rows)
        append(width)
        append(dataOffset)
        append(crc ?? CRC32.checksum(bytes))
        return bytes
    }

    /// A file of `header`, zeros to 4096, then `dataBytes` bytes.
    private func file(_ header: [UInt8], dataBytes: Int, at url: URL) throws -> URL {
        try Data(header + [UInt8](repeating: 0, count: 4096 - header.count + dataBytes)).write(to: url)
        return url
    }

    private func openingError(_ url: URL, file: StaticString = #filePath, line: UInt = #line) -> String {
        do {
            _ = try FeatureStore(url: url)
            XCTFail("\(url.path) opened", file: file, line: line)
            return ""
        } catch let error as FeatureStoreError {
            XCTAssertEqual(error.path, url.path, file: file, line: line)
            return error.description
        } catch {
            XCTFail("\(error) is not a FeatureStoreError", file: file, line: line)
            return ""
        }
    }

    /// Each damaged or hostile file is refused with one error naming the file and the field, before any row is read.
    func testHostileFilesAreRefusedWithOneClearError() throws {
        let folder = try temporaryFolder()
        let url = folder.appendingPathComponent("features.store")
        try write(normals(3 * 4, seed: 4), width: 4, .float32, to: url)
        let good = try Data(contentsOf: url)
        let path = url.path
        func expect(_ bytes: Data, _ expected: String, line: UInt = #line) throws {
            try bytes.write(to: url)
            XCTAssertEqual(openingError(url, line: line), "\(path): \(expected)", line: line)
        }
        try expect(good.dropLast(4),
                   "header says 3 rows × 4 fp32 = 48 bytes of data at offset 4096, but the file is 4140 bytes: 44 bytes of data")
        try expect(good + Data([0]),
                   "header says 3 rows × 4 fp32 = 48 bytes of data at offset 4096, but the file is 4145 bytes: 49 bytes of data")
        try expect(good.prefix(4000),
                   "header says 3 rows × 4 fp32 = 48 bytes of data at offset 4096, but the file is 4000 bytes: no data (it ends 96 bytes before the data offset)")
        try expect(good.prefix(20), "is 20 bytes, shorter than the 44-byte feature store header")
        try expect(Data(), "is 0 bytes, shorter than the 44-byte feature store header")
        var wrongMagic = good
        wrongMagic.replaceSubrange(0 ..< 8, with: Array("PK\u{3}\u{4}abcd".utf8))
        try expect(wrongMagic, "magic is \"PK..abcd\", not \"RNFSTORE\": not a feature store")
        var damaged = good
        damaged[17] ^= 1  // rows 3 → 259, CRC not updated
        try damaged.write(to: url)
        let damage = openingError(url)
        XCTAssertTrue(damage.hasPrefix("\(path): header CRC-32 is 0x") && damage.hasSuffix("the header is damaged"),
                      "a damaged field is reported as damage, not as 259 rows: \(damage)")

        func crafted(_ bytes: [UInt8], dataBytes: Int = 48) throws -> String {
            openingError(try file(bytes, dataBytes: dataBytes, at: url))
        }
        XCTAssertEqual(try crafted(header(version: 2, rows: 3, width: 4)),
                       "\(path): version is 2; this reader knows version 1 only")
        XCTAssertEqual(try crafted(header(type: 3, rows: 3, width: 4)),
                       "\(path): element type is 3; known are 1 (fp32) and 2 (fp16)")
        XCTAssertEqual(try crafted(header(rows: 3, width: 0)), "\(path): width is 0, outside 1...65536")
        XCTAssertEqual(try crafted(header(rows: 3, width: 65537)), "\(path): width is 65537, outside 1...65536")
        XCTAssertEqual(try crafted(header(rows: UInt64.max, width: 4)),
                       "\(path): rows is 18446744073709551615, more than 9223372036854775807")
        XCTAssertEqual(try crafted(header(rows: 1 << 62, width: 2048)),
                       "\(path): header says 4611686018427387904 rows × 2048 fp32: the data size overflows 64 bits")
        // rows × width fits, × 4 bytes does not.
        XCTAssertEqual(try crafted(header(rows: 1 << 50, width: 2048)),
                       "\(path): header says 1125899906842624 rows × 2048 fp32: the data size overflows 64 bits")
        XCTAssertEqual(try crafted(header(rows: 1 << 60, width: 1, dataOffset: 1 << 62)),
                       "\(path): header says 1152921504606846976 rows × 1 fp32 = 4611686018427387904 bytes of data at offset 4611686018427387904: the end overflows 64 bits")
        XCTAssertEqual(try crafted(header(rows: 3, width: 4, dataOffset: 100)),
                       "\(path): data offset is 100, not a positive multiple of 4096")
        XCTAssertEqual(try crafted(header(rows: 3, width: 4, dataOffset: 0)),
                       "\(path): data offset is 0, not a positive multiple of 4096")
        XCTAssertEqual(try crafted(header(rows: 3, width: 4, crc: 0xDEAD_BEEF)).prefix(path.count + 33),
                       "\(path): header CRC-32 is 0xDEADBEEF but")
        // The same crafted header with its true CRC and size opens: the failures above are the fields', not the helper's.
        XCTAssertEqual(try FeatureStore(url: try file(header(rows: 3, width: 4), dataBytes: 48, at: url)).rowCount, 3)
        XCTAssertEqual(try FeatureStore(url: try file(header(type: 2, rows: 3, width: 4), dataBytes: 24, at: url)).rowCount, 3)

        XCTAssertEqual(openingError(folder), "\(folder.path): is a directory, not a regular file")
        let fifo = folder.appendingPathComponent("pipe.store")
        XCTAssertEqual(mkfifo(fifo.path, 0o600), 0)
        XCTAssertEqual(openingError(fifo), "\(fifo.path): is a FIFO (named pipe), not a regular file")
        let missing = folder.appendingPathComponent("missing.store")
        XCTAssertEqual(openingError(missing), "\(missing.path): No such file or directory")
    }

    // MARK: Writer

    /// A writer dropped before finish, or finished with the wrong row count, leaves no file at its path and no
    /// temporary; an existing store at the path is untouched until a finish succeeds.
    func testAbandonedWriterLeavesNothing() throws {
        let folder = try temporaryFolder()
        let url = folder.appendingPathComponent("features.store")
        do {
            let writer = try FeatureStoreWriter(url: url, width: 4, expectedRows: 10)
            try writer.append([Float](repeating: 1, count: 8))
            XCTAssertEqual(try names(folder).count, 1, "a temporary exists while writing")
            XCTAssertFalse(FileManager.default.fileExists(atPath: url.path))
        }
        XCTAssertEqual(try names(folder), [])

        let short = try FeatureStoreWriter(url: url, width: 4, expectedRows: 3)
        try short.append([Float](repeating: 1, count: 8))
        XCTAssertThrowsError(try short.finish()) { error in
            XCTAssertEqual("\(error)", "\(url.path): expected 3 rows, 2 were appended; nothing written")
        }
        XCTAssertThrowsError(try short.append([Float](repeating: 1, count: 4))) { error in
            XCTAssertTrue("\(error)".hasSuffix("this writer is finished or was abandoned after an error"), "\(error)")
        }
        XCTAssertEqual(try names(folder), [])

        try write([1, 2, 3, 4], width: 4, .float32, to: url)
        let replacing = try FeatureStoreWriter(url: url, width: 2)
        try replacing.append([5, 6])
        replacing.abandon()
        XCTAssertEqual(try names(folder), ["features.store"])
        XCTAssertEqual(try FeatureStore(url: url).rows([0]), [1, 2, 3, 4])
        let replacement = try FeatureStoreWriter(url: url, width: 2)
        try replacement.append([5, 6])
        try replacement.finish()
        XCTAssertEqual(try FeatureStore(url: url).rows([0]), [5, 6])
        XCTAssertEqual(try names(folder), ["features.store"])
    }

    // MARK: Statistics

    /// The chunked statistics equal what NN.Standardize.setStatistics stores for the same rows in the same order, bit
    /// for bit, over more rows than one chunk, a shuffled subset with a repeated row, a constant column, both types.
    func testColumnStatisticsMatchStandardize() throws {
        let folder = try temporaryFolder()
        let width = 6, rows = 700
        var values = normals(rows * width, seed: 5, scale: 3, shift: 50)
        for r in 0 ..< rows { values[r * width + 2] = 7.25 }  // spread 0: Standardize keeps std 1 there
        var order = Array(0 ..< rows).filter { $0 % 3 != 1 }
        var random = SplitMix64(seed: 6)
        random.shuffle(&order)
        order.append(order[0])
        for type in [FeatureElementType.float32, .float16] {
            let url = folder.appendingPathComponent("stats-\(type).store")
            try write(values, width: width, type, to: url)
            let store = try FeatureStore(url: url)
            let (mean, std) = store.columnMeanAndStd(rows: order)
            let standardize = Standardize(width: width)
            standardize.setStatistics(rows: store.rows(order), count: order.count)
            XCTAssertEqual(mean.map { Float($0) }, standardize.mean.data, "\(type)")
            XCTAssertEqual(std.map { $0 >= Standardize.minimumStd ? Float($0) : 1 }, standardize.std.data, "\(type)")
            XCTAssertEqual(std[2], 0, "\(type)")
            XCTAssertEqual(mean[2], 7.25, "\(type)")
            XCTAssertEqual(mean[0], 50, accuracy: 1, "\(type): the data's mean")
            XCTAssertEqual(std[0], 3, accuracy: 0.3, "\(type): the data's spread")
        }
    }

    // MARK: Resident memory

    /// This process's resident memory in bytes (/proc/self/statm: size, resident, … in pages).
    private func residentBytes() throws -> Int {
        let fields = try String(contentsOfFile: "/proc/self/statm", encoding: .utf8).split(separator: " ")
        return Int(fields[1])! * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// Anonymous and file-backed resident memory, for failure messages.
    private func residentBreakdown() throws -> String {
        try String(contentsOfFile: "/proc/self/status", encoding: .utf8).split(separator: "\n")
            .filter { $0.hasPrefix("RssAnon") || $0.hasPrefix("RssFile") }.joined(separator: ", ")
    }

    /// Reading every row of a 210 MB store in random order raises resident memory by far less than the store (the
    /// touched pages are handed back as it goes); the same reads with release disabled do raise it by about the
    /// store's size, which shows the measurement sees mapped pages, and `releaseResidentPages()` gives them back.
    func testResidentMemoryStaysFlatWhileReadingAStore() throws {
        let url = try temporaryFolder().appendingPathComponent("large.store")
        let width = 2048, rows = 25_600, batchRows = 256
        let storeBytes = rows * width * 4
        let writer = try FeatureStoreWriter(url: url, width: width, expectedRows: rows)
        var random = SplitMix64(seed: 7)
        var batch = [Float](repeating: 0, count: batchRows * width)
        for _ in 0 ..< rows / batchRows {
            for i in batch.indices { batch[i] = random.nextFloat() }
            try writer.append(batch)
        }
        try writer.finish()
        batch = []
        var order = Array(0 ..< rows)
        random.shuffle(&order)
        let limit = 64 << 20

        /// Reads every row in `order`, 8 at a time; returns the largest resident growth seen and the growth at the end.
        func readAll(_ store: FeatureStore) throws -> (peak: Int, end: Int) {
            let before = try residentBytes()
            var peak = 0
            var rowsOut = [Float](repeating: 0, count: 8 * width)
            var checksum: Float = 0
            for start in stride(from: 0, to: rows, by: 8) {
                rowsOut.withUnsafeMutableBufferPointer { store.copyRows(order[start ..< start + 8], into: $0) }
                checksum += rowsOut[0]
                if start % 512 == 0 { peak = max(peak, try residentBytes() - before) }
            }
            XCTAssertTrue(checksum.isFinite)
            let end = try residentBytes() - before
            return (max(peak, end), end)
        }

        let flat = try readAll(try FeatureStore(url: url))
        let breakdown = try residentBreakdown()
        XCTAssertLessThan(flat.peak, limit, "resident memory grew by \(flat.peak >> 20) MB reading a \(storeBytes >> 20) MB store; \(breakdown)")

        let keeping = try FeatureStore(url: url, releaseThreshold: .max)
        let kept = try readAll(keeping)
        XCTAssertGreaterThan(kept.end, storeBytes * 3 / 4,
                             "without release, reading the store maps it: \(kept.end >> 20) MB of \(storeBytes >> 20) MB")
        let beforeRelease = try residentBytes()
        keeping.releaseResidentPages()
        XCTAssertGreaterThan(beforeRelease - (try residentBytes()), storeBytes * 3 / 4, "releaseResidentPages hands them back")
    }
}
