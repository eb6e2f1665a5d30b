import DataPipeline
import FileIO
import Foundation
import Imaging
import SeededRandom
import XCTest

/// One PNG fixture as Tests/TorchFixtureScripts/make_png_fixtures.py describes it (Pillow 13.0, torchvision 0.29.2).
struct PNGExpectation: Decodable {
    let name: String
    let kind: String
    let pillow_mode: String
    let interlaced: Bool
    let width: Int
    let height: Int
    /// CRC-32 of Pillow's whole decoded RGB image.
    let decoded_crc32: UInt32
    /// CRC-32 of the whole 224 × 224 × 3 uint8 crop.
    let crop_crc32: UInt32
    let resized: [Int]
    let crop_left: Int
    let crop_top: Int
    let channel_mean: [Double]
    let samples: [[Double]]

    static func all() throws -> [PNGExpectation] {
        try JSONDecoder().decode([PNGExpectation].self, from: Data(contentsOf: Fixtures.url("png_expectations.json")))
    }

    func bytes() throws -> [UInt8] { try Fixtures.bytes("images/\(name).png") }
}

/// zlib's CRC-32, as the fixture script records it and PNG chunks carry it.
private func crc32<Bytes: Sequence>(_ bytes: Bytes) -> UInt32 where Bytes.Element == UInt8 { CRC32.checksum(bytes) }

/// The chunks of a PNG file: type and where its data starts; the CRC follows the data.
private func chunks(_ png: [UInt8]) -> [(type: String, data: Range<Int>)] {
    var found: [(String, Range<Int>)] = []
    var offset = 8
    while offset + 12 <= png.count {
        let length = png[offset ..< offset + 4].reduce(0) { $0 << 8 | Int($1) }
        let type = String(decoding: png[offset + 4 ..< offset + 8], as: UTF8.self)
        found.append((type, offset + 8 ..< offset + 8 + length))
        offset += 12 + length
    }
    return found
}

/// Recomputes every chunk's CRC, so that a change to chunk data reaches the decoder instead of failing its
/// checksum.
private func fixingCRCs(_ png: [UInt8]) -> [UInt8] {
    var fixed = png
    for chunk in chunks(png) where chunk.data.upperBound + 4 <= png.count {
        let crc = crc32(png[chunk.data.lowerBound - 4 ..< chunk.data.upperBound])
        for i in 0 ..< 4 { fixed[chunk.data.upperBound + i] = UInt8(truncatingIfNeeded: crc >> (24 - 8 * i)) }
    }
    return fixed
}

final class PNGTests: XCTestCase {
    let pre = Preprocessing.imagenet

    /// Every colour type, bit depth and interlacing of the fixtures decodes to Pillow's `convert("RGB")` pixels
    /// and crops to torchvision's bytes exactly, through both the reference and the production path.
    func testEveryKindMatchesPillowAndTorchvisionExactly() throws {
        let decoder = ImageDecoder(), plans = ResizePlanCache()
        let expectations = try PNGExpectation.all()
        XCTAssertEqual(expectations.count, 12)
        for e in expectations {
            let label = "\(e.name) (\(e.kind))"
            let bytes = try e.bytes()
            let header = try decoder.png.header(bytes, source: e.name)
            XCTAssertEqual(header.interlaced, e.interlaced, label)
            let image = try decoder.decode(bytes, source: e.name)
            XCTAssertEqual([image.width, image.height], [e.width, e.height], label)
            XCTAssertEqual(crc32(image.pixels), e.decoded_crc32, "\(label): decoded pixels differ from Pillow's")

            let size = Preprocessing.resizedSize(width: image.width, height: image.height, shortSide: 256)
            XCTAssertEqual([size.width, size.height], e.resized, label)
            let offsets = Preprocessing.centerCropOffsets(width: size.width, height: size.height, crop: 224)
            XCTAssertEqual([offsets.left, offsets.top], [e.crop_left, e.crop_top], label)

            let crop = try pre.crop(encoded: bytes, source: e.name, decoder: decoder, plans: plans)
            XCTAssertEqual(crop, pre.crop(image), "\(label): the production path differs from the reference path")
            XCTAssertEqual(crop.count, 224 * 224 * 3)
            XCTAssertEqual(crc32(crop), e.crop_crc32, "\(label): the crop differs from torchvision's")
            let sampled = try Fixtures.bytes("images/\(e.name).crop6.u8")
            XCTAssertEqual(sampled.count, 38 * 38 * 3)
            var differing = 0, worst = 0
            for y in 0 ..< 38 {
                for x in 0 ..< 38 {
                    for c in 0 ..< 3 {
                        let d = abs(Int(crop[(y * 6 * 224 + x * 6) * 3 + c]) - Int(sampled[(y * 38 + x) * 3 + c]))
                        if d != 0 { differing += 1 }
                        worst = max(worst, d)
                    }
                }
            }
            XCTAssertEqual(differing, 0, "\(label): \(differing) sampled bytes differ, by up to \(worst)")

            let tensor = pre.normalize(crop)
            for c in 0 ..< 3 {
                let mean = tensor[c * 50176 ..< (c + 1) * 50176].reduce(0.0) { $0 + Double($1) } / 50176
                XCTAssertEqual(mean, e.channel_mean[c], accuracy: 1e-6, "\(label) channel \(c) mean")
            }
            for s in e.samples {
                let c = Int(s[0]), y = Int(s[1]), x = Int(s[2])
                XCTAssertEqual(Double(tensor[c * 50176 + y * 224 + x]), s[3], accuracy: 1e-6, "\(label) [\(c),\(y),\(x)]")
            }
        }
    }

