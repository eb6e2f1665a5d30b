import CImaging
import CTurboJPEG
import Foundation

/// Decodes JPEG files to RGB with libjpeg-turbo's TurboJPEG API, the way Pillow's `Image.open(…).convert("RGB")`
/// does: accurate integer IDCT and fancy (triangle) chroma upsampling, which are libjpeg's defaults and
/// Pillow's; grayscale replicated to three channels; CMYK/YCCK converted with Pillow's formula.
///
/// One instance owns one TurboJPEG handle and is not thread-safe: give each thread its own decoder.
public final class JPEGDecoder {
    /// Pillow's `Image.MAX_IMAGE_PIXELS`; above it Pillow warns, we refuse.
    public static let defaultMaxPixels = 89_478_485

    /// Images with more than this many pixels are refused before decoding.
    public let maxPixels: Int
    private let handle: tjhandle
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
        guard let h = tjInitDecompress() else {
            fatalError("tjInitDecompress failed: libturbojpeg is unusable")
        }
        self.handle = h
        self.maxPixels = maxPixels
        self.scratch = scratch
        self.resizeScratch = resizeScratch
    }

    deinit {
        tjDestroy(handle)
    }

    /// Reads and decodes a JPEG file.
    /// - Parameter url: the file; its path names it in every error.
    public func decode(contentsOf url: URL) throws -> RGBImage {
        try decode(ImageFile.read(url), source: url.path)
    }

    /// Reads only the JPEG header: the image size, with the same checks `decode` makes before decoding.
    /// - Parameters:
    ///   - bytes: the whole JPEG file (or at least up to its SOF marker).
    ///   - source: a name for errors.
    public func header<Bytes: ContiguousBytes>(_ bytes: Bytes, source: String) throws -> (width: Int, height: Int) {
        try bytes.withUnsafeBytes { raw in
            let h = try readHeader(raw.bindMemory(to: UInt8.self), source: source)
            return (h.width, h.height)
        }
    }

    private func readHeader(_ buf: UnsafeBufferPointer<UInt8>, source: String) throws
        -> (width: Int, height: Int, cmyk: Bool) {
        guard buf.count >= 4, let base = buf.baseAddress, buf[0] == 0xFF, buf[1] == 0xD8 else {
            throw ImagingError.notJPEG(source: source)
        }
        var width: Int32 = 0, height: Int32 = 0, subsamp: Int32 = 0, colorspace: Int32 = 0
        if tjDecompressHeader3(handle, base, UInt(buf.count), &width, &height, &subsamp, &colorspace) != 0 {
            throw ImagingError.corrupt(source: source, reason: lastError())
        }
        let w = Int(width), h = Int(height)
        guard w > 0, h > 0 else { throw ImagingError.corrupt(source: source, reason: "image size \(w)x\(h)") }
        guard w * h <= maxPixels else {
            throw ImagingError.tooManyPixels(source: source, width: w, height: h, limit: maxPixels)
        }
        let cmyk = colorspace == Int32(TJCS_CMYK.rawValue) || colorspace == Int32(TJCS_YCCK.rawValue)
        return (w, h, cmyk)
    }

    /// Decodes JPEG bytes.
    /// - Parameters:
    ///   - bytes: the whole JPEG file.
    ///   - source: a name for errors (usually the file path).
    public func decode<Bytes: ContiguousBytes>(_ bytes: Bytes, source: String) throws -> RGBImage {
        try bytes.withUnsafeBytes { raw -> RGBImage in
            let buf = raw.bindMemory(to: UInt8.self)
            let (w, h, isCMYK) = try readHeader(buf, source: source)
            let base = buf.baseAddress!, size = UInt(buf.count)
            let pixelFormat = isCMYK ? TJPF_CMYK : TJPF_RGB
            var out = [UInt8](repeating: 0, count: w * h * (isCMYK ? 4 : 3))
            try out.withUnsafeMutableBufferPointer { o in
                let rc = tjDecompress2(handle, base, size, o.baseAddress, Int32(w), 0, Int32(h),
                                       Int32(pixelFormat.rawValue), 0)
                try check(rc, source: source)
            }
            return RGBImage(width: w, height: h, pixels: isCMYK ? Self.pillowCMYKToRGB(out) : out)
        }
    }

    /// Decodes into the decoder's reusable buffer as RGBX (4 bytes per pixel, X = 255): the fast path of
    /// `Preprocessing.crop(jpeg:…)`. Same pixels as `decode`.
    /// - Returns: the size and a pointer valid until the next call on this decoder; the buffer has
    ///   `RGBXBuffer.padding` readable bytes past the last pixel.
    /// - Parameter region: when given, only these rows and columns need to be right: a sequential
    ///   3-component JPEG then decodes just them (libjpeg's skip and crop), anything else whole.
    func decodeRGBX<Bytes: ContiguousBytes>(_ bytes: Bytes, source: String,
                                            region: (rows: Range<Int>, columns: Range<Int>)? = nil) throws
        -> (width: Int, height: Int, pixels: UnsafePointer<UInt8>) {
        try bytes.withUnsafeBytes { raw in
            let buf = raw.bindMemory(to: UInt8.self)
            let (w, h, isCMYK) = try readHeader(buf, source: source)
            let out = scratch.pixels(width: w, height: h)
            if let region, !isCMYK {
                var message = [CChar](repeating: 0, count: 256)
                let rc = jr_decode_region_rgbx(buf.baseAddress!, buf.count, out, w * 4, Int32(w), Int32(h),
                                               Int32(region.rows.lowerBound), Int32(region.rows.upperBound),
                                               Int32(region.columns.lowerBound), Int32(region.columns.upperBound),
                                               &message, message.count)
                switch rc {
                case Int32(JR_OK): return (w, h, UnsafePointer(out))
                case Int32(JR_TRUNCATED): throw ImagingError.truncated(source: source)
                case Int32(JR_CORRUPT):
                    throw ImagingError.corrupt(source: source, reason: String(cString: message))
                default: break  // not a sequential 3-component JPEG: decode it whole below
                }
            }
            let format = isCMYK ? TJPF_CMYK : TJPF_RGBX
            let rc = tjDecompress2(handle, buf.baseAddress!, UInt(buf.count), out, Int32(w), 0, Int32(h),
                                   Int32(format.rawValue), 0)
            try check(rc, source: source)
            if isCMYK { Self.pillowCMYKToRGBXInPlace(out, count: w * h) }
            return (w, h, UnsafePointer(out))
        }
    }

    static func pillowCMYKToRGBXInPlace(_ p: UnsafeMutablePointer<UInt8>, count: Int) {
        @inline(__always) func muldiv255(_ a: Int, _ b: Int) -> Int {
            let t = a * b + 128
            return ((t >> 8) + t) >> 8
        }
        for i in 0 ..< count {
            let q = p + i * 4
            let nk = Int(q[3])
            for c in 0 ..< 3 { q[c] = UInt8(clamping: nk - muldiv255(255 - Int(q[c]), nk)) }
            q[3] = 255
        }
    }

    /// Pillow reads every CMYK JPEG as Adobe-inverted ("CMYK;I") and converts with
    /// `R = nk − nk·C/255` (nk = 255 − K, MULDIV255 rounding); libjpeg hands us the stored, inverted values.
    static func pillowCMYKToRGB(_ raw: [UInt8]) -> [UInt8] {
        let n = raw.count / 4
        var out = [UInt8](repeating: 0, count: n * 3)
        @inline(__always) func muldiv255(_ a: Int, _ b: Int) -> Int {
            let t = a * b + 128
            return ((t >> 8) + t) >> 8
        }
        for i in 0 ..< n {
            let nk = Int(raw[i * 4 + 3])  // inverted K: 255 − K
            for c in 0 ..< 3 {
                let v = nk - muldiv255(255 - Int(raw[i * 4 + c]), nk)
                out[i * 3 + c] = UInt8(clamping: v)
            }
        }
        return out
    }

    private func check(_ rc: Int32, source: String) throws {
        guard rc != 0 else { return }
        let message = lastError()
        if tjGetErrorCode(handle) == Int32(TJERR_WARNING.rawValue) {
            // Pillow loads through libjpeg's recoverable warnings ("extraneous bytes before marker"…)
            // but refuses a file whose data ends early ("image file is truncated").
            if message.contains("Premature end") { throw ImagingError.truncated(source: source) }
            return
        }
        throw ImagingError.corrupt(source: source, reason: message)
    }

    private func lastError() -> String {
        guard let s = tjGetErrorStr2(handle) else { return "unknown libjpeg-turbo error" }
        return String(cString: s)
    }
}

