// swift-tools-version:6.0
// ResNetFusion: ResNet-50 + tabular metadata fusion classifiers trained on the CPU.
// Swift owns the graph, autograd, data pipeline, training loop and metrics; the hot kernels are C
// (CKernels/, OpenMP + OpenBLAS), reached through a module map and swappable for their reference twins
// (CKernelsReference/) through one table of function pointers per implementation.
import PackageDescription

// The C kernels target x86-64-v3 (AVX2 + FMA, the tier most users' CPUs have, not whatever the build host has) and
// are threaded with OpenMP. Debian's libomp-dev ships the runtime as libomp5.
let kernelCFlags: [CSetting] = [
    .unsafeFlags(["-O3", "-march=x86-64-v3", "-fopenmp", "-ffp-contract=fast", "-Wall", "-Wextra"]),
]
let kernelLinkFlags: [LinkerSetting] = [
    .linkedLibrary("openblas"),
    .linkedLibrary("omp5"),
    .linkedLibrary("m"),
]
// Release builds keep Swift's overflow and bounds checks (no -Ounchecked) in every module: every module here
// touches sizes that come from a flag or a file. Measured against -Ounchecked (2 shared, loaded cores; a fresh
// process per run, builds alternating, median of paired checked/unchecked ratios of images/s, noise ±8%):
// inference 0.995, frozen-train-bn 0.95, train-step 1.00 (the per-element work is C; Adam's update, a Swift loop
// then, compiled to the same instructions, and is C since); a 30-epoch frozen `resnet50 train` on 200 demo frames
// used the same CPU time (19.5 s vs 19.9 s) and wrote identical weights. The one cost is Imaging's Swift resampler: JPEG bytes to tensor
// is 1.00 where the horizontal pass runs in C (AVX-512BW) and 0.95-0.97 where Swift runs it
// (RESNETFUSION_ISA=avx2), under 1% of a training or predict step; the test-only reference resize runs at 0.77.
let swiftFlags: [SwiftSetting] = [
    .unsafeFlags(["-wmo"], .when(configuration: .release)),
]

