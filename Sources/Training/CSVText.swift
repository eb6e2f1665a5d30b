import CSV
import Foundation

/// The text of a CSV file as every CSV this package writes it: RFC 4180 quoting (a field is quoted only when it
/// holds a comma, a double quote or a line break), "\n" between records and after the last one.
func csvText(header: [String], rows: [[String]]) throws -> String {
    let stream = OutputStream(toMemory: ())
    stream.open()
    defer { stream.close() }
    let writer = try CSVWriter(stream: stream, newline: .lf)
    try writer.write(row: header)
    for row in rows { try writer.write(row: row) }
    // CSVWriter puts the line break before each record after the first; the file ends with one, as the seed's do.
    guard let data = stream.property(forKey: .dataWrittenToMemoryStreamKey) as? Data else {
        throw TrainingError("the CSV writer kept no text")
    }
    return String(decoding: data, as: UTF8.self) + "\n"
}
