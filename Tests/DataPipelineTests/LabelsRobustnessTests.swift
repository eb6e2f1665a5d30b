import DataPipeline
import Foundation
import XCTest

/// No labels.csv, `--max-boxes` or `make-demo-data` flag may crash, hang or overwrite a user's data: each case
/// here ends in a result or in one clear line naming the file, the row (or line) and the column.
final class LabelsRobustnessTests: XCTestCase {
    private func table(_ csv: String, _ folder: TempFolder, maxBoxes: Int = 2, name: String = "labels.csv") throws
        -> LabelsTable {
        try table(Data(csv.utf8), folder, maxBoxes: maxBoxes, name: name)
    }

    private func table(_ csv: Data, _ folder: TempFolder, maxBoxes: Int = 2, name: String = "labels.csv") throws
        -> LabelsTable {
        try LabelsTable(csvData: csv, csvName: name, imagesDirectory: folder.url, maxBoxes: maxBoxes, checkImages: false)
    }

    /// The error's text, which must be one line.
    private func message(_ body: () throws -> Any, file: StaticString = #filePath, line: UInt = #line) -> String {
        do {
            _ = try body()
            XCTFail("no error", file: file, line: line)
            return ""
        } catch {
            let text = "\(error)"
            XCTAssertFalse(text.contains("\n"), "not one line: \(text)", file: file, line: line)
            return text
        }
    }

    private func assertMessage(_ text: String, contains parts: [String], file: StaticString = #filePath,
                               line: UInt = #line) {
        for p in parts { XCTAssertTrue(text.contains(p), "'\(text)' lacks '\(p)'", file: file, line: line) }
    }

    // MARK: --max-boxes

    func testMaxBoxesOutsideTheLimitIsOneLineBeforeAnythingIsRead() throws {
        let f = try TempFolder(images: ["a.jpg"])
        let csv = header + "\na.jpg,1,0,0,0,0,\n"
        for k in [2_305_843_009_213_693_952, 1_000_000_000, Int.max, Int.min, -1, BoxEncoding.maxBoxesLimit + 1] {
            XCTAssertEqual(message { try self.table(csv, f, maxBoxes: k) }, "--max-boxes must be in 0…1000 (got \(k))")
            // From disk the limit is checked before the file is opened (here it does not even exist).
            let missing = f.url.appendingPathComponent("absent.csv")
            XCTAssertEqual(message { try LabelsTable(csvURL: missing, imagesDirectory: f.url, maxBoxes: k) },
                           "--max-boxes must be in 0…1000 (got \(k))")
        }
        let widest = try table(csv, f, maxBoxes: BoxEncoding.maxBoxesLimit)
        XCTAssertEqual(widest.metaDim, BoxEncoding.metaDimLimit)
        XCTAssertEqual(widest.samples[0].metadata.count, 8004)
        XCTAssertEqual(try table(csv, f, maxBoxes: 0).samples[0].metadata.count, 4)
    }

    func testMetaDimArithmeticIsChecked() {
        XCTAssertEqual(BoxEncoding.maxBoxesLimit, 1000)
        XCTAssertEqual(BoxEncoding.metaDimLimit, 8004)
        XCTAssertEqual(BoxEncoding.metaDim(maxBoxes: 0), 4)
        XCTAssertEqual(BoxEncoding.metaDim(maxBoxes: 1000), 8004)
        for k in [-1, 1001, 2_305_843_009_213_693_952, Int.max, Int.min] { XCTAssertNil(BoxEncoding.metaDim(maxBoxes: k)) }
        XCTAssertEqual(BoxEncoding.maxBoxes(metaDim: 84), 10)
        XCTAssertEqual(BoxEncoding.maxBoxes(metaDim: 4), 0)
        XCTAssertEqual(BoxEncoding.maxBoxes(metaDim: 8004), 1000)
        for d in [0, 3, 5, 83, 8012, Int.max, Int.min] { XCTAssertNil(BoxEncoding.maxBoxes(metaDim: d)) }
        XCTAssertNoThrow(try BoxEncoding.validateMaxBoxes(10))
    }

