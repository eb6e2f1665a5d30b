import FileIO
import Foundation

// ZipArchive.swift — the one zip module: reading (`ZipArchive`) and writing (`ZipWriter`) stored entries, as
// `torch.save` lays them out.

/// A read-only view of a zip archive's stored (uncompressed) entries, as `torch.save` writes them.
///
/// Every offset and length read from the file is bounds-checked against the file size; a compressed or
/// encrypted entry is reported, not decoded (torch never writes one). ZIP64 records are honoured, so
/// archives past 4 GiB work. Spec: PKWARE APPNOTE.TXT, sections 4.3 and 4.5.3.
public struct ZipArchive {
    struct Entry {
        let name: String
        /// Where the entry's local header starts; its data follows the header.
        let localHeaderOffset: Int
        /// Byte range of the entry's data in the archive.
        let dataOffset: Int
        let size: Int
        let crc32: UInt32
    }

    let data: Data
    /// Entries in central-directory order.
    let entries: [Entry]
    private let byName: [String: Int]

    init(_ data: Data) throws {
        self.data = data
        self.entries = try data.withUnsafeBytes { try ZipArchive.readEntries(Bytes($0)) }
        var byName = [String: Int]()
        for (i, entry) in entries.enumerated() where byName[entry.name] == nil { byName[entry.name] = i }
        self.byName = byName
    }

    /// Every entry's full name and bytes, in central-directory order, each CRC-checked: for tests and tools that
    /// take a torch file apart (see `ZipWriter.archive` to put it back together).
    /// - Parameter name: names the archive in errors.
    /// - Throws: `WeightFileError` for anything the reader refuses.
    public static func storedEntries(of data: Data, name: String) throws -> [(name: String, content: Data)] {
        try naming(name) {
            let archive = try ZipArchive(data)
            return try archive.entries.map { entry in (entry.name, try archive.withBytes(of: entry) { Data($0) }) }
        }
    }

    func entry(named name: String) -> Entry? {
        byName[name].map { entries[$0] }
    }

    /// Calls `body` with the entry's bytes, after checking its CRC-32 when `verify` is set.
    func withBytes<T>(of entry: Entry, verify: Bool = true, _ body: (UnsafeRawBufferPointer) throws -> T) throws -> T {
        try data.withUnsafeBytes { all in
            // `readEntries` checked that the range is inside the file.
            let bytes = UnsafeRawBufferPointer(rebasing: all[entry.dataOffset ..< entry.dataOffset + entry.size])
            if verify, CRC32.checksum(bytes) != entry.crc32 {
                throw FormatProblem.corrupt("zip entry \(shown(entry.name)) fails its CRC-32 check (the file is damaged)")
            }
            return try body(bytes)
        }
    }

    private static let endOfCentralDirectory: UInt32 = 0x0605_4B50
    private static let zip64Locator: UInt32 = 0x0706_4B50
    private static let zip64End: UInt32 = 0x0606_4B50
    private static let centralHeader: UInt32 = 0x0201_4B50
    private static let localHeader: UInt32 = 0x0403_4B50

    /// Whether `bytes` are laid out like a zip archive: a local file header at byte 0 (where torch.save
    /// starts), or an end-of-central-directory record where zip puts it.
    static func looksLikeZip(_ bytes: Bytes) -> Bool {
        bytes.u32(0) == localHeader || endOfCentralDirectoryOffset(bytes) != nil
    }

    /// The offset of the end-of-central-directory record: the last 22 bytes plus a comment of up to 65535
    /// bytes, whose length field must reach exactly to the end of the file.
    private static func endOfCentralDirectoryOffset(_ bytes: Bytes) -> Int? {
        guard bytes.count >= 22 else { return nil }
        var position = bytes.count - 22
        let lowest = max(0, bytes.count - 22 - 65535)
        while position >= lowest {
            if bytes.u32(position) == endOfCentralDirectory,
               position + 22 + Int(bytes.u16(position + 20)) == bytes.count {
                return position
            }
            position -= 1
        }
        return nil
    }

