import ArgumentParser
import DataParallel
import FeatureStore
import Foundation
import Training

/// How a command that reads images runs: decoding threads, kernel threads and the on-disk feature cache.
struct ComputeOptions: ParsableArguments {
    @Option(help: "Image decoding threads.")
    var numWorkers: Int = 2

    @Option(help: "Kernel threads (default: all cores).")
    var threads: Int?

    @Option(help: "Folder of the on-disk backbone-feature cache.")
    var featureCache: String = FeatureCache.defaultDirectory

    @Flag(help: "Neither read nor write the on-disk feature cache.")
    var noFeatureCache = false

    /// nil: the cache is off.
    var featureCacheDirectory: String? { noFeatureCache ? nil : featureCache }
}

/// Options shared by the commands that read the user's images and labels.csv.
struct DataOptions: ParsableArguments {
    @Option(help: "Folder of the frames named in labels.csv.")
    var imagesDir: String

    @Option(help: "labels.csv in the seed's schema.")
    var csvPath: String

    @Option(help: "Detector boxes kept per frame (meta_dim = 4 + 8·max-boxes).")
    var maxBoxes: Int = 10

    @Option(help: ArgumentHelp("torchvision ResNet-50 weights (.pth or .safetensors), or 'none' for random weights.",
                               discussion: "Default: \(TorchvisionWeights.fileName) in $TORCH_HOME/hub/checkpoints, then ~/.cache/torch/hub/checkpoints."))
    var weights: String?

    @OptionGroup var compute: ComputeOptions

    /// The options these flags set; the rest keep `TrainingOptions`' defaults.
    var trainingOptions: TrainingOptions {
        var options = TrainingOptions(imagesDirectory: imagesDir, csvPath: csvPath)
        options.maxBoxes = maxBoxes
        options.numWorkers = compute.numWorkers
        options.threads = compute.threads
        switch weights {
        case nil: options.weights = .torchvisionDefault
        case "none"?: options.weights = .none
        case let path?: options.weights = .file(path)
        }
        options.featureCacheDirectory = compute.featureCacheDirectory
        return options
    }
}

extension BatchNormMode: ExpressibleByArgument {}

/// `--feature-dtype`: a feature store's element type.
enum FeatureElementTypeArgument: String, ExpressibleByArgument {
    case fp32, fp16
    var elementType: FeatureElementType { self == .fp32 ? .float32 : .float16 }
}
extension SelectionMetric: ExpressibleByArgument {}
extension LearningRateSchedule: ExpressibleByArgument {}
extension PositiveWeight: ExpressibleByArgument {}

/// Runs a command body; a user-facing failure becomes one line on stderr and exit status 1 (options named by
/// their flags). `validate()` uses it too: ArgumentParser would add its usage text to a `ValidationError`, and a
/// bad value gets the same one line whether it is caught while parsing or later.
///
/// In a data-parallel job (`group` of several ranks) a rank other than 0 names itself in the line, and a failing
/// rank ends the whole job (MPI_Abort): its peers would otherwise wait for it forever. An interrupted run exits
/// without MPI_Finalize: mpirun is already ending the job.
func reportingErrors(group: ProcessGroup = .single, _ body: () throws -> Void) throws {
    let who = group.isParallel && !group.isWriter ? "resnet50 (rank \(group.rank) of \(group.size))" : "resnet50"
    // Flags are checked on every rank before MPI starts: rank 0 alone says what is wrong with them.
    let note = !group.usesMPI && ProcessGroup.launcherRank != 0 ? { (_: String) in } : note
    do {
        try body()
        group.finish()
    } catch let error as ExitCode {
        throw error
    } catch let interrupted as RunInterrupted {
        if group.isWriter { note("\(who): \(interrupted.message(naming: flag))") }
        throw ExitCode(interrupted.exitCode)
    } catch let error as NamesOptions {
        note("\(who): error: \(error.message(naming: flag))")
        if group.isParallel { group.abort(exitCode: 1) }
        throw ExitCode(1)
    } catch {
        note("\(who): error: \(error)")
        if group.isParallel { group.abort(exitCode: 1) }
        throw ExitCode(1)
    }
}

/// The job's process group for a command that runs in parallel under mpirun (train, features).
func parallelGroup() -> ProcessGroup { ProcessGroup.world }

/// Refuses to run a one-process command as several ranks: each would write the same output.
/// - Parameter what: the commands and verb, e.g. "predict and evaluate run".
func requireOneProcess(_ what: String) throws {
    let group = ProcessGroup.world
    guard group.isParallel else { return }
    if group.isWriter {
        note("resnet50: error: \(what) in one process; start them without mpirun (train and features run under mpirun)")
    }
    group.finish()
    throw ExitCode(1)
}

