// LossOps.swift — softmax cross-entropy with integer labels (in Swift; B × classes is tiny).
import Foundation

/// Softmax cross-entropy, PyTorch's `F.cross_entropy(logits, labels, weight=classWeights)` with mean
/// reduction: Σᵢ w[yᵢ]·(−log softmax(logitsᵢ)[yᵢ]) / Σᵢ w[yᵢ] (all wᵢ = 1 without class weights).
/// - Parameters:
///   - logits: (B, classes).
///   - labels: B class indices in 0..<classes.
///   - classWeights: one weight per class, or nil.
/// - Returns: a one-element tensor (shape []).
public func crossEntropy(_ logits: Tensor, labels: [Int], classWeights: [Float]? = nil) -> Tensor {
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