    // MARK: non-finite numbers

    func testNonFiniteOrFloatOverflowingColumnsNameFileRowAndColumn() throws {
        let f = try TempFolder(images: ["a.jpg", "b.jpg"])
        let columns = ["num_person", "num_vehicles", "avg_person_conf", "total_boxes"]
        for (index, column) in columns.enumerated() {
            for bad in ["1e39", "-1e39", "nan", "NaN", "inf", "-Infinity", "1e400"] {
                var cells = ["0", "0", "0", "0"]
                cells[index] = bad
                let csv = header + "\na.jpg,1,0,0,0,0,\nb.jpg,1,\(cells.joined(separator: ",")),\n"
                let text = message { try self.table(csv, f, name: "/data/site-3.csv") }
                assertMessage(text, contains: ["/data/site-3.csv row 3, column '\(column)'", "'\(bad)'"])
                assertMessage(text, contains: [bad.hasSuffix("e39") ? "too large for a 32-bit float" : "not a finite number"])
            }
        }
        // Finite and within Float's range: accepted however large, as the seed accepts it.
        let t = try table(header + "\na.jpg,1,3e38,-3.4e38,1e-50,12345678901,\n", f)
        XCTAssertEqual(Array(t.samples[0].metadata.prefix(4)), [3e38, -3.4e38, 0, 12_345_678_901])
    }

