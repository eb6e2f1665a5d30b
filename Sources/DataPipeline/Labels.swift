import CSV
import Foundation
import Imaging

/// One usable row of labels.csv.
public struct LabeledSample: Equatable, Sendable {
    /// The row as a spreadsheet numbers it (header = 1).
    public let row: Int
    /// The `image_name` cell, trimmed.
    public let imageName: String
    /// The image file found for it.
    public let imageURL: URL
    /// 0 or 1.
    public let label: Int
    /// `[num_person, num_vehicles, avg_person_conf, total_boxes] + box encoding`, `meta_dim` values.
    public let metadata: [Float]
}

/// labels.csv read with the seed script's rules (DESIGN.md §2).
public struct LabelsTable: Sendable {
    public static let requiredColumns = ["image_name", "interesting/not interesting", "num_person", "num_vehicles",
                                         "avg_person_conf", "total_boxes", "bounding_boxes"]
    /// File extensions tried, in order, for an `image_name` without one.
    public static let candidateExtensions = [".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"]

    public let samples: [LabeledSample]
    public let maxBoxes: Int
    /// How errors name the labels file: its path when read from disk.
    public let source: String
    /// `4 + 8·maxBoxes`.
    public var metaDim: Int { BoxEncoding.metaDim(maxBoxes: maxBoxes) }
    /// Rows whose `bounding_boxes` could not be read (their boxes count as none), spreadsheet numbering.
    public let unparseableBoxRows: [Int]

    /// The one warning for unreadable box cells (nil when there are none): count and the first few rows.
    public var boxWarning: String? {
        guard !unparseableBoxRows.isEmpty else { return nil }
        let first = unparseableBoxRows.prefix(5).map(String.init).joined(separator: ", ")
        let more = unparseableBoxRows.count > 5 ? ", …" : ""
        return "warning: \(unparseableBoxRows.count) row(s) of labels.csv have a 'bounding_boxes' cell that is not "
            + "valid JSON; they are read as having no boxes (rows \(first)\(more))"
    }

    /// Reads labels.csv and resolves every image.
    /// - Parameters:
    ///   - csvURL: labels.csv.
    ///   - imagesDirectory: the `--images-dir` folder.
    ///   - maxBoxes: K of the box encoding (`--max-boxes`), ≥ 0.
    ///   - checkImages: read each image's JPEG header now so a bad file is reported with its row before
    ///     training starts.
    public init(csvURL: URL, imagesDirectory: URL, maxBoxes: Int, checkImages: Bool = true) throws {
        let data: Data
        do { data = try Data(contentsOf: csvURL) } catch {
            throw DataError.fileAccess(path: csvURL.path, reason: "cannot read: \(error.localizedDescription)")
        }
        try self.init(csvData: data, csvName: csvURL.path, imagesDirectory: imagesDirectory, maxBoxes: maxBoxes,
                      checkImages: checkImages)
    }

    /// Same as `init(csvURL:…)` on CSV bytes already in memory.
    /// - Parameter csvName: how errors name the file (its path when read from disk).
    public init(csvData: Data, csvName: String = "labels.csv", imagesDirectory: URL, maxBoxes: Int,
                checkImages: Bool = true) throws {
        do {
            try self.init(parsing: csvData, csvName: csvName, imagesDirectory: imagesDirectory, maxBoxes: maxBoxes,
                          checkImages: checkImages)
        } catch let error as DataError {
            throw error.located(in: csvName)
        }
    }

