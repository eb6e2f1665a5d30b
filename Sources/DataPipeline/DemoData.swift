import CSV
import FileIO
import Foundation
import Imaging
import SeededRandom

/// Synthetic frames of a fixed construction-site camera and the labels.csv an object detector and a person
/// would have produced for them, in the seed's schema. The label is a fact of the scene: 1 when a person
/// stands close to a vehicle. round(25%) of the frames are staged that way, so the positive rate is exact.
public struct DemoDataGenerator {
    public static let width = 1280
    public static let height = 960
    /// Share of frames staged with a person next to a vehicle (the label is still computed from the scene).
    public static let positiveRate = 0.25
    /// A person whose box comes within this many pixels of a vehicle's box makes the frame interesting.
    public static let closeDistance = 40.0
    /// The most frames one call writes (`--count`). A frame is a ~150 KB JPEG, so a million is already ~150 GB
    /// of disk, more than any demo needs; the per-frame bookkeeping is sized by the count before the first
    /// frame is drawn, so an absurd count must be refused up front rather than abort allocating.
    public static let maxCount = 1_000_000

    public let seed: UInt64
    private let background: [UInt8]

    /// An object in a frame, in frame pixels.
    struct Object {
        var isPerson: Bool
        var kind: String  // detector label
        var x1, y1, x2, y2: Double
    }

    /// - Parameter seed: fixes the site (background) and every frame.
    public init(seed: UInt64) {
        self.seed = seed
        background = Self.renderBackground(seed: seed)
    }

    /// What in `directory` a demo data set would overwrite: a description of its `labels.csv` or non-empty
    /// `images/` folder, or nil when there is neither.
    public static func existingDataset(in directory: URL) -> String? {
        let fm = FileManager.default
        let csv = directory.appendingPathComponent("labels.csv")
        if fm.fileExists(atPath: csv.path) { return "\(csv.path) exists" }
        let images = directory.appendingPathComponent("images")
        var isFolder: ObjCBool = false
        if fm.fileExists(atPath: images.path, isDirectory: &isFolder) {
            guard isFolder.boolValue else { return "\(images.path) exists and is not a folder" }
            // Any entry counts, hidden ones too: the folder is not ours to fill.
            if let entries = try? fm.contentsOfDirectory(atPath: images.path), !entries.isEmpty {
                return "\(images.path) already holds \(entries.count) file(s)"
            }
        }
        return nil
    }

