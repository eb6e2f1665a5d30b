import CImaging
import FileIO
import Foundation

/// The fields of a PNG's IHDR chunk: all a decoder needs to know before it allocates anything.
public struct PNGHeader: Equatable, Sendable {
    public let width: Int
    public let height: Int
    /// Bits per sample: 1, 2, 4, 8 or 16 (what the colour type allows).
    public let bitDepth: Int
    /// 0 gray, 2 RGB, 3 palette, 4 gray + alpha, 6 RGBA.
    public let colorType: Int
    /// Adam7 interlacing.
    public let interlaced: Bool

    /// The eight bytes every PNG file starts with.
    public static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    /// Bit depths allowed per colour type (PNG specification, table 11.1).
    static let bitDepthsByColorType: [Int: Set<Int>] = [
        0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16],
    ]

    /// Reads and validates the signature and the IHDR chunk (its CRC included) at the start of a PNG file.
    /// - Parameters:
    ///   - bytes: the file, or at least its first 33 bytes.
    ///   - source: a name for errors.
    /// - Throws: `ImagingError.truncatedPNG` when the bytes end inside the header, `.corruptPNG` otherwise.
    public init<Bytes: ContiguousBytes>(parsing bytes: Bytes, source: String) throws {
        self = try bytes.withUnsafeBytes { raw in
            guard raw.starts(with: Self.signature) else {
                throw ImagingError.corruptPNG(source: source, reason: "no PNG signature")
            }
            // signature, chunk length, "IHDR", 13 bytes of fields, CRC
            guard raw.count >= 33 else { throw ImagingError.truncatedPNG(source: source) }
            func bigEndian32(_ offset: Int) -> UInt32 {
                (0 ..< 4).reduce(0) { $0 << 8 | UInt32(raw[offset + $1]) }
            }
            guard bigEndian32(8) == 13, Array(raw[12 ..< 16]) == Array("IHDR".utf8) else {
                throw ImagingError.corruptPNG(source: source, reason: "the first chunk is not a 13-byte IHDR")
            }
            guard CRC32.checksum(raw[12 ..< 29]) == bigEndian32(29) else {
                throw ImagingError.corruptPNG(source: source, reason: "IHDR: CRC error")
            }
            let width = Int(bigEndian32(16)), height = Int(bigEndian32(20))
            guard (1 ... Int(Int32.max)).contains(width), (1 ... Int(Int32.max)).contains(height) else {
                throw ImagingError.corruptPNG(source: source, reason: "image size \(width)x\(height)")
            }
            let bitDepth = Int(raw[24]), colorType = Int(raw[25])
            guard let depths = Self.bitDepthsByColorType[colorType], depths.contains(bitDepth) else {
                throw ImagingError.corruptPNG(source: source,
                                              reason: "bit depth \(bitDepth) with colour type \(colorType)")
            }
            guard raw[26] == 0, raw[27] == 0, raw[28] <= 1 else {
                throw ImagingError.corruptPNG(source: source, reason: "unknown compression, filter or interlace method")
            }
            return PNGHeader(width: width, height: height, bitDepth: bitDepth, colorType: colorType,
                             interlaced: raw[28] == 1)
        }
    }

    private init(width: Int, height: Int, bitDepth: Int, colorType: Int, interlaced: Bool) {
        self.width = width
        self.height = height
        self.bitDepth = bitDepth
        self.colorType = colorType
        self.interlaced = interlaced
    }
}


/// Decodes PNG files to RGB with libpng, the way Pillow's `Image.open(…).convert("RGB")` does: gamma, sRGB and
/// ICC chunks change nothing; alpha and tRNS transparency are dropped, not composited; 16-bit colour keeps its
/// high byte while 16-bit gray is clipped to 255 (Pillow's I;16 conversion); 1, 2 and 4-bit gray are scaled to
/// 0…255; palette images are looked up (an index past the palette is black). Interlaced files are read too.
///
/// One instance is not thread-safe: give each thread its own decoder.
public final class PNGDecoder {
    /// Images with more than this many pixels are refused from their header, before any allocation.
    public let maxPixels: Int
    /// Reused RGBX output of `decodeRGBX`, with `RGBXBuffer.padding` spare bytes for SIMD over-reads.
    private let scratch: RGBXBuffer
    /// Working memory of the resampler for this decoder's thread.
    let resizeScratch: ScratchBuffer

