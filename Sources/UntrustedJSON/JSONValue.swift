/// The package's one reader of JSON that comes from outside (a safetensors header, a labels.csv
/// `bounding_boxes` cell): one tokenizer and parser over UTF-8 bytes, one value type, and a `JSONDialect`
/// that says which grammar the caller's format follows.
///
/// Why not `JSONSerialization` / `JSONDecoder` (used for the package's own, trusted JSON): what each caller
/// promises about untrusted text is lost there. Numbers come back as `NSNumber`/`Double`, so a safetensors size
/// of 2⁶⁴ − 1 or 10²⁰ is rounded instead of refused exactly, and messages can no longer quote an entry as written
/// (`shape entry 0 = 1e3`, asserted by HostileInputTests); objects become unordered dictionaries, so the first bad
/// tensor in file order is no longer the one reported and a duplicated tensor name silently keeps one of its
/// descriptions; the nesting limit would need a second pass over the bytes. And it reads neither grammar the
/// callers need: it refuses `NaN` and `Infinity` and reads `1e400` differently from Python's `json.loads` (whose
/// grammar decides which box cells the seed could read), and its JSON5 mode accepts much that Python refuses
/// (LabelsRobustnessTests pin Python's behaviour on each).
///
/// Numbers are kept as their literal text: converting them is the caller's business (an exact `Int` with
/// overflow checks for a size, Python's float for a box coordinate).
public enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    /// The number as written (`-0`, `1e3`, `18446744073709551616`; in the Python dialect also `NaN`,
    /// `Infinity` and `-Infinity`).
    case number(String)
    case string(String)
    case array([JSONValue])
    /// Members in text order. A repeated name is refused or, in the Python dialect, keeps the place of its
    /// first occurrence and the value of its last (a Python `dict`'s behaviour).
    case object([Member])

    /// One name-value pair of an object. (A struct rather than a tuple: arrays of tuples look their element
    /// type up at run time on every allocation and release, a third of the time of a cell of a million boxes.)
    public struct Member: Equatable, Sendable {
        public var name: String
        public var value: JSONValue

        public init(_ name: String, _ value: JSONValue) {
            self.name = name
            self.value = value
        }
    }

    /// The value's kind with an article, for error messages: "an object", "a number".
    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .number: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }

    /// The value for an error message: numbers and short strings as written, containers by type.
    public var shortDescription: String {
        switch self {
        case .number(let text): return text.count <= 40 ? text : String(text.prefix(40)) + "…"
        case .string(let text): return "\"" + String(text.prefix(40).map { $0.isNewline ? " " : $0 }) + "\""
        case .bool(let value): return String(value)
        case .null: return "null"
        case .array, .object: return typeName
        }
    }

    /// JSON's insignificant whitespace: space, tab, line feed, carriage return.
    public static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09
    }

    /// `text` as a JSON string literal (for writers of the same formats).
    public static func quote(_ text: String) -> String {
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

/// Which JSON a caller's format follows.
public struct JSONDialect: Sendable {
    /// What a repeated member name in one object does.
    public enum DuplicateNames: Sendable {
        /// A parse error (a safetensors header: two descriptions of one tensor is a corrupt file).
        case refuse
        /// The last value wins, at the first one's place (Python's `dict`).
        case lastWins
    }

    /// `NaN`, `Infinity` and `-Infinity` are numbers (kept as that text).
    public var nonFiniteLiterals: Bool
    public var duplicateNames: DuplicateNames
    /// A `\uD800`-style escape that is not half of a surrogate pair: an error when false, U+FFFD when true
    /// (Python keeps the lone surrogate, which a Swift `String` cannot hold; no caller's check tells the two apart).
    public var replacesLoneSurrogates: Bool
    /// Arrays and objects nested deeper than this are an error. The parser recurses once per level, never
    /// deeper than this, so the limit is kept small enough for any thread's stack.
    public let maximumNesting: Int

    public init(nonFiniteLiterals: Bool, duplicateNames: DuplicateNames, replacesLoneSurrogates: Bool,
                maximumNesting: Int) {
        precondition((1 ... 4096).contains(maximumNesting), "JSONDialect: maximumNesting \(maximumNesting) outside 1…4096")
        self.nonFiniteLiterals = nonFiniteLiterals
        self.duplicateNames = duplicateNames
        self.replacesLoneSurrogates = replacesLoneSurrogates
        self.maximumNesting = maximumNesting
    }

    /// RFC 8259 to the letter: no `NaN`/`Infinity`, no lone surrogates, and a repeated name is an error.
    public static func strict(maximumNesting: Int) -> JSONDialect {
        JSONDialect(nonFiniteLiterals: false, duplicateNames: .refuse, replacesLoneSurrogates: false,
                    maximumNesting: maximumNesting)
    }

    /// Python's `json.loads`: `NaN`, `Infinity`, `-Infinity`; the last of repeated names wins; lone surrogates
    /// are accepted. (Raw control characters in strings are errors, as in Python's default strict mode.)
    public static func python(maximumNesting: Int) -> JSONDialect {
        JSONDialect(nonFiniteLiterals: true, duplicateNames: .lastWins, replacesLoneSurrogates: true,
                    maximumNesting: maximumNesting)
    }
}

/// Why the text is not JSON of the dialect, and the byte offset where that was found.
public struct JSONSyntaxError: Error, Equatable, Sendable, CustomStringConvertible {
    /// What is wrong, e.g. "nesting deeper than 32", "number with a leading zero".
    public let message: String
    public let offset: Int
    /// The name, when the error is a repeated member name (`JSONDialect.DuplicateNames.refuse`).
    public let duplicateName: String?

    public var description: String { "\(message) at byte \(offset)" }
}
