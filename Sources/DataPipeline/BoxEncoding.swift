import Foundation

/// One detector box from a `bounding_boxes` cell.
public struct DetectorBox: Equatable, Sendable {
    /// `[x1, y1, x2, y2]` in pixels of the 1280x960 frame, or nil when the bbox is not a list of 4.
    public var bbox: [Double]?
    /// The score; a missing or non-numeric score is 0.
    public var score: Double
    /// The label, trimmed and lower-cased.
    public var label: String

    public init(bbox: [Double]?, score: Double, label: String) {
        self.bbox = bbox
        self.score = score
        self.label = label
    }
}

/// The detector metadata encoding: `[num_person, num_vehicles, avg_person_conf, total_boxes]` followed by the
/// top-K boxes by score, 8 numbers each.
public enum BoxEncoding {
    /// Frame size the seed normalises coordinates by.
    public static let frameWidth = 1280.0
    public static let frameHeight = 960.0
    public static let vehicleLabels: Set<String> = ["car", "truck", "bus", "motorcycle", "vehicle"]

    /// Numbers per kept box: 4 coordinates, the score, a 3-way one-hot class.
    public static let valuesPerBox = 8
    /// Scalar columns before the boxes: num_person, num_vehicles, avg_person_conf, total_boxes.
    public static let scalarCount = 4

    /// The largest K (`--max-boxes`, a model file's `max_boxes`) accepted anywhere.
    ///
    /// Detectors cap their own output well below it (torchvision's detection models keep 100 boxes per image,
    /// Ultralytics YOLO 300 by default), so 1000 leaves room for any real detector while keeping every size
    /// derived from K small: `meta_dim` ≤ 8004, the metadata network's first layer ≤ 8004·128 ≈ 1M weights,
    /// 32 KB of metadata per frame. Without a bound, `8·K` overflows or the allocation of a row aborts.
    /// Code that reads K or `meta_dim` from a file or flag validates it against this constant (or `metaDimLimit`).
    public static let maxBoxesLimit = 1000

    /// `meta_dim` for `maxBoxesLimit` boxes (8004): the largest metadata width accepted anywhere.
    public static let metaDimLimit = scalarCount + valuesPerBox * maxBoxesLimit

    /// `meta_dim = 4 + 8·K`, or nil when K is outside `0…maxBoxesLimit` (computed with overflow checks, so
    /// any Int is safe to pass).
    public static func metaDim(maxBoxes: Int) -> Int? {
        guard (0 ... maxBoxesLimit).contains(maxBoxes) else { return nil }
        let (boxValues, overflowA) = valuesPerBox.multipliedReportingOverflow(by: maxBoxes)
        let (total, overflowB) = scalarCount.addingReportingOverflow(boxValues)
        return overflowA || overflowB ? nil : total
    }

    /// K for a metadata width: the inverse of `metaDim(maxBoxes:)`, nil when `metaDim` is not `4 + 8·K` for a
    /// K in `0…maxBoxesLimit`. For checking a model file's `meta_dim` against its `max_boxes`.
    public static func maxBoxes(metaDim: Int) -> Int? {
        guard metaDim >= scalarCount, metaDim <= metaDimLimit, (metaDim - scalarCount) % valuesPerBox == 0 else {
            return nil
        }
        return (metaDim - scalarCount) / valuesPerBox
    }

    /// Checks `--max-boxes` before anything is sized by it.
    /// - Throws: `DataError.invalidArgument`, one line: `--max-boxes must be in 0…1000 (got N)`.
    public static func validateMaxBoxes(_ maxBoxes: Int) throws {
        guard metaDim(maxBoxes: maxBoxes) != nil else {
            throw DataError.invalidArgument("--max-boxes must be in 0…\(maxBoxesLimit) (got \(maxBoxes))")
        }
    }

