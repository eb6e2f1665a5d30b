// bench-scale: does training from cached features scale past memory? One epoch of the fusion head (FusionModel's
// `classify(features:meta:)`, backbone frozen and unused) over synthetic feature stores of growing size, batches read
// through FeatureStore.copyRows in a shuffled order.
//
//   bench-scale [--rows 100000 1000000] [--dtype fp32|fp16] [--folder .cache/bench-scale] [--batch-size 8] [--seed 0]
//
// Each size runs in a fresh child process (the same executable with --one-size N), so its peak resident memory
// (VmHWM) is its own. A child reuses the stores in --folder when their header has the size and element type asked
// (a second run does not rewrite 8 GB) and builds them otherwise: features (rows × 2048, --dtype) and metadata
// (rows × 84, fp32), uniform draws from SeededRandom; labels are drawn in memory (one byte per row).
//
// On these random labels many of Adam's moments decay into the subnormal range; NN's optimizers flush subnormals
// in their step (it was 92% of an epoch, ~120 frames/s instead of ~1300, before they did), so this measures the
// trainer's own optimizer as it runs.
//
// What grows with the rows in memory: the labels (1 byte per row) and the shuffled order (4 bytes per row), 5 MB at
// 10^6 rows. Everything else is per batch; the stores' pages are handed back as they are read.
import ArgumentParser
import CPUFeatures
import FeatureStore
import Foundation
import Models
import NN
import SeededRandom
import Tensors

// The kernels are compiled for x86-64-v3: on an older CPU, one line and status 1 instead of SIGILL.
cpu_features_require_x86_64_v3("bench-scale")

let featureWidth = 2048, metaDim = 84

enum ElementTypeFlag: String, ExpressibleByArgument, CaseIterable {
    case fp32, fp16
    var elementType: FeatureElementType { self == .fp32 ? .float32 : .float16 }
}

