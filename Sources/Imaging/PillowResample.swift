// Pillow's `Image.resize(size, Image.BILINEAR)` for 8-bit RGB, reproduced bit for bit.
//
// The algorithm is Pillow's libImaging/Resample.c (https://github.com/python-pillow/Pillow, "precompute_coeffs",
// "normalize_coeffs_8bpc", "ImagingResampleHorizontal_8bpc", "ImagingResampleVertical_8bpc",
// "ImagingResampleInner"): a separable triangle filter whose support is scaled by the downscale factor
// (so it antialiases), coefficients computed in double, normalised to sum 1, then rounded to 22-bit
// fixed point; horizontal pass first into an 8-bit image, then the vertical pass; each pass
// accumulates from 0.5 (1 << 21) and clips to 0…255 after a right shift.
import CImaging

/// Filter taps of one resampling pass, one row of `ksize` fixed-point weights per output pixel.
public struct ResampleCoefficients: Sendable {
    /// Pillow's PRECISION_BITS for 8-bit images: 32 − 8 − 2.
    public static let precisionBits = 22

    public let inSize: Int
    public let outSize: Int
    /// Maximum taps per output pixel.
    public let ksize: Int
    /// First input index used by output pixel `i`.
    public let start: [Int]
    /// Number of input pixels used by output pixel `i`.
    public let count: [Int]
    /// `outSize * ksize` weights in 22-bit fixed point (row `i` is output pixel `i`).
    public let weights: [Int32]

    /// - Parameters:
    ///   - inSize: input length (> 0).
    ///   - outSize: output length (> 0).
    public init(inSize: Int, outSize: Int) {
        precondition(inSize > 0 && outSize > 0)
        let scale = Double(inSize) / Double(outSize)
        let filterscale = max(scale, 1.0)
        let support = 1.0 * filterscale  // the bilinear (triangle) filter has support 1
        let ksize = Int(support.rounded(.up)) * 2 + 1
        var start = [Int](repeating: 0, count: outSize)
        var count = [Int](repeating: 0, count: outSize)
        var weights = [Int32](repeating: 0, count: outSize * ksize)
        var k = [Double](repeating: 0, count: ksize)
        let ss = 1.0 / filterscale
        for xx in 0 ..< outSize {
            let center = (Double(xx) + 0.5) * scale
            // Pillow truncates toward zero with a C cast after adding 0.5.
            let xmin = max(Int(center - support + 0.5), 0)
            let xmax = min(Int(center + support + 0.5), inSize) - xmin
            var ww = 0.0
            for x in 0 ..< ksize { k[x] = 0 }
            for x in 0 ..< max(xmax, 0) {
                var t = (Double(x + xmin) - center + 0.5) * ss
                if t < 0 { t = -t }
                let w = t < 1.0 ? 1.0 - t : 0.0
                k[x] = w
                ww += w
            }
            for x in 0 ..< max(xmax, 0) where ww != 0.0 {
                k[x] /= ww
            }
            let one = Double(1 << ResampleCoefficients.precisionBits)
            for x in 0 ..< ksize {
                let v = k[x] < 0 ? Int32(-0.5 + k[x] * one) : Int32(0.5 + k[x] * one)
                weights[xx * ksize + x] = v
            }
            start[xx] = xmin
            count[xx] = max(xmax, 0)
        }
        self.inSize = inSize
        self.outSize = outSize
        self.ksize = ksize
        self.start = start
        self.count = count
        self.weights = weights
    }
}

@inline(__always)
private func clip8(_ v: Int32) -> UInt8 {
    if v >= Int32(1 << 30) { return 255 }
    if v <= 0 { return 0 }
    return UInt8(truncatingIfNeeded: v >> 22)
}

