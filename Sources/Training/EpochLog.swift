import Foundation

/// The per-epoch CSV next to the model: every printed number plus TP/FP/FN/TN and seconds. Rewritten
/// (atomically) after every epoch, so an interrupted run keeps the epochs it finished.
struct EpochLog {
    let url: URL

    /// `models/x.safetensors` → `models/x.epochs.csv`.
    static func url(forModel model: URL) -> URL {
        model.deletingPathExtension().appendingPathExtension("epochs.csv")
    }

    static let header = "epoch,train_loss,train_accuracy,train_precision,train_recall,train_f1,train_tp,train_fp,train_fn,train_tn,"
        + "val_loss,val_accuracy,val_precision,val_recall,val_f1,val_tp,val_fp,val_fn,val_tn,seconds"

    func write(_ records: [EpochRecord]) throws {
        var text = Self.header + "\n"
        for r in records {
            func fields(_ m: EpochMetrics) -> [String] {
                let c = m.confusion
                return [String(format: "%.6f", m.loss), String(format: "%.6f", c.accuracy), String(format: "%.6f", c.precision),
                        String(format: "%.6f", c.recall), String(format: "%.6f", c.f1), String(c.truePositives),
                        String(c.falsePositives), String(c.falseNegatives), String(c.trueNegatives)]
            }
            text += ([String(r.epoch)] + fields(r.training) + fields(r.validation) + [String(format: "%.3f", r.seconds)])
                .joined(separator: ",") + "\n"
        }
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(text.utf8).write(to: url, options: .atomic)
    }
}