    /// The PNG decoder on its own gives the same pixels as the dispatching one, and refuses JPEG bytes.
    func testPNGDecoderAlone() throws {
        let e = try XCTUnwrap(try PNGExpectation.all().first { $0.name.hasPrefix("palette8") })
        let png = PNGDecoder()
        let image = try png.decode(contentsOf: Fixtures.url("images/\(e.name).png"))
        XCTAssertEqual(crc32(image.pixels), e.decoded_crc32)
        XCTAssertEqual(try png.crop(e.bytes()), pre.crop(image))
        let jpeg = try Fixtures.bytes("images/odd_333x257.jpg")
        XCTAssertThrowsError(try png.decode(jpeg, source: "photo.jpg")) {
            XCTAssertEqual($0 as? ImagingError, .corruptPNG(source: "photo.jpg", reason: "no PNG signature"))
        }
    }

    /// Truncated files, bad checksums and a broken zlib stream each give one error naming the file.
    func testBrokenPNGsAreOneErrorNamingTheFile() throws {
        let decoder = ImageDecoder(), plans = ResizePlanCache()
        let good = try Fixtures.bytes("images/palette8_280x260.png")
        let idat = try XCTUnwrap(chunks(good).first { $0.type == "IDAT" }?.data)

        func assertRefused(_ bytes: [UInt8], _ name: String, line: UInt = #line,
                           _ expected: (ImagingError) -> Bool) {
            let paths: [(String, () throws -> Void)] = [
                ("decode", { _ = try decoder.decode(bytes, source: name) }),
                ("crop", { _ = try self.pre.crop(encoded: bytes, source: name, decoder: decoder, plans: plans) }),
            ]
            for (path, run) in paths {
                XCTAssertThrowsError(try run(), line: line) { error in
                    guard let e = error as? ImagingError else { return XCTFail("\(path): \(error)", line: line) }
                    XCTAssertTrue(expected(e), "\(path): \(e)", line: line)
                    XCTAssertTrue("\(e)".hasPrefix("\(name): "), "\(path): \(e)", line: line)
                }
            }
        }

        assertRefused(Array(good.prefix(good.count / 2)), "half.png") { $0 == .truncatedPNG(source: "half.png") }
        assertRefused(Array(good.prefix(idat.lowerBound + 10)), "idat.png") { $0 == .truncatedPNG(source: "idat.png") }
        assertRefused(Array(good.prefix(33)), "ihdr-only.png") { $0 == .truncatedPNG(source: "ihdr-only.png") }
        assertRefused(Array(good.prefix(20)), "head.png") { $0 == .truncatedPNG(source: "head.png") }

        var badCRC = good
        badCRC[idat.upperBound + 2] ^= 0x55  // the checksum itself
        assertRefused(badCRC, "crc.png") { $0 == .corruptPNG(source: "crc.png", reason: "IDAT: CRC error") }
        // Damaged image data: libpng inflates a chunk before it checks the chunk's CRC, so zlib complains first.
        var badData = good
        badData[idat.lowerBound + 100] ^= 0x55
        assertRefused(badData, "data.png") { e in
            guard case .corruptPNG = e else { return false }
            return true
        }
        var badZlib = good
        badZlib[idat.lowerBound] = 0x77  // the zlib header: not deflate
        assertRefused(fixingCRCs(badZlib), "zlib.png") { e in
            guard case .corruptPNG = e else { return false }
            return true
        }
        var badIHDR = good
        badIHDR[20] ^= 1  // height
        assertRefused(badIHDR, "ihdr.png") { $0 == .corruptPNG(source: "ihdr.png", reason: "IHDR: CRC error") }

        // A bad checksum on an ancillary chunk before the image data is refused too (Pillow refuses it).
        let gamma = try Fixtures.bytes("images/rgb16_gamma_310x270.png")
        let gAMA = try XCTUnwrap(chunks(gamma).first { $0.type == "gAMA" }?.data)
        var badGamma = gamma
        badGamma[gAMA.upperBound] ^= 0xFF
        assertRefused(badGamma, "gama.png") { e in
            guard case let .corruptPNG(_, reason) = e else { return false }
            return reason.contains("CRC")
        }

        // Pillow reads no further than the image data: a missing IEND is fine.
        let withoutEnd = Array(good.prefix(good.count - 12))
        XCTAssertEqual(try decoder.decode(withoutEnd, source: "no-iend.png"), try decoder.decode(good, source: "x.png"))
    }