/// Horizontal pass over rows `rowFirst ..< rowFirst + rows` of `src` (width `srcWidth`, RGB), producing output
/// columns `colFirst ..< colFirst + cols` into `dst` (rows × cols × 3).
private func resampleHorizontal(dst: UnsafeMutablePointer<UInt8>, src: UnsafePointer<UInt8>, srcWidth: Int,
                                rowFirst: Int, rows: Int, colFirst: Int, cols: Int, coeffs c: ResampleCoefficients) {
    let ksize = c.ksize
    c.weights.withUnsafeBufferPointer { wts in
        c.start.withUnsafeBufferPointer { starts in
            c.count.withUnsafeBufferPointer { counts in
                for r in 0 ..< rows {
                    let srow = src + (rowFirst + r) * srcWidth * 3
                    let drow = dst + r * cols * 3
                    for xo in 0 ..< cols {
                        let xx = colFirst + xo
                        let k = wts.baseAddress! + xx * ksize
                        let p = srow + starts[xx] * 3
                        var s0: Int32 = 1 << 21, s1: Int32 = 1 << 21, s2: Int32 = 1 << 21
                        for x in 0 ..< counts[xx] {
                            let w = k[x]
                            s0 &+= Int32(p[x * 3]) &* w
                            s1 &+= Int32(p[x * 3 + 1]) &* w
                            s2 &+= Int32(p[x * 3 + 2]) &* w
                        }
                        drow[xo * 3] = clip8(s0)
                        drow[xo * 3 + 1] = clip8(s1)
                        drow[xo * 3 + 2] = clip8(s2)
                    }
                }
            }
        }
    }
}

/// Vertical pass: output rows `rowFirst ..< rowFirst + rows` into `dst` (rows × rowBytes), reading `src` whose
/// row 0 is input row `srcRowOffset`; each row has `rowBytes` bytes.
private func resampleVertical(dst: UnsafeMutablePointer<UInt8>, src: UnsafePointer<UInt8>, srcRowOffset: Int,
                              rowBytes: Int, rowFirst: Int, rows: Int, coeffs c: ResampleCoefficients) {
    let ksize = c.ksize
    var acc = [Int32](repeating: 0, count: rowBytes)
    acc.withUnsafeMutableBufferPointer { accBuf in
        let a = accBuf.baseAddress!
        c.weights.withUnsafeBufferPointer { wts in
            for r in 0 ..< rows {
                let yy = rowFirst + r
                let k = wts.baseAddress! + yy * ksize
                let first = c.start[yy] - srcRowOffset
                for j in 0 ..< rowBytes { a[j] = 1 << 21 }
                for y in 0 ..< c.count[yy] {
                    let w = k[y]
                    let s = src + (first + y) * rowBytes
                    for j in 0 ..< rowBytes { a[j] &+= Int32(s[j]) &* w }
                }
                let d = dst + r * rowBytes
                for j in 0 ..< rowBytes { d[j] = clip8(a[j]) }
            }
        }
    }
}