    private init(parsing csvData: Data, csvName: String, imagesDirectory: URL, maxBoxes: Int,
                 checkImages: Bool) throws {
        guard maxBoxes >= 0 else { throw DataError.invalidArgument("--max-boxes must be ≥ 0, got \(maxBoxes)") }
        let records = try Self.readRecords(csvData, name: csvName)
        guard let header = records.first else { throw DataError.emptyCSV(path: csvName) }
        let names = header.map { $0.trimmingCharacters(in: .whitespaces) }
        var column: [String: Int] = [:]
        for (i, n) in names.enumerated() where column[n] == nil { column[n] = i }
        let missing = Self.requiredColumns.filter { column[$0] == nil }
        if !missing.isEmpty { throw DataError.missingColumns(missing: missing, found: names) }
        func col(_ n: String) -> Int { column[n] ?? 0 }  // every required column is present here

        // Data rows, spreadsheet-numbered; a blank line is skipped as pandas does.
        var rows: [(number: Int, fields: [String])] = []
        for (i, fields) in records.enumerated().dropFirst() {
            if fields.count == 1, fields[0].isEmpty, names.count > 1 { continue }
            guard fields.count == names.count else {
                throw DataError.wrongFieldCount(row: i + 1, expected: names.count, found: fields.count)
            }
            rows.append((i + 1, fields))
        }
        if rows.isEmpty { throw DataError.noSamples(path: csvName) }

        let labelCol = "interesting/not interesting"
        let labelCells = rows.map { $0.fields[col(labelCol)] }
        // pandas reads an all-numeric column as numbers (then `int(v) == 1`), otherwise as strings.
        let numericLabels = labelCells.allSatisfy { Self.pythonFloat($0) != nil }

        let finder = ImageFinder(directory: imagesDirectory)
        let decoder = checkImages ? JPEGDecoder() : nil
        var seen: [String: Int] = [:]
        var seenFiles: [String: Int] = [:]
        var samples: [LabeledSample] = []
        var unparseable: [Int] = []
        samples.reserveCapacity(rows.count)
        for (number, fields) in rows {
            let name = fields[col("image_name")].trimmingCharacters(in: .whitespacesAndNewlines)
            if name.isEmpty {
                throw DataError.badValue(row: number, column: "image_name", value: name, reason: "empty image name")
            }
            if let first = seen[name] { throw DataError.duplicateImage(row: number, name: name, firstRow: first) }
            seen[name] = number

            let rawLabel = fields[col(labelCol)]
            let label = try Self.parseLabel(rawLabel, numericColumn: numericLabels, row: number, column: labelCol)

            var metadata = [Float]()
            metadata.reserveCapacity(BoxEncoding.metaDim(maxBoxes: maxBoxes))
            for c in ["num_person", "num_vehicles", "avg_person_conf", "total_boxes"] {
                let cell = fields[col(c)]
                guard let v = Self.pythonFloat(cell), v.isFinite else {
                    throw DataError.badValue(row: number, column: c, value: cell,
                                             reason: cell.trimmingCharacters(in: .whitespaces).isEmpty
                                                 ? "empty cell" : "not a number")
                }
                metadata.append(Float(v))
            }
            let (boxes, status) = BoxEncoding.parseCell(fields[col("bounding_boxes")])
            if status == .unparseable { unparseable.append(number) }
            metadata += BoxEncoding.encode(boxes, maxBoxes: maxBoxes)

            let url: URL
            switch finder.find(name) {
            case let .found(u): url = u
            case let .notFound(tried): throw DataError.imageNotFound(row: number, name: name, tried: tried)
            }
            let key = url.standardizedFileURL.path
            if let first = seenFiles[key] {
                throw DataError.badValue(row: number, column: "image_name", value: name,
                                         reason: "resolves to \(url.lastPathComponent), the image of row \(first)")
            }
            seenFiles[key] = number
            if let decoder {
                if let reason = Self.checkJPEGHeader(url, decoder: decoder) {
                    throw DataError.badImage(row: number, name: name, reason: reason)
                }
            }
            samples.append(LabeledSample(row: number, imageName: name, imageURL: url, label: label,
                                         metadata: metadata))
        }
        self.samples = samples
        self.maxBoxes = maxBoxes
        source = csvName
        self.unparseableBoxRows = unparseable
    }

