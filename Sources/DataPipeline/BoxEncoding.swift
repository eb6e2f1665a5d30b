import Foundation

/// A JSON value as Python's `json.loads` would give it (only what the box rules need to tell apart).
enum JSONValue: Decodable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let d = try? c.decode(Double.self) { self = .number(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    /// Python's `isinstance(v, (int, float))` (a bool is an int there).
    var number: Double? {
        switch self {
        case let .number(d): return d
        case let .bool(b): return b ? 1 : 0
        default: return nil
        }
    }

    /// Python's `str(v)` for the label field (enough for strings; other kinds never match a class name).
    var pythonString: String {
        switch self {
        case let .string(s): return s
        case .null: return "None"
        case let .bool(b): return b ? "True" : "False"
        default: return ""
        }
    }
}

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

/// The detector metadata encoding of DESIGN.md §2.
public enum BoxEncoding {
    /// Frame size the seed normalises coordinates by.
    public static let frameWidth = 1280.0
    public static let frameHeight = 960.0
    public static let vehicleLabels: Set<String> = ["car", "truck", "bus", "motorcycle", "vehicle"]

    /// Numbers per kept box: 4 coordinates, the score, a 3-way one-hot class.
    public static let valuesPerBox = 8
    /// Scalar columns before the boxes: num_person, num_vehicles, avg_person_conf, total_boxes.
    public static let scalarCount = 4

    /// `meta_dim = 4 + 8·K`.
    public static func metaDim(maxBoxes: Int) -> Int { scalarCount + valuesPerBox * maxBoxes }
    public static let maxBoxesLimit = 1000

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
    /// - Parameter cell: the raw cell text.
    /// - Returns: the boxes in JSON order and how the cell was read.
    public static func parseCell(_ cell: String) -> (boxes: [DetectorBox], status: CellStatus) {
        if cell.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { return ([], .ok) }
        let decoder = JSONDecoder()
        var parsed: JSONValue?
        var status = CellStatus.ok
        if let v = try? decoder.decode(JSONValue.self, from: Data(cell.utf8)) {
            parsed = v
        } else if let v = try? decoder.decode(JSONValue.self,
                                              from: Data(cell.replacingOccurrences(of: "\"\"", with: "\"").utf8)) {
            parsed = v
            status = .okAfterUnquoting
        }
        guard case let .array(items)? = parsed else { return ([], .unparseable) }
        var boxes: [DetectorBox] = []
        boxes.reserveCapacity(items.count)
        for item in items {
            guard case let .object(dict) = item else { return ([], .unparseable) }
            var bbox: [Double]? = nil
            if case let .array(coords)? = dict["bbox"], coords.count == 4 {
                bbox = coords.map { $0.number ?? 0 }  // null (or any non-number) coordinate → 0
            }
            let score = dict["score"]?.number ?? 0
            let label = (dict["label"]?.pythonString ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
                .lowercased()
            boxes.append(DetectorBox(bbox: bbox, score: score, label: label))
        }
        return (boxes, status)
    }

    /// Encodes the top-`maxBoxes` boxes by score (stable: ties keep JSON order) into `8·maxBoxes` numbers:
    /// `x1/1280, y1/960, x2/1280, y2/960, score, person, vehicle, other`, zero-padded.
    /// - Parameters:
    ///   - boxes: boxes in JSON order.
    ///   - maxBoxes: K ≥ 0.
    public static func encode(_ boxes: [DetectorBox], maxBoxes: Int) -> [Float] {
        var out = [Float](repeating: 0, count: valuesPerBox * max(0, maxBoxes))
        // Swift's sort is not guaranteed stable: sort indices with the JSON position as tie-breaker.
        let order = boxes.indices.sorted { a, b in
            boxes[a].score != boxes[b].score ? boxes[a].score > boxes[b].score : a < b
        }
        for (slot, i) in order.prefix(max(0, maxBoxes)).enumerated() {
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
