// Kernel microbenchmarks: every distinct ResNet-50 convolution at batch 8 and 224x224 input (forward,
// backward-input, backward-weight) in ms, GFLOP/s, and percent of this machine's sgemm rate and of its FMA
// peak (a register-only FMA loop, ck_measure_fma_peak), both measured in the same run; BatchNorm and pooling
// in GB/s (memory-bound: a percentage of the FMA peak would say nothing about them). Prints numbers; asserts
// nothing.
//
//   bench-kernels [--threads N] [--batch N] [--repeats N] [--reference] [--only TEXT]
//   (--only: just the convolutions whose name contains TEXT)
import ArgumentParser
import CKernels
import CKernelsReference
import CPUFeatures
import Foundation
import ResNetShapes
import SeededRandom

// The kernels are compiled for x86-64-v3: on an older CPU, one line and status 1 instead of SIGILL.
cpu_features_require_x86_64_v3("bench-kernels")

struct Options: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-kernels", abstract: "C kernel microbenchmarks: ResNet-50's convolutions, batch norm and pooling, against sgemm and the FMA peak.")

    @Option(help: ArgumentHelp("OpenMP threads (default: all cores).", valueName: "N"))
    var threads: Int?
    @Option(help: ArgumentHelp("Images per batch.", valueName: "N"))
    var batch: Int = 8
    @Option(help: ArgumentHelp("Timed runs per kernel (the median is printed).", valueName: "N"))
    var repeats: Int = 5
    @Flag(help: "Time the reference twins instead of the optimized kernels.")
    var reference = false
    @Option(help: ArgumentHelp("Just the convolutions whose name contains TEXT.", valueName: "TEXT"))
    var only: String?

    func validate() throws {
        for (flag, value) in [("--threads", threads ?? 1), ("--batch", batch), ("--repeats", repeats)] where value <= 0 {
            throw ValidationError("\(flag) needs a positive integer")
        }
    }
}

// Usage errors exit with status 2, as they did before ArgumentParser; --help prints and exits 0.
let options: Options = {
    do {
        return try Options.parse()
    } catch {
        if Options.exitCode(for: error) == .success { Options.exit(withError: error) }
        FileHandle.standardError.write((Options.fullMessage(for: error) + "\n").data(using: .utf8)!)
        exit(2)
    }
}()
// The implementation every timed kernel below comes from.
let kernels = options.reference ? ck_reference_kernels().pointee : ck_optimized_kernels().pointee
ck_set_num_threads(Int32(options.threads ?? 0))
let threads = Int(ck_get_num_threads())

/// Median wall time in seconds of `repeats` runs after one warm-up run.
func medianSeconds(repeats: Int, _ body: () -> Void) -> Double {
    body()
    var times = [Double]()
    for _ in 0..<repeats {
        let start = DispatchTime.now().uptimeNanoseconds
        body()
        times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }
    return times.sorted()[times.count / 2]
}

func check(_ status: Int32, _ what: String) {
    if status != CK_OK.rawValue {
        FileHandle.standardError.write("bench-kernels: \(what) failed: \(String(cString: ck_status_string(status)))\n".data(using: .utf8)!)
        exit(1)
    }
}

func filled(_ count: Int, seed: UInt64) -> UnsafeMutablePointer<Float> {
    let p = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
    var generator = SplitMix64(seed: seed)
    for i in 0..<count { p[i] = generator.uniform(-1, 1) }
    return p
}

func pad(_ s: String, _ width: Int) -> String { s.count >= width ? s : s + String(repeating: " ", count: width - s.count) }
func lpad(_ s: String, _ width: Int) -> String { s.count >= width ? s : String(repeating: " ", count: width - s.count) + s }
func fmt(_ v: Double, _ decimals: Int) -> String { String(format: "%.\(decimals)f", v) }

