import Foundation
import UntrustedJSON

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
    /// there; the reader (UntrustedJSON's Python dialect; why not `JSONSerialization` is said there) never
    /// recurses deeper than that, whatever the cell holds. Time is linear in the cell.
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

/// A `bounding_boxes` cell read as the seed reads it: `json.loads`, then the box fields taken as Python's
/// `isinstance` checks take them.
enum BoxJSONReader {
    enum Outcome {
        case boxes([DetectorBox])
        /// Valid JSON, but not a list whose items are all objects.
        case notAListOfObjects
        /// Not JSON (or nested too deep).
        case invalidJSON
    }

    static let dialect = JSONDialect.python(maximumNesting: BoxEncoding.maxNesting)

    static func read(_ text: String) -> Outcome {
        // Any reason the text is not JSON; the seed does not tell them apart.
        guard let json = try? JSONValue.parse(text, dialect: dialect) else { return .invalidJSON }
        guard case .array(let items) = json else { return .notAListOfObjects }
        var boxes: [DetectorBox] = []
        boxes.reserveCapacity(items.count)
        for item in items {
            guard case .object(let members) = item else { return .notAListOfObjects }
            // Repeated keys were already resolved as Python's `dict` does (the last value wins).
            var box = DetectorBox(bbox: nil, score: 0, label: "")
            for member in members {
                let value = member.value
                switch member.name {
                case "bbox": box.bbox = bbox(value)
                case "score": box.score = number(value) ?? 0
                case "label": box.label = BoxEncoding.pythonStripLower(label(value))
                default: break
                }
            }
            boxes.append(box)
        }
        return .boxes(boxes)
    }

    /// A list of exactly 4 items → those items as numbers (a non-number is 0, as the seed reads it); anything
    /// else → nil.
    static func bbox(_ value: JSONValue) -> [Double]? {
        guard case .array(let items) = value, items.count == 4 else { return nil }
        return items.map { number($0) ?? 0 }
    }

    /// Python's `isinstance(v, (int, float))`: numbers and booleans give a number, anything else nil.
    /// Numbers are Python's float of the literal: `NaN`, `±Infinity`, and ±infinity for a literal too large for
    /// a Double (Python: `float('1e400')`; a huge integer fails later there).
    static func number(_ value: JSONValue) -> Double? {
        switch value {
        case .bool(let flag): return flag ? 1 : 0
        case .number("NaN"): return .nan
        case .number("Infinity"): return .infinity
        case .number("-Infinity"): return -.infinity
        case .number(let text): return Double(text)
        default: return nil
        }
    }

    /// Python's `str(v)` as far as the class rules can tell: strings as they are; `None`, `True`, `False`;
    /// anything else can never name a class, so it reads as "".
    static func label(_ value: JSONValue) -> String {
        switch value {
        case .string(let text): return text
        case .null: return "None"
        case .bool(let flag): return flag ? "True" : "False"
        default: return ""
        }
    }
}
