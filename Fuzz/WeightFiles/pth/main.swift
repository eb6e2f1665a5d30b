// Fuzz target `pth`: the torch .pth reader (zip container, allowlist unpickler, tensor views).
//
// Each input is tried twice: as a whole file, and as the `data.pkl` of an otherwise valid torch zip
// with a few storage records. The second form matters because the zip's CRC-32 check rejects almost
// every mutation of a whole file before the unpickler sees it.
import Foundation

/// Storage records `data/0` … `data/4` of the wrapped form: sizes a mutated pickle's persistent ids
/// and views can land inside, on the edge of, or past. Built per input, not kept in a global: a global
/// `Data` reads as a leak to LeakSanitizer when the process exits.
private func storageRecords() -> [(String, Data)] {
    [
        ("data/0", Data((0..<64).map { UInt8(truncatingIfNeeded: $0 &* 37) })),
        ("data/1", Data([0x00, 0x00, 0x80, 0x3F])),
        ("data/2", Data()),
        ("data/3", Data(repeating: 0xFF, count: 24)),
        ("data/4", Data((0..<256).map { UInt8($0) })),
    ]
}

private func wrapAsPickle(_ pickle: Data) -> Data? {
    var zip = ZipWriter()
    var archive = Data()
    do {
        try zip.add("archive/data.pkl", pickle) { archive.append($0) }
        try zip.add("archive/byteorder", Data("little".utf8)) { archive.append($0) }
        for (name, bytes) in storageRecords() { try zip.add("archive/" + name, bytes) { archive.append($0) } }
        try zip.finish { archive.append($0) }
    } catch {
        return nil
    }
    return archive
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let input = fuzzData(start, count)
    expectLoadOrCleanError(name: "fuzz.pth") {
        let checkpoint = try TorchCheckpoint.load(data: input, name: "fuzz.pth")
        touchEveryValue(checkpoint.stateDict)
    }
    if let wrapped = wrapAsPickle(input) {
        expectLoadOrCleanError(name: "wrapped.pth") {
            let checkpoint = try TorchCheckpoint.load(data: wrapped, name: "wrapped.pth")
            touchEveryValue(checkpoint.stateDict)
            for (_, value) in checkpoint.extras { blackHole(value) }
        }
    }
    return 0
}