// -------------------------------------------------------------------------------------- FMA peak
// The hardware's ceiling: every thread runs independent FMAs on registers only. Calibrated to run about
// 0.3 s, then the best of three runs: on shared cores, a slower run means another process took cycles,
// never that the FMA units got faster.
let fmaPeakRuns = 3
func measureFMAPeak() -> ck_fma_peak {
    var result = ck_fma_peak()
    check(ck_measure_fma_peak(&result, 1_000_000), "FMA peak (calibration)")
    let targetSeconds = 0.3
    let iterations = max(1_000_000, Int(1_000_000 * targetSeconds / max(result.seconds, 1e-6)))
    var best = ck_fma_peak()
    for _ in 0..<fmaPeakRuns {
        check(ck_measure_fma_peak(&result, iterations), "FMA peak")
        if result.flops_per_second > best.flops_per_second { best = result }
    }
    return best
}
let fmaPeak = measureFMAPeak()
let fmaPeakRate = fmaPeak.flops_per_second / 1e9
/// A rate in GFLOP/s as a percentage of the FMA peak, no decimals.
func percentOfFMAPeak(_ gflops: Double) -> String { fmt(100 * gflops / fmaPeakRate, 0) + "%" }

// ----------------------------------------------------------------------------------- sgemm ceiling
// The machine's rate: a 2048³ sgemm threaded by OpenBLAS itself, and split into column blocks over our
// OpenMP threads with a single-threaded sgemm on each (how the kernels call it), once with OpenBLAS, once
// with our AVX2 GEMM and once with our AVX-512 GEMM when the CPU has it. The best is 100%.
let gemmSize = 2048
let gemmA = filled(gemmSize * gemmSize, seed: 1), gemmB = filled(gemmSize * gemmSize, seed: 2)
let gemmC = filled(gemmSize * gemmSize, seed: 3)
let gemmFlops = 2.0 * pow(Double(gemmSize), 3)
let kernelsBackend = ck_get_gemm_backend()
let openblas = Int32(CK_GEMM_OPENBLAS.rawValue), avx512 = Int32(CK_GEMM_AVX512.rawValue)
let avx2 = Int32(CK_GEMM_AVX2.rawValue)

ck_set_gemm_backend(openblas)
ck_set_blas_threads(Int32(threads))
let blasThreadedSeconds = medianSeconds(repeats: 3) {
    ck_sgemm(0, 0, Int32(gemmSize), Int32(gemmSize), Int32(gemmSize), 1, gemmA, Int32(gemmSize), gemmB,
             Int32(gemmSize), 0, gemmC, Int32(gemmSize))
}
ck_set_num_threads(Int32(threads))

final class GemmBlocks {
    let a, b, c: UnsafeMutablePointer<Float>
    let size: Int, blocks: Int
    init(a: UnsafeMutablePointer<Float>, b: UnsafeMutablePointer<Float>, c: UnsafeMutablePointer<Float>, size: Int, blocks: Int) {
        self.a = a; self.b = b; self.c = c; self.size = size; self.blocks = blocks
    }
}
let blocks = GemmBlocks(a: gemmA, b: gemmB, c: gemmC, size: gemmSize, blocks: threads)
func splitGemmRate(backend: Int32) -> Double {
    ck_set_gemm_backend(backend)
    let seconds = medianSeconds(repeats: 3) {
        ck_parallel_for(Int32(threads), { arg, index in
            let g = Unmanaged<GemmBlocks>.fromOpaque(arg!).takeUnretainedValue()
            let width = g.size / g.blocks, start = Int(index) * width
            let n = Int(index) == g.blocks - 1 ? g.size - start : width
            ck_sgemm(0, 0, Int32(g.size), Int32(n), Int32(g.size), 1, g.a, Int32(g.size), g.b + start, Int32(g.size),
                     0, g.c + start, Int32(g.size))
        }, Unmanaged.passUnretained(blocks).toOpaque())
    }
    return gemmFlops / seconds / 1e9
}
let blasRate = gemmFlops / blasThreadedSeconds / 1e9
let blasSplitRate = splitGemmRate(backend: openblas)
let avx2Rate: Double? = ck_set_gemm_backend(avx2) == CK_OK.rawValue ? splitGemmRate(backend: avx2) : nil
let ownRate: Double? = ck_set_gemm_backend(avx512) == CK_OK.rawValue ? splitGemmRate(backend: avx512) : nil
ck_set_gemm_backend(kernelsBackend)
let peak = max(blasRate, blasSplitRate, avx2Rate ?? 0, ownRate ?? 0)
gemmA.deallocate(); gemmB.deallocate(); gemmC.deallocate()