    private static func readEntries(_ bytes: Bytes) throws -> [Entry] {
        guard let eocd = endOfCentralDirectoryOffset(bytes) else {
            throw FormatProblem.corrupt(
                "not a complete zip archive (no end-of-central-directory record; truncated or not a torch.save file)")
        }

        var entryCount = Int(bytes.u16(eocd + 10))
        var directorySize = Int(bytes.u32(eocd + 12))
        var directoryOffset = Int(bytes.u32(eocd + 16))
        if entryCount == 0xFFFF || directorySize == 0xFFFF_FFFF || directoryOffset == 0xFFFF_FFFF {
            let locator = eocd - 20
            guard locator >= 0, bytes.u32(locator) == zip64Locator else {
                throw FormatProblem.corrupt("zip64 end-of-central-directory locator missing")
            }
            guard let record = Int(exactly: bytes.u64(locator + 8)), record >= 0,
                  record <= bytes.count - 56, bytes.u32(record) == zip64End else {
                throw FormatProblem.corrupt("zip64 end-of-central-directory record out of bounds")
            }
            guard let count = Int(exactly: bytes.u64(record + 32)), let size = Int(exactly: bytes.u64(record + 40)),
                  let offset = Int(exactly: bytes.u64(record + 48)) else {
                throw FormatProblem.corrupt("zip64 central directory sizes out of range")
            }
            (entryCount, directorySize, directoryOffset) = (count, size, offset)
        }
        guard directoryOffset <= bytes.count, directorySize <= bytes.count - directoryOffset else {
            throw FormatProblem.corrupt(
                "zip central directory (offset \(directoryOffset), \(directorySize) bytes) runs past the end of the \(bytes.count)-byte file; truncated?")
        }
        // Each central header is at least 46 bytes: a count the directory cannot hold is corrupt.
        guard entryCount <= directorySize / 46 else {
            throw FormatProblem.corrupt("zip central directory claims \(entryCount) entries in \(directorySize) bytes")
        }

        var entries = [Entry]()
        entries.reserveCapacity(entryCount)
        var cursor = directoryOffset
        let directoryEnd = directoryOffset + directorySize
        for _ in 0..<entryCount {
            guard cursor <= directoryEnd - 46, bytes.u32(cursor) == centralHeader else {
                throw FormatProblem.corrupt("zip central directory entry at offset \(cursor) is damaged")
            }
            let flags = bytes.u16(cursor + 8)
            let method = bytes.u16(cursor + 10)
            let crc = bytes.u32(cursor + 16)
            var compressedSize = UInt64(bytes.u32(cursor + 20))
            var size = UInt64(bytes.u32(cursor + 24))
            let nameLength = Int(bytes.u16(cursor + 28))
            let extraLength = Int(bytes.u16(cursor + 30))
            let commentLength = Int(bytes.u16(cursor + 32))
            var localOffset = UInt64(bytes.u32(cursor + 42))
            let next = cursor + 46 + nameLength + extraLength + commentLength
            guard next <= directoryEnd else {
                throw FormatProblem.corrupt("zip central directory entry at offset \(cursor) runs past the directory")
            }
            guard let name = String(validating: bytes.slice(cursor + 46, nameLength), as: UTF8.self) else {
                throw FormatProblem.corrupt("zip entry name at offset \(cursor) is not UTF-8")
            }
            // ZIP64 extended information: the 64-bit values replace the ones saturated at 0xFFFFFFFF.
            var extra = cursor + 46 + nameLength
            let extraEnd = extra + extraLength
            while extra + 4 <= extraEnd {
                let id = bytes.u16(extra)
                let length = Int(bytes.u16(extra + 2))
                guard extra + 4 + length <= extraEnd else { break }
                if id == 0x0001 {
                    var field = extra + 4
                    let fieldEnd = field + length
                    func next64() -> UInt64? {
                        guard field + 8 <= fieldEnd else { return nil }
                        defer { field += 8 }
                        return bytes.u64(field)
                    }
                    if size == 0xFFFF_FFFF { size = next64() ?? size }
                    if compressedSize == 0xFFFF_FFFF { compressedSize = next64() ?? compressedSize }
                    if localOffset == 0xFFFF_FFFF { localOffset = next64() ?? localOffset }
                }
                extra += 4 + length
            }
            if flags & 1 != 0 {
                throw FormatProblem.unsupported("zip entry \(shown(name)) is encrypted")
            }
            if method != 0 || compressedSize != size {
                throw FormatProblem.unsupported(
                    "zip entry \(shown(name)) is compressed (method \(method)); torch.save writes stored entries only — re-save the file with torch.save")
            }
            guard let local = Int(exactly: localOffset), let length = Int(exactly: size),
                  local >= 0, local <= bytes.count - 30, bytes.u32(local) == localHeader else {
                throw FormatProblem.corrupt("zip local header of \(shown(name)) is missing or out of bounds; truncated?")
            }
            let dataOffset = local + 30 + Int(bytes.u16(local + 26)) + Int(bytes.u16(local + 28))
            guard dataOffset <= bytes.count, length <= bytes.count - dataOffset else {
                throw FormatProblem.corrupt(
                    "zip entry \(shown(name)) (\(length) bytes at offset \(dataOffset)) runs past the end of the \(bytes.count)-byte file; truncated?")
            }
            entries.append(Entry(name: name, localHeaderOffset: local, dataOffset: dataOffset, size: length, crc32: crc))
            cursor = next
        }
        try checkNoOverlap(entries)
        return entries
    }

    /// Entries must not share bytes. torch.save never overlaps them, and a crafted archive that points
    /// thousands of entries at one large record would make each CRC-32 check re-read it (a zip bomb
    /// without compression).
    private static func checkNoOverlap(_ entries: [Entry]) throws {
        // Ties keep directory order, so the message names the entries in the order the file lists them.
        let ordered = entries.enumerated().sorted {
            ($0.element.localHeaderOffset, $0.offset) < ($1.element.localHeaderOffset, $1.offset)
        }.map(\.element)
        for (previous, next) in zip(ordered, ordered.dropFirst()) where next.localHeaderOffset < previous.dataOffset + previous.size {
            throw FormatProblem.corrupt(
                "zip entries \(shown(previous.name)) and \(shown(next.name)) overlap (bytes \(previous.localHeaderOffset)–\(previous.dataOffset + previous.size) and from \(next.localHeaderOffset)); the archive is damaged or crafted")
        }
    }
}

