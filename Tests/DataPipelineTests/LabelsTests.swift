import DataPipeline
import Foundation
import Imaging
import SeededRandom
import XCTest

/// A temporary images folder with small valid JPEGs under the given names.
final class TempFolder {
    let url: URL
    init(images: [String] = []) throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("dp-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        let jpeg = try Data(contentsOf: Fixtures.url("images/upscale_150x201.jpg"))
        for n in images { try jpeg.write(to: url.appendingPathComponent(n)) }
    }
    func write(_ name: String, _ bytes: [UInt8]) throws { try Data(bytes).write(to: url.appendingPathComponent(name)) }
    deinit { try? FileManager.default.removeItem(at: url) }
}

let header = "image_name,interesting/not interesting,num_person,num_vehicles,avg_person_conf,total_boxes,bounding_boxes"

final class LabelsTests: XCTestCase {
    func table(_ csv: String, _ folder: TempFolder, maxBoxes: Int = 2) throws -> LabelsTable {
        try LabelsTable(csvData: Data(csv.utf8), imagesDirectory: folder.url, maxBoxes: maxBoxes)
    }

    func assertError(_ csv: String, _ folder: TempFolder, contains parts: [String],
                     file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try table(csv, folder), file: file, line: line) { error in
            let text = "\(error)"
            for p in parts { XCTAssertTrue(text.contains(p), "'\(text)' lacks '\(p)'", file: file, line: line) }
        }
    }

    /// BOM, CRLF, spaces around header names, an extra column, doubled quotes inside a quoted JSON cell, a line
    /// break inside a quoted cell, a blank line: all read per RFC 4180 with rows numbered as records.
    func testCSVEdgeCases() throws {
        let f = try TempFolder(images: ["a.jpg", "b.jpg", "c.jpg"])
        let csv = "\u{FEFF} image_name , interesting/not interesting,num_person,num_vehicles,avg_person_conf,"
            + "total_boxes,bounding_boxes,notes\r\n"
            + "a.jpg,1,1,0,0.9,1,\"[{\"\"bbox\"\": [128, 96, 256, 192], \"\"score\"\": 0.9, \"\"label\"\": \"\"person\"\"}]\",x\r\n"
            + "b.jpg,not interesting,0,1,0,1,\"[{\"\"bbox\"\": [0, 0, 1280, 960],\n \"\"score\"\": 0.5, \"\"label\"\": \"\"truck\"\"}]\",\"multi\r\nline\"\r\n"
            + "\r\n"
            + "c.jpg,Yes,2,0,0.75,0,,\r\n"
        let t = try table(csv, f)
        XCTAssertEqual(t.samples.map(\.imageName), ["a.jpg", "b.jpg", "c.jpg"])
        XCTAssertEqual(t.samples.map(\.row), [2, 3, 5])
        XCTAssertEqual(t.samples.map(\.label), [1, 0, 1])
        XCTAssertEqual(t.metaDim, 20)
        XCTAssertEqual(t.samples[0].metadata, [1, 0, 0.9, 1, 0.1, 0.1, 0.2, 0.2, 0.9, 1, 0, 0] + [Float](repeating: 0, count: 8))
        XCTAssertEqual(Array(t.samples[1].metadata[4 ..< 12]), [0, 0, 1, 1, 0.5, 0, 1, 0])
        XCTAssertEqual(Array(t.samples[2].metadata[4...]), [Float](repeating: 0, count: 16))
        XCTAssertNil(t.boxWarning)
    }

    func testMissingColumnsListsMissingAndFound() throws {
        let f = try TempFolder(images: ["a.jpg"])
        assertError("image_name,label,num_person\na.jpg,1,0\n", f,
                    contains: ["'interesting/not interesting'", "'bounding_boxes'", "found: 'image_name', 'label', 'num_person'"])
    }

    /// Read from disk, errors name the file by its path (users' files are not always called labels.csv).
    func testErrorsFromAFileNameItsPath() throws {
        let f = try TempFolder()
        let path = f.url.appendingPathComponent("frames-2026.csv")
        try "image_name,interesting/not interesting,num_person,num_vehicles,avg_person_conf,total_boxes,bounding_boxes\n"
            .appending("a.jpg,maybe,0,0,0,0,\n").write(to: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try LabelsTable(csvURL: path, imagesDirectory: f.url, maxBoxes: 2, checkImages: false)) { e in
            XCTAssertTrue("\(e)".hasPrefix(path.path + " row 2, column 'interesting/not interesting'"), "\(e)")
            XCTAssertTrue("\(e)".contains("'maybe'"), "\(e)")
        }
    }

    func testWrongFieldCountNamesTheRow() throws {
        let f = try TempFolder(images: ["a.jpg", "b.jpg"])
        // row 2 spans two lines; row 3 has one field too many and must not be shifted into the columns
        let csv = header + "\na.jpg,1,0,0,0,0,\"[\n]\"\nb.jpg,1,0,0,0,0,[],extra\n"
        assertError(csv, f, contains: ["row 3", "8 field(s)", "7"])
        assertError(header + "\na.jpg,1,0,0\n", f, contains: ["row 2", "4 field(s)"])
    }

    func testLabelSpellings() throws {
        let names = (0 ..< 12).map { "i\($0).jpg" }
        let f = try TempFolder(images: names)
        let labels = ["1", "interesting", " TRUE ", "yes", "0", "Not Interesting", "false", "NO", "1.0", "2", "0.5", "1e0"]
        let csv = header + "\n" + zip(names, labels).map { "\($0),\($1),0,0,0,0," }.joined(separator: "\n")
        let t = try table(csv, f)
        XCTAssertEqual(t.samples.map(\.label), [1, 1, 1, 1, 0, 0, 0, 0, 1, 0, 0, 1])
        // an all-numeric column is read as numbers by pandas: int(1.5) == 1
        let numeric = header + "\n" + zip(names.prefix(3), ["1.5", "0", "2"]).map { "\($0),\($1),0,0,0,0," }.joined(separator: "\n")
        XCTAssertEqual(try table(numeric, f).samples.map(\.label), [1, 0, 0])
    }

    func testBadValuesNameRowColumnAndValue() throws {
        let f = try TempFolder(images: ["a.jpg", "b.jpg"])
        assertError(header + "\na.jpg,1,0,0,0,0,\nb.jpg,maybe,0,0,0,0,\n", f,
                    contains: ["row 3", "'interesting/not interesting'", "'maybe'"])
        assertError(header + "\na.jpg,,0,0,0,0,\n", f, contains: ["row 2", "empty label"])
        assertError(header + "\na.jpg,1,two,0,0,0,\n", f, contains: ["row 2", "'num_person'", "'two'"])
        assertError(header + "\na.jpg,1,0,0,,0,\n", f, contains: ["row 2", "'avg_person_conf'", "empty"])
        assertError(header + "\na.jpg,1,0,0,0,0,\nb.jpg,1,0,0,0,0,\n a.jpg ,0,0,0,0,0,\n", f,
                    contains: ["row 4", "'a.jpg'", "row 2"])
        assertError(header + "\na.jpg,1,0,0,nan,0,\n", f, contains: ["row 2", "'avg_person_conf'", "'nan'"])
        assertError(header + "\na.jpg,1,0,0x1,0,0,\n", f, contains: ["row 2", "'num_vehicles'", "'0x1'"])
        assertError(header + "\na.jpg,inf,0,0,0,0,\n", f, contains: ["row 2", "not finite"])
        assertError(header + "\n", f, contains: ["no data rows"])
        assertError("", f, contains: ["no header"])
    }

    func testImageLookupFallbacks() throws {
        let f = try TempFolder(images: ["plain.jpg", "upper.jpeg", "odd.frame.v2", "x.tif"])
        let csv = header + "\nplain,1,0,0,0,0,\nupper,0,0,0,0,0,\nodd,0,0,0,0,0,\nplain.jpg.bak,0,0,0,0,0,\n"
        assertError(csv, f, contains: ["row 5", "plain.jpg.bak"])
        let t = try table(header + "\nplain,1,0,0,0,0,\nupper,0,0,0,0,0,\nodd,0,0,0,0,0,\n x.tif ,0,0,0,0,0,\n", f)
        XCTAssertEqual(t.samples.map { $0.imageURL.lastPathComponent }, ["plain.jpg", "upper.jpeg", "odd.frame.v2", "x.tif"])
        XCTAssertThrowsError(try table(header + "\nmissing,1,0,0,0,0,\n", f)) { e in
            let s = "\(e)"
            for ext in LabelsTable.candidateExtensions { XCTAssertTrue(s.contains("missing\(ext)"), s) }
            XCTAssertTrue(s.contains("missing.*") && s.contains("row 2"), s)
        }
        // "plain" and "plain.jpg" are different names for one file
        assertError(header + "\nplain,1,0,0,0,0,\nplain.jpg,0,0,0,0,0,\n", f, contains: ["row 3", "row 2"])
    }

    func testNonJPEGAndBrokenImagesNameTheRow() throws {
        let f = try TempFolder(images: ["ok.jpg"])
        try f.write("pic.gif", Array("GIF89a".utf8) + [1, 0, 1, 0, 0, 0, 0])
        try f.write("bad.jpg", [0xFF, 0xD8, 0xFF, 0x00, 1, 2, 3, 4, 5])
        assertError(header + "\nok,1,0,0,0,0,\npic,0,0,0,0,0,\n", f,
                    contains: ["row 3", "pic.gif", "not a JPEG or PNG", "GIF"])
        assertError(header + "\nok,1,0,0,0,0,\nbad,0,0,0,0,0,\n", f, contains: ["row 3", "bad.jpg"])
    }

    func testUnparseableBoxesWarnOnceWithRows() throws {
        let names = (0 ..< 8).map { "i\($0).jpg" }
        let f = try TempFolder(images: names)
        let cells = ["not json", "[]", "\"[{\"\"bbox\"\": [1,2,3,4]\"", "{oops", "\"[1,2]\"", "[]", "x", "y"]
        let csv = header + "\n" + zip(names, cells).map { "\($0),1,0,0,0,0,\($1)" }.joined(separator: "\n")
        let t = try table(csv, f)
        XCTAssertEqual(t.unparseableBoxRows, [2, 4, 5, 6, 8, 9])
        let w = try XCTUnwrap(t.boxWarning)
        XCTAssertTrue(w.contains("6 row(s)") && w.contains("rows 2, 4, 5, 6, 8, …"), w)
    }

    struct BoxCase: Decodable {
        let cell: String
        let k: Int
        let parseable: Bool
        let expected: [Double]
    }

    /// Box encodings equal those computed by the seed's rules in make_image_fixtures.py.
    func testBoxEncodingMatchesSeedRules() throws {
        let cases = try JSONDecoder().decode([BoxCase].self, from: Data(contentsOf: Fixtures.url("box_encoding.json")))
        XCTAssertGreaterThan(cases.count, 10)
        for c in cases {
            let (boxes, status) = BoxEncoding.parseCell(c.cell)
            XCTAssertEqual(status != .unparseable, c.parseable, c.cell)
            let v = BoxEncoding.encode(boxes, maxBoxes: c.k)
            XCTAssertEqual(v.count, 8 * c.k)
            for (i, (a, b)) in zip(v, c.expected).enumerated() {
                XCTAssertEqual(Double(a), b, accuracy: 1e-7 * max(1, abs(b)), "\(c.cell) k=\(c.k) [\(i)]")
            }
        }
        XCTAssertEqual(BoxEncoding.metaDim(maxBoxes: 10), 84)
    }
}

