// bench-images: decode + torchvision-exact preprocessing of one JPEG into the normalized 224² tensor, per image,
// on one thread (the per-core cost; the loader runs one such pipeline per worker).
// Compare with `python Benchmarks/ImageBenchmarks/pillow_torchvision.py FILE` on the same file.
//
//   swift run -c release bench-images FILE.jpg [--seconds S]
//   swift run -c release bench-images --loader DIR [--workers N]   (a make-demo-data folder: loader epochs)
// FILE: e.g. a frame of `resnet50 make-demo-data` or the committed Tests/DataPipelineTests/Fixtures/images/frame_1280x960.jpg.
import ArgumentParser
import CPUFeatures
import DataPipeline
import Foundation
import Imaging

// Imaging and the kernels are compiled for x86-64-v3: on an older CPU, one line and status 1 instead of SIGILL.
cpu_features_require_x86_64_v3("bench-images")

func clock(_ id: clockid_t) -> Double {
    var t = timespec()
    clock_gettime(id, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}
func now() -> Double { clock(CLOCK_MONOTONIC) }
/// CPU time of this thread: on a machine shared with other jobs, wall time also counts time spent descheduled.
func cpuNow() -> Double { clock(CLOCK_THREAD_CPUTIME_ID) }

/// `bench-images FILE.jpg [--seconds S]` or `bench-images --loader DIR [--workers N]`.
struct BenchImages: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-images", abstract: "Decode + torchvision-exact preprocessing of one JPEG, per image, on one thread.")

    @Argument(help: "The JPEG to time.")
    var file: String?

    @Option(help: "Seconds per timed step.")
    var seconds = 3.0

    @Option(help: "A make-demo-data folder: time two loader epochs over it instead.")
    var loader: String?

    @Option(help: "Loader decoding threads (with --loader).")
    var workers = 2

    func validate() throws {
        guard loader != nil || file != nil else { throw ValidationError("give FILE.jpg or --loader DIR") }
        guard seconds > 0, workers >= 0 else { throw ValidationError("--seconds must be positive and --workers 0 or more") }
    }

    func run() throws {
        if let loader {
            try timeLoader(folder: URL(fileURLWithPath: loader), workers: workers)
        } else if let file {
            try timePipeline(path: file, seconds: seconds)
        }
    }
}

/// Two epochs of the loader over a make-demo-data folder: the first decodes, the second reads the crop cache.
func timeLoader(folder dir: URL, workers: Int) throws {
    let table = try LabelsTable(csvURL: dir.appendingPathComponent("labels.csv"),
                                imagesDirectory: dir.appendingPathComponent("images"), maxBoxes: 10)
    let dataset = ImageDataset(table: table)
    let loader = try DataLoader(dataset: dataset, indices: Array(table.samples.indices), batchSize: 8, shuffle: true,
                                seed: 0, numWorkers: workers)
    for epoch in 0 ..< 2 {
        let t0 = now()
        let it = loader.epoch(epoch)
        var n = 0
        while let b = try it.next() { n += b.count }
        let dt = now() - t0
        print(String(format: "loader, %d workers, epoch %d (%@): %d images in %.2f s, %.1f images/s", workers, epoch,
                     epoch == 0 ? "decoding" : "from the crop cache", n, dt, Double(n) / dt))
    }
}

/// Each stage of JPEG bytes → normalized 224² tensor, timed for `seconds` each.
func timePipeline(path: String, seconds: Double) throws {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    let decoder = JPEGDecoder()
    let pre = Preprocessing.imagenet
    let plans = ResizePlanCache()
    var output = [Float](repeating: 0, count: 3 * 224 * 224)

    func timeIt(_ name: String, _ body: () throws -> Void) rethrows {
        for _ in 0 ..< 5 { try body() }  // warm-up
        var n = 0
        let t0 = now(), c0 = cpuNow()
        while now() - t0 < seconds {
            try body()
            n += 1
        }
        let dt = (now() - t0) / Double(n), cpu = (cpuNow() - c0) / Double(n)
        let label = name.padding(toLength: 34, withPad: " ", startingAt: 0)
        print(label + String(format: " wall %7.3f ms %7.1f images/s | cpu %7.3f ms %7.1f images/s",
                             dt * 1000, 1 / dt, cpu * 1000, 1 / cpu))
    }

    let image = try decoder.decode(data, source: path)
    print("file \(path): \(image.width)x\(image.height), \(data.count) bytes")
    try timeIt("decode to RGB (libturbojpeg)") { _ = try decoder.decode(data, source: path) }
    timeIt("resize+crop, plain reference path") { _ = pre.crop(image, plans: plans) }
    try timeIt("decode+resize+crop, fast path") { _ = try pre.crop(jpeg: data, source: path, decoder: decoder, plans: plans) }
    let crop = try pre.crop(jpeg: data, source: path, decoder: decoder, plans: plans)
    precondition(crop == pre.crop(image), "fast and reference paths differ")
    timeIt("ToTensor+Normalize") { output.withUnsafeMutableBufferPointer { pre.normalize(crop, into: $0.baseAddress!) } }
    try timeIt("total: JPEG bytes -> tensor") {
        let c = try pre.crop(jpeg: data, source: path, decoder: decoder, plans: plans)
        output.withUnsafeMutableBufferPointer { pre.normalize(c, into: $0.baseAddress!) }
    }
}

BenchImages.main()
