import Foundation

/// torchvision's evaluation transform on a Pillow image:
/// `Resize(resizeShortSide)`, `CenterCrop(cropSize)`, `ToTensor()`, `Normalize(mean, std)`.
///
/// The geometry (`resizedSize`, `centerCropOffsets`) follows torchvision's `_compute_resized_output_size` and
/// `center_crop`; the resize is Pillow's BILINEAR (see `pillowBilinearResizeCrop`); the arithmetic of
/// `ToTensor`/`Normalize` is float32 `(p / 255 − mean) / std`, tabulated per channel and byte value.
public struct Preprocessing: Sendable {
    public let resizeShortSide: Int
    public let cropSize: Int
    public let mean: [Float]
    public let std: [Float]
    /// `3 × 256` normalized values: `lut[c * 256 + p]`.
    private let lut: [Float]

    /// ImageNet mean and std, as the seed script uses them.
    public static let imagenet = Preprocessing(resizeShortSide: 256, cropSize: 224,
                                               mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225])

    /// - Parameters:
    ///   - resizeShortSide: the shorter side after resizing (torchvision `Resize(int)`).
    ///   - cropSize: side of the square center crop; ≤ resizeShortSide.
    ///   - mean: per-channel mean (3 values).
    ///   - std: per-channel std (3 values, > 0).
    public init(resizeShortSide: Int, cropSize: Int, mean: [Float], std: [Float]) {
        precondition(cropSize > 0 && cropSize <= resizeShortSide && mean.count == 3 && std.count == 3)
        self.resizeShortSide = resizeShortSide
        self.cropSize = cropSize
        self.mean = mean
        self.std = std
        var lut = [Float](repeating: 0, count: 3 * 256)
        for c in 0 ..< 3 {
            for p in 0 ..< 256 {
                lut[c * 256 + p] = (Float(p) / 255 - mean[c]) / std[c]
            }
        }
        self.lut = lut
    }

    /// torchvision `Resize(short)` output size for a `width × height` image: the shorter side becomes `short`,
    /// the longer `int(short * long / short_in)` (Python float arithmetic, truncated).
    public static func resizedSize(width: Int, height: Int, shortSide: Int) -> (width: Int, height: Int) {
        let short = min(width, height), long = max(width, height)
        let newLong = Int(Double(shortSide * long) / Double(short))
        return width <= height ? (shortSide, newLong) : (newLong, shortSide)
    }

    /// torchvision `center_crop` offsets: `int(round((size − crop) / 2.0))` with Python's round (halves to even).
    public static func centerCropOffsets(width: Int, height: Int, crop: Int) -> (left: Int, top: Int) {
        let left = (Double(width - crop) / 2.0).rounded(.toNearestOrEven)
        let top = (Double(height - crop) / 2.0).rounded(.toNearestOrEven)
        return (Int(left), Int(top))
    }

    /// Longest resized side accepted: beyond it an image's aspect ratio is absurd for this job (and the filter
    /// tables would not fit in memory).
    public static let maxResizedSide = 1 << 16

    /// Resize + center crop, kept as bytes (`cropSize × cropSize × 3`, interleaved RGB): the form the
    /// loader caches. This is the plain (reference) path; `crop(encoded:…)` is the fast one.
    public func crop(_ image: RGBImage, plans: ResizePlanCache? = nil) -> [UInt8] {
        let plan = plans?.plan(inWidth: image.width, inHeight: image.height, preprocessing: self)
            ?? ResizePlanCache.makePlan(inWidth: image.width, inHeight: image.height, preprocessing: self)
        return pillowBilinearResizeCrop(image, width: plan.outWidth, height: plan.outHeight,
                                        cropLeft: plan.cropLeft, cropTop: plan.cropTop,
                                        cropWidth: cropSize, cropHeight: cropSize,
                                        horizontal: plan.horizontal, vertical: plan.vertical)
    }

    /// Decode + resize + center crop straight from JPEG bytes, with the decoder's reusable RGBX buffer and the
    /// SIMD resampler: the same bytes as `crop(decoder.decode(jpeg))`, faster.
    /// - Parameters:
    ///   - jpeg: the JPEG file's bytes.
    ///   - source: the file name for errors.
    ///   - decoder: a decoder owned by the calling thread.
    ///   - plans: shared filter tables (one entry per image size).
    /// - Returns: `cropSize × cropSize × 3` bytes, interleaved RGB.
    public func crop<Bytes: ContiguousBytes>(jpeg: Bytes, source: String, decoder: JPEGDecoder,
                                             plans: ResizePlanCache) throws -> [UInt8] {
        let size = try decoder.header(jpeg, source: source)
        let plan = try checkedPlan(width: size.width, height: size.height, source: source, plans: plans)
        guard plan.simdUsable else { return crop(try decoder.decode(jpeg, source: source), plans: plans) }
        let decoded = try decoder.decodeRGBX(jpeg, source: source, region: (plan.sourceRows, plan.sourceColumns))
        return pillowBilinearResizeCropRGBX(decoded.pixels, plan: plan, scratch: decoder.resizeScratch)
    }

    /// `crop(jpeg:…)` for PNG bytes: the same bytes as `crop(decoder.decode(png))`, faster. PNG rows depend
    /// on the rows before them, so the whole image is decoded.
    /// - Parameters:
    ///   - png: the PNG file's bytes.
    ///   - source: the file name for errors.
    ///   - decoder: a decoder owned by the calling thread.
    ///   - plans: shared filter tables (one entry per image size).
    /// - Returns: `cropSize × cropSize × 3` bytes, interleaved RGB.
    public func crop<Bytes: ContiguousBytes>(png: Bytes, source: String, decoder: PNGDecoder,
                                             plans: ResizePlanCache) throws -> [UInt8] {
        let header = try decoder.header(png, source: source)
        let plan = try checkedPlan(width: header.width, height: header.height, source: source, plans: plans)
        guard plan.simdUsable else { return crop(try decoder.decode(png, source: source), plans: plans) }
        let decoded = try decoder.decodeRGBX(png, source: source)
        return pillowBilinearResizeCropRGBX(decoded.pixels, plan: plan, scratch: decoder.resizeScratch)
    }

    /// Decode + resize + center crop of a JPEG or PNG file's bytes, told apart by their first bytes: the
    /// loader's path.
    /// - Parameters:
    ///   - encoded: the image file's bytes.
    ///   - source: the file name for errors.
    ///   - decoder: a decoder owned by the calling thread.
    ///   - plans: shared filter tables (one entry per image size).
    /// - Returns: `cropSize × cropSize × 3` bytes, interleaved RGB.
    /// - Throws: `ImagingError.unsupportedFormat` for any other format, or the decoder's error.
    public func crop<Bytes: ContiguousBytes>(encoded: Bytes, source: String, decoder: ImageDecoder,
                                             plans: ResizePlanCache) throws -> [UInt8] {
        switch try ImageFormat(of: encoded, source: source) {
        case .jpeg: return try crop(jpeg: encoded, source: source, decoder: decoder.jpeg, plans: plans)
        case .png: return try crop(png: encoded, source: source, decoder: decoder.png, plans: plans)
        }
    }

    /// The resize/crop plan of a `width × height` image, refusing aspect ratios too extreme to resize.
    private func checkedPlan(width: Int, height: Int, source: String, plans: ResizePlanCache) throws
        -> ResizeCropPlan {
        let resized = Self.resizedSize(width: width, height: height, shortSide: resizeShortSide)
        guard max(resized.width, resized.height) <= Self.maxResizedSide else {
            throw ImagingError.unsupportedSize(source: source, width: width, height: height)
        }
        return plans.plan(inWidth: width, inHeight: height, preprocessing: self)
    }

    /// `ToTensor` + `Normalize` of an interleaved crop into planar CHW float32.
    /// - Parameters:
    ///   - crop: `cropSize² × 3` bytes, interleaved RGB.
    ///   - output: room for `3 × cropSize²` floats, written as channel planes R, G, B.
    public func normalize(_ crop: [UInt8], into output: UnsafeMutablePointer<Float>) {
        let plane = cropSize * cropSize
        precondition(crop.count == plane * 3)
        lut.withUnsafeBufferPointer { l in
            crop.withUnsafeBufferPointer { c in
                let lr = l.baseAddress!, lg = lr + 256, lb = lr + 512
                let o0 = output, o1 = output + plane, o2 = output + 2 * plane
                for i in 0 ..< plane {
                    o0[i] = lr[Int(c[i * 3])]
                    o1[i] = lg[Int(c[i * 3 + 1])]
                    o2[i] = lb[Int(c[i * 3 + 2])]
                }
            }
        }
    }

    /// `ToTensor` + `Normalize` into a new `[3, cropSize, cropSize]` array.
    public func normalize(_ crop: [UInt8]) -> [Float] {
        var out = [Float](repeating: 0, count: crop.count)
        out.withUnsafeMutableBufferPointer { normalize(crop, into: $0.baseAddress!) }
        return out
    }

    /// The whole transform on a decoded image: `[3, cropSize, cropSize]` float32.
    public func tensor(_ image: RGBImage, plans: ResizePlanCache? = nil) -> [Float] {
        normalize(crop(image, plans: plans))
    }
}