let coreType = ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"].map { ", OPENBLAS_CORETYPE=\($0)" } ?? ""
print("ResNetFusion kernel benchmarks — \(threads) threads, batch \(options.batch), 224x224, "
      + (options.reference ? "REFERENCE kernels" : "optimized kernels") + ", median of \(options.repeats)")
print("FMA peak: \(fmt(fmaPeakRate, 1)) GFLOP/s (\(fmaPeak.threads) threads, "
      + (fmaPeak.vector_bits == 512 ? "AVX-512 zmm" : "AVX2 + FMA ymm")
      + ", register-only FMA loop, best of \(fmaPeakRuns)"
      + (fmaPeak.vector_bits == 512 ? "; RESNETFUSION_ISA=avx2 measures the AVX2 peak)" : ")"))
print("sgemm 2048³ GFLOP/s (% of FMA peak): OpenBLAS threaded \(fmt(blasRate, 1)) (\(percentOfFMAPeak(blasRate))), "
      + "OpenBLAS split over OpenMP \(fmt(blasSplitRate, 1)) (\(percentOfFMAPeak(blasSplitRate)))"
      + (avx2Rate.map { ", AVX2 GEMM split over OpenMP \(fmt($0, 1)) (\(percentOfFMAPeak($0)))" } ?? "")
      + (ownRate.map { ", AVX-512 GEMM split over OpenMP \(fmt($0, 1)) (\(percentOfFMAPeak($0)))" } ?? "") + coreType)
let backendName = kernelsBackend == avx512 ? "AVX-512 GEMM" : kernelsBackend == avx2 ? "AVX2 GEMM" : "OpenBLAS sgemm"
print("kernels use the \(backendName) (RESNETFUSION_GEMM=openblas picks OpenBLAS); "
      + "100% = \(fmt(peak, 1)) GFLOP/s")
print("")