let package = Package(
    name: "ResNetFusion",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "bench-kernels", targets: ["KernelBenchmarks"]),
        .executable(name: "resnet50", targets: ["ResNet50Command"]),
        .executable(name: "bench-images", targets: ["ImageBenchmarks"]),
        .executable(name: "bench-model", targets: ["ModelBenchmarks"]),
        .executable(name: "bench-scale", targets: ["ScaleBenchmarks"]),
        .executable(name: "bench-mpi", targets: ["MPIBenchmarks"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/yaslab/CSV.swift", from: "2.5.0"),
    ],
    targets: [
        // What the CPU can run (cpuid + xgetbv, RESNETFUSION_ISA), shared by every C target, and the executables'
        // start-up check. Compiled for baseline x86-64: it must run on the CPUs it turns away.
        .target(name: "CPUFeatures", cSettings: [.unsafeFlags(["-O2", "-Wall", "-Wextra"])]),
        // The one seeded-random module: SplitMix64, unbiased bounded draws, shuffle, uniform and normal draws,
        // and the xoshiro256** generator of initialisation and dropout. No dependencies, so every target can use it.
        .target(name: "SeededRandom", swiftSettings: swiftFlags),
        // The one file-I/O module: reading a user's file only when it is a regular file, atomic writes that fsync,
        // and CRC-32 (zip entries, PNG chunks). Foundation only.
        .target(name: "FileIO", swiftSettings: swiftFlags),
        // The one reader of untrusted JSON (safetensors headers, box cells): one parser, numbers kept as written,
        // objects in order, RFC 8259 or Python's json.loads by dialect. No dependencies, no Foundation.
        .target(name: "UntrustedJSON", swiftSettings: swiftFlags),
        .testTarget(name: "UntrustedJSONTests", dependencies: ["UntrustedJSON"], swiftSettings: swiftFlags),
        .testTarget(name: "FileIOTests", dependencies: ["FileIO"], swiftSettings: swiftFlags),
        .testTarget(name: "SeededRandomTests", dependencies: ["SeededRandom"], swiftSettings: swiftFlags),
        // The MPI calls data-parallel training makes (Open MPI, Debian's libopenmpi-dev), behind a header that hides
        // mpi.h's handle types from Swift. Linked, but MPI is initialised only in processes mpirun started.
        .target(name: "CMPI", path: "Sources/CMPI",
                cSettings: [.unsafeFlags(["-O2", "-Wall", "-Wextra", "-I/usr/lib/x86_64-linux-gnu/openmpi/include",
                                          "-I/usr/include/x86_64-linux-gnu/mpi"])],
                linkerSettings: [.linkedLibrary("mpi")]),
        // Data parallelism: the job's ranks, collectives that give up when mpirun stops the job, and the bucketed
        // gradient all-reduce that overlaps backward.
        .target(name: "DataParallel", dependencies: ["CMPI", "Tensors"], swiftSettings: swiftFlags),
        .testTarget(name: "DataParallelUnitTests", dependencies: ["DataParallel", "Tensors"], swiftSettings: swiftFlags),
        // Cached backbone features on disk for training sets larger than memory: a checked fixed header, rows
        // memory-mapped and copied out by index, touched pages handed back so resident memory stays flat.
        // FileIO only: the trainer and the benchmarks sit above it.
        .target(name: "FeatureStore", dependencies: ["FileIO"], swiftSettings: swiftFlags),
        .testTarget(name: "FeatureStoreTests", dependencies: ["FeatureStore", "FileIO", "NN", "SeededRandom"],
                    swiftSettings: swiftFlags),
        // C kernels: convolution, batch norm, pooling, elementwise, linear, Adam.
        .target(
            name: "CKernels",
            dependencies: ["CPUFeatures"],
            path: "CKernels",
            exclude: [],
            publicHeadersPath: "include",
            cSettings: kernelCFlags,
            linkerSettings: kernelLinkFlags),
        // The kernels' reference twins: plain loop nests, the definition each optimized kernel is tested against.
        // Plain -O2 for baseline x86-64 and no FP contraction, so each product and sum rounds as written.
        .target(
            name: "CKernelsReference",
            dependencies: ["CKernels"],
            path: "CKernelsReference",
            publicHeadersPath: "include",
            cSettings: [.unsafeFlags(["-O2", "-ffp-contract=off", "-Wall", "-Wextra"])],
            linkerSettings: [.linkedLibrary("m")]),
        // libturbojpeg, wrapped as a module-mapped system library.
        .systemLibrary(name: "CTurboJPEG", path: "Sources/CTurboJPEG"),
        // The image pipeline's C: region decoding through libjpeg-turbo's libjpeg API and PNG decoding through
        // libpng (both report errors by longjmp, which needs C's setjmp), and the AVX-512 horizontal resampling pass.
        .target(name: "CImaging", dependencies: ["CPUFeatures"], path: "Sources/CImaging",
                cSettings: [.unsafeFlags(["-O2", "-march=x86-64-v3", "-Wall", "-Wextra"])],
                linkerSettings: [.linkedLibrary("jpeg"), .linkedLibrary("png16")]),
        // Data pipeline: JPEG and PNG decoding + torchvision-exact preprocessing, labels.csv, loader, CLI.
        // Imaging's resampler uses 8-lane integer SIMD: let Swift emit AVX2.
        .target(name: "Imaging", dependencies: ["CTurboJPEG", "CImaging", "FileIO"],
                swiftSettings: swiftFlags + [.unsafeFlags(["-target-cpu", "haswell"], .when(configuration: .release))]),
        .target(name: "DataPipeline", dependencies: ["Imaging", "FileIO", "SeededRandom", "UntrustedJSON", .product(name: "CSV", package: "CSV.swift")],
                swiftSettings: swiftFlags),
        .executableTarget(name: "ResNet50Command",
                          dependencies: ["CPUFeatures", "DataParallel", "DataPipeline", "FeatureStore", "Training",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          swiftSettings: swiftFlags),
        .executableTarget(name: "ImageBenchmarks",
                          dependencies: ["CPUFeatures", "Imaging", "DataPipeline", .product(name: "ArgumentParser", package: "swift-argument-parser")], path: "Benchmarks/ImageBenchmarks",
                          exclude: ["pillow_torchvision.py"], swiftSettings: swiftFlags),
        .testTarget(name: "DataPipelineTests", dependencies: ["DataPipeline", "Imaging", "FileIO", "SeededRandom"],
                    resources: [.copy("Fixtures")], swiftSettings: swiftFlags),

        // Training: metrics and the seed's printed line, threshold tuning, curves; (the loop comes with the model).
        .target(name: "Training", dependencies: ["Models", "DataPipeline", "WeightFiles", "NN", "Tensors", "FileIO", "DataParallel", "FeatureStore", "UntrustedJSON",
                                          .product(name: "CSV", package: "CSV.swift")],
                swiftSettings: swiftFlags),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "DataPipeline", "WeightFiles"],
                    swiftSettings: swiftFlags),
        // ResNetFusion and PyTorch side by side: inference, the seed's frozen cost, a training step, JPEG, memory.
        .executableTarget(name: "ModelBenchmarks",
                          dependencies: ["CPUFeatures", "Models", "NN", "Tensors", "DataPipeline", "Imaging",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          path: "Benchmarks/ModelBenchmarks", swiftSettings: swiftFlags),
        // Training the fusion head from feature stores of 10^5 and 10^6 frames, each size in a fresh process: epoch
        // time and peak resident memory, which must not grow with the store.
        .executableTarget(name: "ScaleBenchmarks",
                          dependencies: ["CPUFeatures", "FeatureStore", "Models", "NN", "Tensors", "SeededRandom",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          path: "Benchmarks/ScaleBenchmarks", swiftSettings: swiftFlags),
        // Data-parallel costs under mpirun on this machine (all-reduce, sharded features, train step) and the
        // scaling model across machines built from them (docs/SCALING.md).
        .executableTarget(name: "MPIBenchmarks",
                          dependencies: ["CPUFeatures", "DataParallel", "Models", "NN", "Tensors", "SeededRandom",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          path: "Benchmarks/MPIBenchmarks", swiftSettings: swiftFlags),
        // The convolution shapes of ResNet-50, shared by the kernel tests and the kernel benchmarks.
        .target(name: "ResNetShapes", swiftSettings: swiftFlags),
        .executableTarget(name: "KernelBenchmarks",
                          dependencies: ["CPUFeatures", "CKernels", "CKernelsReference", "ResNetShapes", "SeededRandom",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          path: "Benchmarks/KernelBenchmarks", swiftSettings: swiftFlags),
        .testTarget(name: "CKernelsTests", dependencies: ["CPUFeatures", "CKernels", "CKernelsReference", "ResNetShapes", "SeededRandom"],
                    swiftSettings: swiftFlags),
        // Tensors + tape autograd (ops bound to CKernels or its reference twins through a kernel table),
        // layers/optimizers, the ResNet family and the fusion model.
        .target(name: "Tensors", dependencies: ["CKernels", "CKernelsReference", "SeededRandom"], swiftSettings: swiftFlags),
        // NN → WeightFiles: a module's state dict is the weight files' `StateDict` (dtype-aware tensors), one type for
        // saving, loading and checkpoints; WeightFiles needs nothing of NN, so the graph stays one-way.
        .target(name: "NN", dependencies: ["CKernels", "Tensors", "WeightFiles"], swiftSettings: swiftFlags),
        .target(name: "Models", dependencies: ["NN", "WeightFiles"], swiftSettings: swiftFlags),
        .testTarget(name: "TensorsTests", dependencies: ["Tensors", "NN", "Models", "WeightFiles", "SeededRandom"],
                    resources: [.copy("Fixtures")], swiftSettings: swiftFlags),
        // Weight files: torch .pth (allowlist unpickler over a bounds-checked zip reader) and safetensors.
        .target(name: "WeightFiles", dependencies: ["FileIO", "UntrustedJSON"], swiftSettings: swiftFlags),
        .testTarget(name: "WeightFilesTests", dependencies: ["WeightFiles", "SeededRandom"],
                    resources: [.copy("Fixtures")], swiftSettings: swiftFlags),
    ],
    swiftLanguageModes: [.v5]
)