    func testNonFiniteBoxNumbersAreErrors() throws {
        let f = try TempFolder(images: ["a.jpg", "b.jpg"])
        func cell(_ boxes: String) -> String { "\"[\(boxes.replacingOccurrences(of: "\"", with: "\"\""))]\"" }
        let ok = #"{"bbox": [1, 2, 3, 4], "score": 0.5, "label": "car"}"#
        let cases: [(String, [String])] = [
            (#"{"bbox": [1, 2, 3, 4], "score": NaN}"#, ["box 2's score is not a finite number", "'nan'"]),
            (#"{"bbox": [1, 2, 3, 4], "score": Infinity}"#, ["box 2's score is not a finite number", "'inf'"]),
            (#"{"bbox": [1, 2, 3, 4], "score": -Infinity}"#, ["box 2's score", "'-inf'"]),
            (#"{"bbox": [1, 2, 3, 4], "score": 1e400}"#, ["box 2's score is not a finite number"]),
            (#"{"bbox": [1, 2, 3, 4], "score": 1e300}"#, ["box 2's score is too large for a 32-bit float", "'1e+300'"]),
            (#"{"bbox": [1e300, 2, 3, 4], "score": 0.1}"#, ["box 2's x1 / 1280 is too large for a 32-bit float"]),
            (#"{"bbox": [1, 2, 3, -1e300], "score": 0.1}"#, ["box 2's y2 / 960 is too large"]),
            (#"{"bbox": [1, NaN, 3, 4], "score": 0.1}"#, ["box 2's y1 is not a finite number"]),
            (#"{"bbox": [1, 2, Infinity, 4]}"#, ["box 2's x2 is not a finite number"]),
            // a huge integer, which Python's float() refuses
            (#"{"bbox": [1, 2, 3, 4], "score": 1"# + String(repeating: "0", count: 400) + "}", ["box 2's score"]),
        ]
        for (box, parts) in cases {
            // The bad box is not among the kept ones (K = 1): still an error, it is corrupt detector output.
            let csv = header + "\na.jpg,1,0,0,0,0,\nb.jpg,1,0,0,0,0,\(cell(ok + ", " + box))\n"
            let text = message { try self.table(csv, f, maxBoxes: 1, name: "/data/site-3.csv") }
            assertMessage(text, contains: ["/data/site-3.csv row 3, column 'bounding_boxes'"] + parts)
        }
        // Finite, and finite as a Float once normalised: accepted.
        let t = try table(header + "\na.jpg,1,0,0,0,0,\(cell(#"{"bbox": [1e40, 0, 0, 0], "score": 3e38}"#))\n", f, maxBoxes: 1)
        XCTAssertEqual(t.samples[0].metadata[4], Float(1e40 / 1280))
        XCTAssertEqual(t.samples[0].metadata[8], 3e38)
    }

    func testNonFiniteLabelsAreErrorsNotZero() throws {
        let f = try TempFolder(images: ["a.jpg", "b.jpg"])
        for bad in ["nan", "NaN", "inf", "-inf", "Infinity"] {
            // mixed column (read as strings) and all-numeric column
            for other in ["yes", "1"] {
                let text = message { try self.table(header + "\na.jpg,\(other),0,0,0,0,\nb.jpg,\(bad),0,0,0,0,\n", f) }
                assertMessage(text, contains: ["row 3, column 'interesting/not interesting'", "not finite", "'\(bad)'"])
            }
        }
    }

    // MARK: the file's text

    func testUnclosedQuoteNamesRowLineAndFile() throws {
        let f = try TempFolder(images: ["a.jpg", "b.jpg", "c.jpg"])
        // row 2's cell spans two lines, so row 3 starts on line 4
        let csv = header + "\na.jpg,1,0,0,0,0,\"[\n]\"\nb.jpg,1,0,0,0,0,\"[{\"\"bbox\"\": [1, 2, 3, 4]}]\nc.jpg,0,0,0,0,0,\n"
        let text = message { try self.table(csv, f, name: "/data/site-3.csv") }
        assertMessage(text, contains: ["/data/site-3.csv row 3 (line 4)", "never closed"])
        // a stray quote in the last cell of the last row
        assertMessage(message { try self.table(header + "\na.jpg,1,0,0,0,0,\"", f) }, contains: ["row 2 (line 2)", "never closed"])
        // a quote inside an unquoted cell is a plain character (pandas), not the start of a quoted cell
        let t = try table(header + ",notes\na.jpg,1,0,0,0,0,,5\" screen\n", f)
        XCTAssertEqual(t.samples.count, 1)
    }

    func testQuotedCellRulesFollowPandas() throws {
        let f = try TempFolder(images: ["ab.jpg", "c.jpg"])
        // text after a closing quote joins the cell; "" inside quotes is one quote; CR alone ends a line
        let t = try table(header + "\r\"a\"b.jpg,1,0,0,0,0,\r\"c.jpg\",\"0\",0,0,0,0,\"\"\r", f)
        XCTAssertEqual(t.samples.map(\.imageName), ["ab.jpg", "c.jpg"])
        XCTAssertEqual(t.samples.map(\.row), [2, 3])
    }

    func testNULBytesUTF16AndInvalidUTF8AreRefusedWithTheLine() throws {
        let f = try TempFolder(images: ["a.jpg", "b.jpg"])
        var bytes = Array((header + "\na.jpg,1,0,0,0,0,\nb.jpg,1,0,").utf8)
        bytes += [0] + Array("0,0,0,\n".utf8)
        assertMessage(message { try self.table(Data(bytes), f, name: "/d/x.csv") }, contains: ["/d/x.csv line 3", "NUL"])

        let utf16 = Data([0xFF, 0xFE]) + (header + "\na.jpg,1,0,0,0,0,\n").data(using: .utf16LittleEndian)!
        assertMessage(message { try self.table(utf16, f) }, contains: ["labels.csv is UTF-16"])
        // UTF-16 without a byte-order mark: NUL bytes from the first character on
        let bare = (header + "\n").data(using: .utf16LittleEndian)!
        assertMessage(message { try self.table(bare, f) }, contains: ["line 1", "NUL"])

        var latin1 = Array((header + "\na.jpg,1,0,0,0,0,\n\"multi\nline\",1,0,0,0,0,\nb").utf8)
        latin1 += [0xE9] + Array(".jpg,1,0,0,0,0,\n".utf8)  // é in ISO 8859-1
        assertMessage(message { try self.table(Data(latin1), f, name: "/d/x.csv") },
                      contains: ["/d/x.csv line 5: not UTF-8"])
    }

    func testEmptyHeaderOnlyBlankLinesAndBOM() throws {
        let f = try TempFolder(images: ["a.jpg"])
        for empty in ["", "\u{FEFF}", "\n\n", "\r\n \r\n\t\n"] {
            assertMessage(message { try self.table(empty, f, name: "/d/x.csv") }, contains: ["/d/x.csv has no header row"])
        }
        for headerOnly in [header, header + "\n", header + "\r\n\r\n", "\u{FEFF}" + header + "\n"] {
            assertMessage(message { try self.table(headerOnly, f, name: "/d/x.csv") }, contains: ["/d/x.csv has no data rows"])
        }
        // Blank and whitespace-only lines, before the header too, are skipped as pandas skips them; rows keep
        // their spreadsheet numbers.
        let t = try table("\n\u{20}\n" + header + "\r\n\r\n  \r\na.jpg,1,0,0,0,0,\r\n", f)
        XCTAssertEqual(t.samples.map(\.row), [6])
    }

    func testDuplicatedColumns() throws {
        let f = try TempFolder(images: ["a.jpg"])
        let doubled = header + ",num_person\na.jpg,1,0,0,0,0,,5\n"
        XCTAssertEqual(message { try self.table(doubled, f) },
                       "labels.csv row 1: column 'num_person' appears 2 times (columns 3, 8); keep one")
        // a repeated column the reader does not use is harmless
        let t = try table(header + ",notes,notes\na.jpg,1,0,0,0,0,,x,y\n", f)
        XCTAssertEqual(t.samples.count, 1)
    }

    func testVeryLongLinesAndCellsStayFastAndMessagesShort() throws {
        let f = try TempFolder(images: ["a.jpg"])
        let long = String(repeating: "x", count: 5_000_000)
        let start = Date()
        let t = try table(header + ",notes\na.jpg,1,0,0,0,0,," + long + "\n", f)
        XCTAssertEqual(t.samples.count, 1)
        let text = message { try self.table(header + "\na.jpg,1," + long + ",0,0,0,\n", f) }
        assertMessage(text, contains: ["row 2, column 'num_person'", "5000000 characters"])
        XCTAssertLessThan(text.count, 400)
        let withBreak = message { try self.table(header + "\na.jpg,1,\"1\n2\",0,0,0,\n", f) }
        assertMessage(withBreak, contains: ["'1\\n2'"])
        XCTAssertLessThan(Date().timeIntervalSince(start), 20)
    }

    func testReorderedRowsGiveTheSameSamples() throws {
        let names = (0 ..< 6).map { "i\($0).jpg" }
        let f = try TempFolder(images: names)
        let rows = names.enumerated().map { i, n in
            "\(n),\(i % 2),\(i),0,0.5,1,\"[{\"\"bbox\"\": [\(i), 2, 3, 4], \"\"score\"\": 0.\(i), \"\"label\"\": \"\"person\"\"}]\""
        }
        let a = try table(header + "\n" + rows.joined(separator: "\n"), f)
        let b = try table(header + "\n" + rows.reversed().joined(separator: "\n"), f)
        let byName = { (t: LabelsTable) in Dictionary(uniqueKeysWithValues: t.samples.map { ($0.imageName, [Float($0.label)] + $0.metadata) }) }
        XCTAssertEqual(byName(a), byName(b))
    }

    /// Names that all reach the "first file starting with `name.`" rule (here `.JPG`, not a candidate extension)
    /// are looked up by stem, not by scanning the folder per row.
    func testPrefixLookupIsNotQuadratic() throws {
        let f = try TempFolder()
        let count = 20_000
        for i in 0 ..< count { FileManager.default.createFile(atPath: f.url.appendingPathComponent("f\(i).JPG").path, contents: nil) }
        for extra in ["f1.a.JPG", ".x.JPG", "f2.png.bak"] {
            FileManager.default.createFile(atPath: f.url.appendingPathComponent(extra).path, contents: nil)
        }
        let csv = header + "\n" + (0 ..< count).map { "f\($0),\($0 % 2),0,0,0,0," }.joined(separator: "\n") + "\n.x,0,0,0,0,0,\n"
        let start = Date()
        let t = try table(csv, f)
        XCTAssertLessThan(Date().timeIntervalSince(start), 20)
        XCTAssertEqual(t.samples.count, count + 1)
        // the first match in sorted order, as before: "f1.JPG" < "f1.a.JPG"; "f2.png" is not there, "f2.png.bak" is
        // not "f2." + a candidate extension, so the sorted rule picks "f2.JPG"
        XCTAssertEqual(t.samples[1].imageURL.lastPathComponent, "f1.JPG")
        XCTAssertEqual(t.samples[2].imageURL.lastPathComponent, "f2.JPG")
        XCTAssertEqual(t.samples[count].imageURL.lastPathComponent, ".x.JPG")
    }

    // MARK: bounding_boxes JSON

    func testDeeplyNestedJSONIsUnparseableNotAStackOverflow() throws {
        for depth in [600, 100_000, 2_000_000] {
            let nested = String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
            XCTAssertEqual(BoxEncoding.parseCell(nested).status, .unparseable)
            let inBox = "[{\"bbox\": " + nested + ", \"score\": 1}]"
            XCTAssertEqual(BoxEncoding.parseCell(inBox).status, .unparseable)
            let unbalanced = String(repeating: "{\"a\":[", count: depth)
            XCTAssertEqual(BoxEncoding.parseCell(unbalanced).status, .unparseable)
        }
        // Nesting Python reads (it gives up near 1000 levels) is read too: here a 4-item bbox of lists → zeros.
        let moderate = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        let (boxes, status) = BoxEncoding.parseCell("[{\"bbox\": [\(moderate), 1, 2, 3], \"score\": 0.5, \"x\": \(moderate)}]")
        XCTAssertEqual(status, .ok)
        XCTAssertEqual(boxes, [DetectorBox(bbox: [0, 1, 2, 3], score: 0.5, label: "")])
        // and through labels.csv: a warning, not an error
        let f = try TempFolder(images: ["a.jpg"])
        let t = try table(header + "\na.jpg,1,0,0,0,0," + String(repeating: "[", count: 100_000) + "\n", f)
        XCTAssertEqual(t.unparseableBoxRows, [2])
    }

    func testAMillionBoxesIsLinear() throws {
        let count = 1_000_000
        var cell = "["
        cell.reserveCapacity(count * 60)
        for i in 0 ..< count {
            if i > 0 { cell += ", " }
            // scores rise and fall so the best box sits in the middle, at 500000
            let score = 1 - Double(abs(i - 500_000)) / Double(count)
            cell += "{\"bbox\": [\(i % 1280), 1, 2, 3], \"score\": \(score), \"label\": \"car\"}"
        }
        cell += "]"
        let start = Date()
        let (boxes, status) = BoxEncoding.parseCell(cell)
        let encoded = BoxEncoding.encode(boxes, maxBoxes: 2)
        let seconds = Date().timeIntervalSince(start)
        XCTAssertEqual(status, .ok)
        XCTAssertEqual(boxes.count, count)
        XCTAssertEqual(encoded[0], Float(500_000 % 1280) / 1280)
        XCTAssertEqual(encoded[4], 1)
        XCTAssertLessThan(seconds, 30, "a million boxes took \(seconds) s")
    }

    /// Python's `json.loads` grammar decides what is parseable (the seed's rule).
    func testJSONGrammarMatchesPython() {
        let parseable = [
            #"[]"#, #" [ ] "#, "\t[\n]\r\n", #"[{}]"#, #"[{"bbox": [1, 2, 3, 4], "score": -0.5e-3, "label": "Car"}]"#,
            #"[{"label": "\u0050erson", "score": true}]"#, #"[{"label": "\ud83d\ude00"}]"#, #"[{"label": "\ud800"}]"#,
            #"[{"score": NaN}]"#, #"[{"a": [null, true, false, {"b": "c"}, -0, 1E+2]}]"#, #"[{"bbox": 5}]"#,
        ]
        for text in parseable { XCTAssertNotEqual(BoxEncoding.parseCell(text).status, .unparseable, text) }
        let invalid = [
            #"[01]"#, #"[1.]"#, #"[.5]"#, #"[+1]"#, #"[1e]"#, #"[-]"#, #"[-NaN]"#, #"[nan]"#, #"[{"a" 1}]"#, #"[{"a": 1,}]"#,
            #"[1,]"#, #"[{'a': 1}]"#, "[{\"a\": \"tab\tinside\"}]", #"[{"a": "\x"}]"#, #"[{"a": "\u12"}]"#, #"[] []"#,
            #"[tru]"#, "\u{FEFF}[]", #"[{"a": "open]"#, "[",
        ]
        for text in invalid { XCTAssertEqual(BoxEncoding.parseCell(text).status, .unparseable, text) }
        XCTAssertEqual(BoxEncoding.parseCell(#"[{"label": "\u0050erson"}]"#).boxes.first?.label, "person")
        XCTAssertEqual(BoxEncoding.parseCell(#"[{"label": null}, {"label": true}]"#).boxes.map(\.label), ["none", "true"])
        // Python's strip(): Unicode whitespace and the separators U+001C…U+001F
        XCTAssertEqual(BoxEncoding.parseCell(#"[{"label": "\u001c\tPERSON\u00a0\u3000"}]"#).boxes.first?.label, "person")
        XCTAssertEqual(BoxEncoding.parseCell(" \u{1F}\u{A0}\n").status, .ok)
        // a repeated key keeps its last value, as a Python dict does
        XCTAssertEqual(BoxEncoding.parseCell(#"[{"score": 0.1, "score": 0.7}]"#).boxes.first?.score, 0.7)
        // a 5-item bbox is not a bbox; a string coordinate is 0
        let fiveItems = BoxEncoding.parseCell(#"[{"bbox": [1, 2, 3, 4, 5]}]"#).boxes
        XCTAssertEqual(fiveItems.count, 1)
        XCTAssertNil(fiveItems.first?.bbox)
        XCTAssertEqual(BoxEncoding.parseCell(#"[{"bbox": ["1", 2, 3, 4]}]"#).boxes.first?.bbox, [0, 2, 3, 4])
    }

    // MARK: make-demo-data

    func testDemoDataCountAndQualityLimits() throws {
        let f = try TempFolder()
        for count in [0, -5, 100_000_000_000, Int.max, DemoDataGenerator.maxCount + 1] {
            XCTAssertEqual(message { try DemoDataGenerator(seed: 1).write(to: f.url, count: count) },
                           "--count must be in 1…1000000 (got \(count))")
        }
        XCTAssertEqual(message { try DemoDataGenerator(seed: 1).write(to: f.url, count: 3, quality: 0) },
                       "--quality must be in 1…100 (got 0)")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: f.url.path), [])  // nothing written
    }

    func testDemoDataRefusesToOverwriteADataset() throws {
        let f = try TempFolder()
        let csv = f.url.appendingPathComponent("labels.csv")
        try Data("the user's labels".utf8).write(to: csv)
        let text = message { try DemoDataGenerator(seed: 1).write(to: f.url, count: 2) }
        assertMessage(text, contains: [csv.path, "--force"])
        XCTAssertEqual(try String(contentsOf: csv, encoding: .utf8), "the user's labels")
        XCTAssertFalse(FileManager.default.fileExists(atPath: f.url.appendingPathComponent("images").path))

        let g = try TempFolder()
        let images = g.url.appendingPathComponent("images")
        try FileManager.default.createDirectory(at: images, withIntermediateDirectories: true)
        XCTAssertNil(DemoDataGenerator.existingDataset(in: g.url))  // an empty images/ holds nothing to lose
        try Data([1, 2, 3]).write(to: images.appendingPathComponent("frame_00001.jpg"))
        assertMessage(message { try DemoDataGenerator(seed: 1).write(to: g.url, count: 2) }, contains: ["images", "1 file(s)"])
        XCTAssertEqual(try Data(contentsOf: images.appendingPathComponent("frame_00001.jpg")), Data([1, 2, 3]))

        // --force: written; files the demo does not name are kept
        try Data("keep".utf8).write(to: images.appendingPathComponent("mine.txt"))
        XCTAssertNoThrow(try DemoDataGenerator(seed: 1).write(to: g.url, count: 2, overwrite: true))
        XCTAssertEqual(try String(contentsOf: images.appendingPathComponent("mine.txt"), encoding: .utf8), "keep")
        XCTAssertNotEqual(try Data(contentsOf: images.appendingPathComponent("frame_00001.jpg")), Data([1, 2, 3]))
    }

    // MARK: the command line

    private func runResNet50(_ arguments: [String]) throws -> (status: Int32, stderr: String) {
        let url = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("resnet50")
        guard FileManager.default.isExecutableFile(atPath: url.path) else {
            throw XCTSkip("\(url.path) not built; run swift build --build-tests first")
        }
        let process = Process()
        process.executableURL = url
        process.arguments = arguments
        let err = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = err
        try process.run()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: stderr, as: UTF8.self))
    }

    func testCommandLineLimitsAreOneLineAndExitOne() throws {
        let f = try TempFolder()
        let out = f.url.appendingPathComponent("demo").path
        for (arguments, expected) in [
            (["make-demo-data", "--out", out, "--count", "100000000000"], "--count must be in 1…1000000 (got 100000000000)"),
            (["make-demo-data", "--out", out, "--count", "0"], "--count must be in 1…1000000 (got 0)"),
            (["make-demo-data", "--out", out, "--quality", "101"], "--quality must be in 1…100 (got 101)"),
        ] {
            let (status, stderr) = try runResNet50(arguments)
            XCTAssertEqual(status, 1, stderr)
            XCTAssertTrue(stderr.hasSuffix(expected + "\n"), stderr)
            XCTAssertEqual(stderr.filter { $0 == "\n" }.count, 1, stderr)
        }
        // an existing data set is refused, then written with --force
        let (made, madeErr) = try runResNet50(["make-demo-data", "--out", out, "--count", "2"])
        XCTAssertEqual(made, 0, madeErr)
        let csv = try Data(contentsOf: URL(fileURLWithPath: out + "/labels.csv"))
        let (again, againErr) = try runResNet50(["make-demo-data", "--out", out, "--count", "3", "--seed", "9"])
        XCTAssertEqual(again, 1)
        XCTAssertTrue(againErr.contains("labels.csv exists") && againErr.contains("--force"), againErr)
        XCTAssertEqual(againErr.filter { $0 == "\n" }.count, 1, againErr)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out + "/labels.csv")), csv)
        let (forced, forcedErr) = try runResNet50(["make-demo-data", "--out", out, "--count", "3", "--seed", "9", "--force"])
        XCTAssertEqual(forced, 0, forcedErr)
        XCTAssertNotEqual(try Data(contentsOf: URL(fileURLWithPath: out + "/labels.csv")), csv)

        // --max-boxes that would overflow 8·K (or abort allocating) on a real data set
        for k in ["2305843009213693952", "1000000000"] {
            let (status, stderr) = try runResNet50(["train", "--images-dir", out + "/images", "--csv-path", out + "/labels.csv",
                                                    "--weights", "none", "--epochs", "1", "--max-boxes", k, "--output",
                                                    f.url.appendingPathComponent("m.safetensors").path])
            XCTAssertEqual(status, 1, stderr)
            XCTAssertTrue(stderr.hasSuffix("--max-boxes must be in 0…1000 (got \(k))\n"), stderr)
            XCTAssertEqual(stderr.filter { $0 == "\n" }.count, 1, stderr)
        }
    }
}
