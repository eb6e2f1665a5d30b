extension JSONValue {
    /// Parses one JSON document: optional whitespace, one value, optional whitespace, nothing else.
    /// Time is linear in the input; recursion never goes deeper than `dialect.maximumNesting`.
    /// - Throws: `JSONSyntaxError`.
    public static func parse(_ bytes: UnsafeRawBufferPointer, dialect: JSONDialect) throws -> JSONValue {
        try bytes.withMemoryRebound(to: UInt8.self) { utf8 in
            var parser = JSONParser(bytes: utf8, dialect: dialect)
            return try parser.document()
        }
    }

    /// Parses `text`'s UTF-8 (see `parse(_:dialect:)` for bytes).
    public static func parse(_ text: String, dialect: JSONDialect) throws -> JSONValue {
        var text = text
        return try text.withUTF8 { utf8 in
            var parser = JSONParser(bytes: utf8, dialect: dialect)
            return try parser.document()
        }
    }
}

/// The recursive-descent parser behind `JSONValue.parse`, over UTF-8 bytes (no String or Foundation
/// operations on the whole text, which on Linux would convert it to UTF-16 first).
private struct JSONParser {
    let bytes: UnsafeBufferPointer<UInt8>
    let dialect: JSONDialect
    var position = 0

    init(bytes: UnsafeBufferPointer<UInt8>, dialect: JSONDialect) {
        self.bytes = bytes
        self.dialect = dialect
    }

    func fail(_ message: String) -> JSONSyntaxError {
        JSONSyntaxError(message: message, offset: position, duplicateName: nil)
    }

    func peek() -> UInt8? { position < bytes.count ? bytes[position] : nil }

    mutating func skipWhitespace() {
        while position < bytes.count, JSONValue.isWhitespace(bytes[position]) { position += 1 }
    }

    mutating func document() throws -> JSONValue {
        skipWhitespace()
        let value = try value(depth: 0)
        skipWhitespace()
        guard position == bytes.count else { throw fail("unexpected text after the JSON value") }
        return value
    }

