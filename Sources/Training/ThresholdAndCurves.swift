import Foundation

/// A probability threshold and the F1 it gives.
public struct ThresholdChoice: Equatable, Sendable {
    public var threshold: Double
    public var f1: Double

    public init(threshold: Double, f1: Double) {
        self.threshold = threshold
        self.f1 = f1
    }
}

/// The threshold on P(class 1) that maximises F1 on (probabilities, labels): predict 1 when p ≥ threshold.
///
/// Candidates are the distinct probabilities themselves (every distinct confusion matrix is reached at one
/// of them) plus 0.5; among equal F1, the candidate nearest 0.5 wins, so an uninformative tie keeps the
/// usual argmax rule.
/// - Parameters:
///   - probabilities: P(class 1) per sample.
///   - labels: 0 or 1 per sample.
public func bestF1Threshold(probabilities: [Double], labels: [Int]) -> ThresholdChoice {
    precondition(probabilities.count == labels.count, "probabilities and labels differ in length")
    let probabilities = orderable(probabilities)
    // Sort descending; sweeping down, everything at or above the current value is predicted positive.
    let order = probabilities.indices.sorted { probabilities[$0] > probabilities[$1] }
    let positives = labels.filter { $0 == 1 }.count
    func f1(tp: Int, predicted: Int) -> Double {
        let precision = predicted == 0 ? 0 : Double(tp) / Double(predicted)
        let recall = positives == 0 ? 0 : Double(tp) / Double(positives)
        return precision + recall == 0 ? 0 : 2 * precision * recall / (precision + recall)
    }
    var best = ThresholdChoice(threshold: 0.5, f1: f1(tp: zip(probabilities, labels).filter { $0.0 >= 0.5 && $0.1 == 1 }.count,
                                                       predicted: probabilities.filter { $0 >= 0.5 }.count))
    var tp = 0, predicted = 0, i = 0
    while i < order.count {
        let value = probabilities[order[i]]
        // Take every sample tied at this value at once: a threshold cannot split them.
        while i < order.count && probabilities[order[i]] == value {
            predicted += 1
            if labels[order[i]] == 1 { tp += 1 }
            i += 1
        }
        let score = f1(tp: tp, predicted: predicted)
        guard value.isFinite else { continue }  // a NaN score is never predicted positive: no threshold there
        if score > best.f1 + 1e-12 || (abs(score - best.f1) <= 1e-12 && abs(value - 0.5) < abs(best.threshold - 0.5)) {
            best = ThresholdChoice(threshold: value, f1: score)
        }
    }
    return best
}

/// Area under the ROC curve: the probability that a random positive scores above a random negative, ties
/// counting one half (the Mann–Whitney statistic; equals the trapezoidal area). nil without both classes.
public func rocAUC(scores: [Double], labels: [Int]) -> Double? {
    let scores = orderable(scores)
    let positives = labels.filter { $0 == 1 }.count, negatives = labels.count - positives
    guard positives > 0, negatives > 0 else { return nil }
    let order = scores.indices.sorted { scores[$0] < scores[$1] }
    // Average ranks over ties, then sum the positives' ranks.
    var rankSum = 0.0, i = 0
    while i < order.count {
        var j = i
        while j + 1 < order.count && scores[order[j + 1]] == scores[order[i]] { j += 1 }
        let averageRank = Double(i + j + 2) / 2
        for k in i...j where labels[order[k]] == 1 { rankSum += averageRank }
        i = j + 1
    }
    return (rankSum - Double(positives * (positives + 1)) / 2) / Double(positives * negatives)
}

/// Area under the precision–recall curve as average precision: Σ (Rₖ − Rₖ₋₁) · Pₖ over the distinct
/// thresholds, highest first (scikit-learn's average_precision_score). nil without positives.
public func averagePrecision(scores: [Double], labels: [Int]) -> Double? {
    let curve = precisionRecallCurve(scores: scores, labels: labels)
    guard !curve.isEmpty else { return nil }
    var area = 0.0, previousRecall = 0.0
    for point in curve {
        area += (point.recall - previousRecall) * point.precision
        previousRecall = point.recall
    }
    return area
}

/// One point of a precision–recall curve: predicting 1 for scores ≥ threshold.
public struct PrecisionRecallPoint: Equatable, Sendable {
    public var threshold: Double
    public var precision: Double
    public var recall: Double
}

/// The precision–recall curve at every distinct score, highest threshold first. Empty without positives.
public func precisionRecallCurve(scores: [Double], labels: [Int]) -> [PrecisionRecallPoint] {
    let scores = orderable(scores)
    let positives = labels.filter { $0 == 1 }.count
    guard positives > 0 else { return [] }
    let order = scores.indices.sorted { scores[$0] > scores[$1] }
    var points = [PrecisionRecallPoint](), tp = 0, predicted = 0, i = 0
    while i < order.count {
        let value = scores[order[i]]
        while i < order.count && scores[order[i]] == value {
            predicted += 1
            if labels[order[i]] == 1 { tp += 1 }
            i += 1
        }
        points.append(PrecisionRecallPoint(threshold: value, precision: Double(tp) / Double(predicted),
                                           recall: Double(tp) / Double(positives)))
    }
    return points
}

/// The threshold moved halfway down to the next lower score, F1 unchanged: a score recomputed later with other
/// rounding (another batch size, features from the cache) then stays on the side it was tuned on. A threshold
/// that is not itself a score (the 0.5 of a tie) is kept; below the lowest score it becomes half that score.
/// - Parameters:
///   - choice: from `bestF1Threshold` on `probabilities`.
///   - probabilities: the scores it was tuned on.
public func withMargin(_ choice: ThresholdChoice, probabilities: [Double]) -> ThresholdChoice {
    guard probabilities.contains(choice.threshold) else { return choice }
    let below = probabilities.filter { $0 < choice.threshold }.max() ?? 0
    return ThresholdChoice(threshold: (choice.threshold + below) / 2, f1: choice.f1)
}

/// Scores with every NaN replaced by −∞: a NaN compares false with everything, so sorting by it is not an order
/// and a sweep that groups equal scores would never step past it (an endless loop). As −∞ it ranks last, where
/// `p ≥ threshold` already puts it: a NaN score is never predicted positive.
private func orderable(_ scores: [Double]) -> [Double] {
    scores.contains { $0.isNaN } ? scores.map { $0.isNaN ? -.infinity : $0 } : scores
}