// ------------------------------------------------------------------ sgemm on ResNet-50's products
// Every backend this CPU runs, on the products the convolutions make: forward weight · col (NN),
// backward-input weightᵀ · dy (TN), backward-weight dy · colᵀ (NT), each thread multiplying its own operands
// with its share of the batch's columns side by side (as the implicit-GEMM and grouped paths do). Rates are
// for the whole team; medians of --repeats runs. Separates the micro-kernels from the lowering around them.
final class GemmProblem {
    let ta: Int32, tb: Int32, m: Int32, n: Int32, k: Int32
    let a: [UnsafeMutablePointer<Float>], b: [UnsafeMutablePointer<Float>], c: [UnsafeMutablePointer<Float>]
    init(ta: Int32, tb: Int32, m: Int, n: Int, k: Int, threads: Int) {
        self.ta = ta; self.tb = tb; self.m = Int32(m); self.n = Int32(n); self.k = Int32(k)
        a = (0..<threads).map { filled(m * k, seed: UInt64(30 + $0)) }
        b = (0..<threads).map { filled(k * n, seed: UInt64(40 + $0)) }
        c = (0..<threads).map { filled(m * n, seed: UInt64(50 + $0)) }
    }
    deinit { (a + b + c).forEach { $0.deallocate() } }
    func run() {
        ck_parallel_for(Int32(a.count), { arg, index in
            let g = Unmanaged<GemmProblem>.fromOpaque(arg!).takeUnretainedValue()
            let t = Int(index)
            ck_sgemm(g.ta, g.tb, g.m, g.n, g.k, 1, g.a[t], g.ta != 0 ? g.m : g.k, g.b[t], g.tb != 0 ? g.k : g.n, 0,
                     g.c[t], g.n)
        }, Unmanaged.passUnretained(self).toOpaque())
    }
}
if !options.reference {
    let gemmBackends = [(openblas, "OpenBLAS"), (avx2, "AVX2"), (avx512, "AVX-512")]
        .filter { ck_set_gemm_backend($0.0) == CK_OK.rawValue }
    ck_set_gemm_backend(kernelsBackend)
    print("sgemm GFLOP/s on ResNet-50's products (\(threads) threads, each m × n × k with n its share of the batch's columns)")
    print(pad("product", 28) + lpad("", 3) + " | " + ["forward NN", "backward-input TN", "backward-weight NT"]
        .map { lpad($0, 8 * gemmBackends.count) }.joined(separator: " |"))
    print(pad("", 28) + lpad("", 3) + " | " + Array(repeating: gemmBackends.map { lpad($0.1, 8) }.joined(), count: 3)
        .joined(separator: " |"))
    for layer in resnet50ConvShapes where options.only.map({ layer.name.contains($0) }) ?? true {
        let crs = layer.inChannels * layer.kernel * layer.kernel
        let columns = max(1, options.batch * layer.outputSize * layer.outputSize / threads)
        let products = [(Int32(0), Int32(0), layer.outChannels, columns, crs), (1, 0, crs, columns, layer.outChannels),
                        (0, 1, layer.outChannels, crs, columns)]
        var cells = [String]()
        for (ta, tb, m, n, k) in products {
            let problem = GemmProblem(ta: ta, tb: tb, m: m, n: n, k: k, threads: threads)
            let flops = 2.0 * Double(m) * Double(n) * Double(k) * Double(threads)
            cells.append(gemmBackends.map { backend -> String in
                ck_set_gemm_backend(backend.0)
                return lpad(fmt(flops / medianSeconds(repeats: options.repeats) { problem.run() } / 1e9, 1), 8)
            }.joined())
        }
        ck_set_gemm_backend(kernelsBackend)
        print(pad(layer.name, 28) + lpad("\(layer.occurrences)", 3) + " | " + cells.joined(separator: " |"))
    }
    print("")
}

// ------------------------------------------------------------------------------------ convolutions
let forwardKernel = kernels.conv2d_forward
let inputKernel = kernels.conv2d_backward_input
let weightKernel = kernels.conv2d_backward_weight

print("GFLOP/s counts direct-convolution FLOPs (2·MACs); each column is the kernel's own choice, Winograd"
      + " for 3x3 stride-1 layers where it measures faster, so they can pass 100% of sgemm (and in principle of the FMA peak)")
print(pad("convolution", 28) + lpad("×", 3) + " | " + ["forward", "backward-input", "backward-weight"]
    .map { lpad($0, 31) }.joined(separator: " |"))
print(pad("", 28) + lpad("", 3) + " | " + Array(repeating: lpad("ms  GFLOP/s  %sgemm  %peak", 31), count: 3).joined(separator: " |"))