    /// - Parameter maxPixels: the largest width·height accepted (a decompression-bomb guard).
    public convenience init(maxPixels: Int = JPEGDecoder.defaultMaxPixels) {
        self.init(maxPixels: maxPixels, scratch: RGBXBuffer(), resizeScratch: ScratchBuffer())
    }

    /// A decoder using working memory shared with the thread's other decoders (see `ImageDecoder`).
    init(maxPixels: Int, scratch: RGBXBuffer, resizeScratch: ScratchBuffer) {
        self.maxPixels = maxPixels
        self.scratch = scratch
        self.resizeScratch = resizeScratch
    }

    /// Reads only the PNG header, with the checks `decode` makes before decoding (the pixel limit included).
    /// - Parameters:
    ///   - bytes: the PNG file, or at least its first 33 bytes.
    ///   - source: a name for errors.
    public func header<Bytes: ContiguousBytes>(_ bytes: Bytes, source: String) throws -> PNGHeader {
        try Self.header(bytes, source: source, maxPixels: maxPixels)
    }

    /// `header(_:source:)` without a decoder: the header check needs no libpng state.
    /// - Parameter maxPixels: the largest width·height accepted.
    public static func header<Bytes: ContiguousBytes>(_ bytes: Bytes, source: String, maxPixels: Int) throws
        -> PNGHeader {
        let header = try PNGHeader(parsing: bytes, source: source)
        let (pixels, overflow) = header.width.multipliedReportingOverflow(by: header.height)
        guard !overflow, pixels <= maxPixels else {
            throw ImagingError.tooManyPixels(source: source, width: header.width, height: header.height,
                                             limit: maxPixels)
        }
        return header
    }

    /// Reads and decodes a PNG file.
    /// - Parameter url: the file; its path names it in every error.
    public func decode(contentsOf url: URL) throws -> RGBImage {
        try decode(ImageFile.read(url), source: url.path)
    }

    /// Decodes PNG bytes.
    /// - Parameters:
    ///   - bytes: the whole PNG file.
    ///   - source: a name for errors (usually the file path).
    public func decode<Bytes: ContiguousBytes>(_ bytes: Bytes, source: String) throws -> RGBImage {
        let decoded = try decodeRGBX(bytes, source: source)
        let count = decoded.width * decoded.height
        var rgb = [UInt8](repeating: 0, count: count * 3)
        rgb.withUnsafeMutableBufferPointer { out in
            for i in 0 ..< count {
                out[i * 3] = decoded.pixels[i * 4]
                out[i * 3 + 1] = decoded.pixels[i * 4 + 1]
                out[i * 3 + 2] = decoded.pixels[i * 4 + 2]
            }
        }
        return RGBImage(width: decoded.width, height: decoded.height, pixels: rgb)
    }

    /// Decodes into the decoder's reusable buffer as RGBX (4 bytes per pixel, X = 255): the fast path of
    /// `Preprocessing.crop(png:…)`. Same pixels as `decode`.
    /// - Returns: the size and a pointer valid until the next decode into the same buffer; the buffer has
    ///   `RGBXBuffer.padding` readable bytes past the last pixel.
    func decodeRGBX<Bytes: ContiguousBytes>(_ bytes: Bytes, source: String) throws
        -> (width: Int, height: Int, pixels: UnsafePointer<UInt8>) {
        try bytes.withUnsafeBytes { raw in
            let header = try self.header(raw, source: source)
            let (w, h) = (header.width, header.height)
            let out = scratch.pixels(width: w, height: h)
            var message = [CChar](repeating: 0, count: 256)
            let rc = ci_decode_png_rgbx(raw.bindMemory(to: UInt8.self).baseAddress!, raw.count, out, w * 4,
                                        Int32(w), Int32(h), &message, message.count)
            switch rc {
            case Int32(CI_PNG_OK): return (w, h, UnsafePointer(out))
            case Int32(CI_PNG_TRUNCATED): throw ImagingError.truncatedPNG(source: source)
            default: throw ImagingError.corruptPNG(source: source, reason: String(cString: message))
            }
        }
    }
}
