// FeatureStore.swift — cached backbone features on disk, memory-mapped, for training sets larger than memory.
//
// File format (version 1). Every integer is little-endian.
//
//   offset  size  field
//        0     8  magic "RNFSTORE" (ASCII)
//        8     4  version, UInt32 = 1
//       12     4  element type, UInt32: 1 = fp32 (IEEE 754 binary32), 2 = fp16 (IEEE 754 binary16)
//       16     8  rows, UInt64 (at most Int64.max)
//       24     8  width (elements per row), UInt64 in 1...65536
//       32     8  data offset, UInt64: a multiple of 4096 (the writer puts 4096), so the data starts on a page
//                 boundary and a row of 2048 fp32 elements fills exactly two 4 KB pages
//       40     4  CRC-32 (zip's, FileIO.CRC32) of bytes 0..<40
//       44     …  zeros up to the data offset (reserved; not read by version 1)
//   data offset   rows × width elements, row-major, little-endian; the file ends right after them
//
// A reader accepts a file only when the file size is exactly data offset + rows × width × element size (computed
// with overflow checks), so a truncated or extended file, or a header from another file, is refused before any
// row is read. The format holds numbers only: nothing in it is executed or parsed as text.
import FileIO
import Foundation
#if canImport(Glibc)
import Glibc
#endif

#if !_endian(little)
#error("FeatureStore maps little-endian data in place: a big-endian host would need byte swaps")
#endif

/// How a store keeps each element. fp16 halves the disk and page-cache footprint; values are rounded to the
/// nearest half-precision number (ties to even), about 3 significant decimal digits.
public enum FeatureElementType: UInt32, Sendable, CustomStringConvertible {
    case float32 = 1
    case float16 = 2

    /// Bytes per element.
    public var size: Int { self == .float32 ? 4 : 2 }
    public var description: String { self == .float32 ? "fp32" : "fp16" }
}

/// Why a feature store could not be opened or written: the file and what is wrong with it, one line.
public struct FeatureStoreError: Error, CustomStringConvertible {
    public let path: String
    public let reason: String
    public var description: String { "\(path): \(reason)" }

    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }
}

/// The fixed header at the start of every store (see the top of this file).
struct FeatureStoreHeader: Equatable {
    static let magic = Array("RNFSTORE".utf8)
    static let version: UInt32 = 1
    /// Bytes the fields take, CRC included; the rest up to `dataOffset` is zeros.
    static let encodedCount = 44
    /// The data offset the writer uses and the alignment the reader requires.
    static let alignment = 4096
    static let widthLimit = 65536

    var elementType: FeatureElementType
    var rows: Int
    var width: Int
    var dataOffset: Int = FeatureStoreHeader.alignment

    /// The header's 44 bytes, CRC last.
    func encoded() -> [UInt8] {
        var bytes = Self.magic
        func append<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
        append(Self.version)
        append(elementType.rawValue)
        append(UInt64(rows))
        append(UInt64(width))
        append(UInt64(dataOffset))
        append(CRC32.checksum(bytes))
        return bytes
    }

    /// Reads and checks a header; `fileSize` is what the file really is.
    /// - Throws: `FeatureStoreError` naming the first field that is wrong.
    static func decode(_ bytes: UnsafeRawBufferPointer, fileSize: Int, path: String) throws -> FeatureStoreHeader {
        func fail(_ reason: String) -> FeatureStoreError { FeatureStoreError(path: path, reason: reason) }
        guard bytes.count >= encodedCount else {
            throw fail("is \(fileSize) bytes, shorter than the \(encodedCount)-byte feature store header")
        }
        func integer<T: FixedWidthInteger>(at offset: Int, as: T.Type) -> T {
            T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
        }
        guard Array(bytes[0 ..< 8]) == magic else {
            let shown = bytes[0 ..< 8].map { (0x20 ... 0x7E).contains($0) ? String(UnicodeScalar($0)) : "." }.joined()
            throw fail("magic is \"\(shown)\", not \"RNFSTORE\": not a feature store")
        }
        let version = integer(at: 8, as: UInt32.self)
        guard version == Self.version else {
            throw fail("version is \(version); this reader knows version \(Self.version) only")
        }
        let storedCRC = integer(at: 40, as: UInt32.self)
        let computedCRC = CRC32.checksum(UnsafeRawBufferPointer(rebasing: bytes[0 ..< 40]))
        guard storedCRC == computedCRC else {
            throw fail("header CRC-32 is \(hex(storedCRC)) but the header's bytes give \(hex(computedCRC)): the header is damaged")
        }
        let typeCode = integer(at: 12, as: UInt32.self)
        guard let elementType = FeatureElementType(rawValue: typeCode) else {
            throw fail("element type is \(typeCode); known are 1 (fp32) and 2 (fp16)")
        }
        let rows = integer(at: 16, as: UInt64.self)
        guard rows <= UInt64(Int.max) else { throw fail("rows is \(rows), more than \(Int.max)") }
        let width = integer(at: 24, as: UInt64.self)
        guard (1 ... UInt64(widthLimit)).contains(width) else {
            throw fail("width is \(width), outside 1...\(widthLimit)")
        }
        let dataOffset = integer(at: 32, as: UInt64.self)
        guard dataOffset >= UInt64(alignment), dataOffset % UInt64(alignment) == 0, dataOffset <= UInt64(Int.max) else {
            throw fail("data offset is \(dataOffset), not a positive multiple of \(alignment)")
        }
        let header = FeatureStoreHeader(elementType: elementType, rows: Int(rows), width: Int(width), dataOffset: Int(dataOffset))
        let shape = "\(rows) rows × \(width) \(elementType)"
        let (elements, elementsOverflow) = header.rows.multipliedReportingOverflow(by: header.width)
        let (dataBytes, bytesOverflow) = elements.multipliedReportingOverflow(by: elementType.size)
        guard !elementsOverflow, !bytesOverflow else { throw fail("header says \(shape): the data size overflows 64 bits") }
        let (expectedSize, sizeOverflow) = header.dataOffset.addingReportingOverflow(dataBytes)
        guard !sizeOverflow else {
            throw fail("header says \(shape) = \(dataBytes) bytes of data at offset \(dataOffset): the end overflows 64 bits")
        }
        guard expectedSize == fileSize else {
            let present = fileSize - header.dataOffset
            let has = present >= 0 ? "\(present) bytes of data" : "no data (it ends \(-present) bytes before the data offset)"
            throw fail("header says \(shape) = \(dataBytes) bytes of data at offset \(dataOffset), "
                           + "but the file is \(fileSize) bytes: \(has)")
        }
        return header
    }