/// Resizes and crops in one go: the result equals Pillow's `image.resize((width, height), BILINEAR)`
/// followed by a crop of `cropWidth × cropHeight` at (`cropLeft`, `cropTop`), but only the pixels the crop
/// keeps are computed (each output pixel of a separable pass depends only on its own filter taps).
///
/// - Parameters:
///   - image: the source image.
///   - width: resized width (Pillow's `size[0]`).
///   - height: resized height.
///   - cropLeft: first column kept, 0 ≤ cropLeft, cropLeft + cropWidth ≤ width.
///   - cropTop: first row kept.
///   - cropWidth: columns kept.
///   - cropHeight: rows kept.
///   - horizontal: coefficients for `image.width → width` (pass to reuse them across images), else computed.
///   - vertical: coefficients for `image.height → height`.
/// - Returns: `cropHeight × cropWidth × 3` bytes, interleaved RGB.
public func pillowBilinearResizeCrop(_ image: RGBImage, width: Int, height: Int,
                                     cropLeft: Int, cropTop: Int, cropWidth: Int, cropHeight: Int,
                                     horizontal: ResampleCoefficients? = nil,
                                     vertical: ResampleCoefficients? = nil) -> [UInt8] {
    precondition(width > 0 && height > 0 && cropWidth > 0 && cropHeight > 0)
    precondition(cropLeft >= 0 && cropTop >= 0 && cropLeft + cropWidth <= width && cropTop + cropHeight <= height)
    // Pillow skips a pass whose size does not change.
    let needH = width != image.width
    let needV = height != image.height
    var out = [UInt8](repeating: 0, count: cropWidth * cropHeight * 3)
    let rowBytes = cropWidth * 3
    image.pixels.withUnsafeBufferPointer { srcBuf in
        let src = srcBuf.baseAddress!
        out.withUnsafeMutableBufferPointer { outBuf in
            let dst = outBuf.baseAddress!
            let vc: ResampleCoefficients? = needV
                ? (vertical.flatMap { $0.inSize == image.height && $0.outSize == height ? $0 : nil }
                    ?? ResampleCoefficients(inSize: image.height, outSize: height))
                : nil
            // Input rows the kept output rows need.
            let rowFirst: Int, rowEnd: Int
            if let vc {
                rowFirst = vc.start[cropTop]
                let last = cropTop + cropHeight - 1
                rowEnd = vc.start[last] + vc.count[last]
            } else {
                rowFirst = cropTop
                rowEnd = cropTop + cropHeight
            }
            let rows = rowEnd - rowFirst
            var temp = [UInt8](repeating: 0, count: rows * rowBytes)
            temp.withUnsafeMutableBufferPointer { tBuf in
                let t = tBuf.baseAddress!
                if needH {
                    let hc = horizontal.flatMap { $0.inSize == image.width && $0.outSize == width ? $0 : nil }
                        ?? ResampleCoefficients(inSize: image.width, outSize: width)
                    resampleHorizontal(dst: t, src: src, srcWidth: image.width, rowFirst: rowFirst, rows: rows,
                                       colFirst: cropLeft, cols: cropWidth, coeffs: hc)
                } else {
                    for r in 0 ..< rows {
                        (t + r * rowBytes).update(from: src + ((rowFirst + r) * image.width + cropLeft) * 3,
                                                  count: rowBytes)
                    }
                }
                if let vc {
                    resampleVertical(dst: dst, src: t, srcRowOffset: rowFirst, rowBytes: rowBytes,
                                     rowFirst: cropTop, rows: cropHeight, coeffs: vc)
                } else {
                    dst.update(from: t, count: rows * rowBytes)
                }
            }
        }
    }
    return out
}

/// Pillow's `image.resize((width, height), Image.BILINEAR)` for an RGB image.
public func pillowBilinearResize(_ image: RGBImage, width: Int, height: Int) -> RGBImage {
    RGBImage(width: width, height: height,
             pixels: pillowBilinearResizeCrop(image, width: width, height: height, cropLeft: 0, cropTop: 0,
                                              cropWidth: width, cropHeight: height))
}

// MARK: - SIMD path on RGBX pixels

