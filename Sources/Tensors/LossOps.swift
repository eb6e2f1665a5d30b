// LossOps.swift — softmax cross-entropy with integer labels (in Swift; B × classes is tiny).
import Foundation

/// Softmax cross-entropy, PyTorch's `F.cross_entropy(logits, labels, weight=classWeights)` with mean
/// reduction: Σᵢ w[yᵢ]·(−log softmax(logitsᵢ)[yᵢ]) / Σᵢ w[yᵢ] (all wᵢ = 1 without class weights).
/// - Parameters:
///   - logits: (B, classes).
///   - labels: B class indices in 0..<classes.
///   - classWeights: one weight per class, or nil.
///   - weightTotal: the denominator Σ w[yᵢ] of the whole batch when this call sees only a slice of it (data-parallel
///     training: each process's share of the mean of the global batch, so the shares' gradients add up to the
///     mean's); nil: this batch's own sum.
/// - Returns: a one-element tensor (shape []).
public func crossEntropy(_ logits: Tensor, labels: [Int], classWeights: [Float]? = nil, weightTotal: Double? = nil) -> Tensor {
    precondition(logits.shape.count == 2, "crossEntropy: logits \(logits.shape) must be (batch, classes)")
    let batch = logits.shape[0], classes = logits.shape[1]
    precondition(labels.count == batch, "crossEntropy: \(labels.count) labels for batch \(batch)")
    precondition(labels.allSatisfy { $0 >= 0 && $0 < classes }, "crossEntropy: a label is outside 0..<\(classes)")
    if let classWeights { precondition(classWeights.count == classes, "crossEntropy: \(classWeights.count) class weights for \(classes) classes") }
    // Softmax probabilities, kept in double for the reduction; the gradient is (p − onehot)·w/Σw.
    var probabilities = [Float](repeating: 0, count: batch * classes)
    var total = 0.0, weightSum = 0.0
    logits.data.withUnsafeBufferPointer { z in
        probabilities.withUnsafeMutableBufferPointer { p in
            for b in 0..<batch {
                let row = z.baseAddress! + b * classes
                var maxValue = -Float.infinity
                for k in 0..<classes { maxValue = max(maxValue, row[k]) }
                var sum = 0.0
                for k in 0..<classes { sum += Foundation.exp(Double(row[k] - maxValue)) }
                let logSum = Foundation.log(sum) + Double(maxValue)
                for k in 0..<classes { p[b * classes + k] = Float(Foundation.exp(Double(row[k]) - logSum)) }
                let w = Double(classWeights?[labels[b]] ?? 1)
                total += w * (logSum - Double(row[labels[b]]))
                weightSum += w
            }
        }
    }
    if let weightTotal {
        precondition(weightTotal > 0 && weightTotal >= weightSum * (1 - 1e-12), "crossEntropy: weight total \(weightTotal) below this slice's \(weightSum)")
        weightSum = weightTotal
    }
    let result = Tensor(shape: [], data: [Float(total / weightSum)])
    guard Tensor.needsGrad(logits) else { return result }
    result.record("cross entropy", parents: [logits]) { dy in
        let scale = Double(dy[0]) / weightSum
        logits.accumulateGrad(overwriting: { dz in
            probabilities.withUnsafeBufferPointer { p in
                for b in 0..<batch {
                    let w = Float(scale * Double(classWeights?[labels[b]] ?? 1))
                    for k in 0..<classes { dz[b * classes + k] = w * p[b * classes + k] }
                    dz[b * classes + labels[b]] -= w
                }
            }
        })
    }
    return result
}