final class DatasetTests: XCTestCase {
    func testSplitSizesAndDeterminism() throws {
        for (n, val) in [(2, 1), (4, 1), (5, 1), (10, 2), (15, 3), (101, 20), (200, 40)] {
            let s = try DatasetSplit(count: n, seed: 3)
            XCTAssertEqual(s.validation.count, val, "N=\(n)")
            XCTAssertEqual((s.train + s.validation).sorted(), Array(0 ..< n))
        }
        let a = try DatasetSplit(count: 200, seed: 1), b = try DatasetSplit(count: 200, seed: 1)
        let c = try DatasetSplit(count: 200, seed: 2)
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(a.validation, c.validation)
        // pinned: the draw must not change between releases (SplitMix64 + the written-out Fisher–Yates)
        let pinned = try DatasetSplit(count: 10, seed: 42)
        XCTAssertEqual(pinned.train, [0, 9, 5, 8, 6, 4, 7, 2])
        XCTAssertEqual(pinned.validation, [1, 3])
        var r = SplitMix64(seed: 0)
        XCTAssertEqual(r.next(), 0xE220_A839_7B1D_CDAF)  // Vigna's splitmix64.c, first output for seed 0
        XCTAssertThrowsError(try DatasetSplit(count: 1, seed: 0))
    }

