import Foundation

/// One record of a CSV file.
struct CSVRecord: Equatable {
    var fields: [String]
    /// The line the record starts on, 1-based, as a text editor numbers lines (a quoted cell may hold line
    /// breaks, so the record number and the line number can differ).
    var line: Int
}

/// labels.csv split into records the way pandas' C parser splits it (RFC 4180 plus pandas' leniencies), in
/// one linear pass over the bytes:
/// - `,` separates fields; LF, CRLF or a lone CR ends a record; a final line break is optional.
/// - A field that starts with `"` is quoted: separators and line breaks inside are data, `""` is one quote.
///   Text after the closing quote joins the field (`"ab"cd` is `abcd`); a quote inside an unquoted field is a
///   plain character.
/// - A UTF-8 byte-order mark at the start is dropped.
///
/// Refused with a one-line `DataError` instead of being read on in a way that would hide the problem: a
/// quoted field still open at the end of the file (pandas: "EOF inside string"; read on, it would swallow
/// every later row), a NUL byte, UTF-16 text, bytes that are not UTF-8.
enum CSVRecords {
    private static let comma = UInt8(ascii: ","), quote = UInt8(ascii: "\"")
    private static let lineFeed = UInt8(ascii: "\n"), carriageReturn = UInt8(ascii: "\r")

    static func read(_ data: Data) throws -> [CSVRecord] {
        try data.withUnsafeBytes { raw in try read(raw.bindMemory(to: UInt8.self)) }
    }

    static func read(_ bytes: UnsafeBufferPointer<UInt8>) throws -> [CSVRecord] {
        var position = 0
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { position = 3 }
        if bytes.starts(with: [0xFF, 0xFE]) || bytes.starts(with: [0xFE, 0xFF]) { throw DataError.utf16 }

        enum State { case fieldStart, unquoted, quoted, quoteInQuoted }
        var state = State.fieldStart
        var records: [CSVRecord] = []
        var fields: [String] = []
        var field: [UInt8] = []
        var line = 1
        var recordLine = 1
        var fieldLine = 1
        var quoteLine = 1

        func finishField() throws {
            guard let text = String(validating: field, as: UTF8.self) else { throw DataError.notUTF8(line: fieldLine) }
            fields.append(text)
            field.removeAll(keepingCapacity: true)
        }
        func finishRecord() throws {
            try finishField()
            records.append(CSVRecord(fields: fields, line: recordLine))
            fields.removeAll(keepingCapacity: true)
        }
        /// At a CR or LF that ends a record: moves past it (CRLF as one break) and counts the line.
        func passLineBreak() {
            if bytes[position] == carriageReturn, position + 1 < bytes.count, bytes[position + 1] == lineFeed {
                position += 1
            }
            position += 1
            line += 1
        }

        while position < bytes.count {
            let byte = bytes[position]
            if byte == 0 { throw DataError.nulByte(line: line) }
            switch state {
            case .fieldStart:
                if fields.isEmpty { recordLine = line }
                fieldLine = line
                if byte == quote {
                    state = .quoted
                    quoteLine = line
                    position += 1
                } else if byte == comma {
                    try finishField()
                    position += 1
                } else if byte == lineFeed || byte == carriageReturn {
                    try finishRecord()
                    passLineBreak()
                } else {
                    field.append(byte)
                    state = .unquoted
                    position += 1
                }
            case .unquoted:
                if byte == comma {
                    try finishField()
                    state = .fieldStart
                    position += 1
                } else if byte == lineFeed || byte == carriageReturn {
                    try finishRecord()
                    state = .fieldStart
                    passLineBreak()
                } else {
                    field.append(byte)
                    position += 1
                }
            case .quoted:
                if byte == quote {
                    state = .quoteInQuoted
                } else {
                    field.append(byte)
                    // Line breaks inside the cell are data, but still lines of the file.
                    if byte == lineFeed
                        || (byte == carriageReturn && (position + 1 == bytes.count || bytes[position + 1] != lineFeed)) {
                        line += 1
                    }
                }
                position += 1
            case .quoteInQuoted:
                if byte == quote {
                    field.append(quote)
                    state = .quoted
                    position += 1
                } else if byte == comma {
                    try finishField()
                    state = .fieldStart
                    position += 1
                } else if byte == lineFeed || byte == carriageReturn {
                    try finishRecord()
                    state = .fieldStart
                    passLineBreak()
                } else {
                    field.append(byte)
                    state = .unquoted
                    position += 1
                }
            }
        }
        switch state {
        case .quoted:
            throw DataError.unclosedQuote(row: records.count + 1, line: quoteLine)
        case .unquoted, .quoteInQuoted:
            try finishRecord()
        case .fieldStart:
            // After a separator the record has one more (empty) field; after a line break there is no record.
            if !fields.isEmpty { try finishRecord() }
        }
        return records
    }
}