struct BenchScale: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-scale",
        abstract: "One epoch of the fusion head from memory-mapped feature stores of growing size: time and peak memory.")

    @Option(parsing: .upToNextOption, help: "Store sizes in rows (frames), each run in its own process.")
    var rows: [Int] = [100_000, 1_000_000]

    @Option(help: "Element type of the feature stores: fp32 or fp16.")
    var dtype: ElementTypeFlag = .fp32

    @Option(help: "Where the stores are kept and reused.")
    var folder = ".cache/bench-scale"

    @Option(help: "Frames per training step.")
    var batchSize = 8

    @Option(help: "Seed of the synthetic data, the shuffle and the head's initialisation.")
    var seed: UInt64 = 0

    @Option(name: .customLong("one-size"), help: .hidden)
    var oneSize: Int?

    func validate() throws {
        guard !rows.isEmpty, rows.allSatisfy({ $0 > 0 }) else { throw ValidationError("--rows needs positive row counts") }
        guard batchSize > 0 else { throw ValidationError("--batch-size needs a positive integer") }
        if let oneSize, oneSize <= 0 { throw ValidationError("--one-size needs a positive row count") }
    }

    func run() throws {
        do {
            if let oneSize {
                let result = try measure(rows: oneSize, options: self)
                let data = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
                print(String(decoding: data, as: UTF8.self))
            } else {
                try drive(self)
            }
        } catch let error as ExitCode {
            throw error
        } catch {
            FileHandle.standardError.write("bench-scale: \(error)\n".data(using: .utf8)!)
            throw ExitCode.failure
        }
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

func note(_ line: String) { FileHandle.standardError.write("bench-scale: \(line)\n".data(using: .utf8)!) }

/// This process's peak resident memory in MB: VmHWM of /proc/self/status (kB).
func peakResidentMegabytes() throws -> Double {
    let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
    guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
          let kilobytes = Double(line.split(separator: " ")[1]) else { throw BenchError("no VmHWM in /proc/self/status") }
    return kilobytes / 1024
}

// MARK: One size (child process)

/// Opens the store at `url` when it has `rows` rows of `width` `type`; otherwise writes it anew, `rows` × `width`
/// uniform [0, 1) draws of `seed` (what pooled ReLU features look like: non-negative, bounded).
/// - Returns: the open store and whether it was built.
func openOrBuild(_ url: URL, rows: Int, width: Int, type: FeatureElementType, seed: UInt64) throws -> (FeatureStore, built: Bool) {
    if let existing = try? FeatureStore(url: url), existing.rowCount == rows, existing.width == width,
       existing.elementType == type {
        return (existing, false)
    }
    let writer = try FeatureStoreWriter(url: url, width: width, elementType: type, expectedRows: rows)
    var random = SplitMix64(seed: seed)
    let chunkRows = 512
    var chunk = [Float](repeating: 0, count: chunkRows * width)
    var written = 0
    while written < rows {
        let count = min(chunkRows, rows - written)
        for i in 0 ..< count * width { chunk[i] = random.nextFloat() }
        try chunk.withUnsafeBufferPointer { try writer.append(rows: UnsafeBufferPointer(rebasing: $0[0 ..< count * width])) }
        written += count
    }
    try writer.finish()
    return (try FeatureStore(url: url), true)
}

/// Builds or reuses the stores of `rows` frames, trains one epoch of the fusion head from them, and returns the
/// measurements (one JSON object).
func measure(rows: Int, options: BenchScale) throws -> [String: Any] {
    let folder = URL(fileURLWithPath: options.folder)
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    let type = options.dtype.elementType
    let buildStart = now()
    let (features, builtFeatures) = try openOrBuild(folder.appendingPathComponent("features-\(rows)-\(options.dtype).store"),
                                                    rows: rows, width: featureWidth, type: type, seed: options.seed)
    let (meta, builtMeta) = try openOrBuild(folder.appendingPathComponent("meta-\(rows)-fp32.store"),
                                            rows: rows, width: metaDim, type: .float32, seed: options.seed &+ 1)
    let buildSeconds = now() - buildStart
    let built = builtFeatures || builtMeta
    if built { note("\(rows) rows: stores built in \(String(format: "%.1f", buildSeconds)) s") }

    var random = SplitMix64(seed: options.seed &+ 2)
    let labels = (0 ..< rows).map { _ in UInt8(random.next(below: 2)) }
    var order = (0 ..< rows).map { UInt32($0) }
    random.shuffle(&order)

    // A backbone of ResNet-50's feature width (2048) and a few MB of weights: it is frozen and never run here, so
    // only its size would matter, and ResNet-50's 100 MB would only shift every size's peak by the same amount.
    let backbone = ResNet(config: ResNetConfig(block: .bottleneck, layers: [1, 1, 1, 1], stemWidth: 8, widths: [8, 8, 8, 512],
                                               numClasses: nil),
                          generator: RandomGenerator(seed: options.seed))
    precondition(backbone.featureCount == featureWidth)
    let model = FusionModel(metaDim: metaDim, backbone: backbone, generator: RandomGenerator(seed: options.seed &+ 3),
                            dropoutGenerator: RandomGenerator(seed: options.seed &+ 4))
    model.train()
    model.backbone.freeze()
    model.backbone.eval()
    let optimizer = Adam(parameters: model.trainableParameters(), learningRate: 1e-3)

    let batchSize = options.batchSize
    var featureRows = [Float](repeating: 0, count: batchSize * featureWidth)
    var metaRows = [Float](repeating: 0, count: batchSize * metaDim)
    var lossSum = 0.0, steps = 0
    let epochStart = now()
    var nextReport = epochStart + 30
    for start in stride(from: 0, to: rows, by: batchSize) {
        let indices = order[start ..< min(start + batchSize, rows)].map { Int($0) }
        let count = indices.count
        featureRows.withUnsafeMutableBufferPointer { features.copyRows(indices, into: $0) }
        metaRows.withUnsafeMutableBufferPointer { meta.copyRows(indices, into: $0) }
        let logits = model.classify(features: Tensor(shape: [count, featureWidth], data: Array(featureRows[0 ..< count * featureWidth])),
                                    meta: Tensor(shape: [count, metaDim], data: Array(metaRows[0 ..< count * metaDim])))
        let loss = crossEntropy(logits, labels: indices.map { Int(labels[$0]) })
        optimizer.zeroGrad()
        loss.backward()
        optimizer.step()
        lossSum += Double(loss.item)
        steps += 1
        if now() >= nextReport {
            let done = start + count
            note("\(rows) rows: \(done * 100 / rows)% of the epoch, \(Int(Double(done) / (now() - epochStart))) frames/s")
            nextReport = now() + 30
        }
    }
    let epochSeconds = now() - epochStart
    let meanLoss = lossSum / Double(steps)
    guard meanLoss.isFinite else { throw BenchError("\(rows) rows: the mean loss is \(meanLoss)") }
    return [
        "rows": rows,
        "store_bytes": features.fileSize + meta.fileSize,
        "built": built,
        "build_seconds": buildSeconds,
        "epoch_seconds": epochSeconds,
        "frames_per_second": Double(rows) / epochSeconds,
        "peak_rss_mb": try peakResidentMegabytes(),
        "mean_loss": meanLoss,
    ]
}

// MARK: Driver

/// Runs this executable with `arguments`; its stderr passes through, its last stdout line is a JSON object.
func runChild(_ arguments: [String]) throws -> [String: Any] {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    try process.run()
    let output = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw BenchError("the child `bench-scale \(arguments.joined(separator: " "))` exited with status \(process.terminationStatus)")
    }
    guard let line = String(decoding: output, as: UTF8.self).split(separator: "\n").last,
          let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
        throw BenchError("the child `bench-scale \(arguments.joined(separator: " "))` printed no result")
    }
    return object
}

