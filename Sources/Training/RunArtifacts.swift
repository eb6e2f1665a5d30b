// RunArtifacts.swift — what a finished run leaves next to the model: the best and the last model with their
// tuned thresholds, the learning curves and precision–recall pictures, and the JSON summary. (The epoch log and
// the resume checkpoint are rewritten by the epoch loop after every epoch.)
import DataPipeline
import Foundation
import Models
import NN
import WeightFiles

extension Trainer {
    /// Tunes both thresholds and, on rank 0 (`outputs` non-nil), stages every file of the finished run in `outputs`
    /// (committed by the caller).
    func writeArtifacts(_ run: PreparedRun, state: RunState, lastProbabilities: [Double], files: RunFiles, outputs: OutputSet?,
                        wallStart: Date, featureCounts: (computed: Int, reused: Int)) throws -> TrainingResult {
        let labels = run.validationLabels
        let bestThreshold = withMargin(bestF1Threshold(probabilities: state.bestProbabilities, labels: labels),
                                       probabilities: state.bestProbabilities)
        let lastThreshold = withMargin(bestF1Threshold(probabilities: lastProbabilities, labels: labels),
                                       probabilities: lastProbabilities)
        if let outputs {
            let last = state.records[state.records.count - 1], best = state.records[state.bestEpoch - 1]
            var common = modelMetadata(run, records: state.records)
            if options.usesCachedFeatures { common["feature_cache_key"] = run.featureCacheKey }
            func metadata(_ record: EpochRecord, _ choice: ThresholdChoice, role: String) -> [String: String] {
                common.merging(["role": role, "epoch": String(record.epoch), "epoch_metrics": record.jsonSummary,
                                "threshold": String(choice.threshold), "threshold_val_f1": String(choice.f1)]) { $1 }
            }
            try save(run.model.exportedStateDict(state.bestState!),
                     metadata: metadata(best, bestThreshold, role: "best"), to: outputs.staged(files.best))
            try save(run.model.exportedStateDict(), metadata: metadata(last, lastThreshold, role: "last"),
                     to: outputs.staged(files.last))
            try writePictures(outputs: outputs, state: state, labels: labels, threshold: bestThreshold)
            let wallSeconds = state.wallSeconds + Date().timeIntervalSince(wallStart)
            try writeSummary(run, outputs: outputs, state: state, thresholds: (bestThreshold, lastThreshold), wallSeconds: wallSeconds)
        }
        return TrainingResult(records: state.records, outputURL: files.last, files: files, model: run.model,
                              bestEpoch: state.bestEpoch, bestThreshold: bestThreshold, lastThreshold: lastThreshold,
                              stoppedEarly: state.stoppedEarly, positiveWeight: run.positiveWeight,
                              featuresComputed: featureCounts.computed, featuresReused: featureCounts.reused)
    }

    private func modelMetadata(_ run: PreparedRun, records: [EpochRecord]) -> [String: String] {
        var metadata = [
            "format": "pt",
            "meta_dim": String(run.table.metaDim),
            "max_boxes": String(options.maxBoxes),
            "freeze_backbone": String(options.freezeBackbone),
            "bn_mode": options.freezeBackbone ? options.batchNormMode.rawValue : "train",
            "backbone": BackboneCodec.encode(options.backbone),
            "seed": String(options.seed),
            "epochs": String(records.count),
            "train_size": String(run.split.train.count),
            "val_size": String(run.split.validation.count),
            "selected_by": options.selectBy.rawValue,
        ]
        if let positiveWeight = run.positiveWeight { metadata["pos_weight"] = String(positiveWeight) }
        if let last = records.last { metadata["final_metrics"] = last.jsonSummary }
        return metadata
    }

    /// Runs `write`; a failure becomes one line naming the output and `file`.
    private func writing(_ file: URL, _ write: () throws -> Void) throws {
        do { try write() } catch {
            let description = "\(error)"
            throw OptionNamingError { name in "\(name(.output)) \(file.path): \(description)" }
        }
    }

    private func save(_ state: WeightFiles.StateDict, metadata: [String: String], to url: URL) throws {
        try writing(url) {
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try SafetensorsFile.save(state, metadata: metadata, to: url)
        }
    }

