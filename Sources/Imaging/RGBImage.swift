/// An 8-bit RGB image, rows top to bottom, pixels interleaved `R G B` (HWC).
public struct RGBImage: Equatable, Sendable {
    public let width: Int
    public let height: Int
    /// `width * height * 3` bytes, row-major, interleaved RGB.
    public var pixels: [UInt8]

    /// - Parameters:
    ///   - width: pixels per row, > 0.
    ///   - height: rows, > 0.
    ///   - pixels: `width * height * 3` bytes; a wrong count is a programming error.
    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(width > 0 && height > 0 && pixels.count == width * height * 3,
                     "RGBImage: \(pixels.count) bytes for \(width)x\(height)")
        self.width = width
        self.height = height
        self.pixels = pixels
    }
}

/// Errors from decoding, encoding and preprocessing images. Each names the file it is about.
public enum ImagingError: Error, CustomStringConvertible, Equatable {
    /// The bytes are not a JPEG (no SOI marker), e.g. a PNG or a text file: `JPEGDecoder`'s refusal.
    case notJPEG(source: String)
    /// The file is neither JPEG nor PNG (told by its first bytes, not its name). `detected` names the format
    /// when it is a common one that we do not read (BMP, GIF, TIFF, WebP).
    case unsupportedFormat(source: String, detected: String?)
    /// libjpeg-turbo refused the data (corrupt header or entropy data).
    case corrupt(source: String, reason: String)
    /// The data ends before the image does.
    case truncated(source: String)
    /// libpng refused the data (a bad chunk, checksum or zlib stream), or the PNG header is invalid.
    case corruptPNG(source: String, reason: String)
    /// The PNG data ends before the image does.
    case truncatedPNG(source: String)
    /// width·height is above the configured limit (a decompression-bomb guard, as Pillow's MAX_IMAGE_PIXELS).
    case tooManyPixels(source: String, width: Int, height: Int, limit: Int)
    /// The aspect ratio is so extreme that the resized image would be absurdly large.
    case unsupportedSize(source: String, width: Int, height: Int)
    /// The file could not be read at all.
    case unreadable(source: String, reason: String)
    /// Encoding failed (only the demo-data generator encodes).
    case encodeFailed(reason: String)

    public var description: String {
        switch self {
        case let .notJPEG(source):
            return "\(source): not a JPEG file (no JPEG start-of-image marker)"
        case let .unsupportedFormat(source, detected):
            let what = detected.map { "it is a \($0) file; " } ?? ""
            return "\(source): not a JPEG or PNG file (\(what)formats read: \(ImageFormat.namesRead))"
        case let .corrupt(source, reason):
            return "\(source): corrupt JPEG: \(reason)"
        case let .truncated(source):
            return "\(source): truncated JPEG (the data ends before the image does)"
        case let .corruptPNG(source, reason):
            return "\(source): corrupt PNG: \(reason)"
        case let .truncatedPNG(source):
            return "\(source): truncated PNG (the data ends before the image does)"
        case let .tooManyPixels(source, width, height, limit):
            return "\(source): image is \(width)x\(height) = \(width * height) pixels, above the limit of \(limit)"
        case let .unsupportedSize(source, width, height):
            return "\(source): a \(width)x\(height) image has too extreme an aspect ratio to resize"
        case let .unreadable(source, reason):
            return "\(source): cannot read file: \(reason)"
        case let .encodeFailed(reason):
            return "JPEG encoding failed: \(reason)"
        }
    }
}

/// The decoded image of one thread's decoders, as RGBX (4 bytes per pixel), followed by `padding` readable
/// bytes so the SIMD resampler may read past the last pixel. Grows as needed, never shrinks; not thread-safe.
final class RGBXBuffer {
    /// Readable bytes after the last pixel.
    static let padding = 4096
    private var storage: UnsafeMutableRawPointer?
    private var capacity = 0

    /// Room for a `width × height` RGBX image plus the padding, valid until the next call; contents are
    /// whatever the previous image left (zeros at first).
    func pixels(width: Int, height: Int) -> UnsafeMutablePointer<UInt8> {
        // The decoders have limited width·height before calling; should one not, Swift's overflow checks trap
        // here rather than allocate a wrapped size.
        let needed = width * height * 4 + Self.padding
        if needed > capacity {
            storage?.deallocate()
            storage = nil
            capacity = 0
            let p = UnsafeMutableRawPointer.allocate(byteCount: needed, alignment: 64)
            p.initializeMemory(as: UInt8.self, repeating: 0, count: needed)
            storage = p
            capacity = needed
        }
        return storage!.assumingMemoryBound(to: UInt8.self)
    }

    deinit { storage?.deallocate() }
}