/// Resize/crop plans per input size, computed once: every frame of a fixed camera has the same size.
/// Thread-safe.
public final class ResizePlanCache: @unchecked Sendable {
    private var plans: [[Int]: ResizeCropPlan] = [:]
    private let lock = NSLock()

    public init() {}

    /// The plan of `preprocessing` for an `inWidth × inHeight` image.
    public func plan(inWidth: Int, inHeight: Int, preprocessing p: Preprocessing) -> ResizeCropPlan {
        let key = [inWidth, inHeight, p.resizeShortSide, p.cropSize]
        lock.lock()
        if let plan = plans[key] { lock.unlock(); return plan }
        lock.unlock()
        let plan = Self.makePlan(inWidth: inWidth, inHeight: inHeight, preprocessing: p)
        lock.lock()
        if plans.count < 64 { plans[key] = plan }
        lock.unlock()
        return plan
    }

    static func makePlan(inWidth: Int, inHeight: Int, preprocessing p: Preprocessing) -> ResizeCropPlan {
        let size = Preprocessing.resizedSize(width: inWidth, height: inHeight, shortSide: p.resizeShortSide)
        let off = Preprocessing.centerCropOffsets(width: size.width, height: size.height, crop: p.cropSize)
        return ResizeCropPlan(inWidth: inWidth, inHeight: inHeight, outWidth: size.width, outHeight: size.height,
                              cropLeft: off.left, cropTop: off.top, cropWidth: p.cropSize, cropHeight: p.cropSize)
    }
}