    func testDemoDataLoaderBatchesWorkersAndCache() throws {
        let f = try TempFolder()
        let positives = try DemoDataGenerator(seed: 5).write(to: f.url, count: 12)
        XCTAssertEqual(positives, 3)
        let table = try LabelsTable(csvURL: f.url.appendingPathComponent("labels.csv"),
                                    imagesDirectory: f.url.appendingPathComponent("images"), maxBoxes: 10)
        XCTAssertEqual(table.samples.count, 12)
        XCTAssertEqual(table.samples.filter { $0.label == 1 }.count, 3)
        XCTAssertNil(table.boxWarning)
        XCTAssertTrue(table.samples.contains { $0.metadata[3] > 0 })

        let split = try DatasetSplit(count: 12, seed: 9)
        let serialDS = ImageDataset(table: table, cacheBudgetBytes: 0)
        let cachedDS = ImageDataset(table: table, cacheBudgetBytes: 5 * 224 * 224 * 3)
        let serial = try DataLoader(dataset: serialDS, indices: split.train, batchSize: 4, shuffle: true, seed: 1, numWorkers: 0)
        let threaded = try DataLoader(dataset: cachedDS, indices: split.train, batchSize: 4, shuffle: true, seed: 1, numWorkers: 2)
        XCTAssertEqual(serial.batchCount, 3)
        XCTAssertNotEqual(serial.order(epoch: 0), serial.order(epoch: 1))
        XCTAssertEqual(serial.order(epoch: 1), threaded.order(epoch: 1))
        XCTAssertEqual(serial.order(epoch: 0).sorted(), split.train.sorted())

        let decoder = JPEGDecoder()
        for epoch in 0 ..< 2 {
            let a = serial.epoch(epoch), b = threaded.epoch(epoch)
            var seen: [Int] = []
            while let x = try a.next() {
                let y = try XCTUnwrap(try b.next())
                XCTAssertEqual(x.sampleIndices, y.sampleIndices)
                XCTAssertEqual(x.images, y.images)
                XCTAssertEqual(x.metadata, y.metadata)
                XCTAssertEqual(x.labels, y.labels)
                XCTAssertEqual(x.images.count, x.count * 3 * 224 * 224)
                XCTAssertEqual(x.metadata.count, x.count * 84)
                seen += x.sampleIndices
                // first sample of each batch equals direct preprocessing of its file
                let s = table.samples[x.sampleIndices[0]]
                let direct = Preprocessing.imagenet.tensor(try decoder.decode(contentsOf: s.imageURL))
                XCTAssertEqual(Array(x.images[0 ..< direct.count]), direct)
                XCTAssertEqual(Array(x.metadata[0 ..< 84]), s.metadata)
            }
            XCTAssertNil(try b.next())
            XCTAssertEqual(seen, serial.order(epoch: epoch))
        }
        XCTAssertEqual(cachedDS.cache.count, 5)  // the budget holds five crops
        XCTAssertEqual(serialDS.cache.count, 0)

        let val = try DataLoader(dataset: serialDS, indices: split.validation, batchSize: 8, shuffle: false, numWorkers: 1)
        XCTAssertEqual(try val.epoch(3).next()?.sampleIndices, split.validation)
    }