    /// RFC 4180 records through CSV.swift: quoted fields, doubled quotes, line breaks inside quotes, CRLF.
    /// A UTF-8 byte-order mark is dropped first.
    static func readRecords(_ data: Data, name: String) throws -> [[String]] {
        var bytes = data
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }
        guard let text = String(data: bytes, encoding: .utf8) else { throw DataError.notUTF8(path: name) }
        do {
            let reader = try CSVReader(string: text, hasHeaderRow: false)
            var records: [[String]] = []
            while let r = reader.next() { records.append(r) }
            if let e = reader.error { throw e }
            return records
        } catch let e as DataError {
            throw e
        } catch {
            throw DataError.fileAccess(path: name, reason: "not readable as CSV: \(error)")
        }
    }

    /// The label rules: strings `1/interesting/true/yes` → 1, `0/not interesting/false/no` → 0 (trimmed,
    /// lower-cased), otherwise a number (1 if it equals 1); in an all-numeric column, `int(v) == 1`.
    static func parseLabel(_ cell: String, numericColumn: Bool, row: Int, column: String) throws -> Int {
        let s = cell.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
        if s.isEmpty { throw DataError.badValue(row: row, column: column, value: cell, reason: "empty label") }
        if numericColumn, let v = pythonFloat(s) {
            guard v.isFinite else {
                throw DataError.badValue(row: row, column: column, value: cell, reason: "label is not finite")
            }
            return v.rounded(.towardZero) == 1 ? 1 : 0
        }
        switch s {
        case "1", "interesting", "true", "yes": return 1
        case "0", "not interesting", "false", "no": return 0
        default:
            guard let v = pythonFloat(s) else {
                throw DataError.badValue(row: row, column: column, value: cell,
                                         reason: "label is neither 1/interesting/true/yes, 0/not interesting/false/no "
                                             + "nor a number")
            }
            return v == 1 ? 1 : 0
        }
    }

    /// Python's `float(s)` for plain decimal text (surrounding whitespace allowed); nil otherwise.
    static func pythonFloat(_ s: String) -> Double? {
        let t = s.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !t.isEmpty, !t.lowercased().contains("x") else { return nil }  // Swift would read hex floats
        return Double(t)
    }

    /// nil when the file looks like a decodable JPEG or PNG (told by its first bytes, not its name), else why
    /// not: another format, a bad header, or more pixels than the decoder's limit.
    static func checkJPEGHeader(_ url: URL, decoder: JPEGDecoder) -> String? {
        do {
            // The header sits in the first 64 KiB unless metadata blocks come first; then read the whole file.
            let handle = try FileHandle(forReadingFrom: url)
            let head = try handle.read(upToCount: 64 << 10) ?? Data()
            try? handle.close()
            switch try ImageFormat(of: head, source: url.lastPathComponent) {
            case .jpeg:
                do {
                    _ = try decoder.header(head, source: url.lastPathComponent)
                } catch ImagingError.corrupt where head.count == 64 << 10 {
                    _ = try decoder.header(try Data(contentsOf: url), source: url.lastPathComponent)
                }
            case .png:
                // A PNG's header is its first 33 bytes.
                _ = try PNGDecoder.header(head, source: url.lastPathComponent, maxPixels: decoder.maxPixels)
            }
            return nil
        } catch let e as ImagingError {
            return e.description
        } catch {
            return "cannot read \(url.path): \(error.localizedDescription)"
        }
    }
}

/// The seed's image lookup in `--images-dir`.
public struct ImageFinder {
    public enum Result: Equatable {
        case found(URL)
        case notFound(tried: [String])
    }

    public let directory: URL
    private let listing: () -> [String]

    public init(directory: URL) {
        self.directory = directory
        let dir = directory
        var cached: [String]?
        listing = {
            if let c = cached { return c }
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).sorted()
            cached = names
            return names
        }
    }

    /// Python's `os.path.splitext(name)[1] != ""`: a dot in the last path component, not only leading dots.
    static func hasExtension(_ name: String) -> Bool {
        let last = name.split(separator: "/", omittingEmptySubsequences: false).last.map(String.init) ?? name
        let body = last.drop { $0 == "." }
        return body.contains(".")
    }

    /// - Parameter name: the `image_name` cell, trimmed.
    /// - Returns: the file: `name` itself if it has an extension; else `name` + each candidate extension;
    ///   else the first file (in sorted order) whose name starts with `name.`.
    public func find(_ name: String) -> Result {
        let fm = FileManager.default
        func isFile(_ u: URL) -> Bool {
            var dir: ObjCBool = false
            return fm.fileExists(atPath: u.path, isDirectory: &dir) && !dir.boolValue
        }
        if Self.hasExtension(name) {
            let u = directory.appendingPathComponent(name)
            return isFile(u) ? .found(u) : .notFound(tried: [u.path])
        }
        var tried: [String] = []
        for ext in LabelsTable.candidateExtensions {
            let u = directory.appendingPathComponent(name + ext)
            if isFile(u) { return .found(u) }
            tried.append(u.path)
        }
        let prefix = name + "."
        if let f = listing().first(where: { $0.hasPrefix(prefix) }) {
            let u = directory.appendingPathComponent(f)
            if isFile(u) { return .found(u) }
        }
        tried.append(directory.appendingPathComponent(prefix + "*").path)
        return .notFound(tried: tried)
    }
}
