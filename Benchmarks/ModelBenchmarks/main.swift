// bench-model: ResNetFusion side by side with PyTorch on this machine, batch 8, 224x224.
//
//   bench-model [--rounds N] [--threads N] [--steps N] [--torch-python PATH] [--isa both|native|avx2]
//   bench-model --case CASE [--threads N] [--steps N] [--jpeg FILE]      (one measurement, one JSON line)
//
// Cases: inference (backbone forward, eval mode, no gradients), frozen-train-bn (the seed's
// --freeze-backbone cost: parameters frozen, BatchNorm in training mode), train-step (forward, backward and
// Adam on the whole fusion model), jpeg (1280x960 JPEG files to normalized 224 tensors on --threads threads:
// our decoders side by side; PyTorch's DataLoader with as many workers, as the seed runs it), jpeg-1-thread
// (the same, one image at a time on one thread each side) and train-step-memory (peak resident memory of a
// process running train-step).
//
// Two setups (--isa): both systems as they come on this CPU, and both held to AVX2 + FMA (ours:
// RESNETFUSION_ISA=avx2, OpenBLAS on its Haswell kernels; PyTorch: ONEDNN_MAX_CPU_ISA=AVX2,
// ATEN_CPU_CAPABILITY=avx2), which is what a CPU without AVX-512 gets.
//
// Every measurement runs in a fresh process, so memory peaks are per case and one case cannot warm the
// next. Rounds alternate between the systems (this machine is shared and noisy); each table shows medians
// and the ratio. The PyTorch side is Benchmarks/PyTorch/bench_torch.py, run with the python named
// by --torch-python or $TORCH_PYTHON; without one, only our numbers are printed. PyTorch runs its model
// cases in both memory formats (NCHW and channels_last); each ratio is against the better of the two.
// When that python also has onnxruntime and onnx, Benchmarks/PyTorch/bench_onnxruntime.py adds ONNX
// Runtime as a third column for inference (this CPU as it is only: it has no AVX2 cap).
import ArgumentParser
import CPUFeatures
import DataPipeline
import Foundation
import Imaging
import Models
import NN
import Tensors

// Imaging and the kernels are compiled for x86-64-v3: on an older CPU, one line and status 1 instead of SIGILL.
cpu_features_require_x86_64_v3("bench-model")

let cases = ["inference", "frozen-train-bn", "train-step", "jpeg", "jpeg-1-thread", "train-step-memory"]

/// Which instruction sets the driver compares (see the top of this file).
enum InstructionSets: String, ExpressibleByArgument, CaseIterable {
    case both, native, avx2
}

/// The flags of both roles: the driver (no --case) and one measurement in a child process (--case).
struct BenchModel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-model", abstract: "ResNetFusion side by side with PyTorch on this machine, batch 8, 224x224.")

    @Option(help: "Rounds, alternating between the systems.")
    var rounds = 3

    @Option(help: "Kernel threads (default: all cores for the driver, 1 for a --case jpeg child).")
    var threads: Int?

    @Option(help: "Steps per measurement.")
    var steps = 3

    @Option(help: "A python with torch, torchvision, pillow and pandas for PyTorch's side (default: $TORCH_PYTHON).")
    var torchPython: String?

    @Option(help: "Setups to compare: both, native or avx2.")
    var isa: InstructionSets = .both

    @Option(name: .customLong("case"), help: "Run one measurement and print it as one JSON line: \(cases.joined(separator: ", ")).")
    var caseName: String?

    @Option(help: "The JPEG of the jpeg cases.")
    var jpeg: String?

    func validate() throws {
        for (flag, value) in [("--rounds", rounds), ("--steps", steps), ("--threads", threads ?? 1)] where value <= 0 {
            throw ValidationError("\(flag) needs a positive integer")
        }
    }

    func run() throws {
        if let threads { Kernels.setNumThreads(threads) }
        Kernels.retainFreedMemory()
        do {
            if let caseName {
                var result = try measure(caseName, steps: steps, threads: threads ?? 1, jpeg: jpeg)
                result["threads"] = Double(Kernels.numThreads)
                let data = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
                print(String(decoding: data, as: UTF8.self))
            } else {
                try drive(self)
            }
        } catch {
            FileHandle.standardError.write("bench-model: \(error)\n".data(using: .utf8)!)
            throw ExitCode.failure
        }
    }
}

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

func peakResidentMegabytes() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_maxrss) / 1024
}

