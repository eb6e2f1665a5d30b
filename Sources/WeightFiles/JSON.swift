/// The small JSON subset a safetensors header needs, parsed with explicit limits: nesting depth (so
/// `[[[[…` is an error, not a stack overflow), and numbers checked against RFC 8259's grammar (no `NaN`,
/// `Infinity`, `01` or `1.`) and kept as their text, so sizes are converted with overflow checks and no
/// Double rounding. Spec: RFC 8259.
///
/// Why not `JSONSerialization` / `JSONDecoder` (used for the package's own, trusted JSON): a header is untrusted,
/// and what this reader guarantees for it is lost there. Numbers come back as `NSNumber`/`Double`, so a size of
/// 2⁶⁴ − 1 or 10²⁰ is rounded instead of refused exactly, and messages can no longer quote the entry as written
/// (`shape entry 0 = 1e3`, `data_offsets [0, 18446744073709551615]`, asserted by HostileInputTests); objects become
/// unordered dictionaries, so the first bad tensor in file order is no longer the one reported and a duplicated
/// tensor name silently keeps one of its descriptions instead of being refused; and the nesting limit would need
/// a second pass over the bytes.
enum JSON {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JSON])
    /// Members in file order; a duplicated name is a parse error.
    case object([(String, JSON)])

    static let maximumDepth = 32

    static func parse(_ bytes: UnsafeRawBufferPointer) throws -> JSON {
        var parser = Parser(bytes: Bytes(bytes))
        parser.skipWhitespace()
        let value = try parser.value(depth: 0)
        parser.skipWhitespace()
        guard parser.position == bytes.count else { throw parser.fail("unexpected text after the JSON value") }
        return value
    }

    /// The value as a non-negative `Int`, if it is an integer literal that fits (`-0` is 0; `2.0`, `1e3`
    /// and anything past `Int.max` are not).
    var nonNegativeInt: Int? {
        guard case .number(let text) = self, let value = Int(text), value >= 0 else { return nil }
        return value
    }

    /// The value for an error message: numbers and short strings as written, containers by type.
    var shortDescription: String {
        switch self {
        case .number(let text): return text.count <= 40 ? text : String(text.prefix(40)) + "…"
        case .string(let text): return "\"" + String(text.prefix(40).map { $0.isNewline ? " " : $0 }) + "\""
        case .bool(let value): return String(value)
        case .null: return "null"
        case .array, .object: return typeName
        }
    }

    /// JSON's insignificant whitespace: space, tab, line feed, carriage return.
    static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09
    }

    var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .number: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }

    private struct Parser {
        let bytes: Bytes
        var position = 0

        func fail(_ message: String) -> FormatProblem {
            FormatProblem.corrupt("header is not valid JSON: \(message) at byte \(position)")
        }

        mutating func skipWhitespace() {
            while position < bytes.count, JSON.isWhitespace(bytes.u8(position)) {
                position += 1
            }
        }

        mutating func value(depth: Int) throws -> JSON {
            guard depth < JSON.maximumDepth else { throw fail("nesting deeper than \(JSON.maximumDepth)") }
            guard position < bytes.count else { throw fail("unexpected end") }
            switch bytes.u8(position) {
            case UInt8(ascii: "{"):
                position += 1
                var members: [(String, JSON)] = []
                var seen = Set<String>()
                skipWhitespace()
                if position < bytes.count, bytes.u8(position) == UInt8(ascii: "}") { position += 1; return .object([]) }
                while true {
                    skipWhitespace()
                    guard position < bytes.count, bytes.u8(position) == UInt8(ascii: "\"") else { throw fail("expected a member name") }
                    let name = try string()
                    guard seen.insert(name).inserted else {
                        throw FormatProblem.corrupt("header is not valid JSON: duplicate name \(shown(name))")
                    }
                    skipWhitespace()
                    try expect(":")
                    skipWhitespace()
                    members.append((name, try value(depth: depth + 1)))
                    skipWhitespace()
                    if try endOrComma("}") { return .object(members) }
                }
            case UInt8(ascii: "["):
                position += 1
                var items: [JSON] = []
                skipWhitespace()
                if position < bytes.count, bytes.u8(position) == UInt8(ascii: "]") { position += 1; return .array([]) }
                while true {
                    skipWhitespace()
                    items.append(try value(depth: depth + 1))
                    skipWhitespace()
                    if try endOrComma("]") { return .array(items) }
                }
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
                return try number()
            }
        }

        mutating func expect(_ character: Unicode.Scalar) throws {
            guard position < bytes.count, bytes.u8(position) == UInt8(ascii: character) else {
                throw fail("expected '\(character)'")
            }
            position += 1
        }

        mutating func endOrComma(_ close: Unicode.Scalar) throws -> Bool {
            guard position < bytes.count else { throw fail("unexpected end") }
            let c = bytes.u8(position)
            position += 1
            if c == UInt8(ascii: close) { return true }
            if c == UInt8(ascii: ",") { return false }
            position -= 1
            throw fail("expected ',' or '\(close)'")
        }

        mutating func literal(_ word: String) throws {
            for scalar in word.utf8 {
                guard position < bytes.count, bytes.u8(position) == scalar else { throw fail("invalid literal") }
                position += 1
            }
        }

        /// number = [ "-" ] ( "0" / 1-9 *DIGIT ) [ "." 1*DIGIT ] [ ( "e" / "E" ) [ "-" / "+" ] 1*DIGIT ]
        mutating func number() throws -> JSON {
            let start = position
            func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
            func current() -> UInt8? { position < bytes.count ? bytes.u8(position) : nil }
            /// One or more digits; false when there is none.
            func digits() -> Bool {
                let first = position
                while let c = current(), isDigit(c) { position += 1 }
                return position > first
            }
            if current() == UInt8(ascii: "-") { position += 1 }
            guard let lead = current(), isDigit(lead) else {
                // NaN, Infinity, a bare '-' or any other stray character.
                throw fail("unexpected character (not a value; JSON has no NaN or Infinity)")
            }
            if lead == UInt8(ascii: "0") {
                position += 1
                if let c = current(), isDigit(c) { throw fail("number with a leading zero") }
            } else {
                _ = digits()
            }
            if current() == UInt8(ascii: ".") {
                position += 1
                guard digits() else { throw fail("number without digits after '.'") }
            }
            if current() == UInt8(ascii: "e") || current() == UInt8(ascii: "E") {
                position += 1
                if current() == UInt8(ascii: "+") || current() == UInt8(ascii: "-") { position += 1 }
                guard digits() else { throw fail("number without digits in its exponent") }
            }
            return .number(String(decoding: bytes.slice(start, position - start), as: UTF8.self))
        }

        mutating func string() throws -> String {
            position += 1   // opening quote
            var out: [UInt8] = []
            while true {
                guard position < bytes.count else { throw fail("unterminated string") }
                let c = bytes.u8(position)
                position += 1
                switch c {
                case UInt8(ascii: "\""):
                    guard let text = String(validating: out, as: UTF8.self) else { throw fail("string is not UTF-8") }
                    return text
                case UInt8(ascii: "\\"):
                    guard position < bytes.count else { throw fail("unterminated string") }
                    let e = bytes.u8(position)
                    position += 1
                    switch e {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                    case UInt8(ascii: "b"): out.append(0x08)
                    case UInt8(ascii: "f"): out.append(0x0C)
                    case UInt8(ascii: "n"): out.append(0x0A)
                    case UInt8(ascii: "r"): out.append(0x0D)
                    case UInt8(ascii: "t"): out.append(0x09)
                    case UInt8(ascii: "u"):
                        var scalar = try hex4()
                        if (0xD800..<0xDC00).contains(scalar) {
                            try literal("\\u")
                            let low = try hex4()
                            guard (0xDC00..<0xE000).contains(low) else { throw fail("unpaired surrogate") }
                            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        }
                        guard let u = Unicode.Scalar(scalar) else { throw fail("invalid \\u escape") }
                        out.append(contentsOf: String(Character(u)).utf8)
                    default:
                        throw fail("invalid escape")
                    }
                default:
                    guard c >= 0x20 else { throw fail("control character in a string") }
                    out.append(c)
                }
            }
        }

        mutating func hex4() throws -> UInt32 {
            var value: UInt32 = 0
            for _ in 0..<4 {
                guard position < bytes.count, let digit = Int(String(UnicodeScalar(bytes.u8(position))), radix: 16) else {
                    throw fail("invalid \\u escape")
                }
                value = value << 4 | UInt32(digit)
                position += 1
            }
            return value
        }
    }

    /// `text` as a JSON string literal.
    static func quote(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