struct Totals { var seconds = 0.0; var flops = 0.0 }
var forwardTotal = Totals(), backwardTotal = Totals(), pointwiseEarly = Totals()
// Per 3x3 stride-1 layer: forward and backward-input through the GEMM, F(2x2, 3x3) and F(4x4, 3x3); backward-weight
// through the GEMM and F(2x2, 3x3).
var winogradRows = [(name: String, forward: [Double], input: [Double], weight: [Double], flops: Double)]()
let batch = options.batch
for layer in resnet50ConvShapes where options.only.map({ layer.name.contains($0) }) ?? true {
    var shape = ck_conv2d_shape(batch: Int32(batch), in_channels: Int32(layer.inChannels),
                                in_height: Int32(layer.inputSize), in_width: Int32(layer.inputSize),
                                out_channels: Int32(layer.outChannels), kernel_height: Int32(layer.kernel),
                                kernel_width: Int32(layer.kernel), stride_height: Int32(layer.stride),
                                stride_width: Int32(layer.stride), pad_height: Int32(layer.pad),
                                pad_width: Int32(layer.pad))
    let inCount = batch * layer.inChannels * layer.inputSize * layer.inputSize
    let outCount = batch * layer.outChannels * layer.outputSize * layer.outputSize
    let weightCount = layer.outChannels * layer.inChannels * layer.kernel * layer.kernel
    let x = filled(inCount, seed: 4), w = filled(weightCount, seed: 5), y = filled(outCount, seed: 6)
    let dx = filled(inCount, seed: 7), dw = filled(weightCount, seed: 8)
    let bytes = ck_conv2d_workspace_size(&shape)
    let workspace = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 64), alignment: 64)
    // The reference kernels are slow: one run each is plenty to see how slow.
    let repeats = options.reference ? 1 : options.repeats
    let flops = 2.0 * Double(layer.macsPerImage) * Double(batch)
    let tf = medianSeconds(repeats: repeats) { check(forwardKernel(y, x, w, nil, &shape, workspace, bytes), "forward") }
    let ti = medianSeconds(repeats: repeats) { check(inputKernel(dx, y, w, &shape, workspace, bytes), "backward input") }
    let tw = medianSeconds(repeats: repeats) { check(weightKernel(dw, nil, y, x, &shape, workspace, bytes), "backward weight") }
    let occurrences = Double(layer.occurrences)
    forwardTotal.seconds += tf * occurrences; forwardTotal.flops += flops * occurrences
    backwardTotal.seconds += (ti + tw) * occurrences; backwardTotal.flops += 2 * flops * occurrences
    if layer.kernel == 3 && layer.stride == 1 && !options.reference {
        let tg = medianSeconds(repeats: repeats) {
            check(ck_conv2d_forward_gemm_f32(y, x, w, nil, &shape, workspace, bytes), "gemm forward")
        }
        ck_conv2d_set_winograd(Int32(CK_WINOGRAD_NEVER))
        let tig = medianSeconds(repeats: repeats) { check(inputKernel(dx, y, w, &shape, workspace, bytes), "gemm backward input") }
        ck_conv2d_set_winograd(Int32(CK_WINOGRAD_AUTO))
        var forwardSeconds = [tg], inputSeconds = [tig]
        for tile in [2, 4] {  // each tile with a workspace sized for it
            ck_conv2d_set_winograd_tile(Int32(tile))
            let tileBytes = ck_conv2d_workspace_size(&shape)
            let tileWorkspace = UnsafeMutableRawPointer.allocate(byteCount: max(tileBytes, 64), alignment: 64)
            forwardSeconds.append(medianSeconds(repeats: repeats) {
                check(ck_conv2d_forward_winograd_f32(y, x, w, nil, &shape, tileWorkspace, tileBytes), "winograd forward")
            })
            inputSeconds.append(medianSeconds(repeats: repeats) {
                check(ck_conv2d_backward_input_winograd_f32(dx, y, w, &shape, tileWorkspace, tileBytes),
                      "winograd backward input")
            })
            tileWorkspace.deallocate()
        }
        ck_conv2d_set_winograd_tile(0)
        ck_conv2d_set_winograd(Int32(CK_WINOGRAD_NEVER))
        let twgemm = medianSeconds(repeats: repeats) {
            check(weightKernel(dw, nil, y, x, &shape, workspace, bytes), "gemm backward weight")
        }
        ck_conv2d_set_winograd(Int32(CK_WINOGRAD_AUTO))
        let tww = medianSeconds(repeats: repeats) {
            check(ck_conv2d_backward_weight_winograd_f32(dw, nil, y, x, &shape, workspace, bytes), "winograd backward weight")
        }
        winogradRows.append((layer.name, forwardSeconds, inputSeconds, [twgemm, tww], flops))
    }
    if layer.kernel == 1 && layer.stride == 1 && !layer.name.hasPrefix("layer4") {
        pointwiseEarly.seconds += tf * occurrences; pointwiseEarly.flops += flops * occurrences
    }
    let cells = [tf, ti, tw].map { t -> String in
        let rate = flops / t / 1e9
        return lpad(fmt(t * 1e3, 2), 8) + lpad(fmt(rate, 1), 9) + lpad(fmt(100 * rate / peak, 0) + "%", 7)
            + lpad(percentOfFMAPeak(rate), 7)
    }
    print(pad(layer.name, 28) + lpad("\(layer.occurrences)", 3) + " | " + cells.joined(separator: " |"))
    [x, w, y, dx, dw].forEach { $0.deallocate() }
    workspace.deallocate()
}