    func testDemoDataIsDeterministicAndFullSize() throws {
        let a = try TempFolder(), b = try TempFolder(), c = try TempFolder()
        try DemoDataGenerator(seed: 11).write(to: a.url, count: 6)
        try DemoDataGenerator(seed: 11).write(to: b.url, count: 6)
        try DemoDataGenerator(seed: 12).write(to: c.url, count: 6)
        let csv = { (f: TempFolder) in try Data(contentsOf: f.url.appendingPathComponent("labels.csv")) }
        XCTAssertEqual(try csv(a), try csv(b))
        XCTAssertNotEqual(try csv(a), try csv(c))
        let frame = "images/frame_00003.jpg"
        XCTAssertEqual(try Data(contentsOf: a.url.appendingPathComponent(frame)),
                       try Data(contentsOf: b.url.appendingPathComponent(frame)))
        let img = try JPEGDecoder().decode(contentsOf: a.url.appendingPathComponent(frame))
        XCTAssertEqual([img.width, img.height], [1280, 960])
        // a real picture, not a flat fill: many distinct values
        XCTAssertGreaterThan(Set(img.pixels).count, 150)
    }

    /// Dropping an iterator in the middle of an epoch stops its workers instead of hanging or crashing.
    func testAbandonedEpochStopsCleanly() throws {
        let f = try TempFolder()
        try DemoDataGenerator(seed: 2).write(to: f.url, count: 10)
        let t = try LabelsTable(csvURL: f.url.appendingPathComponent("labels.csv"),
                                imagesDirectory: f.url.appendingPathComponent("images"), maxBoxes: 3)
        let loader = try DataLoader(dataset: ImageDataset(table: t), indices: Array(0 ..< 10), batchSize: 2,
                                    shuffle: true, seed: 4, numWorkers: 3, prefetchBatches: 1)
        for epoch in 0 ..< 3 {
            var it: EpochIterator? = loader.epoch(epoch)
            XCTAssertEqual(try it?.next()?.count, 2)
            it = nil
        }
        var total = 0
        let it = loader.epoch(9)
        while let b = try it.next() { total += b.count }
        XCTAssertEqual(total, 10)
    }

    func testLoaderReportsABrokenImageWithItsRow() throws {
        let f = try TempFolder(images: ["a.jpg", "b.jpg", "c.jpg"])
        let good = try Fixtures.bytes("images/odd_333x257.jpg")
        try f.write("b.jpg", Array(good.prefix(good.count * 2 / 3)))  // header fine, data cut short
        let t = try LabelsTable(csvData: Data((header + "\na,1,0,0,0,0,\nb,0,0,0,0,0,\nc,0,0,0,0,0,\n").utf8),
                                csvName: "/data/site-7.csv", imagesDirectory: f.url, maxBoxes: 1)
        for workers in [0, 2] {
            let loader = try DataLoader(dataset: ImageDataset(table: t), indices: [0, 1, 2], batchSize: 3,
                                        shuffle: false, numWorkers: workers)
            XCTAssertThrowsError(try loader.epoch(0).next()) { e in
                let s = "\(e)"
                XCTAssertTrue(s.hasPrefix("/data/site-7.csv row 3") && s.contains("truncated"), s)
            }
        }
    }
}