    /// Other formats are refused by content whatever the file is called, naming the file and what we read.
    func testOtherFormatsAreRefusedByContent() throws {
        let decoder = ImageDecoder(), plans = ResizePlanCache()
        var random = [UInt8](), rng = SplitMix64(seed: 5)
        for _ in 0 ..< 4000 { random.append(UInt8(truncatingIfNeeded: rng.next())) }
        XCTAssertNotEqual(random[0], 0xFF)
        XCTAssertNotEqual(random[0], 0x89)
        let cases: [(String, [UInt8], String?)] = [
            ("frame.bmp", Array("BM".utf8) + [UInt8](repeating: 0, count: 60), "BMP"),
            ("frame.png", Array("GIF89a".utf8) + [UInt8](repeating: 0, count: 30), "GIF"),
            ("frame.tif", [0x49, 0x49, 0x2A, 0x00] + [UInt8](repeating: 0, count: 30), "TIFF"),
            ("frame.jpg", Array("RIFF\u{0}\u{0}\u{0}\u{0}WEBPVP8 ".utf8) + [UInt8](repeating: 0, count: 30), "WebP"),
            ("noise.jpg", random, nil),
            ("empty.png", [], nil),
            ("half-a-jpeg-marker.jpg", [0xFF, 0xD8], nil),
        ]
        for (name, bytes, detected) in cases {
            let expected = ImagingError.unsupportedFormat(source: name, detected: detected)
            XCTAssertThrowsError(try decoder.decode(bytes, source: name)) { XCTAssertEqual($0 as? ImagingError, expected) }
            XCTAssertThrowsError(try decoder.header(bytes, source: name)) { XCTAssertEqual($0 as? ImagingError, expected) }
            XCTAssertThrowsError(try pre.crop(encoded: bytes, source: name, decoder: decoder, plans: plans)) {
                XCTAssertEqual($0 as? ImagingError, expected)
                let message = "\($0)"
                XCTAssertTrue(message.hasPrefix("\(name): not a JPEG or PNG file ("), message)
                XCTAssertTrue(message.hasSuffix("formats read: JPEG, PNG)"), message)
                if let detected { XCTAssertTrue(message.contains("it is a \(detected) file"), message) }
            }
        }
        // A PNG called .jpg is read as the PNG it is.
        let png = try Fixtures.bytes("images/gray8_257x300.png")
        XCTAssertEqual(try decoder.header(png, source: "frame.jpg").format, .png)
    }

