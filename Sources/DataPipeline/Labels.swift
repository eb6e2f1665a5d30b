import FileIO
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

/// labels.csv read with the seed script's rules (ARCHITECTURE §2).
public struct LabelsTable: Sendable {
    public static let requiredColumns = ["image_name", "interesting/not interesting", "num_person", "num_vehicles",
                                         "avg_person_conf", "total_boxes", "bounding_boxes"]
    /// File extensions tried, in order, for an `image_name` without one.
    public static let candidateExtensions = [".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"]

    public let samples: [LabeledSample]
    public let maxBoxes: Int
    /// How errors name the labels file: its path when read from disk.
    public let source: String
    /// `4 + 8·maxBoxes` (≤ `BoxEncoding.metaDimLimit`).
    public let metaDim: Int
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
    ///   - maxBoxes: K of the box encoding (`--max-boxes`), in `0…BoxEncoding.maxBoxesLimit`; checked before
    ///     the file is read.
    ///   - checkImages: read each image's JPEG header now so a bad file is reported with its row before
    ///     training starts.
    ///   - labelsOptional: a file without the label column is read with every label 0 (new frames to predict).
    public init(csvURL: URL, imagesDirectory: URL, maxBoxes: Int, checkImages: Bool = true,
                labelsOptional: Bool = false) throws {
        try BoxEncoding.validateMaxBoxes(maxBoxes)
        let data: Data
        do { data = try RegularFile.read(csvURL) } catch {
            throw DataError.fileAccess(path: csvURL.path, reason: "cannot read: \(error.localizedDescription)")
        }
        try self.init(csvData: data, csvName: csvURL.path, imagesDirectory: imagesDirectory, maxBoxes: maxBoxes,
                      checkImages: checkImages, labelsOptional: labelsOptional)
    }

    /// Same as `init(csvURL:…)` on CSV bytes already in memory.
    /// - Parameter csvName: how errors name the file (its path when read from disk).
    public init(csvData: Data, csvName: String = "labels.csv", imagesDirectory: URL, maxBoxes: Int,
                checkImages: Bool = true, labelsOptional: Bool = false) throws {
        do {
            try self.init(parsing: csvData, csvName: csvName, findImage: ImageFinder(directory: imagesDirectory).find,
                          maxBoxes: maxBoxes, checkImages: checkImages, labelsOptional: labelsOptional)
        } catch let error as DataError {
            throw error.located(in: csvName)
        }
    }

    /// Reads CSV bytes with image names resolved by `findImage` instead of a folder and no image checks: every
    /// rule of the file itself, without the file system (for the fuzz target).
    init(csvData: Data, csvName: String, maxBoxes: Int, findImage: (String) -> ImageFinder.Result) throws {
        do {
            try self.init(parsing: csvData, csvName: csvName, findImage: findImage, maxBoxes: maxBoxes,
                          checkImages: false, labelsOptional: false)
        } catch let error as DataError {
            throw error.located(in: csvName)
        }
    }