    private static func hex(_ value: UInt32) -> String { "0x" + String(value, radix: 16, uppercase: true) }
}

/// A feature store opened read-only: rows × width features memory-mapped from a file written by
/// `FeatureStoreWriter`, copied out by row index (fp16 stores are widened to Float).
///
/// Resident memory stays flat however large the store is: the pages a copy touches are handed back
/// (`madvise(MADV_DONTNEED)`, the whole 2 MB blocks around them) at the end of a `copyRows` call once
/// `releaseThreshold` bytes of such blocks have accumulated. They stay in the kernel's page cache, so reading them
/// again costs a page fault, not a disk read, while memory allows.
///
/// The file must not be truncated while it is open (as for any mapped file, reading a vanished page is SIGBUS);
/// the writer never changes a committed file, it renames a new one over it. One store object is used from one
/// thread at a time (it keeps a list of touched pages); open the file once per thread to read in parallel.
public final class FeatureStore {
    public let url: URL
    /// Number of rows.
    public let rowCount: Int
    /// Elements per row.
    public let width: Int
    public let elementType: FeatureElementType
    /// Where row 0 starts in the file.
    public let dataOffset: Int
    /// The file's size in bytes.
    public let fileSize: Int
    /// Bytes of touched 2 MB blocks (see `releaseGranularity`) accumulated before `copyRows` hands their pages back.
    public let releaseThreshold: Int

    private let mapping: UnsafeMutableRawPointer
    private let rowBytes: Int
    /// What one `madvise` range is rounded out to, in the address space: a page fault maps more than the page it needs
    /// (fault-around: 64 KB of cached pages by default; recent kernels map a whole large page-cache folio, up to the
    /// enclosing 2 MB page-table block), and all of it counts as resident. Releasing the whole aligned 2 MB block
    /// around each touched row catches every page a fault can have mapped with it. (Measured on Linux 6.18 / ext4:
    /// with 64 KB windows, reading a 210 MB store in random order kept 140 MB resident; with 2 MB blocks, under 64 MB.)
    private static let releaseGranularity = max(2 << 20, Int(sysconf(Int32(_SC_PAGESIZE))))
    /// Touched [start, end) byte ranges of the mapping (offsets from its start), not yet released.
    private var pendingRanges: [(start: Int, end: Int)] = []
    private var pendingBytes = 0