/// Encodes RGB images as baseline JPEG (4:2:0, accurate DCT). Used by the demo-data generator and tests.
public final class JPEGEncoder {
    private let handle: tjhandle

    public init() {
        guard let h = tjInitCompress() else { fatalError("tjInitCompress failed: libturbojpeg is unusable") }
        handle = h
    }

    deinit { tjDestroy(handle) }

    /// - Parameters:
    ///   - image: the pixels to encode.
    ///   - quality: 1…100, libjpeg's quality scale.
    /// - Returns: the JPEG file bytes.
    public func encode(_ image: RGBImage, quality: Int = 90) throws -> [UInt8] {
        var jpegBuf: UnsafeMutablePointer<UInt8>? = nil
        var jpegSize: UInt = 0
        let rc = image.pixels.withUnsafeBufferPointer { px in
            tjCompress2(handle, px.baseAddress, Int32(image.width), 0, Int32(image.height), Int32(TJPF_RGB.rawValue),
                        &jpegBuf, &jpegSize, Int32(TJSAMP_420.rawValue), Int32(max(1, min(100, quality))),
                        TJFLAG_ACCURATEDCT)
        }
        defer { if let b = jpegBuf { tjFree(b) } }
        guard rc == 0, let b = jpegBuf else {
            let msg = tjGetErrorStr2(handle).map { String(cString: $0) } ?? "unknown error"
            throw ImagingError.encodeFailed(reason: msg)
        }
        return Array(UnsafeBufferPointer(start: b, count: Int(jpegSize)))
    }
}
