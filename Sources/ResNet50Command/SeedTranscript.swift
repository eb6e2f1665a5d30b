import Foundation
import Training

/// One line on stderr: warnings and notes, never part of the seed's transcript.
func note(_ line: String) { FileHandle.standardError.write(Data((line + "\n").utf8)) }

/// One line on stdout, flushed at once: a process reading the transcript live (or a test waiting for an epoch
/// line before it sends a signal) sees each line when it happens.
func transcriptLine(_ line: String) {
    print(line)
    fflush(stdout)
}

/// The seed script's stdout for a training run, byte for byte: `Using device: cpu`, its line per epoch, then
/// `Saved: PATH`; everything else the run reports goes to stderr as notes.
struct SeedTranscript {
    let options: TrainingOptions

    func show(_ event: TrainingEvent) {
        switch event {
        case .warning(let line):
            note(line)
        case .randomBackbone:
            note("warning: \(flag(.weights)) none: the backbone starts from random weights, not ImageNet; expect far lower accuracy")
        case .started(let kernelThreads):
            transcriptLine("Using device: cpu")
            note("Kernel threads: \(kernelThreads)")
        case .epochFinished(let record, let epochs, _):
            transcriptLine(seedEpochLine(epoch: record.epoch, epochs: epochs, training: record.training,
                                         validation: record.validation))
        case .finished(let result):
            transcriptLine("Saved: \(options.output)")
            endOfRunNotes(result).forEach(note)
        }
    }

    /// What the run chose and wrote: early stop, the best epoch, the tuned thresholds, the files.
    func endOfRunNotes(_ result: TrainingResult) -> [String] {
        func f(_ v: Double) -> String { String(format: "%.3f", v) }
        func epoch(_ r: EpochRecord) -> String { String(format: "%02d", r.epoch) }
        let best = result.records[result.bestEpoch - 1], last = result.records[result.records.count - 1]
        let bestThreshold = result.bestThreshold, lastThreshold = result.lastThreshold, files = result.files
        var notes = [String]()
        if result.stoppedEarly {
            notes.append("Stopped early after epoch \(epoch(last)): \(options.selectBy.rawValue) has not improved "
                + "for \(options.patience ?? 0) epochs")
        }
        notes.append("Best epoch \(epoch(best)) by \(options.selectBy.rawValue) (val-F1 \(f(best.validation.confusion.f1)), "
            + "val-loss \(String(format: "%.4f", best.validation.loss))): "
            + ((options.output as NSString).deletingPathExtension + ".best.safetensors"))
        notes.append("Threshold \(f(bestThreshold.threshold)) gives val-F1 \(f(bestThreshold.f1)) (argmax \(f(best.validation.confusion.f1))) "
            + "for the best model; \(f(lastThreshold.threshold)) gives \(f(lastThreshold.f1)) (argmax \(f(last.validation.confusion.f1))) "
            + "for the last")
        notes.append("Wrote \(files.epochLog.lastPathComponent), \(files.summary.lastPathComponent), \(files.curves.lastPathComponent), "
            + "\(files.precisionRecall.lastPathComponent), \(files.resume.lastPathComponent) next to the model")
        return notes
    }
}

/// The flag that sets an option: how the command names what the library calls `TrainingOptions.batchSize`.
func flag(_ name: InvalidOption.Name) -> String {
    switch name {
    case .epochs: return "--epochs"
    case .batchSize: return "--batch-size"
    case .numWorkers: return "--num-workers"
    case .maxBoxes: return "--max-boxes"
    case .learningRate: return "--lr"
    case .patience: return "--patience"
    case .warmupEpochs: return "--warmup-epochs"
    case .weightDecay: return "--weight-decay"
    case .positiveWeight: return "--pos-weight"
    case .threads: return "--threads"
    case .threshold: return "--threshold"
    case .imagesDirectory: return "--images-dir"
    case .csvPath: return "--csv-path"
    case .resumePath: return "--resume"
    case .weights: return "--weights"
    case .output: return "--output"
    case .modelPath: return "--model"
    case .outputPath: return "--out"
    case .featureStorePath: return "--features"
    case .freezeBackbone: return "--freeze-backbone"
    case .split: return "--split"
    }
}
