import Foundation
import UntrustedJSON

/// What a weight file's bytes are, judged by their structure, never by one byte.
///
/// A single leading byte is ambiguous: a safetensors file starts with its header length, and a header of
/// 0x280 bytes begins `80 02`, exactly the opening of a protocol-2 pickle. So each format is recognised
/// by what the rest of the file must then look like:
///
/// - safetensors: a little-endian u64 header length N with 8 + N ≤ the file size, and the header starting
///   with `{` (after optional JSON whitespace);
/// - a `.pth` (torch.save's zip): a local file header at byte 0, or an end-of-central-directory record
///   where zip puts it;
/// - a legacy torch.save pickle: `80 0N` (PROTO 2…5) in a file that is neither of the above.
enum WeightFileFormat: Equatable {
    case safetensors
    /// Starts like a safetensors file (`{` at byte 8) but its header runs past the end: a cut download.
    case truncatedSafetensors
    case torchZip
    case legacyPickle
    case empty
    case unknown

    init(_ bytes: Bytes) {
        if bytes.count == 0 {
            self = .empty
        } else if let headerFits = WeightFileFormat.safetensorsHeaderFits(bytes) {
            self = headerFits ? .safetensors : .truncatedSafetensors
        } else if ZipArchive.looksLikeZip(bytes) {
            self = .torchZip
        } else if bytes.count >= 2, bytes.u8(0) == 0x80, (2...5).contains(bytes.u8(1)) {
            self = .legacyPickle
        } else {
            self = .unknown
        }
    }

    init(_ data: Data) {
        self = data.withUnsafeBytes { WeightFileFormat(Bytes($0)) }
    }

    /// nil when the bytes are not laid out like a safetensors file; otherwise whether the declared header
    /// fits in the file. A header that does not fit counts only when its length is plausible (within the
    /// reader's limit), so that random bytes followed by `{` are not taken for a cut safetensors file.
    private static func safetensorsHeaderFits(_ bytes: Bytes) -> Bool? {
        guard bytes.count > 8 else { return nil }
        let declared = bytes.u64(0)
        guard declared >= 2 else { return nil }
        let available = bytes.count - 8
        let fits = declared <= UInt64(available)
        guard fits || declared <= UInt64(SafetensorsFile.maximumHeaderBytes) else { return nil }
        // Look for the '{' within the declared header (or what the file has of it).
        let end = 8 + (fits ? Int(declared) : available)
        var position = 8
        while position < end, JSONValue.isWhitespace(bytes.u8(position)) { position += 1 }
        guard position < end, bytes.u8(position) == UInt8(ascii: "{") else { return nil }
        return fits
    }

    /// The error for a format no reader here handles, or nil when one does.
    var unreadable: FormatProblem? {
        switch self {
        case .safetensors, .truncatedSafetensors, .torchZip:
            return nil
        case .legacyPickle:
            return FormatProblem.unsupported(
                "legacy (pre-1.6, non-zip) torch.save format is not supported; re-save it with a current torch.save")
        case .empty:
            return FormatProblem.corrupt("the file is empty")
        case .unknown:
            return FormatProblem.unsupported("not a .pth (zip) or safetensors file")
        }
    }
}
