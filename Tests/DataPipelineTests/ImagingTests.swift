import Foundation
import Imaging
import SeededRandom
import XCTest

/// Fixtures written by Tests/TorchFixtureScripts/make_image_fixtures.py (Pillow 13, torchvision 0.29).
enum Fixtures {
    static var root: URL {
        Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
    }
    static func url(_ path: String) -> URL { root.appendingPathComponent(path) }
    static func bytes(_ path: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: url(path))) }

    struct ImageExpectation: Decodable {
        let name: String
        let width: Int
        let height: Int
        let resized: [Int]
        let crop_left: Int
        let crop_top: Int
        let channel_mean: [Double]
        let samples: [[Double]]
    }

    static func imageExpectations() throws -> [ImageExpectation] {
        try JSONDecoder().decode([ImageExpectation].self, from: Data(contentsOf: url("image_expectations.json")))
    }
}

final class ImagingTests: XCTestCase {
    let pre = Preprocessing.imagenet

    // A 4-pixel row halved, computed by hand from Pillow's rules: scale 2, support 2,
    // taps (3, 3, 1)/7 and (1, 3, 3)/7 → (0·3 + 70·3 + 140)/7 = 50, (70 + 140·3 + 210·3)/7 = 160.
    func testHandComputedHalving() {
        let c = ResampleCoefficients(inSize: 4, outSize: 2)
        XCTAssertEqual(c.start, [0, 1])
        XCTAssertEqual(c.count, [3, 3])
        let third = Int32((3.0 / 7.0 * 4_194_304).rounded()), seventh = Int32((1.0 / 7.0 * 4_194_304).rounded())
        XCTAssertEqual(Array(c.weights[0 ..< 3]), [third, third, seventh])
        let img = RGBImage(width: 4, height: 1, pixels: [0, 1, 2, 70, 1, 2, 140, 1, 2, 210, 1, 2])
        let out = pillowBilinearResize(img, width: 2, height: 1)
        XCTAssertEqual(out.pixels, [50, 1, 2, 160, 1, 2])
    }

    func testCoefficientsAreNormalised() {
        for (i, o) in [(1280, 341), (960, 256), (150, 256), (257, 256), (7, 3), (3, 7)] {
            let c = ResampleCoefficients(inSize: i, outSize: o)
            for x in 0 ..< o {
                let s = c.weights[x * c.ksize ..< x * c.ksize + c.count[x]].reduce(0, +)
                XCTAssertLessThanOrEqual(abs(Int(s) - (1 << 22)), c.count[x], "\(i)->\(o) pixel \(x)")
                XCTAssertGreaterThanOrEqual(c.start[x], 0)
                XCTAssertLessThanOrEqual(c.start[x] + c.count[x], i)
            }
        }
    }

    func testGeometryMatchesTorchvision() {
        XCTAssertTrue(Preprocessing.resizedSize(width: 1280, height: 960, shortSide: 256) == (341, 256))
        XCTAssertTrue(Preprocessing.resizedSize(width: 257, height: 401, shortSide: 256) == (256, 399))
        XCTAssertTrue(Preprocessing.resizedSize(width: 300, height: 300, shortSide: 256) == (256, 256))
        XCTAssertTrue(Preprocessing.resizedSize(width: 1001, height: 299, shortSide: 256) == (857, 256))
        // round half to even: (341 − 224)/2 = 58.5 → 58, (343 − 224)/2 = 59.5 → 60
        XCTAssertTrue(Preprocessing.centerCropOffsets(width: 341, height: 256, crop: 224) == (58, 16))
        XCTAssertTrue(Preprocessing.centerCropOffsets(width: 343, height: 257, crop: 224) == (60, 16))
    }