/// Everything needed to turn an `inWidth × inHeight` image into the center crop, computed once per image size:
/// the Pillow coefficients of both passes and the horizontal taps regrouped for 8-lane integer SIMD over RGBX
/// pixels (one vector = two taps × four channels; taps past a pixel's own are zero).
public final class ResizeCropPlan: @unchecked Sendable {
    public let inWidth, inHeight, outWidth, outHeight: Int
    public let cropLeft, cropTop, cropWidth, cropHeight: Int
    public let horizontal: ResampleCoefficients
    public let vertical: ResampleCoefficients
    /// SIMD vectors per output column (`ceil(ksize / 2)`).
    let vectors: Int
    /// First source pixel per crop column.
    let starts: [Int]
    /// `cropWidth * vectors` weight vectors.
    let simdWeights: [SIMD8<Int32>]
    /// Whether the SIMD path's over-reads stay inside the decoder's padding.
    let simdUsable: Bool
    /// The source rows and columns the crop reads, widened by `regionMargin` (clamped to the image): all a
    /// decoder has to produce for this plan.
    public let sourceRows: Range<Int>
    public let sourceColumns: Range<Int>
    /// Whether the horizontal pass may run in C (AVX-512BW, where the CPU has it) rather than in the Swift
    /// loop; both give the same bytes. For tests and benchmarks; set it before any resize runs.
    nonisolated(unsafe) public static var horizontalPassInC = true
    /// Pixels decoded beyond what the filters read, so that a region decoder's own edge handling (chroma
    /// upsampling at a cropped edge) never reaches a pixel the resize uses.
    static let regionMargin = 16
    /// The horizontal taps for the C pass (`ci_resample_horizontal_rgbx`): per crop column, `cTaps` weights
    /// (a multiple of 8, zero-padded) split as hi·2^11 + lo; nil when a weight is negative or too wide for that
    /// split, or the taps would read past the decoder's padding (the Swift loop runs then).
    let cTaps: Int
    let cStarts: [Int32]
    let cWeightsHigh: [Int16]
    let cWeightsLow: [Int16]

    public init(inWidth: Int, inHeight: Int, outWidth: Int, outHeight: Int,
                cropLeft: Int, cropTop: Int, cropWidth: Int, cropHeight: Int) {
        precondition(cropLeft >= 0 && cropTop >= 0 && cropLeft + cropWidth <= outWidth && cropTop + cropHeight <= outHeight)
        self.inWidth = inWidth; self.inHeight = inHeight; self.outWidth = outWidth; self.outHeight = outHeight
        self.cropLeft = cropLeft; self.cropTop = cropTop; self.cropWidth = cropWidth; self.cropHeight = cropHeight
        let h = ResampleCoefficients(inSize: inWidth, outSize: outWidth)
        horizontal = h
        vertical = ResampleCoefficients(inSize: inHeight, outSize: outHeight)
        let vectors = (h.ksize + 1) / 2
        self.vectors = vectors
        var starts = [Int](repeating: 0, count: cropWidth)
        var w = [SIMD8<Int32>](repeating: .zero, count: cropWidth * vectors)
        for xo in 0 ..< cropWidth {
            let xx = cropLeft + xo
            starts[xo] = h.start[xx]
            for t in 0 ..< h.count[xx] {
                let v = h.weights[xx * h.ksize + t]
                for c in 0 ..< 4 { w[xo * vectors + t / 2][(t % 2) * 4 + c] = v }
            }
        }
        self.starts = starts
        simdWeights = w
        simdUsable = (2 * vectors + 1) * 4 + 64 <= RGBXBuffer.padding
        let taps = (h.ksize + 7) / 8 * 8
        var high = [Int16](repeating: 0, count: cropWidth * taps), low = high
        var splittable = taps * 4 + 64 <= RGBXBuffer.padding
        for xo in 0 ..< cropWidth where splittable {
            let xx = cropLeft + xo
            for t in 0 ..< h.count[xx] {
                let v = h.weights[xx * h.ksize + t]
                guard v >= 0, v < 1 << 26 else { splittable = false; break }
                high[xo * taps + t] = Int16(v >> 11)
                low[xo * taps + t] = Int16(v & 2047)
            }
        }
        cTaps = splittable ? taps : 0
        cStarts = starts.map { Int32($0) }
        cWeightsHigh = high
        cWeightsLow = low
        let v = vertical, margin = Self.regionMargin
        let lastRow = cropTop + cropHeight - 1, lastColumn = cropLeft + cropWidth - 1
        let rowsRead = outHeight == inHeight ? cropTop ..< cropTop + cropHeight
                                             : v.start[cropTop] ..< v.start[lastRow] + v.count[lastRow]
        let columnsRead = outWidth == inWidth ? cropLeft ..< cropLeft + cropWidth
                                              : h.start[cropLeft] ..< h.start[lastColumn] + h.count[lastColumn]
        sourceRows = max(0, rowsRead.lowerBound - margin) ..< min(inHeight, rowsRead.upperBound + margin)
        sourceColumns = max(0, columnsRead.lowerBound - margin) ..< min(inWidth, columnsRead.upperBound + margin)
    }
}

