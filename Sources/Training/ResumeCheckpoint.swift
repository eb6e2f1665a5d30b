import Foundation
import Models
import NN
import WeightFiles

/// Where a run stands after its last finished epoch.
struct RunState {
    var records: [EpochRecord] = []
    /// 1-based; 0 before the first epoch.
    var bestEpoch = 0
    /// The best epoch's parameters and buffers.
    var bestState: WeightFiles.StateDict?
    /// The best model's P(class 1) on the validation split, in split order (for its threshold and PR curve).
    var bestProbabilities: [Double] = []
    var stoppedEarly = false
    /// Wall time of the sessions before this one.
    var wallSeconds = 0.0
}

/// `X.resume.safetensors`, rewritten atomically after every epoch: tensors `model.*` (the last epoch's model),
/// `best.*` (the best epoch's, when it is not the last), `optimizer.*` (Adam's moments and steps), and metadata
/// holding the epoch history, the best epoch, the best model's validation probabilities and the run's settings.
/// With the backbone frozen in eval mode its weights are not stored: they are the `--weights` file, checked
/// through the settings. Random streams need no state: every epoch's are a function of (seed, epoch).
enum ResumeCheckpoint {
    static let format = "resnetfusion-resume-1"

    static func save(_ state: RunState, settings: [String: String], model: FusionModel, optimizer: Optimizer,
                     storeBackbone: Bool, wallSeconds: Double, to url: URL) throws {
        func keep(_ key: String) -> Bool { storeBackbone || !key.hasPrefix("backbone.") }
        var tensors = [(String, WeightTensor)]()
        let lastEpoch = state.records.last?.epoch ?? 0
        for (prefix, dict) in [("model.", model.stateDict()), ("best.", state.bestEpoch == lastEpoch ? nil : state.bestState)] {
            guard let dict else { continue }
            for entry in dict.filtered(keep) { tensors.append((prefix + entry.key, entry.tensor)) }
        }
        for entry in optimizer.stateDict() { tensors.append(("optimizer." + entry.key, entry.tensor)) }
        let stored = WeightFiles.StateDict(tensors)
        let metadata = [
            "format": format,
            "tensor_digest": tensorDigest(stored),
            "settings": json(settings),
            "records": json(state.records.map(\.exactJSON)),
            "best_epoch": String(state.bestEpoch),
            "best_val_probabilities": json(state.bestProbabilities.map { String($0) }),
            "stopped_early": String(state.stoppedEarly),
            "wall_seconds": String(wallSeconds),
        ]
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try SafetensorsFile.save(stored, metadata: metadata, to: url)
    }

    /// Reads a checkpoint, checks it belongs to this run, and loads model and optimizer state.
    /// - Throws: an error naming the file and the first mismatch.
    static func restore(from url: URL, settings: [String: String], epochs: Int, model: FusionModel, optimizer: Optimizer,
                        backboneStored: Bool) throws -> RunState {
        // Errors name the checkpoint; the command line puts the flag that named it in front (`--resume`).
        func checkpointError(_ problem: String) -> OptionNamingError {
            OptionNamingError { option in "\(option(.resumePath)) \(url.path): \(problem)" }
        }
        let file: SafetensorsFile
        do { file = try SafetensorsFile.load(from: url) } catch {
            let description = "\(error)"  // the reader's sentence names the file itself
            throw OptionNamingError { option in "\(option(.resumePath)) \(description)" }
        }
        let m = file.metadata
        guard m["format"] == format, let saved = m["settings"].flatMap(decode([String: String].self)),
              let recordObjects = m["records"].flatMap(decode([[String: String]].self)),
              let bestEpoch = m["best_epoch"].flatMap(Int.init),
              let probabilities = m["best_val_probabilities"].flatMap(decode([String].self)),
              let wallSeconds = m["wall_seconds"].flatMap(Double.init) else {
            throw checkpointError("not a resume checkpoint of resnet50 train")
        }
        // The tensors a bit flip or a truncated copy damaged would load without complaint: compare their digest.
        guard m["tensor_digest"] == tensorDigest(file.stateDict) else {
            throw checkpointError("its tensor data is damaged (checksum mismatch); resume from an intact copy or start anew")
        }
        try requireFinite(file.stateDict, fileError: checkpointError)
        for key in Set(saved.keys).union(settings.keys).sorted() where saved[key] != settings[key] {
            if key == "--batch-size" {
                throw checkpointError("the checkpoint's run has a global batch (ranks × --batch-size) of \(saved[key] ?? "unset"), "
                    + "this one \(settings[key] ?? "unset"); resume with a rank count and --batch-size that keep it")
            }
            throw checkpointError("the checkpoint's run has \(key) \(saved[key] ?? "unset"), this one \(settings[key] ?? "unset"); "
                + "resume with the flags and data of the interrupted run")
        }
        let records = recordObjects.compactMap(EpochRecord.init(exactJSON:))
        guard records.count == recordObjects.count, !records.isEmpty, records.map(\.epoch) == Array(1 ... records.count),
              (1 ... records.count).contains(bestEpoch) else {
            throw checkpointError("its epoch history is damaged")
        }
        if m["stopped_early"] == "true" {
            throw OptionNamingError { option in
                "\(option(.resumePath)) \(url.path): that run stopped early (\(option(.patience))) after epoch \(records.count); nothing to resume"
            }
        }
        guard records.count < epochs else {
            throw OptionNamingError { [records] option in
                "\(option(.resumePath)) \(url.path): the run already finished epoch \(records.count) of \(option(.epochs)) \(epochs); "
                    + "raise \(option(.epochs)) to train further"
            }
        }
        var state = RunState(records: records, bestEpoch: bestEpoch, bestProbabilities: probabilities.compactMap(Double.init),
                             wallSeconds: wallSeconds)
        let tensors = file.stateDict
        func load(_ prefix: String) throws {
            let part = tensors.strippingPrefix(prefix)
            let report = try model.loadStateDict(part, strict: backboneStored)
            if !report.unexpectedKeys.isEmpty || report.missingKeys.contains(where: { !$0.hasPrefix("backbone.") }) {
                throw checkpointError("\(report)")
            }
        }
        do {
            if bestEpoch != records.count {
                try load("best.")
                state.bestState = model.stateDict()
            }
            try load("model.")
            if bestEpoch == records.count { state.bestState = model.stateDict() }
            try optimizer.loadStateDict(tensors.strippingPrefix("optimizer."))
        } catch let error as OptionNamingError {
            throw error
        } catch {
            throw checkpointError("\(error)")
        }
        return state
    }