    /// The fused resize+crop computes the same pixels as a full resize followed by a crop.
    func testFusedCropEqualsFullResize() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0 ..< 6 {
            let w = Int.random(in: 30 ... 400, using: &rng), h = Int.random(in: 30 ... 400, using: &rng)
            let img = RGBImage(width: w, height: h, pixels: (0 ..< w * h * 3).map { _ in UInt8.random(in: 0 ... 255) })
            let small = Preprocessing(resizeShortSide: 24, cropSize: 20, mean: [0.5, 0.5, 0.5], std: [0.2, 0.2, 0.2])
            let size = Preprocessing.resizedSize(width: w, height: h, shortSide: 24)
            let full = pillowBilinearResize(img, width: size.width, height: size.height)
            let off = Preprocessing.centerCropOffsets(width: size.width, height: size.height, crop: 20)
            var expected: [UInt8] = []
            for y in off.top ..< off.top + 20 {
                expected += full.pixels[(y * size.width + off.left) * 3 ..< (y * size.width + off.left + 20) * 3]
            }
            XCTAssertEqual(small.crop(img), expected, "\(w)x\(h)")
        }
    }

    /// The SIMD path equals the plain path on random JPEGs of random sizes (down- and upscaling, odd sizes,
    /// a side equal to the target so one pass is skipped), reusing one decoder and plan cache across sizes.
    func testFastPathEqualsReferencePath() throws {
        let decoder = JPEGDecoder(), encoder = JPEGEncoder(), plans = ResizePlanCache()
        var rng = SplitMix64(seed: 7)
        let sizes = [(1280, 960), (256, 300), (300, 256), (224, 224), (225, 1000), (31, 17), (4000, 230), (257, 257)]
        // The horizontal pass in C (AVX-512BW) and in Swift.
        defer { ResizeCropPlan.horizontalPassInC = true }
        for (w, h) in sizes + sizes {
            ResizeCropPlan.horizontalPassInC.toggle()
            var px = [UInt8](repeating: 0, count: w * h * 3)
            for i in px.indices { px[i] = UInt8(truncatingIfNeeded: (i / 3 % w) &* 3 &+ (i / 3 / w) &* 2 &+ Int(rng.next() % 40)) }
            let jpeg = try encoder.encode(RGBImage(width: w, height: h, pixels: px), quality: 90)
            let fast = try pre.crop(jpeg: jpeg, source: "r.jpg", decoder: decoder, plans: plans)
            let reference = pre.crop(try decoder.decode(jpeg, source: "r.jpg"))
            XCTAssertEqual(fast, reference, "\(w)x\(h) horizontal pass in C: \(ResizeCropPlan.horizontalPassInC)")
            XCTAssertEqual(fast.count, 224 * 224 * 3)
        }
    }

    func testNormalizeMatchesTorch() throws {
        let data = try Data(contentsOf: Fixtures.url("normalize_lut.f32"))
        let torch = data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        XCTAssertEqual(torch.count, 768)
        // a 1×256 "crop" per channel value: run our normalize on 256 gray pixels of each value
        let p = Preprocessing(resizeShortSide: 16, cropSize: 16, mean: pre.mean, std: pre.std)
        let crop = (0 ..< 256).flatMap { v in [UInt8(v), UInt8(v), UInt8(v)] }
        let ours = p.normalize(crop)
        var worst: Float = 0
        for c in 0 ..< 3 {
            for v in 0 ..< 256 {
                let d = abs(ours[c * 256 + v] - torch[c * 256 + v])
                worst = d.isNaN ? .infinity : max(worst, d)  // max(worst, .nan) would keep worst
            }
        }
        XCTAssertLessThanOrEqual(worst, 1e-6)
    }

    /// Parity with Pillow + torchvision on the committed JPEGs: max |Δ| ≤ 2/255/std, mean |Δ| ≤ 0.5/255/std
    /// per channel, on the normalized values.
    func testParityWithTorchvision() throws {
        let decoder = JPEGDecoder()
        let plans = ResizePlanCache()
        for e in try Fixtures.imageExpectations() {
            let img = try decoder.decode(contentsOf: Fixtures.url("images/\(e.name).jpg"))
            XCTAssertEqual([img.width, img.height], [e.width, e.height], e.name)
            let size = Preprocessing.resizedSize(width: img.width, height: img.height, shortSide: 256)
            XCTAssertEqual([size.width, size.height], e.resized, e.name)
            let off = Preprocessing.centerCropOffsets(width: size.width, height: size.height, crop: 224)
            XCTAssertEqual([off.left, off.top], [e.crop_left, e.crop_top], e.name)

            // the production path (RGBX + SIMD) must give the reference path's bytes
            let crop = try pre.crop(jpeg: Data(contentsOf: Fixtures.url("images/\(e.name).jpg")), source: e.name,
                                    decoder: decoder, plans: plans)
            XCTAssertEqual(crop, pre.crop(img), e.name)
            let expected = try Fixtures.bytes("images/\(e.name).crop3.u8")
            XCTAssertEqual(expected.count, 75 * 75 * 3)
            var maxD = [Double](repeating: 0, count: 3), sumD = [Double](repeating: 0, count: 3)
            var exactBytes = 0
            for y in 0 ..< 75 {
                for x in 0 ..< 75 {
                    for c in 0 ..< 3 {
                        let ours = Int(crop[((y * 3) * 224 + x * 3) * 3 + c]), theirs = Int(expected[(y * 75 + x) * 3 + c])
                        let d = Double(abs(ours - theirs)) / 255 / Double(pre.std[c])
                        maxD[c] = max(maxD[c], d)
                        sumD[c] += d
                        if ours == theirs { exactBytes += 1 }
                    }
                }
            }
            let tensor = pre.normalize(crop)
            for c in 0 ..< 3 {
                let std = Double(pre.std[c])
                XCTAssertLessThanOrEqual(maxD[c], 2.0 / 255 / std + 1e-9, "\(e.name) channel \(c) max |Δ|")
                XCTAssertLessThanOrEqual(sumD[c] / 5625, 0.5 / 255 / std, "\(e.name) channel \(c) mean |Δ|")
                let mean = tensor[c * 50176 ..< (c + 1) * 50176].reduce(0.0) { $0 + Double($1) } / 50176
                XCTAssertEqual(mean, e.channel_mean[c], accuracy: 0.5 / 255 / std, "\(e.name) channel \(c) mean")
            }
            for s in e.samples {
                let c = Int(s[0]), y = Int(s[1]), x = Int(s[2])
                XCTAssertEqual(Double(tensor[c * 50176 + y * 224 + x]), s[3], accuracy: 2.0 / 255 / Double(pre.std[c]) + 1e-6,
                               "\(e.name) [\(c),\(y),\(x)]")
            }
            print("parity \(e.name): \(exactBytes)/\(75 * 75 * 3) sampled bytes identical, max |Δ| "
                + maxD.map { String(format: "%.4f", $0) }.joined(separator: " "))
        }
    }

    func testNotJPEGTruncatedAndCorrupt() throws {
        let decoder = JPEGDecoder()
        let good = try Fixtures.bytes("images/odd_333x257.jpg")
        XCTAssertNoThrow(try decoder.decode(good, source: "good.jpg"))

        XCTAssertThrowsError(try decoder.decode([UInt8](), source: "empty.jpg")) {
            XCTAssertEqual($0 as? ImagingError, .notJPEG(source: "empty.jpg"))
        }
        let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + [UInt8](repeating: 0, count: 64)
        XCTAssertThrowsError(try decoder.decode(png, source: "x.png")) {
            XCTAssertEqual($0 as? ImagingError, .notJPEG(source: "x.png"))
        }
        XCTAssertThrowsError(try decoder.decode(Array(good.prefix(good.count / 2)), source: "half.jpg")) {
            XCTAssertEqual($0 as? ImagingError, .truncated(source: "half.jpg"))
            XCTAssertTrue("\($0)".contains("half.jpg"))
        }
        XCTAssertThrowsError(try decoder.decode(Array(good.prefix(300)), source: "head.jpg")) {
            XCTAssertTrue("\($0)".contains("head.jpg"))
        }
        var garbage: [UInt8] = [0xFF, 0xD8]
        var rng = SplitMix64(seed: 1)
        for _ in 0 ..< 2000 { garbage.append(UInt8(truncatingIfNeeded: rng.next())) }
        XCTAssertThrowsError(try decoder.decode(garbage, source: "garbage.jpg")) {
            guard case .corrupt(let s, _)? = $0 as? ImagingError else { return XCTFail("\($0)") }
            XCTAssertEqual(s, "garbage.jpg")
        }
        let limited = JPEGDecoder(maxPixels: 333 * 257 - 1)
        XCTAssertThrowsError(try limited.decode(good, source: "big.jpg")) {
            XCTAssertEqual($0 as? ImagingError, .tooManyPixels(source: "big.jpg", width: 333, height: 257,
                                                                limit: 333 * 257 - 1))
        }
    }

    /// Mutated JPEGs never crash the decoder: they decode or throw an ImagingError.
    func testMutatedJPEGsNeverCrash() throws {
        let decoder = JPEGDecoder(), plans = ResizePlanCache()
        let good = try Fixtures.bytes("images/upscale_150x201.jpg")
        var rng = SplitMix64(seed: 42)
        var errors = 0
        for _ in 0 ..< 300 {
            var b = good
            for _ in 0 ..< 1 + Int(rng.next() % 8) {
                b[Int(rng.next() % UInt64(b.count))] = UInt8(truncatingIfNeeded: rng.next())
            }
            if rng.next() % 4 == 0 { b = Array(b.prefix(Int(rng.next() % UInt64(b.count)))) }
            do {
                let img = try decoder.decode(b, source: "m.jpg")
                _ = pre.crop(img)
            } catch is ImagingError {
                errors += 1
            }
            // The production path decodes only the crop's region, through libjpeg's own API.
            do {
                _ = try pre.crop(jpeg: b, source: "m.jpg", decoder: decoder, plans: plans)
            } catch is ImagingError {
                errors += 1
            }
        }
        XCTAssertGreaterThan(errors, 0)
    }

    /// The production path decodes only the rows and columns the crop reads, yet a file cut short anywhere —
    /// inside the region or below it — is refused, as Pillow refuses it.
    func testRegionDecodeStillSeesTruncation() throws {
        let decoder = JPEGDecoder(), plans = ResizePlanCache(), encoder = JPEGEncoder()
        var rng = SplitMix64(seed: 3)
        let (w, h) = (1280, 960)
        let px = (0 ..< w * h * 3).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let jpeg = try encoder.encode(RGBImage(width: w, height: h, pixels: px), quality: 90)
        let plan = plans.plan(inWidth: w, inHeight: h, preprocessing: pre)
        XCTAssertLessThan(plan.sourceRows.upperBound, h, "the crop does not read the last rows")
        XCTAssertGreaterThan(plan.sourceColumns.lowerBound, 0, "nor the first columns")
        for keep in [0.5, 0.995] {
            let cut = Array(jpeg.prefix(Int(Double(jpeg.count) * keep)))
            XCTAssertThrowsError(try pre.crop(jpeg: cut, source: "cut.jpg", decoder: decoder, plans: plans)) {
                XCTAssertEqual($0 as? ImagingError, .truncated(source: "cut.jpg"), "kept \(keep)")
            }
        }
        XCTAssertEqual(try pre.crop(jpeg: jpeg, source: "whole.jpg", decoder: decoder, plans: plans),
                       pre.crop(try decoder.decode(jpeg, source: "whole.jpg")))
    }

    func testGrayAndCMYKAreConvertedToRGB() throws {
        let decoder = JPEGDecoder()
        let gray = try decoder.decode(contentsOf: Fixtures.url("images/gray_321x243.jpg"))
        for i in stride(from: 0, to: gray.pixels.count, by: 3 * 97) {
            XCTAssertEqual(gray.pixels[i], gray.pixels[i + 1])
            XCTAssertEqual(gray.pixels[i], gray.pixels[i + 2])
        }
        let cmyk = try decoder.decode(contentsOf: Fixtures.url("images/cmyk_200x230.jpg"))
        XCTAssertEqual(cmyk.pixels.count, 200 * 230 * 3)
    }

    func testEncodeDecodeRoundTrip() throws {
        let w = 97, h = 61
        var px = [UInt8](repeating: 0, count: w * h * 3)
        for y in 0 ..< h { for x in 0 ..< w { for c in 0 ..< 3 { px[(y * w + x) * 3 + c] = UInt8(x + y + c * 30) } } }
        let jpeg = try JPEGEncoder().encode(RGBImage(width: w, height: h, pixels: px), quality: 95)
        let back = try JPEGDecoder().decode(jpeg, source: "rt.jpg")
        XCTAssertEqual([back.width, back.height], [w, h])
        let meanErr = zip(px, back.pixels).map { abs(Int($0) - Int($1)) }.reduce(0, +) / px.count
        XCTAssertLessThan(meanErr, 3)
    }
}
