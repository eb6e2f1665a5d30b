/// Everything wrong with a user's labels.csv or images folder. Messages are one line; they name the CSV row the
/// way a spreadsheet numbers it (the header is row 1), the column and the offending value. Errors about the
/// file's text itself name the line as a text editor numbers it (a quoted cell may span lines).
public enum DataError: Error, CustomStringConvertible, Equatable {
    case fileAccess(path: String, reason: String)
    /// The bytes from this line on are not UTF-8.
    case notUTF8(line: Int)
    /// The file starts with a UTF-16 byte-order mark.
    case utf16
    /// A NUL byte: a binary file, or UTF-16 without a byte-order mark.
    case nulByte(line: Int)
    /// A quoted cell opened on this line is still open at the end of the file.
    case unclosedQuote(row: Int, line: Int)
    case emptyCSV(path: String)
    case missingColumns(missing: [String], found: [String])
    /// A required column's name appears more than once in the header (1-based column positions).
    case duplicateColumn(row: Int, name: String, positions: [Int])
    case wrongFieldCount(row: Int, expected: Int, found: Int)
    case badValue(row: Int, column: String, value: String, reason: String)
    case duplicateImage(row: Int, name: String, firstRow: Int)
    case imageNotFound(row: Int, name: String, tried: [String])
    case badImage(row: Int, name: String, reason: String)
    case noSamples(path: String)
    case invalidArgument(String)
    /// Any of the above in a labels file not called plain `labels.csv`: the message names its path.
    indirect case inFile(path: String, underlying: DataError)

    /// The error itself, without the file it was found in.
    public var unlocated: DataError {
        if case let .inFile(_, underlying) = self { return underlying }
        return self
    }

    /// This error as raised while reading the labels file at `path` (unchanged for plain `labels.csv`).
    public func located(in path: String) -> DataError {
        if case .inFile = self { return self }
        if path == "labels.csv" { return self }
        return .inFile(path: path, underlying: self)
    }

    public var description: String {
        switch self {
        case let .fileAccess(path, reason):
            return "\(path): \(reason)"
        case let .notUTF8(line):
            return "labels.csv line \(line): not UTF-8 text (save the file as UTF-8, e.g. \"CSV UTF-8\" in Excel)"
        case .utf16:
            return "labels.csv is UTF-16 text; save it as UTF-8 (e.g. \"CSV UTF-8\" in Excel)"
        case let .nulByte(line):
            return "labels.csv line \(line): a NUL byte; this is not a UTF-8 text file (UTF-16 or binary?)"
        case let .unclosedQuote(row, line):
            return "labels.csv row \(row) (line \(line)): a quoted cell starts here and is never closed, so it would "
                + "swallow the rest of the file; look for a stray or missing '\"' in this row"
        case let .emptyCSV(path):
            return "\(path) has no header row"
        case let .missingColumns(missing, found):
            return "labels.csv is missing required column(s) \(missing.map { "'\($0)'" }.joined(separator: ", ")); "
                + "found: \(found.prefix(20).map { "'\(Self.shown($0))'" }.joined(separator: ", "))"
                + (found.count > 20 ? " and \(found.count - 20) more" : "")
        case let .duplicateColumn(row, name, positions):
            return "labels.csv row \(row): column '\(name)' appears \(positions.count) times (columns "
                + "\(positions.map(String.init).joined(separator: ", "))); keep one"
        case let .wrongFieldCount(row, expected, found):
            return "labels.csv row \(row): \(found) field(s), the header has \(expected)"
        case let .badValue(row, column, value, reason):
            return "labels.csv row \(row), column '\(column)': \(reason): '\(Self.shown(value))'"
        case let .duplicateImage(row, name, firstRow):
            return "labels.csv row \(row), column 'image_name': '\(Self.shown(name))' already appears in row \(firstRow)"
        case let .imageNotFound(row, name, tried):
            return "labels.csv row \(row), column 'image_name': no image for '\(Self.shown(name))'; tried "
                + tried.map { Self.shown($0) }.joined(separator: ", ")
        case let .badImage(row, name, reason):
            return "labels.csv row \(row), column 'image_name': '\(Self.shown(name))': \(reason)"
        case let .noSamples(path):
            return "\(path) has no data rows"
        case let .inFile(path, underlying):
            let text = underlying.description
            return text.hasPrefix("labels.csv") ? path + text.dropFirst("labels.csv".count) : text
        case let .invalidArgument(message):
            return message
        }
    }

    /// A cell as quoted in a message: line breaks escaped so the message stays one line, and long cells cut
    /// (a cell can be megabytes) to their start and end.
    static func shown(_ value: String) -> String {
        let limit = 120
        var text = value
        if text.unicodeScalars.count > limit {
            let scalars = text.unicodeScalars
            text = String(String.UnicodeScalarView(scalars.prefix(limit - 20))) + " … "
                + String(String.UnicodeScalarView(scalars.suffix(12))) + " (\(scalars.count) characters)"
        }
        guard text.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else { return text }
        return text.unicodeScalars.map { $0.properties.generalCategory == .control ? $0.escaped(asASCII: true) : "\($0)" }
            .joined()
    }
}
