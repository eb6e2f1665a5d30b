import Foundation

/// The per-epoch CSV next to the model: every printed number plus TP/FP/FN/TN, the learning rate, seconds,
/// and `best` = 1 on the epoch whose model is kept as the best one. Rewritten (atomically) after every epoch,
/// so an interrupted run keeps the epochs it finished.
struct EpochLog {
    let url: URL

    static let header = ["epoch", "train_loss", "train_accuracy", "train_precision", "train_recall", "train_f1", "train_tp",
                         "train_fp", "train_fn", "train_tn", "val_loss", "val_accuracy", "val_precision", "val_recall", "val_f1",
                         "val_tp", "val_fp", "val_fn", "val_tn", "lr", "seconds", "best"]

    func write(_ records: [EpochRecord], bestEpoch: Int) throws {
        func fields(_ m: EpochMetrics) -> [String] {
            let c = m.confusion
            return [String(format: "%.6f", m.loss), String(format: "%.6f", c.accuracy), String(format: "%.6f", c.precision),
                    String(format: "%.6f", c.recall), String(format: "%.6f", c.f1), String(c.truePositives),
                    String(c.falsePositives), String(c.falseNegatives), String(c.trueNegatives)]
        }
        let rows = records.map { r in
            [String(r.epoch)] + fields(r.training) + fields(r.validation)
                + [String(format: "%g", r.learningRate), String(format: "%.3f", r.seconds), r.epoch == bestEpoch ? "1" : "0"]
        }
        try writeAtomically(try csvText(header: Self.header, rows: rows), to: url)
    }
}
