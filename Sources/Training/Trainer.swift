import DataParallel
import DataPipeline
import Foundation
import Models
import NN
import Tensors

/// The seed's training loop (ARCHITECTURE §4) in three modes: frozen backbone on cached features (default with
/// `freezeBackbone`), the seed's frozen backbone with BatchNorm in training mode, and full fine-tuning.
/// Beyond the seed: best-epoch selection, an F1-tuned threshold, class weights, early stopping, a learning-rate
/// schedule, AdamW, resumable checkpoints, pictures and a JSON summary of the run.
///
/// The run is three steps, one file each: set-up (RunSetup.swift: data, split, model, weights, resume, features),
/// the epochs (EpochLoop.swift: training, best-epoch selection, early stop) and the files (RunArtifacts.swift:
/// models, epoch log, summary, pictures). It prints nothing: progress goes to `events`, and the command turns
/// those into the seed's stdout.
///
/// Every random draw of an epoch is a function of (seed, epoch): the split and initialisation of the seed, the
/// loader's per-epoch order and a dropout stream reseeded at each epoch. So a resumed run needs only the
/// model, the optimizer state and the history to end where an uninterrupted run ends.
///
/// Data-parallel (ARCHITECTURE §10): started by mpirun, every rank runs this same loop on its share of each global
/// batch (`group.size` × batch size) and sums gradients, metrics and features over the group; rank 0 alone reports
/// events and writes files. A group of one is the single-process run, unchanged.
public final class Trainer {
    public let options: TrainingOptions
    /// The ranks of this run (a group of one without mpirun).
    public let group: ProcessGroup
    let events: (TrainingEvent) -> Void
    let progress: ProgressReporter

    /// - Parameters:
    ///   - options: the run's settings.
    ///   - group: the processes that run it together (`ProcessGroup.world` under mpirun).
    ///   - events: receives the run's progress in order (see `TrainingEvent`); called on rank 0 only.
    public init(options: TrainingOptions, group: ProcessGroup = .single, events: @escaping (TrainingEvent) -> Void = { _ in }) {
        self.options = options
        self.group = group
        self.events = group.isWriter ? events : { _ in }
        progress = ProgressReporter(enabled: group.isWriter)
    }

    /// Kernel threads: the option, else all cores, shared among the ranks on this machine.
    func setKernelThreads() {
        if let threads = options.threads {
            Kernels.setNumThreads(threads)
        } else if group.isParallel {
            Kernels.setNumThreads(max(1, ProcessInfo.processInfo.activeProcessorCount / group.ranksOnThisMachine))
        }
        // A rank blocked in a collective on a peer mpirun has killed gives up when this process is told to stop.
        if group.isParallel { ProcessGroup.stopRequested = { InterruptSignal.pending != nil } }
    }

    /// Trains, then commits the run's files together (see `OutputSet`). A failure leaves an earlier run's files as
    /// they were; SIGINT or SIGTERM (after `InterruptSignal.install()`) stops after the current step, keeps the
    /// resume checkpoint of the last finished epoch and throws `RunInterrupted`.
    public func run() throws -> TrainingResult {
        let wallStart = Date()
        try options.validate()
        setKernelThreads()
        Kernels.retainFreedMemory()

        let table = try readLabels()
        let files = RunFiles(output: URL(fileURLWithPath: options.output))
        var inputs = inputFiles(table: table)
        // Resuming rewrites its own checkpoint: that one input is meant to be replaced.
        if let resume = options.resumePath, URL(fileURLWithPath: resume).standardizedFileURL != files.resume.standardizedFileURL {
            inputs.append((.option(.resumePath), URL(fileURLWithPath: resume)))
        }
        try refuseOutputsOverInputs(outputs: files.all.map { (.option(.output), $0) }, inputs: inputs)
        // Rank 0 writes the run's files; the other ranks compute the same state and write nothing.
        let outputs = group.isWriter ? try OutputSet(files: files) : nil
        do {
            return try train(table: table, files: files, outputs: outputs, wallStart: wallStart)
        } catch let interrupted as RunInterrupted {
            outputs?.keepResumable()
            throw interrupted
        } catch {
            outputs?.discard()
            throw error
        }
    }