func drive(_ options: BenchScale) throws {
    print("bench-scale: one epoch of the fusion head (Linear 2112→256→2, meta MLP 84→128→64, Adam), batch \(options.batchSize),")
    print("features \(featureWidth) \(options.dtype) and metadata \(metaDim) fp32 read from memory-mapped stores in shuffled order;")
    print("one fresh process per size. Stores in \(options.folder).")
    var results: [[String: Any]] = []
    for rows in options.rows {
        note("\(rows) rows: starting")
        results.append(try runChild(["--one-size", String(rows), "--dtype", options.dtype.rawValue, "--folder", options.folder,
                                     "--batch-size", String(options.batchSize), "--seed", String(options.seed)]))
    }
    func number(_ result: [String: Any], _ key: String) -> Double { (result[key] as? NSNumber)?.doubleValue ?? .nan }
    func cell(_ text: String, _ width: Int) -> String { String(repeating: " ", count: max(1, width - text.count)) + text }
    let header = [("rows", 9), ("store on disk", 15), ("build", 10), ("epoch s", 10), ("frames/s", 10), ("peak RSS MB", 13)]
    print(header.map { cell($0.0, $0.1) }.joined())
    for result in results {
        let cells = [
            String(format: "%.0f", number(result, "rows")),
            String(format: "%.2f GB", number(result, "store_bytes") / 1e9),
            (result["built"] as? NSNumber)?.boolValue == false ? "reused" : String(format: "%.1f s", number(result, "build_seconds")),
            String(format: "%.1f", number(result, "epoch_seconds")),
            String(format: "%.0f", number(result, "frames_per_second")),
            String(format: "%.1f", number(result, "peak_rss_mb")),
        ]
        print(zip(cells, header).map { cell($0, $1.1) }.joined())
    }
    if results.count >= 2, let first = results.first, let last = results.last {
        print(String(format: "peak RSS at %.0f rows / at %.0f rows: %.2f (1.00 = flat)", number(last, "rows"),
                     number(first, "rows"), number(last, "peak_rss_mb") / number(first, "peak_rss_mb")))
    }
}

BenchScale.main()