    /// Outcome of reading one `bounding_boxes` cell.
    public enum CellStatus: Equatable, Sendable {
        /// Empty cell, or valid JSON list.
        case ok
        /// Valid only after replacing `""` with `"` (a spreadsheet's doubled quotes left in the cell).
        case okAfterUnquoting
        /// Neither parse works, or the JSON is not a list of objects: the seed's "no boxes".
        case unparseable
    }

    /// Parses a `bounding_boxes` cell: empty → no boxes; JSON; else JSON after `""` → `"`; else no boxes.
    ///
    /// JSON is read as Python's `json.loads` reads it (the seed's parser): `NaN`, `Infinity` and `-Infinity`
    /// are numbers, a number too large for a Double is infinite, raw control characters inside strings are
    /// errors. Nesting deeper than `maxNesting` counts as unparseable, as Python's recursion limit makes it
    /// there; the reader never recurses deeper than that, whatever the cell holds. Time is linear in the cell.
    /// (Hence a reader of its own rather than `JSONSerialization`: Foundation refuses `NaN` and `Infinity` and
    /// reads `1e400` differently, and its JSON5 mode accepts much that Python refuses; LabelsRobustnessTests pin
    /// Python's behaviour on each.)
    /// - Parameter cell: the raw cell text.
    /// - Returns: the boxes in JSON order and how the cell was read. Numbers may be non-finite:
    ///   `firstNonFiniteValue(in:)` finds them.
    public static func parseCell(_ cell: String) -> (boxes: [DetectorBox], status: CellStatus) {
        if cell.unicodeScalars.allSatisfy(isPythonWhitespace) { return ([], .ok) }
        switch BoxJSONReader.read(cell) {
        case let .boxes(boxes): return (boxes, .ok)
        case .notAListOfObjects: return ([], .unparseable)
        case .invalidJSON: break
        }
        // Only when the cell is not JSON at all: a spreadsheet may have left CSV's doubled quotes in it.
        guard cell.contains("\"\"") else { return ([], .unparseable) }
        if case let .boxes(boxes) = BoxJSONReader.read(cell.replacingOccurrences(of: "\"\"", with: "\"")) {
            return (boxes, .okAfterUnquoting)
        }
        return ([], .unparseable)
    }

    /// Python's `str.isspace()` for one scalar: Unicode White_Space plus the separators U+001C…U+001F, which
    /// `str.strip()` also removes. (Foundation's trimming is avoided: on Linux it converts the whole string to
    /// UTF-16, seconds for a cell of a million boxes.)
    static func isPythonWhitespace(_ scalar: Unicode.Scalar) -> Bool {
        if scalar.isASCII { return (0x09 ... 0x0D).contains(scalar.value) || (0x1C ... 0x20).contains(scalar.value) }
        return scalar.properties.isWhitespace
    }

    /// Python's `s.strip().lower()`.
    static func pythonStripLower(_ text: String) -> String {
        let scalars = text.unicodeScalars
        guard let first = scalars.firstIndex(where: { !isPythonWhitespace($0) }),
              let last = scalars.lastIndex(where: { !isPythonWhitespace($0) }) else { return "" }
        return String(scalars[first ... last]).lowercased()
    }

    /// Containers nested deeper than this make a cell unparseable. A box list needs 3 levels; Python's `json`
    /// gives up (RecursionError, which the seed's `except Exception` turns into "no boxes") near 1000.
    public static let maxNesting = 512

    /// A box number that the encoding cannot carry: not finite, or not finite once normalised and stored as
    /// a 32-bit float (e.g. `1e300`). A finite value that fits a Float is accepted however large, as the seed
    /// accepts it.
    public struct NonFiniteValue: Equatable, Sendable {
        /// 1-based position of the box in the cell's JSON list.
        public let box: Int
        /// `x1`, `y1`, `x2`, `y2` or `score`.
        public let field: String
        public let value: Double
    }