/// `resnet50 train`: the seed's run, same flags and printed lines.
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train the image + metadata classifier (the seed's resnet50.py).",
        discussion: """
            stdout is the seed's transcript and nothing else: 'Using device: cpu', the seed's line \
            per epoch, then 'Saved: PATH' (the last epoch's model). Notes (best epoch, tuned threshold, files \
            written) go to stderr. Next to PATH (X.safetensors): X.best.safetensors (best epoch by --select-by), \
            X.resume.safetensors (for --resume), X.epochs.csv, X.summary.json, X.curves.svg and X.pr.svg. \
            Both models store the probability threshold that maximises validation F1. With --freeze-backbone the \
            backbone runs in inference mode and its features are computed once (and cached on disk); \
            --bn-mode train reproduces the seed exactly (BatchNorm in training mode).
            """)

    @OptionGroup var data: DataOptions

    @Option(help: "Passes over the training split.")
    var epochs: Int = 10

    @Option(help: "Images per batch.")
    var batchSize: Int = 8

    @Flag(help: "Train only meta_net and head; the backbone's parameters stay as loaded.")
    var freezeBackbone = false

    @Option(help: "BatchNorm of a frozen backbone: eval (running statistics, features cached) or train (the seed's behaviour).")
    var bnMode: BatchNormMode = .eval

    @Option(help: "Adam learning rate.")
    var lr: Float = 1e-3

    @Option(help: "Seed of the split, the shuffling, the new layers' initialisation and dropout.")
    var seed: UInt64 = 0

    @Option(help: "Where the trained model goes (safetensors with the seed's state_dict keys).")
    var output: String = "models/resnet50_fused_image_meta.safetensors"

    @Option(help: "Which epoch's model X.best.safetensors keeps: val-f1 (ties: lower val-loss) or val-loss.")
    var selectBy: SelectionMetric = .valF1

    @Option(help: ArgumentHelp("Weight of class 1 in the cross-entropy: a number, or 'auto' (negatives/positives of the training split).",
                               valueName: "auto|X"))
    var posWeight: PositiveWeight?

    @Option(help: "Stop when --select-by has not improved for N epochs.")
    var patience: Int?

    @Option(help: "Learning rate per epoch: constant or cosine (decay over the epochs after warm-up).")
    var lrSchedule: LearningRateSchedule = .constant

    @Option(help: "Epochs of linear warm-up to --lr.")
    var warmupEpochs: Int = 0

    @Option(help: "AdamW's decoupled weight decay (0: the seed's Adam).")
    var weightDecay: Float = 0

    @Flag(help: "With --freeze-backbone (eval BatchNorm): train the head on the raw backbone features and metadata, not on inputs standardised with the training split's statistics.")
    var noStandardize = false

    @Option(help: "Continue from X.resume.safetensors of an interrupted run (same flags; --epochs may grow unless cosine; under mpirun, any rank count that keeps ranks × --batch-size).")
    var resume: String?

    @Option(help: ArgumentHelp("With --freeze-backbone: the backbone's features, memory-mapped from a store 'resnet50 features --store' wrote, instead of computed.",
                               discussion: "For training sets larger than memory: resident memory stays flat, and each rank reads only its rows.",
                               valueName: "STORE"))
    var features: String?

    @Flag(help: "Under mpirun: BatchNorm in training mode uses the statistics of the global batch (all ranks), so N ranks train as one process with batch N × --batch-size. Default: each rank its own, as PyTorch's DDP.")
    var syncBn = false

    /// The run these flags ask for.
    var trainingOptions: TrainingOptions {
        var options = data.trainingOptions
        options.epochs = epochs
        options.batchSize = batchSize
        options.freezeBackbone = freezeBackbone
        options.batchNormMode = bnMode
        options.learningRate = lr
        options.seed = seed
        options.output = output
        options.selectBy = selectBy
        options.positiveWeight = posWeight
        options.patience = patience
        options.learningRateSchedule = lrSchedule
        options.warmupEpochs = warmupEpochs
        options.weightDecay = weightDecay
        options.resumePath = resume
        options.standardizeInputs = !noStandardize
        options.syncBatchNorm = syncBn
        options.featureStorePath = features
        return options
    }

    /// Every out-of-range value and missing input is refused before anything runs.
    func validate() throws {
        try reportingErrors { try trainingOptions.validate() }
    }

    func run() throws {
        InterruptSignal.install()
        let group = parallelGroup()
        try reportingErrors(group: group) {
            let options = trainingOptions
            let transcript = SeedTranscript(options: options)
            _ = try Trainer(options: options, group: group, events: transcript.show).run()
        }
    }
}

/// `resnet50 features`: the backbone's 2048-d embeddings of every listed image.
struct Features: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the backbone's 2048-d features (inference mode) of every image in labels.csv, in CSV order.",
        discussion: "The output is safetensors: tensor 'features' (N × 2048) and metadata 'image_names' (a JSON list).")

    @OptionGroup var data: DataOptions

    @Option(help: "Output file: safetensors, or a feature store with --store.")
    var out: String

    @Flag(help: "Write a memory-mappable feature store (and OUT's .index.json) for 'train --features', batch by batch: for image sets larger than memory.")
    var store = false

    @Option(help: "Element type of a --store: fp32, or fp16 (half the size; features rounded to 11 significant bits).")
    var featureDtype: FeatureElementTypeArgument = .fp32

    func validate() throws {
        try reportingErrors { try data.trainingOptions.validate() }
    }

    func run() throws {
        let group = parallelGroup()
        try reportingErrors(group: group) {
            let start = Date()
            // Only warnings come from a features run: it trains nothing and has no transcript.
            let transcript = SeedTranscript(options: data.trainingOptions)
            let trainer = Trainer(options: data.trainingOptions, group: group, events: transcript.show)
            if store {
                let rows = try trainer.extractFeatures(toStore: URL(fileURLWithPath: out), elementType: featureDtype.elementType)
                guard group.isWriter else { return }
                note(String(format: "%d images, %.1f s", rows, Date().timeIntervalSince(start)))
                print("Saved: \(out)")
                return
            }
            let (names, features, width) = try trainer.extractFeatures(outputPath: out)
            // Every rank holds every row; rank 0 writes them.
            guard group.isWriter else { return }
            try FeatureFile.write(names: names, features: features, width: width, to: URL(fileURLWithPath: out))
            note(String(format: "%d images, %.1f s", names.count, Date().timeIntervalSince(start)))
            print("Saved: \(out)")
        }
    }
}