// Pillow's clip8 after the shift, branch-free: max(0, ·) then min(255, ·) with sign masks (lane-wise
// comparisons would make Swift build the mask one lane at a time).
@inline(__always)
private func clampToByte(_ v: SIMD4<Int32>) -> SIMD4<Int32> {
    let pos = v & ~(v &>> 31)
    let over = pos &- 255
    return pos &- (over & ~(over &>> 31))
}

@inline(__always)
private func clampToByte(_ v: SIMD8<Int32>) -> SIMD8<Int32> {
    let pos = v & ~(v &>> 31)
    let over = pos &- 255
    return pos &- (over & ~(over &>> 31))
}

/// `pillowBilinearResizeCrop` on an RGBX buffer (4 bytes per pixel, `RGBXBuffer.padding` readable
/// bytes after the last pixel) with 8-lane integer SIMD: the sums are the same integers, so the bytes are
/// identical. Returns the crop as interleaved RGB.
/// - Parameter scratch: reusable working memory of the calling thread (the decoder's).
func pillowBilinearResizeCropRGBX(_ src: UnsafePointer<UInt8>, plan: ResizeCropPlan, scratch: ScratchBuffer) -> [UInt8] {
    let needH = plan.outWidth != plan.inWidth
    let needV = plan.outHeight != plan.inHeight
    let cols = plan.cropWidth
    let vc = plan.vertical
    let rowFirst: Int, rowEnd: Int
    if needV {
        rowFirst = vc.start[plan.cropTop]
        let last = plan.cropTop + plan.cropHeight - 1
        rowEnd = vc.start[last] + vc.count[last]
    } else {
        rowFirst = plan.cropTop
        rowEnd = plan.cropTop + plan.cropHeight
    }
    let rows = rowEnd - rowFirst
    let tempRowBytes = cols * 4
    let vecsPerRow = (tempRowBytes + 7) / 8
    let temp = scratch.bytes(rows * tempRowBytes + 64 + vecsPerRow * 32)
    (temp + rows * tempRowBytes).initialize(repeating: 0, count: 32)
    // the vertical accumulators live after the intermediate rows, 32-byte aligned
    let accOffset = (rows * tempRowBytes + 32 + 31) & ~31

    let doneInC = needH && ResizeCropPlan.horizontalPassInC && plan.cTaps > 0 && plan.cStarts.withUnsafeBufferPointer { starts in
        plan.cWeightsHigh.withUnsafeBufferPointer { high in
            plan.cWeightsLow.withUnsafeBufferPointer { low in
                ci_resample_horizontal_rgbx(temp, tempRowBytes, src + rowFirst * plan.inWidth * 4, plan.inWidth * 4,
                                            Int32(rows), Int32(cols), starts.baseAddress, high.baseAddress,
                                            low.baseAddress, Int32(plan.cTaps)) != 0
            }
        }
    }
    if doneInC {
        // The C pass wrote the intermediate rows.
    } else if needH {
        plan.simdWeights.withUnsafeBufferPointer { wBuf in
            plan.starts.withUnsafeBufferPointer { starts in
                let vectors = plan.vectors
                let bias = SIMD4<Int32>(repeating: 1 << 21)
                for r in 0 ..< rows {
                    let srow = UnsafeRawPointer(src + (rowFirst + r) * plan.inWidth * 4)
                    let drow = UnsafeMutableRawPointer(temp + r * tempRowBytes)
                    for xo in 0 ..< cols {
                        let p = srow + starts[xo] * 4
                        let wp = wBuf.baseAddress! + xo * vectors
                        var acc = SIMD8<Int32>.zero
                        for v in 0 ..< vectors {
                            let px = p.loadUnaligned(fromByteOffset: v * 8, as: SIMD8<UInt8>.self)
                            acc &+= SIMD8<Int32>(truncatingIfNeeded: px) &* wp[v]
                        }
                        let s = clampToByte((acc.lowHalf &+ acc.highHalf &+ bias) &>> 22)
                        drow.storeBytes(of: SIMD4<UInt8>(truncatingIfNeeded: s), toByteOffset: xo * 4,
                                        as: SIMD4<UInt8>.self)
                    }
                }
            }
        }
    } else {
        for r in 0 ..< rows {
            (temp + r * tempRowBytes).update(from: src + ((rowFirst + r) * plan.inWidth + plan.cropLeft) * 4,
                                             count: tempRowBytes)
        }
    }

    var out = [UInt8](repeating: 0, count: cols * plan.cropHeight * 3)
    out.withUnsafeMutableBufferPointer { outBuf in
        let dst = outBuf.baseAddress!
        guard needV else {
            for r in 0 ..< plan.cropHeight {
                for x in 0 ..< cols {
                    for c in 0 ..< 3 { dst[(r * cols + x) * 3 + c] = temp[r * tempRowBytes + x * 4 + c] }
                }
            }
            return
        }
        let acc = UnsafeMutableRawPointer(temp + accOffset).bindMemory(to: SIMD8<Int32>.self, capacity: vecsPerRow)
        vc.weights.withUnsafeBufferPointer { wts in
            for r in 0 ..< plan.cropHeight {
                let yy = plan.cropTop + r
                let k = wts.baseAddress! + yy * vc.ksize
                let first = vc.start[yy] - rowFirst
                acc.initialize(repeating: SIMD8(repeating: 1 << 21), count: vecsPerRow)
                for y in 0 ..< vc.count[yy] {
                    let w = SIMD8<Int32>(repeating: k[y])
                    let s = UnsafeRawPointer(temp + (first + y) * tempRowBytes)
                    for j in 0 ..< vecsPerRow {
                        let px = s.loadUnaligned(fromByteOffset: j * 8, as: SIMD8<UInt8>.self)
                        acc[j] &+= SIMD8<Int32>(truncatingIfNeeded: px) &* w
                    }
                }
                let d = dst + r * cols * 3
                for j in 0 ..< vecsPerRow {
                    let s = clampToByte(acc[j] &>> 22)
                    let x0 = j * 2
                    d[x0 * 3] = UInt8(truncatingIfNeeded: s[0])
                    d[x0 * 3 + 1] = UInt8(truncatingIfNeeded: s[1])
                    d[x0 * 3 + 2] = UInt8(truncatingIfNeeded: s[2])
                    if x0 + 1 < cols {
                        d[x0 * 3 + 3] = UInt8(truncatingIfNeeded: s[4])
                        d[x0 * 3 + 4] = UInt8(truncatingIfNeeded: s[5])
                        d[x0 * 3 + 5] = UInt8(truncatingIfNeeded: s[6])
                    }
                }
            }
        }
    }
    return out
}

/// Growable working memory owned by one thread (64-byte aligned, never shrinks).
final class ScratchBuffer {
    private var pointer: UnsafeMutableRawPointer?
    private var capacity = 0

    /// At least `count` bytes, valid until the next call; contents undefined.
    func bytes(_ count: Int) -> UnsafeMutablePointer<UInt8> {
        if count > capacity {
            pointer?.deallocate()
            pointer = UnsafeMutableRawPointer.allocate(byteCount: count, alignment: 64)
            capacity = count
        }
        return pointer!.assumingMemoryBound(to: UInt8.self)
    }

    deinit { pointer?.deallocate() }
}