func summary(_ label: String, _ t: Totals) {
    guard t.seconds > 0 else { return }  // no layer measured (--only matched none)
    let rate = t.flops / t.seconds / 1e9
    print(pad(label, 58) + lpad(fmt(t.seconds * 1e3, 1), 9) + " ms " + lpad(fmt(rate, 1), 7) + " GFLOP/s "
          + lpad(fmt(100 * rate / peak, 0), 4) + "% of sgemm " + lpad(percentOfFMAPeak(rate), 4) + " of FMA peak")
}
print("")
summary("1x1 stride-1 convolutions of layer1–layer3, forward", pointwiseEarly)
summary("all ResNet-50 convolutions, forward (batch \(batch), weighted by occurrence)", forwardTotal)
summary("all ResNet-50 convolutions, backward input + weight", backwardTotal)
if forwardTotal.seconds > 0 {
    print(pad("forward convolutions per image", 58) + lpad(fmt(forwardTotal.seconds * 1e3 / Double(batch), 1), 9) + " ms")
}
print("")

// ------------------------------------------------------------------------------ the ceiling
// What no implementation of these convolutions can beat on this machine, whatever its layout or packing: every
// multiply at the FMA peak, 3x3 stride-1 layers in all three kernels through F(4x4, 3x3) with only its products
// counted (36 multiplies per 16 outputs instead of 144: a quarter; larger tiles lose float32 accuracy), and nothing
// else costing time (no packing, transforms, batch norm, pooling or optimizer). Counts whole ResNet-50 at 224, so it
// is printed whatever --only says.
do {
    var direct = 0.0, fewest = 0.0
    for layer in resnet50ConvShapes {
        let flops = 2.0 * Double(layer.macsPerImage) * Double(layer.occurrences)
        direct += flops
        fewest += layer.kernel == 3 && layer.stride == 1 ? flops / 4 : flops
    }
    let forwardImages = fmaPeakRate * 1e9 / fewest, trainImages = fmaPeakRate * 1e9 / (3 * fewest)
    print("the ceiling: ResNet-50's convolutions at the FMA peak (\(fmt(fmaPeakRate, 1)) GFLOP/s) with only F(4x4, 3x3)'s"
          + " multiplies on 3x3 stride-1 layers (\(fmt(fewest / 1e9, 2)) of \(fmt(direct / 1e9, 2)) GFLOP an image) and"
          + " nothing else costing time")
    print(pad("  forward (inference)", 58) + lpad(fmt(forwardImages, 1), 9) + " img/s")
    print(pad("  forward + backward input + backward weight (train step)", 58) + lpad(fmt(trainImages, 1), 9) + " img/s")
    if options.only == nil && forwardTotal.seconds > 0 && backwardTotal.seconds > 0 {
        let forwardMeasured = Double(batch) / forwardTotal.seconds
        let trainMeasured = Double(batch) / (forwardTotal.seconds + backwardTotal.seconds)
        print(pad("  measured above, convolutions alone", 58) + lpad(fmt(forwardMeasured, 1), 9) + " img/s forward ("
              + fmt(100 * forwardMeasured / forwardImages, 0) + "% of the ceiling), " + fmt(trainMeasured, 1)
              + " img/s forward + backward (" + fmt(100 * trainMeasured / trainImages, 0) + "%)")
    }
}
print("")
if !winogradRows.isEmpty {
    print("3x3 stride-1 layers: GEMM (im2col or implicit), Winograd F(2x2, 3x3) and F(4x4, 3x3) (the weight gradient"
          + " has F(2x2, 3x3) only); GFLOP/s, %peak and the speed-up are the fastest Winograd's, counting"
          + " direct-convolution FLOPs, so Winograd can pass 100%")
    let three = lpad("GEMM ms", 9) + lpad("F2 ms", 8) + lpad("F4 ms", 8) + lpad("GFLOP/s", 9) + lpad("%peak", 7)
        + lpad("speed-up", 9)
    let two = lpad("GEMM ms", 9) + lpad("F2 ms", 8) + lpad("GFLOP/s", 9) + lpad("%peak", 7) + lpad("speed-up", 9)
    print(pad("", 28) + " |" + lpad("forward", three.count) + " |" + lpad("backward-input", three.count) + " |"
          + lpad("backward-weight", two.count))
    print(pad("", 28) + " |" + three + " |" + three + " |" + two)
    for row in winogradRows {
        let cells = [row.forward, row.input, row.weight].map { seconds -> String in
            let fastest = seconds.dropFirst().min()!, rate = row.flops / fastest / 1e9
            return lpad(fmt(seconds[0] * 1e3, 2), 9) + seconds.dropFirst().map { lpad(fmt($0 * 1e3, 2), 8) }.joined()
                + lpad(fmt(rate, 1), 9) + lpad(percentOfFMAPeak(rate), 7) + lpad(fmt(seconds[0] / fastest, 2) + "x", 9)
        }
        print(pad(row.name, 28) + " |" + cells.joined(separator: " |"))
    }
    print("")
}