// MARK: - Writing

/// Writes stored zip entries as they are produced, then the central directory (APPNOTE 4.3). Data is
/// aligned to 64 bytes with a padding extra field, as torch's writer does (so `torch.load(mmap=True)`
/// works); no ZIP64, so archives stop at 4 GiB.
public struct ZipWriter {
    private var offset = 0
    private var central = Data()
    private var count = 0

    init() {}

    /// An archive of `entries` (full names, e.g. `archive/data.pkl`), in order, built in memory: for tests and
    /// tools that rebuild a torch file around a changed entry.
    /// - Throws: `WeightFileError` when the archive would pass zip's 4 GiB / 65535-entry limits.
    public static func archive(_ entries: [(name: String, content: Data)]) throws -> Data {
        var out = Data(), writer = ZipWriter()
        try naming("zip archive") {
            for entry in entries { try writer.add(entry.name, entry.content) { out.append($0) } }
            try writer.finish { out.append($0) }
        }
        return out
    }

    /// Hands `sink` the local header and data of entry `name` (its full path in the archive).
    mutating func add(_ name: String, _ content: Data, _ sink: (Data) throws -> Void) throws {
        let fullName = Array(name.utf8)
        let crc = content.withUnsafeBytes { CRC32.checksum($0) }
        let headerEnd = offset + 30 + fullName.count
        // A padding extra field ("FB", as torch names it) needs at least 4 bytes.
        let padding = (64 - (headerEnd + 4) % 64) % 64 + 4
        guard let size = UInt32(exactly: content.count), let start = UInt32(exactly: offset),
              headerEnd + padding + content.count < Int(UInt32.max) else {
            throw FormatProblem.unsupported("archive would pass 4 GiB (ZIP64 writing is not supported)")
        }
        var header = Data()
        header.le32(0x0403_4B50); header.le16(20); header.le16(0); header.le16(0); header.le32(0)
        header.le32(crc); header.le32(size); header.le32(size)
        header.le16(fullName.count); header.le16(padding)
        header.append(contentsOf: fullName)
        header.le16(0x4246); header.le16(padding - 4)
        header.append(contentsOf: repeatElement(UInt8(ascii: "Z"), count: padding - 4))
        try sink(header)
        try sink(content)
        offset += header.count + content.count

        central.le32(0x0201_4B50); central.le16(20); central.le16(20); central.le16(0); central.le16(0)
        central.le32(0); central.le32(crc); central.le32(size); central.le32(size)
        central.le16(fullName.count); central.le16(0); central.le16(0); central.le16(0); central.le16(0)
        central.le32(0); central.le32(start)
        central.append(contentsOf: fullName)
        count += 1
    }

    mutating func finish(_ sink: (Data) throws -> Void) throws {
        guard count < 0xFFFF, offset + central.count < Int(UInt32.max) else {
            throw FormatProblem.unsupported("archive would pass zip's 4 GiB / 65535-entry limits (ZIP64 writing is not supported)")
        }
        var end = central
        end.le32(0x0605_4B50); end.le16(0); end.le16(0); end.le16(count); end.le16(count)
        end.le32(UInt32(central.count)); end.le32(UInt32(offset)); end.le16(0)
        try sink(end)
    }
}

private extension Data {
    mutating func le16<T: BinaryInteger>(_ v: T) {
        append(UInt8(truncatingIfNeeded: v)); append(UInt8(truncatingIfNeeded: v >> 8))
    }
    mutating func le32<T: BinaryInteger>(_ v: T) {
        le16(UInt16(truncatingIfNeeded: v)); le16(UInt16(truncatingIfNeeded: v >> 16))
    }
}

// MARK: - Bytes

/// Little-endian reads from a byte buffer. Callers check ranges before reading; each read also checks
/// and returns 0 out of range, so a missed check yields garbage that later validation rejects, never a
/// read outside the buffer.
struct Bytes {
    let raw: UnsafeRawBufferPointer
    init(_ raw: UnsafeRawBufferPointer) { self.raw = raw }
    var count: Int { raw.count }

    @inline(__always) private func fits(_ offset: Int, _ width: Int) -> Bool {
        offset >= 0 && offset <= raw.count - width
    }
    func u8(_ offset: Int) -> UInt8 { fits(offset, 1) ? raw[offset] : 0 }
    func u16(_ offset: Int) -> UInt16 {
        fits(offset, 2) ? UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt16.self)) : 0
    }
    func u32(_ offset: Int) -> UInt32 {
        fits(offset, 4) ? UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self)) : 0
    }
    func u64(_ offset: Int) -> UInt64 {
        fits(offset, 8) ? UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) : 0
    }
    func slice(_ offset: Int, _ length: Int) -> UnsafeRawBufferPointer {
        guard length >= 0, fits(offset, length) else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(rebasing: raw[offset ..< offset + length])
    }
}