    /// The pixel limit applies to PNG from its header, before anything is allocated; sizes are validated.
    func testPixelLimitAndHeaderChecks() throws {
        let good = try Fixtures.bytes("images/gray8_257x300.png")
        let limited = ImageDecoder(maxPixels: 257 * 300 - 1)
        XCTAssertThrowsError(try limited.decode(good, source: "big.png")) {
            XCTAssertEqual($0 as? ImagingError, .tooManyPixels(source: "big.png", width: 257, height: 300,
                                                                limit: 257 * 300 - 1))
        }
        XCTAssertNoThrow(try ImageDecoder(maxPixels: 257 * 300).decode(good, source: "fits.png"))

        func withSize(_ width: UInt32, _ height: UInt32) -> [UInt8] {
            var png = good
            for i in 0 ..< 4 {
                png[16 + i] = UInt8(truncatingIfNeeded: width >> (24 - 8 * i))
                png[20 + i] = UInt8(truncatingIfNeeded: height >> (24 - 8 * i))
            }
            return fixingCRCs(png)
        }
        // 4·10⁹ pixels: refused from the header (decoding would need 16 GB).
        XCTAssertThrowsError(try ImageDecoder().decode(withSize(100_000, 40_000), source: "bomb.png")) {
            XCTAssertEqual($0 as? ImagingError, .tooManyPixels(source: "bomb.png", width: 100_000, height: 40_000,
                                                                limit: JPEGDecoder.defaultMaxPixels))
        }
        XCTAssertThrowsError(try ImageDecoder().decode(withSize(0, 300), source: "zero.png")) {
            XCTAssertEqual($0 as? ImagingError, .corruptPNG(source: "zero.png", reason: "image size 0x300"))
        }
        XCTAssertThrowsError(try ImageDecoder().decode(withSize(1 << 31, 1), source: "wide.png")) {
            XCTAssertEqual($0 as? ImagingError, .corruptPNG(source: "wide.png", reason: "image size 2147483648x1"))
        }
        // A header that disagrees with the image data (the size is within the limit but wrong) is an error.
        XCTAssertThrowsError(try ImageDecoder().decode(withSize(257, 301), source: "short.png")) {
            XCTAssertTrue("\($0)".hasPrefix("short.png: "), "\($0)")
        }
        var badDepth = good
        badDepth[24] = 3  // gray at 3 bits per sample
        XCTAssertThrowsError(try ImageDecoder().decode(fixingCRCs(badDepth), source: "depth.png")) {
            XCTAssertEqual($0 as? ImagingError, .corruptPNG(source: "depth.png", reason: "bit depth 3 with colour type 0"))
        }
    }

    /// Mutated PNGs — with their checksums left wrong or recomputed so the damage reaches zlib and the row
    /// filters — never crash: they decode or throw an ImagingError.
    func testMutatedPNGsNeverCrash() throws {
        // A mutated size field may pass the header checks: a small limit keeps such images cheap to refuse.
        let decoder = ImageDecoder(maxPixels: 1 << 20), plans = ResizePlanCache()
        let sources = try ["palette4_trns_260x280", "interlaced_gray2_283x259", "gray16_257x300"].map {
            try Fixtures.bytes("images/\($0).png")
        }
        var rng = SplitMix64(seed: 77)
        var errors = 0, decoded = 0
        for round in 0 ..< 300 {
            var b = sources[round % sources.count]
            for _ in 0 ..< 1 + Int(rng.next() % 6) {
                let at = 8 + Int(rng.next() % UInt64(b.count - 8))
                b[at] = UInt8(truncatingIfNeeded: rng.next())
            }
            if rng.next() % 4 == 0 { b = Array(b.prefix(Int(rng.next() % UInt64(b.count)))) }
            if round % 2 == 0 { b = fixingCRCs(b) }
            do {
                _ = try pre.crop(encoded: b, source: "m.png", decoder: decoder, plans: plans)
                decoded += 1
            } catch let error as ImagingError {
                XCTAssertTrue("\(error)".hasPrefix("m.png: "), "\(error)")
                errors += 1
            }
        }
        XCTAssertGreaterThan(errors, 0)
        print("mutated PNGs: \(decoded) decoded, \(errors) refused")
    }