    /// The first box (in JSON order) with a coordinate or score that is NaN, infinite, or overflows Float
    /// after normalisation, or nil. Every box is checked, kept or not: such a number means a corrupt
    /// detector output, and a NaN score would also scramble the ranking that picks the kept boxes.
    public static func firstNonFiniteValue(in boxes: [DetectorBox]) -> NonFiniteValue? {
        let coordinateNames = ["x1", "y1", "x2", "y2"]
        for (index, box) in boxes.enumerated() {
            if let c = box.bbox, c.count == 4 {
                for axis in 0 ..< 4 where !Float(c[axis] / (axis % 2 == 0 ? frameWidth : frameHeight)).isFinite {
                    return NonFiniteValue(box: index + 1, field: coordinateNames[axis], value: c[axis])
                }
            }
            if !Float(box.score).isFinite { return NonFiniteValue(box: index + 1, field: "score", value: box.score) }
        }
        return nil
    }

    /// Encodes the top-`maxBoxes` boxes by score (stable: ties keep JSON order) into `8·maxBoxes` numbers:
    /// `x1/1280, y1/960, x2/1280, y2/960, score, person, vehicle, other`, zero-padded.
    /// - Parameters:
    ///   - boxes: boxes in JSON order.
    ///   - maxBoxes: K in `0…maxBoxesLimit` (callers validate user input with `validateMaxBoxes` first).
    public static func encode(_ boxes: [DetectorBox], maxBoxes: Int) -> [Float] {
        precondition((0 ... maxBoxesLimit).contains(maxBoxes), "BoxEncoding.encode: maxBoxes \(maxBoxes) not validated")
        var out = [Float](repeating: 0, count: valuesPerBox * maxBoxes)
        guard maxBoxes > 0, !boxes.isEmpty else { return out }
        // Swift's sort is not guaranteed stable: sort indices with the JSON position as tie-breaker. The scores
        // are copied out so the comparisons touch one flat array (a cell may hold a million boxes).
        let scores = boxes.map(\.score)
        let order = scores.indices.sorted { a, b in
            scores[a] != scores[b] ? scores[a] > scores[b] : a < b
        }
        for (slot, i) in order.prefix(maxBoxes).enumerated() {
            let b = boxes[i]
            let o = slot * valuesPerBox
            if let c = b.bbox, c.count == 4 {
                out[o + 0] = Float(c[0] / frameWidth)
                out[o + 1] = Float(c[1] / frameHeight)
                out[o + 2] = Float(c[2] / frameWidth)
                out[o + 3] = Float(c[3] / frameHeight)
            }
            out[o + 4] = Float(b.score)
            if b.label == "person" { out[o + 5] = 1 } else if vehicleLabels.contains(b.label) { out[o + 6] = 1 } else {
                out[o + 7] = 1
            }
        }
        return out
    }
}

/// A single-pass reader of a `bounding_boxes` cell's JSON with Python's `json.loads` grammar, producing the
/// boxes directly (no intermediate tree, so nothing deep is ever built or freed recursively). Recursion is
/// bounded by `BoxEncoding.maxNesting`.
struct BoxJSONReader {
    enum Outcome {
        case boxes([DetectorBox])
        /// Valid JSON, but not a list whose items are all objects.
        case notAListOfObjects
        /// Not JSON (or nested too deep).
        case invalidJSON
    }

    /// Any reason the text is not JSON; the seed does not tell them apart.
    private struct Invalid: Error {}

    private let bytes: UnsafeBufferPointer<UInt8>
    private var position = 0
    private var depth = 0

    private init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    static func read(_ text: String) -> Outcome {
        var text = text
        return text.withUTF8 { utf8 in
            var reader = BoxJSONReader(utf8)
            do { return try reader.document() } catch { return .invalidJSON }
        }
    }

    // MARK: grammar

