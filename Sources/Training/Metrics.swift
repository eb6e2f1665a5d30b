import DataParallel
import Foundation

/// Counts of a binary classifier's outcomes for the positive class (label 1, "interesting").
public struct BinaryConfusion: Equatable, Sendable {
    public var truePositives = 0
    public var falsePositives = 0
    public var falseNegatives = 0
    public var trueNegatives = 0

    public init() {}
    public init(truePositives: Int, falsePositives: Int, falseNegatives: Int, trueNegatives: Int) {
        self.truePositives = truePositives
        self.falsePositives = falsePositives
        self.falseNegatives = falseNegatives
        self.trueNegatives = trueNegatives
    }

    public mutating func add(prediction: Int, label: Int) {
        switch (prediction == 1, label == 1) {
        case (true, true): truePositives += 1
        case (true, false): falsePositives += 1
        case (false, true): falseNegatives += 1
        case (false, false): trueNegatives += 1
        }
    }

    public var count: Int { truePositives + falsePositives + falseNegatives + trueNegatives }
    public var accuracy: Double { count == 0 ? 0 : Double(truePositives + trueNegatives) / Double(count) }
    /// 0 when nothing was predicted positive (scikit-learn's zero_division=0, as the seed computes it).
    public var precision: Double {
        truePositives + falsePositives == 0 ? 0 : Double(truePositives) / Double(truePositives + falsePositives)
    }
    /// 0 when there are no positives.
    public var recall: Double {
        truePositives + falseNegatives == 0 ? 0 : Double(truePositives) / Double(truePositives + falseNegatives)
    }
    /// Harmonic mean of precision and recall; 0 when both are 0.
    public var f1: Double {
        let p = precision, r = recall
        return p + r == 0 ? 0 : 2 * p * r / (p + r)
    }
}

/// Loss and confusion over one pass of a split.
public struct EpochMetrics: Equatable, Sendable {
    /// Σ (batch mean loss · batch size) / N, as the seed computes it.
    public var loss: Double
    public var confusion: BinaryConfusion

    public init(loss: Double, confusion: BinaryConfusion) {
        self.loss = loss
        self.confusion = confusion
    }
}

/// Accumulates batches into an `EpochMetrics`.
public struct MetricsAccumulator: Sendable {
    private var weightedLoss = 0.0
    private var samples = 0
    private var confusion = BinaryConfusion()

    public init() {}

    /// - Parameters:
    ///   - batchMeanLoss: the batch's mean cross-entropy.
    ///   - predictions: predicted class per sample (0 or 1).
    ///   - labels: true class per sample (0 or 1), as many as predictions.
    public mutating func add(batchMeanLoss: Double, predictions: [Int], labels: [Int]) {
        precondition(predictions.count == labels.count, "predictions and labels differ in length")
        weightedLoss += batchMeanLoss * Double(labels.count)
        samples += labels.count
        for (p, l) in zip(predictions, labels) { confusion.add(prediction: p, label: l) }
    }

    /// One rank's share of a global batch in data-parallel training.
    /// - Parameters:
    ///   - shareOfBatchMeanLoss: this rank's part of the global batch's mean loss (its loss sum over the global
    ///     batch's weight total); the ranks' parts add up to the mean.
    ///   - globalBatchCount: samples in the global batch.
    ///   - predictions: this rank's predictions; labels: its labels.
    public mutating func add(shareOfBatchMeanLoss: Double, globalBatchCount: Int, predictions: [Int], labels: [Int]) {
        precondition(predictions.count == labels.count, "predictions and labels differ in length")
        weightedLoss += shareOfBatchMeanLoss * Double(globalBatchCount)
        samples += labels.count
        for (p, l) in zip(predictions, labels) { confusion.add(prediction: p, label: l) }
    }

    /// Adds every rank's sums into each rank's (a group of one: unchanged).
    mutating func sum(over group: ProcessGroup) {
        guard group.isParallel else { return }
        var loss = [weightedLoss]
        var counts = [samples, confusion.truePositives, confusion.falsePositives, confusion.falseNegatives, confusion.trueNegatives]
        group.sum(&loss)
        group.sum(&counts)
        weightedLoss = loss[0]
        samples = counts[0]
        confusion = BinaryConfusion(truePositives: counts[1], falsePositives: counts[2], falseNegatives: counts[3], trueNegatives: counts[4])
    }

    public var result: EpochMetrics {
        EpochMetrics(loss: samples == 0 ? 0 : weightedLoss / Double(samples), confusion: confusion)
    }
}

/// The seed script's per-epoch line, byte for byte: `Epoch {epoch:02d}/{epochs}` (the epoch padded to two digits,
/// the total not), loss four decimals, the rest three; the commas are where the seed puts them (none after accuracy).
public func seedEpochLine(epoch: Int, epochs: Int, training: EpochMetrics, validation: EpochMetrics) -> String {
    func f(_ v: Double, _ decimals: Int) -> String { pythonFixed(v, decimals: decimals) }
    let t = training.confusion, v = validation.confusion
    return "Epoch \(String(format: "%02d", epoch))/\(epochs) | "
        + "Training: train-loss \(f(training.loss, 4)), train-accuracy \(f(t.accuracy, 3)) "
        + "train-precision \(f(t.precision, 3)), train-recall \(f(t.recall, 3)), train-F1 \(f(t.f1, 3)) | "
        + "Validation: val-loss \(f(validation.loss, 4)), val-accuracy \(f(v.accuracy, 3)) "
        + "val-precision \(f(v.precision, 3)) val-recall \(f(v.recall, 3)) val-F1 \(f(v.f1, 3))"
}

/// `value` with `decimals` digits as Python's `f"{value:.Nf}"` prints it: NaN is `nan` whatever its sign bit (C's
/// printf writes `-nan` for a negative NaN), infinities `inf` and `-inf`.
public func pythonFixed(_ value: Double, decimals: Int) -> String {
    if value.isNaN { return "nan" }
    if value.isInfinite { return value < 0 ? "-inf" : "inf" }
    return String(format: "%.\(decimals)f", value)
}