/// Images per second of `step` (which handles `imagesPerStep` images) after one warm-up step.
func imagesPerSecond(imagesPerStep: Int, steps: Int, _ step: () throws -> Void) rethrows -> Double {
    try step()
    let start = now()
    for _ in 0 ..< steps { try step() }
    return Double(imagesPerStep * steps) / (now() - start)
}

// MARK: One measurement (child process)

func measure(_ name: String, steps: Int, threads: Int, jpeg: String?) throws -> [String: Double] {
    let batch = 8, metaDim = 84
    let generator = RandomGenerator(seed: 0)
    if name == "jpeg" || name == "jpeg-1-thread" {
        guard let path = jpeg else { throw TrainingBenchError("--case \(name) needs --jpeg FILE") }
        let url = URL(fileURLWithPath: path)
        let workers = name == "jpeg" ? threads : 1
        // Each worker reads the file and makes the normalized tensor, as the loader's decode threads do.
        func decodeImages(_ count: Int) throws {
            let decoder = JPEGDecoder(), plans = ResizePlanCache(), pre = Preprocessing.imagenet
            var output = [Float](repeating: 0, count: 3 * 224 * 224)
            for _ in 0 ..< count {
                let crop = try pre.crop(jpeg: try Data(contentsOf: url), source: path, decoder: decoder, plans: plans)
                output.withUnsafeMutableBufferPointer { pre.normalize(crop, into: $0.baseAddress!) }
            }
        }
        try decodeImages(2)  // warm-up: resize plans, page cache
        let perWorker = 8 * 41 / workers
        let failures = UnsafeMutableBufferPointer<Int>.allocate(capacity: workers)
        defer { failures.deallocate() }
        failures.initialize(repeating: 0)
        let start = now()
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            do { try decodeImages(perWorker) } catch { failures[worker] = 1 }
        }
        let seconds = now() - start
        guard !failures.contains(1) else { throw TrainingBenchError("decoding \(path) failed") }
        return ["images_per_second": Double(perWorker * workers) / seconds]
    }
    let model = FusionModel(metaDim: metaDim, generator: generator)
    let images = Tensor.randn([batch, 3, 224, 224], generator: generator)
    let meta = Tensor.randn([batch, metaDim], generator: generator)
    let labels = (0 ..< batch).map { $0 % 2 }
    var result: [String: Double] = [:]
    switch name {
    case "inference":
        model.eval()
        result["images_per_second"] = imagesPerSecond(imagesPerStep: batch, steps: steps) {
            _ = withNoGrad { model.imageFeatures(images) }
        }
    case "frozen-train-bn":
        model.train()
        model.backbone.freeze()
        result["images_per_second"] = imagesPerSecond(imagesPerStep: batch, steps: steps) {
            _ = withNoGrad { model.imageFeatures(images) }
        }
    case "train-step", "train-step-memory":
        model.train()
        let optimizer = Adam(parameters: model.trainableParameters(), learningRate: 1e-3)
        result["images_per_second"] = imagesPerSecond(imagesPerStep: batch, steps: steps) {
            optimizer.zeroGrad()
            crossEntropy(model(images, meta), labels: labels).backward()
            optimizer.step()
        }
        result["peak_rss_mb"] = peakResidentMegabytes()
    default:
        throw TrainingBenchError("unknown case \(name); one of \(cases.joined(separator: ", "))")
    }
    return result
}

struct TrainingBenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

// MARK: Driver

/// Runs a command, returns the last line of its stdout parsed as a JSON object of numbers.
/// - Parameter setting: environment variables set (or replaced) for this run only.
func runJSON(_ executable: String, _ arguments: [String], setting: [String: String] = [:]) -> [String: Double]? {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(setting) { $1 }
    let pipe = Pipe()
    process.standardOutput = pipe
    do { try process.run() } catch { return nil }
    let output = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0,
          let line = String(decoding: output, as: UTF8.self).split(separator: "\n").last,
          let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return nil }
    return object.compactMapValues { ($0 as? NSNumber)?.doubleValue }
}