    private mutating func document() throws -> Outcome {
        skipWhitespace()
        var boxes: [DetectorBox] = []
        var allObjects = true
        if peek() == UInt8(ascii: "[") {
            try enterContainer()
            skipWhitespace()
            if peek() == UInt8(ascii: "]") {
                position += 1
            } else {
                while true {
                    skipWhitespace()
                    if peek() == UInt8(ascii: "{") {
                        let box = try boxObject()
                        if allObjects { boxes.append(box) }
                    } else {
                        try skipValue()
                        allObjects = false
                        boxes = []
                    }
                    if try endOfItem(closing: "]") { break }
                }
            }
            depth -= 1
        } else {
            try skipValue()
            allObjects = false
        }
        skipWhitespace()
        guard position == bytes.count else { throw Invalid() }  // Python's "Extra data"
        return allObjects ? .boxes(boxes) : .notAListOfObjects
    }

    /// One item of the list: the keys the encoding reads; every other value is checked and skipped.
    /// A repeated key keeps its last value, as Python's `dict` does.
    private mutating func boxObject() throws -> DetectorBox {
        try enterContainer()
        var box = DetectorBox(bbox: nil, score: 0, label: "")
        skipWhitespace()
        if peek() == UInt8(ascii: "}") {
            position += 1
            depth -= 1
            return box
        }
        while true {
            skipWhitespace()
            let key = try string(keep: true)
            skipWhitespace()
            try expect(UInt8(ascii: ":"))
            skipWhitespace()
            switch key {
            case "bbox": box.bbox = try bbox()
            case "score": box.score = try scalarNumber() ?? 0
            case "label": box.label = BoxEncoding.pythonStripLower(try label())
            default: try skipValue()
            }
            if try endOfItem(closing: "}") { break }
        }
        depth -= 1
        return box
    }

    /// A list of exactly 4 items → those items as numbers (a non-number is 0, as the seed reads it); anything
    /// else → nil. Only the first 4 items are kept however long the list is.
    private mutating func bbox() throws -> [Double]? {
        guard peek() == UInt8(ascii: "[") else {
            try skipValue()
            return nil
        }
        try enterContainer()
        var coordinates: [Double] = []
        coordinates.reserveCapacity(4)
        var count = 0
        skipWhitespace()
        if peek() == UInt8(ascii: "]") {
            position += 1
        } else {
            while true {
                skipWhitespace()
                let value = try scalarNumber() ?? 0
                if count < 4 { coordinates.append(value) }
                count += 1
                if try endOfItem(closing: "]") { break }
            }
        }
        depth -= 1
        return count == 4 ? coordinates : nil
    }

    /// Python's `isinstance(v, (int, float))` for any value: numbers and booleans give a number, anything
    /// else (checked and skipped) gives nil.
    private mutating func scalarNumber() throws -> Double? {
        switch peek() ?? 0 {
        case UInt8(ascii: "t"):
            try literal("true")
            return 1
        case UInt8(ascii: "f"):
            try literal("false")
            return 0
        case UInt8(ascii: "-"), UInt8(ascii: "0") ... UInt8(ascii: "9"), UInt8(ascii: "N"), UInt8(ascii: "I"):
            return try number()
        default:
            try skipValue()
            return nil
        }
    }

    /// Python's `str(v)` as far as the class rules can tell: strings as they are; `None`, `True`, `False`;
    /// anything else can never name a class, so it reads as "".
    private mutating func label() throws -> String {
        switch peek() ?? 0 {
        case UInt8(ascii: "\""): return try string(keep: true)
        case UInt8(ascii: "n"):
            try literal("null")
            return "None"
        case UInt8(ascii: "t"):
            try literal("true")
            return "True"
        case UInt8(ascii: "f"):
            try literal("false")
            return "False"
        default:
            try skipValue()
            return ""
        }
    }

