import Training
import XCTest

final class MetricsTests: XCTestCase {
    /// The first epoch line of the user's report (seed/training-report.md), rebuilt from confusion counts
    /// that produce its numbers: 784 training frames (154 positive), 196 validation frames (39 positive).
    func testSeedLineByteForByte() {
        let training = EpochMetrics(loss: 0.3571, confusion: BinaryConfusion(truePositives: 62, falsePositives: 22,
                                                                             falseNegatives: 92, trueNegatives: 608))
        let validation = EpochMetrics(loss: 0.1474, confusion: BinaryConfusion(truePositives: 34, falsePositives: 6,
                                                                               falseNegatives: 5, trueNegatives: 151))
        let line = seedEpochLine(epoch: 1, epochs: 30, training: training, validation: validation)
        XCTAssertEqual(line, "Epoch 01/30 | Training: train-loss 0.3571, train-accuracy 0.855 train-precision 0.738, "
            + "train-recall 0.403, train-F1 0.521 | Validation: val-loss 0.1474, val-accuracy 0.944 val-precision 0.850 "
            + "val-recall 0.872 val-F1 0.861")
    }

    /// The script formats `Epoch {epoch:02d}/{epochs}`: the epoch padded to two digits, the total as it is.
    func testEpochNumberPaddingMatchesTheScript() {
        let m = EpochMetrics(loss: 0.5, confusion: BinaryConfusion(truePositives: 1, falsePositives: 1, falseNegatives: 1,
                                                                    trueNegatives: 1))
        for (epoch, epochs, prefix) in [(1, 5, "Epoch 01/5 |"), (7, 30, "Epoch 07/30 |"), (30, 30, "Epoch 30/30 |"),
                                         (100, 100, "Epoch 100/100 |"), (9, 100, "Epoch 09/100 |")] {
            let line = seedEpochLine(epoch: epoch, epochs: epochs, training: m, validation: m)
            XCTAssertTrue(line.hasPrefix(prefix), "\(line) should start with \(prefix)")
        }
    }

    /// Python prints a NaN as `nan` whatever its sign bit; C's printf prints a negative one as `-nan`.
    func testNonFiniteNumbersPrintAsPythonDoes() {
        XCTAssertEqual(pythonFixed(Double.nan, decimals: 4), "nan")
        XCTAssertEqual(pythonFixed(-Double.nan, decimals: 4), "nan")
        XCTAssertEqual(pythonFixed(Double(Float(bitPattern: 0xFFC0_0000)), decimals: 3), "nan")
        XCTAssertEqual(pythonFixed(Double.infinity, decimals: 3), "inf")
        XCTAssertEqual(pythonFixed(-Double.infinity, decimals: 3), "-inf")
        XCTAssertEqual(pythonFixed(0.12345, decimals: 4), "0.1235")
        let nanLoss = EpochMetrics(loss: -Double.nan, confusion: BinaryConfusion())
        let line = seedEpochLine(epoch: 3, epochs: 5, training: nanLoss, validation: nanLoss)
        XCTAssertTrue(line.hasPrefix("Epoch 03/5 | Training: train-loss nan, train-accuracy 0.000"), line)
        XCTAssertFalse(line.contains("-nan"), line)
    }

    func testConfusionAndZeroDenominators() {
        var c = BinaryConfusion()
        for (p, l) in [(1, 1), (1, 0), (0, 1), (0, 0), (0, 0)] { c.add(prediction: p, label: l) }
        XCTAssertEqual(c, BinaryConfusion(truePositives: 1, falsePositives: 1, falseNegatives: 1, trueNegatives: 2))
        XCTAssertEqual(c.accuracy, 0.6, accuracy: 1e-12)
        XCTAssertEqual(c.precision, 0.5, accuracy: 1e-12)
        XCTAssertEqual(c.recall, 0.5, accuracy: 1e-12)
        XCTAssertEqual(c.f1, 0.5, accuracy: 1e-12)
        let none = BinaryConfusion(truePositives: 0, falsePositives: 0, falseNegatives: 3, trueNegatives: 5)
        XCTAssertEqual(none.precision, 0)
        XCTAssertEqual(none.recall, 0)
        XCTAssertEqual(none.f1, 0)
    }