    private func writePictures(outputs: OutputSet, state: RunState, labels: [Int], threshold: ThresholdChoice) throws {
        let files = outputs.files, bestEpoch = state.bestEpoch
        try writing(files.curves.deletingLastPathComponent()) {
            try writeAtomically(learningCurvesSVG(records: state.records, bestEpoch: bestEpoch, selectBy: options.selectBy),
                                to: outputs.staged(files.curves))
            try writeAtomically(precisionRecallSVG(probabilities: state.bestProbabilities, labels: labels, threshold: threshold,
                                                   title: "Validation precision–recall, best model (epoch \(bestEpoch))"),
                                to: outputs.staged(files.precisionRecall))
        }
    }

    private func writeSummary(_ run: PreparedRun, outputs: OutputSet, state: RunState,
                              thresholds: (best: ThresholdChoice, last: ThresholdChoice), wallSeconds: Double) throws {
        let files = outputs.files
        let best = state.records[state.bestEpoch - 1], last = state.records[state.records.count - 1]
        func threshold(_ c: ThresholdChoice, _ r: EpochRecord) -> [String: Any] {
            ["threshold": c.threshold, "val_f1": c.f1, "val_f1_argmax": r.validation.confusion.f1]
        }
        var summary: [String: Any] = [
            "flags": summaryOptions, "seed": options.seed, "train_size": run.split.train.count,
            "val_size": run.split.validation.count, "epochs_run": state.records.count, "stopped_early": state.stoppedEarly,
            "best_epoch": state.bestEpoch, "threshold": threshold(thresholds.best, best),
            "last_model_threshold": threshold(thresholds.last, last),
            "best_metrics": best.jsonObject, "final_metrics": last.jsonObject, "wall_seconds": wallSeconds,
            "files": ["last": files.last.lastPathComponent, "best": files.best.lastPathComponent,
                      "resume": files.resume.lastPathComponent, "epochs_csv": files.epochLog.lastPathComponent,
                      "curves_svg": files.curves.lastPathComponent, "pr_svg": files.precisionRecall.lastPathComponent],
        ]
        if let positiveWeight = run.positiveWeight { summary["pos_weight_value"] = Double("\(positiveWeight)") ?? 0 }
        try writing(files.summary) {
            let data = try JSONSerialization.data(withJSONObject: summary, options: [.sortedKeys, .prettyPrinted])
            try writeAtomically(String(decoding: data, as: UTF8.self) + "\n", to: outputs.staged(files.summary))
        }
    }

    /// The summary's "flags" object: the run's options under the names of the seed's flags (a stable file format).
    private var summaryOptions: [String: Any] {
        var flags: [String: Any] = [
            "images_dir": options.imagesDirectory, "csv_path": options.csvPath, "epochs": options.epochs,
            "batch_size": options.batchSize, "max_boxes": options.maxBoxes, "freeze_backbone": options.freezeBackbone,
            "bn_mode": options.batchNormMode.rawValue, "lr": Double("\(options.learningRate)") ?? 0,
            "lr_schedule": options.learningRateSchedule.rawValue, "warmup_epochs": options.warmupEpochs,
            "weight_decay": Double("\(options.weightDecay)") ?? 0, "pos_weight": options.positiveWeight?.description ?? "none",
            "select_by": options.selectBy.rawValue, "output": options.output, "backbone": BackboneCodec.encode(options.backbone),
        ]
        switch options.weights {
        case .none: flags["weights"] = "none"
        case .file(let path): flags["weights"] = path
        case .torchvisionDefault: flags["weights"] = "torchvision default"
        }
        if let patience = options.patience { flags["patience"] = patience }
        if let resume = options.resumePath { flags["resume"] = resume }
        return flags
    }
}

extension EpochRecord {
    /// The record's numbers as a JSON object.
    var jsonObject: [String: Any] {
        func split(_ m: EpochMetrics) -> [String: Double] {
            let c = m.confusion
            return ["loss": m.loss, "accuracy": c.accuracy, "precision": c.precision, "recall": c.recall, "f1": c.f1,
                    "tp": Double(c.truePositives), "fp": Double(c.falsePositives), "fn": Double(c.falseNegatives),
                    "tn": Double(c.trueNegatives)]
        }
        return ["epoch": epoch, "train": split(training), "val": split(validation), "lr": Double("\(learningRate)") ?? 0, "seconds": seconds]
    }

    /// The record's numbers as a one-line JSON object.
    var jsonSummary: String {
        let data = (try? JSONSerialization.data(withJSONObject: jsonObject, options: [.sortedKeys])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}