    /// FNV-1a (64-bit) over every tensor's key, shape and values in file order: a checksum of the data section.
    static func tensorDigest(_ tensors: WeightFiles.StateDict) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ word: UInt64) {
            hash ^= word
            hash &*= 0x100_0000_01b3
        }
        for entry in tensors {
            for byte in entry.key.utf8 { mix(UInt64(byte)) }
            for dimension in entry.tensor.shape { mix(UInt64(truncatingIfNeeded: dimension)) }
            if let integers = entry.tensor.integers {
                for value in integers { mix(UInt64(bitPattern: value)) }
            } else {
                for value in entry.tensor.floats { mix(UInt64(value.bitPattern)) }
            }
        }
        return String(hash, radix: 16)
    }

    private static func json<T: Encodable>(_ value: T) -> String {
        String(decoding: (try? JSONEncoder().encode(value)) ?? Data(), as: UTF8.self)
    }

    private static func decode<T: Decodable>(_ type: T.Type) -> (String) -> T? {
        { try? JSONDecoder().decode(type, from: Data($0.utf8)) }
    }
}

extension EpochRecord {
    /// Every number as text that reads back to the same bits (Swift's shortest round-trip form).
    var exactJSON: [String: String] {
        func add(_ prefix: String, _ m: EpochMetrics, to d: inout [String: String]) {
            let c = m.confusion
            d[prefix + "loss"] = String(m.loss)
            d[prefix + "tp"] = String(c.truePositives); d[prefix + "fp"] = String(c.falsePositives)
            d[prefix + "fn"] = String(c.falseNegatives); d[prefix + "tn"] = String(c.trueNegatives)
        }
        var d = ["epoch": String(epoch), "lr": String(learningRate), "seconds": String(seconds)]
        add("train_", training, to: &d)
        add("val_", validation, to: &d)
        return d
    }

    init?(exactJSON d: [String: String]) {
        func metrics(_ prefix: String) -> EpochMetrics? {
            guard let loss = d[prefix + "loss"].flatMap(Double.init), let tp = d[prefix + "tp"].flatMap(Int.init),
                  let fp = d[prefix + "fp"].flatMap(Int.init), let fn = d[prefix + "fn"].flatMap(Int.init),
                  let tn = d[prefix + "tn"].flatMap(Int.init) else { return nil }
            return EpochMetrics(loss: loss, confusion: BinaryConfusion(truePositives: tp, falsePositives: fp, falseNegatives: fn,
                                                                       trueNegatives: tn))
        }
        guard let epoch = d["epoch"].flatMap(Int.init), let lr = d["lr"].flatMap(Float.init),
              let seconds = d["seconds"].flatMap(Double.init), let training = metrics("train_"),
              let validation = metrics("val_") else { return nil }
        self.init(epoch: epoch, training: training, validation: validation, learningRate: lr, seconds: seconds)
    }
}