    /// Checks one value of any kind and moves past it.
    private mutating func skipValue() throws {
        switch peek() ?? 0 {
        case UInt8(ascii: "\""): _ = try string(keep: false)
        case UInt8(ascii: "{"):
            try enterContainer()
            skipWhitespace()
            if peek() == UInt8(ascii: "}") {
                position += 1
            } else {
                while true {
                    skipWhitespace()
                    _ = try string(keep: false)
                    skipWhitespace()
                    try expect(UInt8(ascii: ":"))
                    skipWhitespace()
                    try skipValue()
                    if try endOfItem(closing: "}") { break }
                }
            }
            depth -= 1
        case UInt8(ascii: "["):
            try enterContainer()
            skipWhitespace()
            if peek() == UInt8(ascii: "]") {
                position += 1
            } else {
                while true {
                    skipWhitespace()
                    try skipValue()
                    if try endOfItem(closing: "]") { break }
                }
            }
            depth -= 1
        case UInt8(ascii: "t"): try literal("true")
        case UInt8(ascii: "f"): try literal("false")
        case UInt8(ascii: "n"): try literal("null")
        default: _ = try number()
        }
    }

    // MARK: tokens

    private func peek() -> UInt8? { position < bytes.count ? bytes[position] : nil }

    private mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x09, 0x0A, 0x0D: position += 1
            default: return
            }
        }
    }

    private mutating func expect(_ byte: UInt8) throws {
        guard peek() == byte else { throw Invalid() }
        position += 1
    }

    private mutating func enterContainer() throws {
        depth += 1
        guard depth <= BoxEncoding.maxNesting else { throw Invalid() }
        position += 1
    }

    /// After an item: `,` → more items follow (false); the closing bracket → done (true).
    private mutating func endOfItem(closing: Unicode.Scalar) throws -> Bool {
        skipWhitespace()
        switch peek() ?? 0 {
        case UInt8(ascii: ","):
            position += 1
            return false
        case UInt8(ascii: closing):
            position += 1
            return true
        default:
            throw Invalid()
        }
    }

    private mutating func literal(_ word: StaticString) throws {
        let count = word.utf8CodeUnitCount
        guard bytes.count - position >= count else { throw Invalid() }
        let expected = UnsafeBufferPointer(start: word.utf8Start, count: count)
        for k in 0 ..< count where bytes[position + k] != expected[k] { throw Invalid() }
        position += count
    }

    /// Python's JSON number `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?`, or `NaN`, `Infinity`, `-Infinity`.
    /// Out-of-range values become ±infinity (Python: `float('1e400')`; a huge integer fails later there).
    private mutating func number() throws -> Double {
        let start = position
        if peek() == UInt8(ascii: "N") {
            try literal("NaN")
            return .nan
        }
        let negative = peek() == UInt8(ascii: "-")
        if negative { position += 1 }
        if peek() == UInt8(ascii: "I") {
            try literal("Infinity")
            return negative ? -.infinity : .infinity
        }
        func isDigit(_ b: UInt8?) -> Bool { b.map { (0x30 ... 0x39).contains($0) } ?? false }
        func digits() -> Int {
            let from = position
            while isDigit(peek()) { position += 1 }
            return position - from
        }
        if peek() == UInt8(ascii: "0") {
            position += 1
        } else if digits() == 0 {
            throw Invalid()
        }
        // A fraction or exponent without digits is not part of the number; what follows is then "Extra data".
        if peek() == UInt8(ascii: "."), position + 1 < bytes.count, isDigit(bytes[position + 1]) {
            position += 1
            _ = digits()
        }
        if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
            var look = position + 1
            if look < bytes.count, bytes[look] == UInt8(ascii: "+") || bytes[look] == UInt8(ascii: "-") { look += 1 }
            if look < bytes.count, isDigit(bytes[look]) {
                position = look
                _ = digits()
            }
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start ..< position]), as: UTF8.self)
        guard let value = Double(text) else { throw Invalid() }
        return value
    }

    /// A JSON string (the opening quote at `position`). With `keep` false it is only checked.
    /// Python's strict mode: raw control characters are errors; `\uD800`-style lone surrogates are allowed
    /// there, and read here as U+FFFD (no class name contains one either way).
    private mutating func string(keep: Bool) throws -> String {
        try expect(UInt8(ascii: "\""))
        let start = position
        // Fast path: no escapes.
        while position < bytes.count {
            let b = bytes[position]
            if b == UInt8(ascii: "\"") {
                position += 1
                return keep ? String(decoding: UnsafeBufferPointer(rebasing: bytes[start ..< position - 1]),
                                     as: UTF8.self) : ""
            }
            if b == UInt8(ascii: "\\") { break }
            if b < 0x20 { throw Invalid() }
            position += 1
        }
        guard position < bytes.count else { throw Invalid() }
        var scalars = String.UnicodeScalarView()
        if keep {
            scalars.append(contentsOf: String(decoding: UnsafeBufferPointer(rebasing: bytes[start ..< position]),
                                              as: UTF8.self).unicodeScalars)
        }
        var pendingHighSurrogate: UInt32?
        func flushSurrogate() {
            if pendingHighSurrogate != nil, keep { scalars.append("\u{FFFD}") }
            pendingHighSurrogate = nil
        }
        while true {
            guard position < bytes.count else { throw Invalid() }
            let b = bytes[position]
            if b == UInt8(ascii: "\"") {
                position += 1
                flushSurrogate()
                return keep ? String(scalars) : ""
            }
            if b < 0x20 { throw Invalid() }
            if b != UInt8(ascii: "\\") {
                flushSurrogate()
                // Copy a run of plain bytes (whole UTF-8 sequences: the text came from a valid String).
                let runStart = position
                while position < bytes.count, bytes[position] != UInt8(ascii: "\""),
                      bytes[position] != UInt8(ascii: "\\"), bytes[position] >= 0x20 {
                    position += 1
                }
                if keep {
                    scalars.append(contentsOf: String(decoding: UnsafeBufferPointer(rebasing: bytes[runStart ..< position]),
                                                      as: UTF8.self).unicodeScalars)
                }
                continue
            }
            position += 1
            guard let escape = peek() else { throw Invalid() }
            position += 1
            let simple: Unicode.Scalar?
            switch escape {
            case UInt8(ascii: "\""): simple = "\""
            case UInt8(ascii: "\\"): simple = "\\"
            case UInt8(ascii: "/"): simple = "/"
            case UInt8(ascii: "b"): simple = "\u{08}"
            case UInt8(ascii: "f"): simple = "\u{0C}"
            case UInt8(ascii: "n"): simple = "\n"
            case UInt8(ascii: "r"): simple = "\r"
            case UInt8(ascii: "t"): simple = "\t"
            case UInt8(ascii: "u"): simple = nil
            default: throw Invalid()
            }
            if let simple {
                flushSurrogate()
                if keep { scalars.append(simple) }
                continue
            }
            let unit = try hex4()
            switch unit {
            case 0xD800 ... 0xDBFF:
                flushSurrogate()
                pendingHighSurrogate = unit
            case 0xDC00 ... 0xDFFF:
                if let high = pendingHighSurrogate {
                    pendingHighSurrogate = nil
                    let combined = 0x10000 + ((high - 0xD800) << 10) + (unit - 0xDC00)
                    if keep, let scalar = Unicode.Scalar(combined) { scalars.append(scalar) }
                } else if keep {
                    scalars.append("\u{FFFD}")
                }
            default:
                flushSurrogate()
                if keep, let scalar = Unicode.Scalar(unit) { scalars.append(scalar) }
            }
        }
    }

    private mutating func hex4() throws -> UInt32 {
        guard bytes.count - position >= 4 else { throw Invalid() }
        var value: UInt32 = 0
        for _ in 0 ..< 4 {
            let b = bytes[position]
            let digit: UInt8
            switch b {
            case UInt8(ascii: "0") ... UInt8(ascii: "9"): digit = b - UInt8(ascii: "0")
            case UInt8(ascii: "a") ... UInt8(ascii: "f"): digit = b - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A") ... UInt8(ascii: "F"): digit = b - UInt8(ascii: "A") + 10
            default: throw Invalid()
            }
            value = value << 4 | UInt32(digit)
            position += 1
        }
        return value
    }
}