    /// One value; `depth` is the number of arrays and objects around it.
    mutating func value(depth: Int) throws -> JSONValue {
        guard let first = peek() else { throw fail("unexpected end") }
        switch first {
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            guard depth < dialect.maximumNesting else { throw fail("nesting deeper than \(dialect.maximumNesting)") }
            position += 1
            skipWhitespace()
            return first == UInt8(ascii: "[") ? try array(depth: depth + 1) : try object(depth: depth + 1)
        case UInt8(ascii: "\""):
            return .string(try string())
        case UInt8(ascii: "t"):
            try literal("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try literal("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try literal("null")
            return .null
        default:
            return .number(try number())
        }
    }

    /// The items after `[` and any whitespace.
    mutating func array(depth: Int) throws -> JSONValue {
        if peek() == UInt8(ascii: "]") {
            position += 1
            return .array([])
        }
        // Room for a few from the start: growing 1 → 2 → 4 costs three allocations per small array.
        var items: [JSONValue] = []
        items.reserveCapacity(4)
        while true {
            skipWhitespace()
            items.append(try value(depth: depth))
            if try endOfItem(closing: "]") { return .array(items) }
        }
    }

    /// The members after `{` and any whitespace. Names are looked up by scanning while the object is small
    /// (a box has three) and through a dictionary once it is not, so a huge object stays linear.
    mutating func object(depth: Int) throws -> JSONValue {
        if peek() == UInt8(ascii: "}") {
            position += 1
            return .object([])
        }
        var members: [JSONValue.Member] = []
        members.reserveCapacity(4)
        var index: [String: Int] = [:]
        let scanLimit = 8
        while true {
            skipWhitespace()
            guard peek() == UInt8(ascii: "\"") else { throw fail("expected a member name") }
            let nameOffset = position
            let name = try string()
            skipWhitespace()
            guard peek() == UInt8(ascii: ":") else { throw fail("expected ':'") }
            position += 1
            skipWhitespace()
            let item = try value(depth: depth)
            let earlier = members.count <= scanLimit ? members.firstIndex { $0.name == name } : index[name]
            if let earlier {
                guard dialect.duplicateNames == .lastWins else {
                    throw JSONSyntaxError(message: "duplicate name", offset: nameOffset, duplicateName: name)
                }
                members[earlier].value = item
            } else {
                members.append(JSONValue.Member(name, item))
                if members.count > scanLimit {
                    if index.isEmpty {
                        for (k, member) in members.enumerated() { index[member.name] = k }
                    } else {
                        index[name] = members.count - 1
                    }
                }
            }
            if try endOfItem(closing: "}") { return .object(members) }
        }
    }

    /// After an item: `,` → more items follow (false); the closing bracket → done (true).
    mutating func endOfItem(closing: Unicode.Scalar) throws -> Bool {
        skipWhitespace()
        switch peek() {
        case UInt8(ascii: ","):
            position += 1
            return false
        case UInt8(ascii: closing):
            position += 1
            return true
        case nil:
            throw fail("unexpected end")
        default:
            throw fail("expected ',' or '\(closing)'")
        }
    }

    mutating func literal(_ word: StaticString) throws {
        let count = word.utf8CodeUnitCount
        guard bytes.count - position >= count else { throw fail("invalid literal") }
        let expected = UnsafeBufferPointer(start: word.utf8Start, count: count)
        for k in 0 ..< count where bytes[position + k] != expected[k] { throw fail("invalid literal") }
        position += count
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [-+]? [0-9]+)?`, and with `nonFiniteLiterals` also `NaN`,
    /// `Infinity`, `-Infinity`; the text as written. (Python's grammar ends the number before a `.` or `e`
    /// without digits and then fails on the stray character; both are an error either way.)
    mutating func number() throws -> String {
        let start = position
        func isDigit(_ byte: UInt8?) -> Bool { byte.map { (0x30 ... 0x39).contains($0) } ?? false }
        /// One or more digits; false when there is none.
        func digits() -> Bool {
            let from = position
            while isDigit(peek()) { position += 1 }
            return position > from
        }
        if dialect.nonFiniteLiterals, peek() == UInt8(ascii: "N") {
            try literal("NaN")
            return "NaN"
        }
        if peek() == UInt8(ascii: "-") { position += 1 }
        if dialect.nonFiniteLiterals, peek() == UInt8(ascii: "I") {
            try literal("Infinity")
            return position - start == 8 ? "Infinity" : "-Infinity"
        }
        guard isDigit(peek()) else {
            // NaN, Infinity, a bare '-' or any other stray character.
            throw fail(dialect.nonFiniteLiterals ? "unexpected character (not a value)"
                : "unexpected character (not a value; JSON has no NaN or Infinity)")
        }
        if peek() == UInt8(ascii: "0") {
            position += 1
            if isDigit(peek()) { throw fail("number with a leading zero") }
        } else {
            _ = digits()
        }
        if peek() == UInt8(ascii: ".") {
            position += 1
            guard digits() else { throw fail("number without digits after '.'") }
        }
        if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
            position += 1
            if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") { position += 1 }
            guard digits() else { throw fail("number without digits in its exponent") }
        }
        return String(decoding: UnsafeBufferPointer(rebasing: bytes[start ..< position]), as: UTF8.self)
    }

    /// A string, the opening quote at `position`. Raw control characters are errors (RFC 8259, and Python's
    /// default); the text must be UTF-8.
    mutating func string() throws -> String {
        position += 1
        let start = position
        // Fast path: no escapes, the bytes are the string.
        var allBits: UInt8 = 0
        while position < bytes.count {
            let b = bytes[position]
            allBits |= b
            if b == UInt8(ascii: "\"") {
                position += 1
                let utf8 = UnsafeBufferPointer(rebasing: bytes[start ..< position - 1])
                // ASCII needs no validation (and `String(validating:)` is not specialized: slow for many short strings).
                return allBits < 0x80 ? String(decoding: utf8, as: UTF8.self) : try validated(utf8)
            }
            if b == UInt8(ascii: "\\") { break }
            if b < 0x20 { throw fail("control character in a string") }
            position += 1
        }
        var out = Array(UnsafeBufferPointer(rebasing: bytes[start ..< position]))
        while true {
            guard let b = peek() else { throw fail("unterminated string") }
            position += 1
            switch b {
            case UInt8(ascii: "\""):
                return try out.withUnsafeBufferPointer { try validated($0) }
            case UInt8(ascii: "\\"):
                guard let e = peek() else { throw fail("unterminated string") }
                position += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"): UTF8.encode(try escapedScalar()) { out.append($0) }
                default: throw fail("invalid escape")
                }
            default:
                guard b >= 0x20 else {
                    position -= 1
                    throw fail("control character in a string")
                }
                out.append(b)
            }
        }
    }

    func validated(_ utf8: UnsafeBufferPointer<UInt8>) throws -> String {
        guard let text = String(validating: utf8, as: UTF8.self) else { throw fail("string is not UTF-8") }
        return text
    }

    /// The scalar of a `\u` escape (its four hex digits at `position`), joined with a following `\uDC00`-style
    /// escape when it is the high half of a surrogate pair.
    mutating func escapedScalar() throws -> Unicode.Scalar {
        let unit = try hex4()
        if (0xD800 ..< 0xDC00).contains(unit), bytes.count - position >= 6, bytes[position] == UInt8(ascii: "\\"),
           bytes[position + 1] == UInt8(ascii: "u") {
            let resume = position
            position += 2
            let low = try hex4()
            if (0xDC00 ..< 0xE000).contains(low) {
                return Unicode.Scalar(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))!
            }
            position = resume
        }
        if let scalar = Unicode.Scalar(unit) { return scalar }
        guard dialect.replacesLoneSurrogates else { throw fail("unpaired surrogate") }
        return "\u{FFFD}"
    }

    mutating func hex4() throws -> UInt32 {
        guard bytes.count - position >= 4 else { throw fail("invalid \\u escape") }
        var value: UInt32 = 0
        for _ in 0 ..< 4 {
            let b = bytes[position]
            let digit: UInt8
            switch b {
            case UInt8(ascii: "0") ... UInt8(ascii: "9"): digit = b - UInt8(ascii: "0")
            case UInt8(ascii: "a") ... UInt8(ascii: "f"): digit = b - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A") ... UInt8(ascii: "F"): digit = b - UInt8(ascii: "A") + 10
            default: throw fail("invalid \\u escape")
            }
            value = value << 4 | UInt32(digit)
            position += 1
        }
        return value
    }
}