    /// Writes `count` frames to `directory/images/frame_NNNNN.jpg` and `directory/labels.csv`.
    /// - Parameters:
    ///   - count: frames, in `1…maxCount`.
    ///   - overwrite: write even when `directory` already holds a data set (`existingDataset(in:)`); then
    ///     `labels.csv` and same-named frames are replaced and every other file is left as it is. Without it,
    ///     such a folder is refused before anything is written, so a user's data is never replaced by accident.
    /// - Returns: the number of positive frames.
    @discardableResult
    public func write(to directory: URL, count: Int, quality: Int = 85, overwrite: Bool = false) throws -> Int {
        try Self.validate(count: count, quality: quality)
        if !overwrite, let existing = Self.existingDataset(in: directory) {
            throw DataError.invalidArgument("\(existing); not overwriting a data set (use --force to write into "
                + "\(directory.path) anyway)")
        }
        let images = directory.appendingPathComponent("images")
        do {
            try FileManager.default.createDirectory(at: images, withIntermediateDirectories: true)
        } catch {
            throw DataError.fileAccess(path: images.path, reason: "cannot create the folder: \(error.localizedDescription)")
        }
        // Exactly round(25%) of the frames are staged with a person next to a vehicle, at seeded positions.
        var order = Array(0 ..< count)
        var pick = SplitMix64(seed: seed ^ 0x5EED_0F_D3A0)
        pick.shuffle(&order)
        var positive = [Bool](repeating: false, count: count)
        for i in order.prefix(Int((Self.positiveRate * Double(count)).rounded())) { positive[i] = true }
        var rows = [[String]](repeating: [], count: count)
        var failure: Error?
        let lock = NSLock()
        let workers = max(1, min(ProcessInfo.processInfo.activeProcessorCount, 4))
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            let encoder = JPEGEncoder()
            var i = w
            while i < count {
                do {
                    let name = String(format: "frame_%05d.jpg", i + 1)
                    let (pixels, row) = frame(index: i, name: name, positive: positive[i])
                    let jpeg = try encoder.encode(RGBImage(width: Self.width, height: Self.height, pixels: pixels),
                                                  quality: quality)
                    let url = images.appendingPathComponent(name)
                    do { try Data(jpeg).write(to: url) } catch {
                        throw DataError.fileAccess(path: url.path, reason: "cannot write: \(error.localizedDescription)")
                    }
                    lock.lock(); rows[i] = row; lock.unlock()
                } catch {
                    lock.lock(); failure = failure ?? error; lock.unlock()
                    return
                }
                i += workers
            }
        }
        if let failure { throw failure }
        let stream = OutputStream(toMemory: ())
        stream.open()
        let csv = try CSVWriter(stream: stream)
        try csv.write(row: LabelsTable.requiredColumns)
        for r in rows { try csv.write(row: r) }
        stream.close()
        guard var data = stream.property(forKey: .dataWrittenToMemoryStreamKey) as? Data else {
            throw DataError.invalidArgument("could not build labels.csv in memory")
        }
        data.append(UInt8(ascii: "\n"))  // CSVWriter ends the last row without one
        let csvURL = directory.appendingPathComponent("labels.csv")
        // Atomic: an interrupted run never leaves a half-written labels.csv.
        do { try AtomicFile.write(data, to: csvURL) } catch {
            throw DataError.fileAccess(path: csvURL.path, reason: "cannot write: \(error.localizedDescription)")
        }
        return rows.filter { $0.count > 1 && $0[1] == "1" }.count
    }

    /// Checks `--count` and `--quality` before anything is allocated or written.
    /// - Throws: `DataError.invalidArgument` with a one-line message.
    public static func validate(count: Int, quality: Int) throws {
        guard (1 ... maxCount).contains(count) else {
            throw DataError.invalidArgument("--count must be in 1…\(maxCount) (got \(count))")
        }
        guard (1 ... 100).contains(quality) else {
            throw DataError.invalidArgument("--quality must be in 1…100 (got \(quality))")
        }
    }

    // MARK: - frames

    /// The pixels of frame `index` and its labels.csv row.
    func frame(index: Int, name: String, positive: Bool) -> ([UInt8], [String]) {
        var rng = SplitMix64(seed: seed &+ 0x1234_5678 &+ UInt64(index) &* 0xD1B5_4A32_D192_ED03)
        let objects = placeObjects(positive: positive, rng: &rng)
        var px = background
        for o in objects { draw(o, into: &px, rng: &rng) }
        applyLightingAndNoise(&px, rng: &rng)
        let label = Self.isInteresting(objects) ? "1" : "0"
        return (px, [name, label] + detections(objects, rng: &rng))
    }

    static func isInteresting(_ objects: [Object]) -> Bool {
        for p in objects where p.isPerson {
            for v in objects where !v.isPerson {
                let dx = max(0, max(v.x1 - p.x2, p.x1 - v.x2))
                let dy = max(0, max(v.y1 - p.y2, p.y1 - v.y2))
                if (dx * dx + dy * dy).squareRoot() < closeDistance { return true }
            }
        }
        return false
    }

    /// `rng.uniform` at Double precision: the typed bounds pick the Double draw for integer literals.
    private func uniform(_ rng: inout SplitMix64, _ lo: Double, _ hi: Double) -> Double {
        rng.uniform(lo, hi)
    }

    /// People and vehicles on the ground (y > 420), sized by distance to the camera (perspective).
    private func placeObjects(positive: Bool, rng: inout SplitMix64) -> [Object] {
        let kinds = ["truck", "car", "truck", "bus"]
        for _ in 0 ..< 200 {
            var objects: [Object] = []
            let nv = rng.next(below: 4)
            for _ in 0 ..< nv {
                let yb = uniform(&rng, 520, 930)
                let s = 0.5 + (yb - 420) / 510 * 0.9
                let w = uniform(&rng, 150, 260) * s, h = uniform(&rng, 90, 140) * s
                let x = uniform(&rng, 10, Double(Self.width) - 10 - w)
                objects.append(Object(isPerson: false, kind: kinds[rng.next(below: kinds.count)],
                                      x1: x, y1: yb - h, x2: x + w, y2: yb))
            }
            let np = rng.next(below: 5)
            for k in 0 ..< np {
                var yb = uniform(&rng, 480, 940)
                var x = uniform(&rng, 10, Double(Self.width) - 60)
                if positive, k == 0, let v = objects.first {
                    // stand right next to the first vehicle
                    yb = min(935, v.y2 + uniform(&rng, -10, 10))
                    x = rng.next(below: 2) == 0 ? v.x2 + uniform(&rng, 0, 25) : v.x1 - uniform(&rng, 20, 45)
                    x = min(max(x, 5), Double(Self.width) - 40)
                }
                let s = 0.5 + (yb - 420) / 520 * 0.9
                let h = uniform(&rng, 95, 125) * s, w = h * uniform(&rng, 0.32, 0.42)
                objects.append(Object(isPerson: true, kind: "person", x1: x, y1: yb - h, x2: x + w, y2: yb))
            }
            if Self.isInteresting(objects) == positive { return objects }
        }
        return []  // a negative empty frame: rejection failed 200 times (never seen in practice)
    }

    /// The detector's view: jittered boxes scored 0.6–1.0, ~10% of objects missed, ~15% of frames with a
    /// false detection; and the count columns computed from those detections.
    private func detections(_ objects: [Object], rng: inout SplitMix64) -> [String] {
        var boxes: [(bbox: [Double], score: Double, label: String)] = []
        for o in objects {
            if uniform(&rng, 0, 1) < 0.1 { continue }
            let w = o.x2 - o.x1, h = o.y2 - o.y1
            let jx1 = o.x1 + uniform(&rng, -0.04, 0.04) * w, jy1 = o.y1 + uniform(&rng, -0.04, 0.04) * h
            let jx2 = o.x2 + uniform(&rng, -0.04, 0.04) * w, jy2 = o.y2 + uniform(&rng, -0.04, 0.04) * h
            let b = [max(0, jx1), max(0, jy1), min(Double(Self.width), jx2), min(Double(Self.height), jy2)]
                .map { ($0 * 10).rounded() / 10 }
            boxes.append((b, (uniform(&rng, 0.6, 1.0) * 1000).rounded() / 1000, o.kind))
        }
        if uniform(&rng, 0, 1) < 0.15 {
            let x = uniform(&rng, 0, 1200), y = uniform(&rng, 300, 900)
            boxes.append(([x, y, x + uniform(&rng, 20, 80), y + uniform(&rng, 40, 60)].map { ($0 * 10).rounded() / 10 },
                          (uniform(&rng, 0.6, 0.75) * 1000).rounded() / 1000, rng.next(below: 2) == 0 ? "person" : "car"))
        }
        let persons = boxes.filter { $0.label == "person" }
        let vehicles = boxes.filter { BoxEncoding.vehicleLabels.contains($0.label) }
        let avg = persons.isEmpty ? 0 : persons.map(\.score).reduce(0, +) / Double(persons.count)
        func num(_ d: Double) -> String {
            d == d.rounded() ? String(format: "%.1f", d) : String(d)
        }
        let json = "[" + boxes.map { b in
            "{\"bbox\": [\(b.bbox.map(num).joined(separator: ", "))], \"score\": \(num(b.score)), \"label\": \"\(b.label)\"}"
        }.joined(separator: ", ") + "]"
        return [String(persons.count), String(vehicles.count), String(format: "%.4f", avg), String(boxes.count), json]
    }

    // MARK: - drawing

    private static func renderBackground(seed: UInt64) -> [UInt8] {
        let w = width, h = height
        var px = [UInt8](repeating: 0, count: w * h * 3)
        var rng = SplitMix64(seed: seed ^ 0xBAC6_0000)
        let horizon = 400
        for y in 0 ..< h {
            for x in 0 ..< w {
                let o = (y * w + x) * 3
                if y < horizon {  // sky, lighter toward the horizon
                    let t = Double(y) / Double(horizon)
                    px[o] = UInt8(120 + 80 * t); px[o + 1] = UInt8(160 + 60 * t); px[o + 2] = UInt8(210 + 30 * t)
                } else {  // dirt with a coarse texture
                    let n = Int((x / 7 &* 31 &+ y / 5 &* 17) % 23) - 11
                    px[o] = UInt8(clamping: 150 + n); px[o + 1] = UInt8(clamping: 125 + n); px[o + 2] = UInt8(clamping: 95 + n)
                }
            }
        }
        func rect(_ x0: Int, _ y0: Int, _ x1: Int, _ y1: Int, _ c: (Int, Int, Int)) {
            for y in max(0, y0) ..< min(h, y1) {
                for x in max(0, x0) ..< min(w, x1) {
                    let o = (y * w + x) * 3
                    px[o] = UInt8(clamping: c.0); px[o + 1] = UInt8(clamping: c.1); px[o + 2] = UInt8(clamping: c.2)
                }
            }
        }
        rect(0, 600, w, 680, (90, 90, 95))  // access road
        // building under construction: concrete floors and columns
        let bx = 700 + rng.next(below: 150)
        for f in 0 ..< 5 { rect(bx, 180 + f * 50, bx + 420, 190 + f * 50, (170, 170, 165)) }
        for c in 0 ..< 7 { rect(bx + c * 68, 180, bx + c * 68 + 10, 430, (160, 160, 155)) }
        // crane tower and jib
        let cx = 200 + rng.next(below: 200)
        for y in stride(from: 60, to: 430, by: 20) { rect(cx, y, cx + 14, y + 14, (220, 180, 30)) }
        rect(cx - 150, 60, cx + 450, 72, (220, 180, 30))
        // containers and material piles
        for i in 0 ..< 4 {
            let x = 40 + i * 150 + rng.next(below: 40)
            rect(x, 470, x + 120, 540, [(180, 60, 40), (40, 90, 160), (60, 140, 70), (200, 120, 40)][i])
        }
        return px
    }

    private func fill(_ px: inout [UInt8], _ x0: Double, _ y0: Double, _ x1: Double, _ y1: Double,
                      _ c: (Int, Int, Int), ellipse: Bool = false) {
        let w = Self.width, h = Self.height
        let ix0 = max(0, Int(x0)), iy0 = max(0, Int(y0)), ix1 = min(w, Int(x1)), iy1 = min(h, Int(y1))
        guard ix0 < ix1, iy0 < iy1 else { return }
        let cx = (x0 + x1) / 2, cy = (y0 + y1) / 2, rx = max(0.5, (x1 - x0) / 2), ry = max(0.5, (y1 - y0) / 2)
        for y in iy0 ..< iy1 {
            for x in ix0 ..< ix1 {
                if ellipse {
                    let dx = (Double(x) + 0.5 - cx) / rx, dy = (Double(y) + 0.5 - cy) / ry
                    if dx * dx + dy * dy > 1 { continue }
                }
                let o = (y * w + x) * 3
                px[o] = UInt8(clamping: c.0); px[o + 1] = UInt8(clamping: c.1); px[o + 2] = UInt8(clamping: c.2)
            }
        }
    }

    private func draw(_ o: Object, into px: inout [UInt8], rng: inout SplitMix64) {
        let w = o.x2 - o.x1, h = o.y2 - o.y1
        if o.isPerson {
            let vest = rng.next(below: 2) == 0 ? (250, 120, 20) : (220, 230, 40)
            fill(&px, o.x1 + w * 0.3, o.y1, o.x2 - w * 0.3, o.y1 + h * 0.16, (230, 230, 230), ellipse: true)  // helmet
            fill(&px, o.x1 + w * 0.1, o.y1 + h * 0.16, o.x2 - w * 0.1, o.y1 + h * 0.55, vest)
            fill(&px, o.x1 + w * 0.15, o.y1 + h * 0.55, o.x1 + w * 0.45, o.y2, (50, 55, 80))
            fill(&px, o.x2 - w * 0.45, o.y1 + h * 0.55, o.x2 - w * 0.15, o.y2, (50, 55, 80))
        } else {
            let body = [(230, 180, 20), (200, 40, 30), (60, 60, 70), (240, 240, 240)][rng.next(below: 4)]
            fill(&px, o.x1, o.y1 + h * 0.25, o.x2, o.y2 - h * 0.18, body)  // body
            fill(&px, o.x1 + w * 0.62, o.y1, o.x2 - w * 0.05, o.y1 + h * 0.3, (70, 90, 110))  // cab window
            let r = h * 0.2
            for cx in [o.x1 + w * 0.2, o.x2 - w * 0.2] {
                fill(&px, cx - r, o.y2 - 2 * r, cx + r, o.y2, (25, 25, 25), ellipse: true)
            }
        }
    }

    /// Global lighting (time of day, clouds) as a per-channel gain and offset, plus sensor noise.
    private func applyLightingAndNoise(_ px: inout [UInt8], rng: inout SplitMix64) {
        let gain = uniform(&rng, 0.55, 1.15)
        let warm = uniform(&rng, -12, 12)
        let g = [Int((gain * 256).rounded()), Int((gain * 256).rounded()), Int((gain * 256).rounded())]
        let off = [Int(warm), 0, Int(-warm)]
        var lut = [UInt8](repeating: 0, count: 3 * 256)
        for c in 0 ..< 3 {
            for v in 0 ..< 256 { lut[c * 256 + v] = UInt8(clamping: (v * g[c]) >> 8 + off[c]) }
        }
        var state = rng.next() | 1
        px.withUnsafeMutableBufferPointer { p in
            lut.withUnsafeBufferPointer { l in
                for i in 0 ..< p.count {
                    // xorshift64: two 3-bit uniforms summed, a cheap triangular sensor noise of ±7
                    state ^= state << 13; state ^= state >> 7; state ^= state << 17
                    let n = Int(state & 7) + Int((state >> 3) & 7) - 7
                    p[i] = UInt8(clamping: Int(l[(i % 3) * 256 + Int(p[i])]) + n)
                }
            }
        }
    }
}