    private init(parsing csvData: Data, csvName: String, findImage: (String) -> ImageFinder.Result, maxBoxes: Int,
                 checkImages: Bool, labelsOptional: Bool) throws {
        // Before anything is sized by it (a metadata row holds 4 + 8·maxBoxes floats).
        try BoxEncoding.validateMaxBoxes(maxBoxes)
        guard let metaDim = BoxEncoding.metaDim(maxBoxes: maxBoxes) else { preconditionFailure("validated above") }
        let records = try CSVRecords.read(csvData)
        // Records are spreadsheet-numbered (row = position + 1); blank lines count as rows but hold no data,
        // and pandas skips them, also before the header.
        let isBlank = { (fields: [String]) in
            fields.count == 1 && fields[0].allSatisfy { $0 == " " || $0 == "\t" }
        }
        guard let headerIndex = records.firstIndex(where: { !isBlank($0.fields) }) else {
            throw DataError.emptyCSV(path: csvName)
        }
        let names = records[headerIndex].fields.map { $0.trimmingCharacters(in: .whitespaces) }
        var column: [String: Int] = [:]
        for (i, n) in names.enumerated() where column[n] == nil { column[n] = i }
        let labelCol = "interesting/not interesting"
        let labelsAbsent = labelsOptional && column[labelCol] == nil
        let missing = Self.requiredColumns.filter { column[$0] == nil && !(labelsAbsent && $0 == labelCol) }
        if !missing.isEmpty { throw DataError.missingColumns(missing: missing, found: names) }
        // pandas would silently read the first of two same-named columns; which one the user meant is a guess.
        for required in Self.requiredColumns {
            let positions = names.indices.filter { names[$0] == required }
            if positions.count > 1 {
                throw DataError.duplicateColumn(row: headerIndex + 1, name: required, positions: positions.map { $0 + 1 })
            }
        }
        func col(_ n: String) -> Int { column[n] ?? 0 }  // every required column is present here

        var rows: [(number: Int, fields: [String])] = []
        for i in records.indices.dropFirst(headerIndex + 1) {
            let fields = records[i].fields
            if names.count > 1, isBlank(fields) { continue }
            guard fields.count == names.count else {
                throw DataError.wrongFieldCount(row: i + 1, expected: names.count, found: fields.count)
            }
            rows.append((i + 1, fields))
        }
        if rows.isEmpty { throw DataError.noSamples(path: csvName) }

        let labelCells = labelsAbsent ? rows.map { _ in "0" } : rows.map { $0.fields[col(labelCol)] }
        // pandas reads an all-numeric column as numbers (then `int(v) == 1`), otherwise as strings.
        let numericLabels = labelCells.allSatisfy { Self.pythonFloat($0) != nil }

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

            let label = labelsAbsent ? 0
                : try Self.parseLabel(fields[col(labelCol)], numericColumn: numericLabels, row: number, column: labelCol)

            var metadata = [Float]()
            metadata.reserveCapacity(metaDim)
            for c in ["num_person", "num_vehicles", "avg_person_conf", "total_boxes"] {
                metadata.append(try Self.metadataNumber(fields[col(c)], row: number, column: c))
            }
            let (boxes, status) = BoxEncoding.parseCell(fields[col("bounding_boxes")])
            if status == .unparseable { unparseable.append(number) }
            if let bad = BoxEncoding.firstNonFiniteValue(in: boxes) {
                let divisor = bad.field == "score" ? "" : bad.field.hasPrefix("x") ? " / 1280" : " / 960"
                let reason = bad.value.isFinite
                    ? "box \(bad.box)'s \(bad.field)\(divisor) is too large for a 32-bit float"
                    : "box \(bad.box)'s \(bad.field) is not a finite number"
                throw DataError.badValue(row: number, column: "bounding_boxes", value: "\(bad.value)", reason: reason)
            }
            metadata += BoxEncoding.encode(boxes, maxBoxes: maxBoxes)

            let url: URL
            switch findImage(name) {
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
        self.metaDim = metaDim
        source = csvName
        self.unparseableBoxRows = unparseable
    }

    /// A metadata column's cell as the model's float32 input: a number (Python's `float`) that stays finite as
    /// a Float. A finite value that fits a Float is accepted however large (the seed accepts it too).
    static func metadataNumber(_ cell: String, row: Int, column: String) throws -> Float {
        guard let value = pythonFloat(cell) else {
            throw DataError.badValue(row: row, column: column, value: cell,
                                     reason: cell.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
                                         ? "empty cell" : "not a number")
        }
        guard value.isFinite else {
            throw DataError.badValue(row: row, column: column, value: cell, reason: "not a finite number")
        }
        let single = Float(value)
        guard single.isFinite else {
            throw DataError.badValue(row: row, column: column, value: cell,
                                     reason: "too large for a 32-bit float (at most ±3.4e38)")
        }
        return single
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
            // pandas reads "nan" as a missing value, on which the seed's int() fails: never a silent 0.
            guard v.isFinite else {
                throw DataError.badValue(row: row, column: column, value: cell, reason: "label is not finite")
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
            let head = try RegularFile.read(url, firstBytes: 64 << 10)
            switch try ImageFormat(of: head, source: url.lastPathComponent) {
            case .jpeg:
                do {
                    _ = try decoder.header(head, source: url.lastPathComponent)
                } catch ImagingError.corrupt where head.count == 64 << 10 {
                    _ = try decoder.header(try RegularFile.read(url), source: url.lastPathComponent)
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
    private let listing: () -> Listing

    /// The folder's file names, sorted, and the same names grouped by stem (`stem(of:)`), read once. A name
    /// without an extension can only match the files of its own stem, so each lookup reads one group: scanning
    /// the whole folder per row made a labels.csv whose names all reach this rule (e.g. `frame_1` for
    /// `frame_1.JPG`) quadratic, hours for 100 000 rows.
    private struct Listing {
        var sorted: [String]
        var byStem: [String: [String]]
    }

    public init(directory: URL) {
        self.directory = directory
        let dir = directory
        var cached: Listing?
        listing = {
            if let c = cached { return c }
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).sorted()
            var byStem: [String: [String]] = [:]
            for n in names { if let stem = Self.stem(of: n) { byStem[stem, default: []].append(n) } }
            let listing = Listing(sorted: names, byStem: byStem)
            cached = listing
            return listing
        }
    }

    /// A file name up to the first dot after its leading dots (`frame_1.JPG` → `frame_1`, `.a.b` → `.a`); nil
    /// without such a dot. A file starts with `name.` (for a `name` without an extension, not all dots) exactly
    /// when its stem is `name`.
    static func stem(of file: String) -> String? {
        let leadingDots = file.prefix { $0 == "." }.count
        guard let dot = file.dropFirst(leadingDots).firstIndex(of: ".") else { return nil }
        return String(file[..<dot])
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
        let files = listing()
        // Names made only of dots have no stem to look up: the one such row reads the whole list.
        let candidates = name.allSatisfy { $0 == "." } ? files.sorted : files.byStem[name] ?? []
        if let f = candidates.first(where: { $0.hasPrefix(prefix) }) {
            let u = directory.appendingPathComponent(f)
            if isFile(u) { return .found(u) }
        }
        tried.append(directory.appendingPathComponent(prefix + "*").path)
        return .notFound(tried: tried)
    }
}
