import Foundation

/// The encoded image formats the pipeline reads, told apart by the file's first bytes, never by its name
/// (a `.jpg` that holds a PNG is read as the PNG it is).
public enum ImageFormat: String, CaseIterable, Sendable {
    case jpeg = "JPEG"
    case png = "PNG"

    /// "JPEG, PNG": the formats read, as messages list them.
    public static var namesRead: String { allCases.map(\.rawValue).joined(separator: ", ") }

    /// The format `bytes` start with.
    /// - Parameter source: the file name for the error.
    /// - Throws: `ImagingError.unsupportedFormat` for anything but JPEG (`FF D8 FF`) and PNG (its signature).
    public init<Bytes: ContiguousBytes>(of bytes: Bytes, source: String) throws {
        self = try bytes.withUnsafeBytes { raw in
            if raw.starts(with: [0xFF, 0xD8, 0xFF]) { return .jpeg }
            if raw.starts(with: PNGHeader.signature) { return .png }
            throw ImagingError.unsupportedFormat(source: source, detected: Self.nameOfUnreadFormat(raw))
        }
    }

    /// A name for the common image formats we do not read, so the error can say what the file is.
    static func nameOfUnreadFormat(_ raw: UnsafeRawBufferPointer) -> String? {
        func startsWith(_ text: String, at offset: Int = 0) -> Bool {
            let expected = Array(text.utf8)
            return raw.count >= offset + expected.count && Array(raw[offset ..< offset + expected.count]) == expected
        }
        if startsWith("BM"), raw.count >= 26 { return "BMP" }  // 14-byte file header + the info header's size
        if startsWith("GIF87a") || startsWith("GIF89a") { return "GIF" }
        if raw.starts(with: [0x49, 0x49, 0x2A, 0x00]) || raw.starts(with: [0x4D, 0x4D, 0x00, 0x2A]) { return "TIFF" }
        if startsWith("RIFF"), startsWith("WEBP", at: 8) { return "WebP" }
        return nil
    }
}

/// Decodes every format the pipeline reads — JPEG and PNG, told apart by their first bytes — to the RGB that
/// Pillow's `Image.open(…).convert("RGB")` gives, through one thread's `JPEGDecoder` and `PNGDecoder`.
///
/// The two decoders share their working memory, so a pointer from one is valid until the next decode by
/// either. Not thread-safe: give each thread its own.
public final class ImageDecoder {
    /// Images with more than this many pixels are refused from their header, in every format.
    public let maxPixels: Int
    /// The JPEG decoder of this thread.
    public let jpeg: JPEGDecoder
    /// The PNG decoder of this thread.
    public let png: PNGDecoder

    /// - Parameter maxPixels: the largest width·height accepted (a decompression-bomb guard).
    public init(maxPixels: Int = JPEGDecoder.defaultMaxPixels) {
        self.maxPixels = maxPixels
        let scratch = RGBXBuffer(), resizeScratch = ScratchBuffer()
        jpeg = JPEGDecoder(maxPixels: maxPixels, scratch: scratch, resizeScratch: resizeScratch)
        png = PNGDecoder(maxPixels: maxPixels, scratch: scratch, resizeScratch: resizeScratch)
    }

    /// Reads only the header: the format and image size, with the checks `decode` makes before decoding.
    /// - Parameters:
    ///   - bytes: the file (a JPEG's header may come after large metadata blocks; a PNG's is in its first
    ///     33 bytes).
    ///   - source: a name for errors.
    public func header<Bytes: ContiguousBytes>(_ bytes: Bytes, source: String) throws
        -> (format: ImageFormat, width: Int, height: Int) {
        let format = try ImageFormat(of: bytes, source: source)
        switch format {
        case .jpeg:
            let size = try jpeg.header(bytes, source: source)
            return (format, size.width, size.height)
        case .png:
            let header = try png.header(bytes, source: source)
            return (format, header.width, header.height)
        }
    }

    /// Decodes a JPEG or PNG file's bytes.
    /// - Parameters:
    ///   - bytes: the whole file.
    ///   - source: a name for errors (usually the file path).
    public func decode<Bytes: ContiguousBytes>(_ bytes: Bytes, source: String) throws -> RGBImage {
        switch try ImageFormat(of: bytes, source: source) {
        case .jpeg: return try jpeg.decode(bytes, source: source)
        case .png: return try png.decode(bytes, source: source)
        }
    }

    /// Reads and decodes a JPEG or PNG file.
    /// - Parameter url: the file; its path names it in every error.
    public func decode(contentsOf url: URL) throws -> RGBImage {
        try decode(ImageFile.read(url), source: url.path)
    }
}