    /// Opens and maps the store at `url`, checking its header against the file (see the top of this file).
    /// - Parameters:
    ///   - url: a regular file (FIFOs, directories and devices are refused before anything is read).
    ///   - releaseThreshold: bytes of touched 2 MB blocks after which `copyRows` releases them (default 16 MB: in
    ///     random order, every 8 rows; `Int.max` keeps every touched page resident until `releaseResidentPages()`).
    ///     What stays resident is at most about this plus one `copyRows` call's blocks.
    /// - Throws: `FeatureStoreError` naming the file and the field that is wrong.
    public init(url: URL, releaseThreshold: Int = 16 << 20) throws {
        precondition(releaseThreshold > 0, "FeatureStore: releaseThreshold \(releaseThreshold) must be positive")
        self.url = url
        self.releaseThreshold = releaseThreshold
        let path = url.path
        let descriptor: Int32, size: Int
        do { (descriptor, size) = try RegularFile.openForReading(url) } catch let error as FileError {
            throw FeatureStoreError(path: error.path, reason: error.reason)
        }
        // The mapping keeps the file alive; the descriptor is not needed after mmap.
        defer { close(descriptor) }
        var headerBytes = [UInt8](repeating: 0, count: FeatureStoreHeader.encodedCount)
        let headerRead = headerBytes.withUnsafeMutableBytes { buffer -> Int in
            var filled = 0
            while filled < buffer.count {
                let n = pread(descriptor, buffer.baseAddress! + filled, buffer.count - filled, off_t(filled))
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return n < 0 ? -1 : filled }
                filled += n
            }
            return filled
        }
        guard headerRead >= 0 else {
            throw FeatureStoreError(path: path, reason: "reading the header failed: \(String(cString: strerror(errno)))")
        }
        let header = try headerBytes[0 ..< headerRead].withUnsafeBytes {
            try FeatureStoreHeader.decode($0, fileSize: size, path: path)
        }
        guard let mapped = mmap(nil, size, PROT_READ, MAP_SHARED, descriptor, 0), mapped != MAP_FAILED else {
            throw FeatureStoreError(path: path, reason: "mapping \(size) bytes failed: \(String(cString: strerror(errno)))")
        }
        mapping = mapped
        rowCount = header.rows
        width = header.width
        elementType = header.elementType
        dataOffset = header.dataOffset
        fileSize = size
        rowBytes = header.width * header.elementType.size
    }

    deinit { munmap(mapping, fileSize) }

    /// Bytes of row data (rows × width × element size).
    public var dataByteCount: Int { fileSize - dataOffset }

    /// Copies the rows at `indices`, in that order, into the first `indices.count × width` elements of `destination`
    /// (fp16 widened exactly to Float). Releases the touched pages once `releaseThreshold` bytes have accumulated.
    ///
    /// Every index must be in `0 ..< rowCount` and `destination` must hold `indices.count × width` elements: a
    /// violation is a programming error and stops the process (precondition), as an array subscript out of range does.
    public func copyRows<Indices: Collection>(_ indices: Indices, into destination: UnsafeMutableBufferPointer<Float>)
        where Indices.Element == Int {
        let width = self.width
        precondition(destination.count / width >= indices.count,
                     "FeatureStore.copyRows: \(indices.count) rows of \(width) need \(indices.count * width) elements, the destination has \(destination.count)")
        var target = destination.baseAddress
        for index in indices {
            precondition(index >= 0 && index < rowCount, "FeatureStore.copyRows: row \(index) is outside 0..<\(rowCount) (\(url.path))")
            let start = dataOffset + index * rowBytes
            let source = UnsafeRawPointer(mapping + start)
            switch elementType {
            case .float32:
                UnsafeMutableRawPointer(target!).copyMemory(from: source, byteCount: rowBytes)
            case .float16:
                // 2-byte aligned: the mapping is page-aligned and every row starts at an even offset.
                let halves = source.assumingMemoryBound(to: UInt16.self)
                for c in 0 ..< width { target![c] = Float(Float16(bitPattern: halves[c])) }
            }
            target! += width
            noteTouched(start: start, end: start + rowBytes)
        }
        if pendingBytes >= releaseThreshold { releaseResidentPages() }
    }

    /// The rows at `indices`, in that order, as one row-major array (`indices.count × width` elements). Indices out of
    /// range stop the process, as in `copyRows`.
    public func rows<Indices: Collection>(_ indices: Indices) -> [Float] where Indices.Element == Int {
        let count = indices.count * width
        return [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            copyRows(indices, into: buffer)
            initialized = count
        }
    }

    /// Hands back every page touched since the last release: the process's resident memory drops by them; the
    /// kernel's page cache keeps them while memory allows.
    public func releaseResidentPages() {
        guard !pendingRanges.isEmpty else { return }
        pendingRanges.sort { $0.start < $1.start }
        var merged: [(start: Int, end: Int)] = []
        for range in pendingRanges {
            if let last = merged.last, range.start <= last.end {
                merged[merged.count - 1].end = max(last.end, range.end)
            } else {
                merged.append(range)
            }
        }
        for range in merged {
            // MADV_DONTNEED on a read-only shared file mapping drops this process's page-table entries only; the data
            // is the file's and is read again on the next touch. It cannot fail on a valid range of our own mapping.
            _ = madvise(mapping + range.start, range.end - range.start, MADV_DONTNEED)
        }
        pendingRanges.removeAll(keepingCapacity: true)
        pendingBytes = 0
    }

    /// Records the file bytes [start, end) as touched, rounded out to the release granularity in the address space
    /// (where the kernel's fault-around windows are aligned) and clipped to the mapping.
    private func noteTouched(start: Int, end: Int) {
        let unit = Self.releaseGranularity
        let base = Int(bitPattern: mapping)
        let alignedStart = max((base + start) / unit * unit, base) - base
        let alignedEnd = min((base + end + unit - 1) / unit * unit, base + fileSize) - base
        // Consecutive rows (a sequential scan) extend the last range instead of adding one per row.
        if let last = pendingRanges.last, alignedStart >= last.start, alignedStart <= last.end {
            if alignedEnd > last.end {
                pendingBytes += alignedEnd - last.end
                pendingRanges[pendingRanges.count - 1].end = alignedEnd
            }
            return
        }
        pendingRanges.append((alignedStart, alignedEnd))
        pendingBytes += alignedEnd - alignedStart
    }
}