    private func train(table: LabelsTable, files: RunFiles, outputs: OutputSet?, wallStart: Date) throws -> TrainingResult {
        let run = try prepare(table: table)
        try requireSameRunOnEveryRank(run.settings)
        var state = try restoredState(run)
        events(.started(kernelThreads: Kernels.numThreads))
        // A resumed run reports the finished epochs again: its transcript is the uninterrupted run's.
        for record in state.records { events(.epochFinished(record, epochs: options.epochs, replayed: true)) }
        let features = try cachedFeatures(run, standardizing: state.records.isEmpty)
        let lastProbabilities = try runEpochs(run, features: features.rows, state: &state, files: files, outputs: outputs,
                                              wallStart: wallStart)
        let result = try writeArtifacts(run, state: state, lastProbabilities: lastProbabilities, files: files, outputs: outputs,
                                        wallStart: wallStart, featureCounts: (features.computed, features.reused))
        try outputs?.commit()
        events(.finished(result))
        return result
    }

    /// Every rank must train the same run: the same flags, labels.csv and image files (each rank reads its own copy,
    /// or a shared filesystem). Ranks that differ would compute gradients of different problems and sum them
    /// silently; this compares each setting's digest with rank 0's and names the first that differs.
    func requireSameRunOnEveryRank(_ settings: [String: String]) throws {
        guard group.isParallel else { return }
        let keys = settings.keys.sorted()
        let digests = keys.map { Int64(bitPattern: UInt64(stableHash("\($0)=\(settings[$0]!)"), radix: 16) ?? 0) }
        // The names too: a rank with another set of settings (another flag given) must not reach a gather of
        // another length.
        let names = Int64(bitPattern: UInt64(stableHash(keys.joined(separator: "\n")), radix: 16) ?? 0)
        let allNames = group.gather([names], counts: Array(repeating: 1, count: group.size))
        try InterruptSignal.check()
        if let rank = allNames.firstIndex(where: { $0 != allNames[0] }) {
            throw TrainingError("rank \(rank) of \(group.size) was started with other flags than rank 0; every rank must run the same command")
        }
        let all = group.gather(digests, counts: Array(repeating: digests.count, count: group.size))
        try InterruptSignal.check()
        for rank in 1 ..< group.size {
            for (k, key) in keys.enumerated() where all[rank * keys.count + k] != all[k] {
                throw TrainingError("rank \(rank) of \(group.size) has another \(key) than rank 0 "
                    + "(every rank must see the same flags, labels.csv and image files: the same paths, sizes and modification times)")
            }
        }
    }

    /// The backbone's 2048-d features (inference mode) of every image the CSV lists, in CSV order, through the
    /// on-disk cache: what `resnet50 features` writes.
    /// - Returns: image names, the (N × width) features row-major, and the width.
    /// - Parameter outputPath: the file the caller will write, refused when it names an input.
    public func extractFeatures(outputPath: String? = nil) throws -> (names: [String], features: [Float], width: Int) {
        try options.validate()
        setKernelThreads()
        let table = try readLabels()
        if let outputPath {
            try refuseOutputsOverInputs(outputs: [(.option(.outputPath), URL(fileURLWithPath: outputPath))], inputs: inputFiles(table: table))
        }
        let dataset = ImageDataset(table: table, cacheBudgetBytes: 0)
        let (model, weightsKey, _) = try buildModel(metaDim: table.metaDim)
        try requireSameRunOnEveryRank(runSettings(table: table, weightsKey: weightsKey))
        model.backbone.freeze()
        let cache = featureCache(weightsKey: weightsKey, width: model.backbone.featureCount)
        let computed = try backboneFeatures(model: model, dataset: dataset, indices: Array(0 ..< dataset.samples.count),
                                            cache: cache, batchSize: options.batchSize, numWorkers: options.numWorkers,
                                            group: group, progress: progress, warn: { self.events(.warning($0)) })
        return (table.samples.map(\.imageName), computed.features, model.backbone.featureCount)
    }
}