// ------------------------------------------------------------------------------ memory-bound kernels
print(pad("memory-bound kernel", 46) + lpad("ms", 9) + lpad("GB/s", 9))
func memoryRow(_ label: String, bytes: Double, _ body: () -> Void) {
    let t = medianSeconds(repeats: options.reference ? 1 : options.repeats, body)
    print(pad(label, 46) + lpad(fmt(t * 1e3, 2), 9) + lpad(fmt(bytes / t / 1e9, 1), 9))
}
for (channels, size) in [(64, 112), (256, 56), (2048, 7)] {
    let n = batch, plane = size * size, count = n * channels * plane
    let x = filled(count, seed: 9), y = filled(count, seed: 10), dy = filled(count, seed: 11), dx = filled(count, seed: 12)
    let gamma = filled(channels, seed: 13), beta = filled(channels, seed: 14)
    let mean = filled(channels, seed: 15), invstd = filled(channels, seed: 16)
    let runningMean = filled(channels, seed: 17), runningVar = UnsafeMutablePointer<Float>.allocate(capacity: channels)
    runningVar.initialize(repeating: 1, count: channels)
    let dgamma = filled(channels, seed: 18), dbeta = filled(channels, seed: 19)
    let floats = Double(count) * 4
    let label = "\(n)x\(channels)x\(size)x\(size)"
    let backward = kernels.batchnorm2d_backward_fused, infer = kernels.batchnorm2d_forward_infer
    // Bytes: forward-train reads x twice (statistics, normalise) and writes y; backward reads dy and x
    // twice and writes dx, and with the relu also reads y twice; inference reads x and writes y.
    memoryRow("batchnorm train forward \(label)", bytes: 3 * floats) {
        check(kernels.batchnorm2d_forward_train_fused(y, mean, invstd, runningMean, runningVar, x, gamma, beta, nil, 0,
                                                      Int32(n), Int32(channels), Int32(plane), 0.1, 1e-5), "bn")
    }
    memoryRow("batchnorm + relu train forward \(label)", bytes: 3 * floats) {
        check(kernels.batchnorm2d_forward_train_fused(y, mean, invstd, runningMean, runningVar, x, gamma, beta, nil, 1,
                                                      Int32(n), Int32(channels), Int32(plane), 0.1, 1e-5), "bn + relu")
    }
    memoryRow("batchnorm backward \(label)", bytes: 5 * floats) {
        check(backward(dx, dgamma, dbeta, nil, dy, nil, x, mean, invstd, gamma, Int32(n), Int32(channels), Int32(plane)),
              "bn backward")
    }
    memoryRow("batchnorm + relu backward \(label)", bytes: 7 * floats) {
        check(backward(dx, dgamma, dbeta, nil, dy, y, x, mean, invstd, gamma, Int32(n), Int32(channels), Int32(plane)),
              "bn + relu backward")
    }
    memoryRow("batchnorm inference \(label)", bytes: 2 * floats) {
        check(infer(y, x, gamma, beta, runningMean, runningVar, Int32(n), Int32(channels), Int32(plane), 1e-5), "bn infer")
    }
    [x, y, dy, dx, gamma, beta, mean, invstd, runningMean, runningVar, dgamma, dbeta].forEach { $0.deallocate() }
}
do {
    var shape = ck_pool2d_shape(batch: Int32(batch), channels: 64, in_height: 112, in_width: 112, kernel_height: 3,
                                kernel_width: 3, stride_height: 2, stride_width: 2, pad_height: 1, pad_width: 1)
    let inCount = batch * 64 * 112 * 112, outCount = batch * 64 * 56 * 56
    let x = filled(inCount, seed: 20), y = filled(outCount, seed: 21), dx = filled(inCount, seed: 22)
    let argmax = UnsafeMutablePointer<Int32>.allocate(capacity: outCount)
    let forward = kernels.maxpool2d_forward, backward = kernels.maxpool2d_backward
    memoryRow("maxpool 3x3/2 forward \(batch)x64x112x112", bytes: Double(inCount + 2 * outCount) * 4) {
        check(forward(y, argmax, x, &shape), "maxpool")
    }
    memoryRow("maxpool 3x3/2 backward \(batch)x64x112x112", bytes: Double(inCount + 2 * outCount) * 4) {
        check(backward(dx, y, argmax, &shape), "maxpool backward")
    }
    let pooled = filled(batch * 2048, seed: 23), big = filled(batch * 2048 * 49, seed: 24)
    let avgForward = kernels.global_avgpool_forward
    memoryRow("global average pool forward \(batch)x2048x7x7", bytes: Double(batch * 2048 * 50) * 4) {
        check(avgForward(pooled, big, Int32(batch), 2048, 49), "avgpool")
    }
    [x, y, dx, pooled, big].forEach { $0.deallocate() }
    argmax.deallocate()
}
do {
    // One Adam step over as many values as ResNet-50 has parameters, as one tensor: it reads p, m, v and g and writes
    // p, m and v.
    let count = 25_557_032
    let p = filled(count, seed: 25), m = filled(count, seed: 26), v = filled(count, seed: 27), g = filled(count, seed: 28)
    for i in 0 ..< count { v[i] = abs(v[i]) }
    var step = ck_adam_step(learning_rate: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0, decoupled: 0,
                            step_size: 1e-3 / 0.1, inverse_bias_correction2_sqrt: Float(1 / (0.001).squareRoot()))
    memoryRow("adam update, 25.6 M parameters", bytes: Double(count) * 7 * 4) {
        check(kernels.adam_update(p, m, v, g, count, &step), "adam")
    }
    [p, m, v, g].forEach { $0.deallocate() }
}