    /// Loss is Σ(batch mean · batch size) / N: batches of 8 at 1.0 and of 2 at 0.5 give 0.9, not 0.75.
    func testLossWeightsBatchesBySize() {
        var acc = MetricsAccumulator()
        acc.add(batchMeanLoss: 1.0, predictions: Array(repeating: 0, count: 8), labels: Array(repeating: 0, count: 8))
        acc.add(batchMeanLoss: 0.5, predictions: [1, 0], labels: [1, 1])
        XCTAssertEqual(acc.result.loss, 0.9, accuracy: 1e-12)
        XCTAssertEqual(acc.result.confusion.truePositives, 1)
        XCTAssertEqual(acc.result.confusion.falseNegatives, 1)
    }

    /// Scores and labels built so the best F1 is known: at threshold 0.7 the top three are predicted
    /// positive, two of them correct, out of two positives → precision 2/3, recall 1, F1 0.8. At 0.5 (argmax)
    /// four are positive → precision 0.5, F1 2/3.
    func testBestF1Threshold() {
        let p = [0.9, 0.8, 0.7, 0.55, 0.3, 0.1]
        let y = [1, 0, 1, 0, 0, 0]
        let choice = bestF1Threshold(probabilities: p, labels: y)
        XCTAssertEqual(choice.threshold, 0.7)
        XCTAssertEqual(choice.f1, 0.8, accuracy: 1e-12)
    }

    /// The stored threshold sits halfway to the next lower score: 0.7 → (0.7 + 0.55) / 2 = 0.625, F1 unchanged;
    /// the 0.5 of a tie (not a score) stays; below the lowest score it halves.
    func testThresholdMargin() {
        let p = [0.9, 0.8, 0.7, 0.55, 0.3, 0.1]
        let moved = withMargin(bestF1Threshold(probabilities: p, labels: [1, 0, 1, 0, 0, 0]), probabilities: p)
        XCTAssertEqual(moved.threshold, 0.625, accuracy: 1e-12)
        XCTAssertEqual(moved.f1, 0.8, accuracy: 1e-12)
        XCTAssertEqual(withMargin(ThresholdChoice(threshold: 0.5, f1: 0.4), probabilities: p).threshold, 0.5)
        XCTAssertEqual(withMargin(ThresholdChoice(threshold: 0.1, f1: 0.4), probabilities: p).threshold, 0.05, accuracy: 1e-12)
    }

    /// Equal F1 at several thresholds: the one nearest 0.5 wins. F1 = 2TP / (2TP + FP + FN):
    /// at 0.9, TP 1 FP 0 FN 1 → 2/3; at 0.45, TP 2 FP 2 FN 0 → 2/3; at 0.5 (argmax), TP 1 FP 2 FN 1 → 2/5.
    func testThresholdTiesPreferNearestToHalf() {
        let choice = bestF1Threshold(probabilities: [0.9, 0.6, 0.55, 0.45, 0.1], labels: [1, 0, 0, 1, 0])
        XCTAssertEqual(choice.f1, 2.0 / 3.0, accuracy: 1e-12)
        XCTAssertEqual(choice.threshold, 0.45)
    }

    /// Hand-computed: positives {0.8, 0.4}, negatives {0.6, 0.2}. Pairs (pos > neg): 0.8>0.6, 0.8>0.2,
    /// 0.4>0.2 → 3 of 4 → ROC-AUC 0.75. Average precision: thresholds 0.8 (P 1, R 0.5), 0.6 (P 0.5, R 0.5),
    /// 0.4 (P 2/3, R 1), 0.2 → AP = 0.5·1 + 0.5·2/3 = 0.8333.
    func testAUCsByHand() {
        let s = [0.8, 0.6, 0.4, 0.2], y = [1, 0, 1, 0]
        XCTAssertEqual(rocAUC(scores: s, labels: y)!, 0.75, accuracy: 1e-12)
        XCTAssertEqual(averagePrecision(scores: s, labels: y)!, 0.5 + 0.5 * 2 / 3, accuracy: 1e-12)
        // A tie between a positive and a negative counts one half.
        XCTAssertEqual(rocAUC(scores: [0.5, 0.5], labels: [1, 0])!, 0.5, accuracy: 1e-12)
        XCTAssertNil(rocAUC(scores: [0.1, 0.2], labels: [1, 1]))
        XCTAssertNil(averagePrecision(scores: [0.1], labels: [0]))
    }
}
