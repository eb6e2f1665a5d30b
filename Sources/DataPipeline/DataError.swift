/// Everything wrong with a user's labels.csv or images folder. Messages name the CSV row the way a
/// spreadsheet numbers it (the header is row 1), the column and the offending value.
public enum DataError: Error, CustomStringConvertible, Equatable {
    case fileAccess(path: String, reason: String)
    case notUTF8(path: String)
    case emptyCSV(path: String)
    case missingColumns(missing: [String], found: [String])
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
        case let .notUTF8(path):
            return "\(path) is not UTF-8 text"
        case let .emptyCSV(path):
            return "\(path) has no header row"
        case let .missingColumns(missing, found):
            return "labels.csv is missing required column(s) \(missing.map { "'\($0)'" }.joined(separator: ", ")); "
                + "found: \(found.map { "'\($0)'" }.joined(separator: ", "))"
        case let .wrongFieldCount(row, expected, found):
            return "labels.csv row \(row): \(found) field(s), the header has \(expected)"
        case let .badValue(row, column, value, reason):
            return "labels.csv row \(row), column '\(column)': \(reason): '\(value)'"
        case let .duplicateImage(row, name, firstRow):
            return "labels.csv row \(row), column 'image_name': '\(name)' already appears in row \(firstRow)"
        case let .imageNotFound(row, name, tried):
            return "labels.csv row \(row), column 'image_name': no image for '\(name)'; tried "
                + tried.joined(separator: ", ")
        case let .badImage(row, name, reason):
            return "labels.csv row \(row), column 'image_name': '\(name)': \(reason)"
        case let .noSamples(path):
            return "\(path) has no data rows"
        case let .inFile(path, underlying):
            let text = underlying.description
            return text.hasPrefix("labels.csv") ? path + text.dropFirst("labels.csv".count) : text
        case let .invalidArgument(message):
            return message
        }
    }
}