    /// PNGs go through labels.csv's image check and the training loader like JPEGs, found by name and read by
    /// content (a PNG named .jpg included); a broken one is reported with its CSV row.
    func testPNGsThroughLabelsAndLoader() throws {
        let expectations = try PNGExpectation.all()
        let rgba = try XCTUnwrap(expectations.first { $0.name.hasPrefix("rgba8") })
        let gray16 = try XCTUnwrap(expectations.first { $0.name.hasPrefix("gray16") })
        let f = try TempFolder(images: ["a.jpg"])
        try f.write("b.png", try rgba.bytes())
        try f.write("c.jpg", try gray16.bytes())
        let csv = header + "\na,1,0,0,0,0,\nb,0,0,0,0,0,\nc,1,0,0,0,0,\n"
        let table = try LabelsTable(csvData: Data(csv.utf8), imagesDirectory: f.url, maxBoxes: 1)
        XCTAssertEqual(table.samples.map { $0.imageURL.lastPathComponent }, ["a.jpg", "b.png", "c.jpg"])

        let dataset = ImageDataset(table: table, cacheBudgetBytes: 0)
        let decoder = ImageDecoder()
        XCTAssertEqual(crc32(try dataset.crop(at: 1, decoder: decoder)), rgba.crop_crc32)
        XCTAssertEqual(crc32(try dataset.crop(at: 2, decoder: decoder)), gray16.crop_crc32)
        for workers in [0, 2] {
            let loader = try DataLoader(dataset: dataset, indices: [0, 1, 2], batchSize: 3, shuffle: false,
                                        numWorkers: workers)
            let batch = try XCTUnwrap(try loader.epoch(0).next())
            let plane = 3 * 224 * 224
            for (i, sample) in table.samples.enumerated() {
                let direct = pre.tensor(try decoder.decode(contentsOf: sample.imageURL))
                XCTAssertEqual(Array(batch.images[i * plane ..< (i + 1) * plane]), direct, "sample \(i), \(workers) workers")
            }
        }

        // The image check before training: a BMP under a .png name, a PNG cut inside its header.
        try f.write("d.png", Array("BM".utf8) + [UInt8](repeating: 0, count: 60))
        XCTAssertThrowsError(try LabelsTable(csvData: Data((header + "\na,1,0,0,0,0,\nd,0,0,0,0,0,\n").utf8),
                                             imagesDirectory: f.url, maxBoxes: 1)) {
            let s = "\($0)"
            XCTAssertTrue(s.contains("row 3") && s.contains("d.png: not a JPEG or PNG file (it is a BMP file"), s)
        }
        try f.write("e.png", Array(try rgba.bytes().prefix(25)))
        XCTAssertThrowsError(try LabelsTable(csvData: Data((header + "\na,1,0,0,0,0,\ne,0,0,0,0,0,\n").utf8),
                                             imagesDirectory: f.url, maxBoxes: 1)) {
            let s = "\($0)"
            XCTAssertTrue(s.contains("row 3") && s.contains("e.png: truncated PNG"), s)
        }
        // Data cut short after a valid header: the loader names the row.
        try f.write("b.png", Array(try rgba.bytes().prefix(2000)))
        let cut = try LabelsTable(csvData: Data(csv.utf8), imagesDirectory: f.url, maxBoxes: 1)
        let loader = try DataLoader(dataset: ImageDataset(table: cut, cacheBudgetBytes: 0), indices: [0, 1, 2],
                                    batchSize: 3, shuffle: false, numWorkers: 0)
        XCTAssertThrowsError(try loader.epoch(0).next()) {
            let s = "\($0)"
            XCTAssertTrue(s.contains("row 3") && s.contains("b.png: truncated PNG"), s)
        }
    }
}

private extension PNGDecoder {
    /// The production crop of `bytes` through this decoder alone.
    func crop(_ bytes: [UInt8]) throws -> [UInt8] {
        try Preprocessing.imagenet.crop(png: bytes, source: "p.png", decoder: self, plans: ResizePlanCache())
    }
}