func median(_ values: [Double]) -> Double? {
    guard !values.isEmpty else { return nil }
    let s = values.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

/// The cases that run a model, where PyTorch's memory format matters (the jpeg cases only decode).
let modelCases: Set<String> = ["inference", "frozen-train-bn", "train-step", "train-step-memory"]

/// One column of a table: a program run once per case and round, with its flags and environment.
struct System {
    let label: String  // unique across setups: the key of its results
    let column: String  // its header in its setup's table
    let executable: String
    let prefix: [String]
    let setting: [String: String]
    let cases: Set<String>
}

/// One table: ours against PyTorch in both memory formats and, for inference, ONNX Runtime.
struct Setup {
    let title: String
    let ours: System
    let torchFormats: [System]  // NCHW, channels_last; empty without a python
    let onnxRuntime: System?
    let notes: [String]
    var systems: [System] { [ours] + torchFormats + (onnxRuntime.map { [$0] } ?? []) }
}

func drive(_ arguments: BenchModel) throws {
    let rounds = arguments.rounds, steps = arguments.steps
    let threads = arguments.threads ?? Int(ProcessInfo.processInfo.activeProcessorCount)
    let python = arguments.torchPython ?? ProcessInfo.processInfo.environment["TORCH_PYTHON"]
    let me = URL(fileURLWithPath: CommandLine.arguments[0]).path
    let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    let torchScript = here.appendingPathComponent("PyTorch/bench_torch.py").path
    let onnxRuntimeScript = here.appendingPathComponent("PyTorch/bench_onnxruntime.py").path

    // A demo frame: a real 1280x960 construction-site JPEG for the decode case.
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("bench-model-\(getpid())")
    defer { try? FileManager.default.removeItem(at: folder) }
    _ = try DemoDataGenerator(seed: 1).write(to: folder, count: 1)
    let jpeg = folder.appendingPathComponent("images/frame_00001.jpg").path

    print("bench-model: \(threads) threads, batch 8, 224x224, \(rounds) rounds alternating, \(steps) steps per measurement")
    print(python.map { "PyTorch side: \($0) \(torchScript)" } ?? "PyTorch side: none (set TORCH_PYTHON or --torch-python)")
    // ONNX Runtime is optional even when PyTorch is there. Its one-time model export happens here, before
    // the rounds, so no timed round shares the machine with it.
    var onnxRuntimePython: String?
    if let python {
        if runJSON(python, [onnxRuntimeScript, "--prepare"]) != nil {
            onnxRuntimePython = python
            print("ONNX Runtime side (inference): \(python) \(onnxRuntimeScript)")
        } else {
            print("ONNX Runtime's column is skipped: \(python) cannot import onnxruntime and onnx "
                  + "(install them with `\(python) -m pip install onnxruntime onnx`)")
        }
    }

    // Two setups, each ours against PyTorch. "native": both as they come on this CPU (ours: the AVX-512 GEMM
    // where the CPU has it). "avx2": both held to AVX2 + FMA, what a CPU without AVX-512 (a Zen 3, say)
    // gets: ours with RESNETFUSION_ISA=avx2 (OpenBLAS sgemm on its Haswell kernels, no AVX-512 paths);
    // PyTorch with oneDNN and ATen capped at AVX2. PyTorch runs in both memory formats, since which one is
    // faster depends on the CPU and the case, and ours is compared with the better of the two.
    let allCases = Set(cases)
    func torchFormats(suffix: String, setting: [String: String]) -> [System] {
        guard let python else { return [] }
        return [("nchw", "PyTorch NCHW", allCases), ("channels_last", "PyTorch channels_last", modelCases)].map {
            format, column, measured in
            System(label: column + suffix, column: column + suffix, executable: python,
                   prefix: [torchScript, "--memory-format", format], setting: setting, cases: measured)
        }
    }
    let isa = arguments.isa
    var setups = [Setup]()
    if isa != .avx2 {
        setups.append(Setup(
            title: "this CPU as it is",
            ours: System(label: "ResNetFusion", column: "ResNetFusion", executable: me, prefix: [], setting: [:],
                         cases: allCases),
            torchFormats: torchFormats(suffix: "", setting: [:]),
            onnxRuntime: onnxRuntimePython.map {
                System(label: "ONNX Runtime", column: "ONNX Runtime", executable: $0, prefix: [onnxRuntimeScript],
                       setting: [:], cases: ["inference"])
            },
            notes: []))
    }
    if isa != .native {
        // ONNX Runtime's kernels choose their instruction set from cpuid with no run-time cap, so it has no
        // AVX2 column: an unrestricted number next to restricted ones would not be a comparison.
        setups.append(Setup(
            title: "both held to AVX2 + FMA (a CPU without AVX-512)",
            ours: System(label: "ResNetFusion AVX2", column: "ResNetFusion AVX2", executable: me, prefix: [],
                         setting: ["RESNETFUSION_ISA": "avx2", "OPENBLAS_CORETYPE": "Haswell"], cases: allCases),
            torchFormats: torchFormats(suffix: " AVX2", setting: ["ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"]),
            onnxRuntime: nil,
            notes: onnxRuntimePython == nil ? [] : [
                "ONNX Runtime: not measured here, it is not restricted: its kernels pick their instruction set "
                    + "from cpuid and offer no run-time cap to AVX2."]))
    }
    let systems = setups.flatMap(\.systems)

    var results = [String: [String: [Double]]]()  // system label → case → values
    func key(_ name: String) -> String { name == "train-step-memory" ? "peak_rss_mb" : "images_per_second" }
    for round in 1 ... rounds {
        for name in cases {
            let common = ["--case", name, "--threads", String(threads), "--steps", String(steps), "--jpeg", jpeg]
            // Rotate which system goes first, round by round.
            let measuring = systems.filter { $0.cases.contains(name) }
            let order = (0 ..< measuring.count).map { measuring[($0 + round) % measuring.count] }
            for system in order {
                guard let result = runJSON(system.executable, system.prefix + common, setting: system.setting),
                      let value = result[key(name)] else {
                    FileHandle.standardError.write("bench-model: \(system.label) failed on \(name)\n".data(using: .utf8)!)
                    continue
                }
                results[system.label, default: [:]][name, default: []].append(value)
            }
        }
        FileHandle.standardError.write("round \(round)/\(rounds) done\n".data(using: .utf8)!)
    }

    func cell(_ text: String, width: Int) -> String { String(repeating: " ", count: max(1, width - text.count)) + text }
    for setup in setups {
        print("")
        print("\(setup.title):")
        let valueColumns = [setup.ours] + setup.torchFormats
        let widths = valueColumns.map { max($0.column.count, 11) + 3 }
        let bestTorchHeader = "ratio vs best PyTorch", onnxHeader = "ratio vs ONNX Runtime"
        var header = "case".padding(toLength: 20, withPad: " ", startingAt: 0)
        for (system, width) in zip(valueColumns, widths) { header += cell(system.column, width: width) }
        if !setup.torchFormats.isEmpty { header += "   " + bestTorchHeader }
        if let onnx = setup.onnxRuntime { header += cell(onnx.column, width: onnx.column.count + 3) + "   " + onnxHeader }
        print(header)
        for name in cases {
            let isMemory = name == "train-step-memory"
            let unit = isMemory ? "MB" : "img/s"
            func format(_ value: Double?, measured: Bool) -> String {
                guard measured else { return "n/a" }
                return value.map { String(format: "%.1f %@", $0, unit) } ?? "—"
            }
            var line = name.padding(toLength: 20, withPad: " ", startingAt: 0)
            let ours = median(results[setup.ours.label]?[name] ?? [])
            line += cell(format(ours, measured: true), width: widths[0])
            // The better PyTorch format for this case: the faster one, or for memory the smaller one.
            var best: (value: Double, format: String)?
            var formatsCompared = 0
            for (system, width) in zip(setup.torchFormats, widths.dropFirst()) {
                let value = median(results[system.label]?[name] ?? [])
                line += cell(format(value, measured: system.cases.contains(name)), width: width)
                guard let value, value > 0 else { continue }
                formatsCompared += 1
                if best == nil || (isMemory ? value < best!.value : value > best!.value) {
                    best = (value, system.column.contains("channels_last") ? "channels_last" : "NCHW")
                }
            }
            if !setup.torchFormats.isEmpty {
                // The winner is named only where there was a choice: the jpeg cases have no memory format.
                let ratio = ours.flatMap { ours in
                    best.map {
                        String(format: "%.2fx", ours / $0.value) + (formatsCompared > 1 ? " (\($0.format))" : "")
                    }
                } ?? "—"
                line += "   " + ratio.padding(toLength: bestTorchHeader.count, withPad: " ", startingAt: 0)
            }
            if let onnx = setup.onnxRuntime {
                let measured = onnx.cases.contains(name)
                let value = median(results[onnx.label]?[name] ?? [])
                line += cell(measured ? format(value, measured: true) : "", width: onnx.column.count + 3)
                if measured, let ours, let value, value > 0 { line += String(format: "   %.2fx", ours / value) }
            }
            print(line.replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression))
        }
        if !setup.torchFormats.isEmpty {
            print("ratio: ours / the faster PyTorch format, named where both ran (memory: ours / the smaller; lower is better)")
        }
        for note in setup.notes { print(note) }
    }
}

BenchModel.main()
