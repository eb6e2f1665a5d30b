// Standardize.swift — per-column standardisation of a classifier's inputs, and its fold into the Linear
// layer that reads them.
import Tensors
import WeightFiles

/// y = (x − mean) / std per column of a (B, width) input: the input scaling a linear probe, a scikit-learn
/// `StandardScaler` pipeline or fastai's tabular `Normalize` puts in front of a classifier. Its statistics are
/// buffers (taken from the training split, never trained); `fold(into:)` moves the map into the next Linear's
/// weights, so an exported model needs no extra layer.
public final class Standardize: Module, UnaryLayer {
    @BufferInfo(key: "mean") public var mean: Tensor
    @BufferInfo(key: "std") public var std: Tensor

    /// The identity map on `width` columns (mean 0, std 1) until `setStatistics(rows:width:)` is called.
    public init(width: Int) {
        super.init()
        mean = Tensor.zeros([width])
        std = Tensor(shape: [width], repeating: 1)
    }

    public var width: Int { mean.count }

    /// A column whose spread is below this is only centred: dividing by a spread of rounding noise would blow
    /// its validation values up.
    public static let minimumStd = 1e-6

    /// Takes each column's mean and population standard deviation over `rows` (in double precision).
    /// - Parameters:
    ///   - rows: the (count, width) row-major values of the training split.
    ///   - count: number of rows, at least 1.
    public func setStatistics(rows: [Float], count: Int) {
        let width = self.width
        precondition(count >= 1 && rows.count == count * width, "Standardize: \(rows.count) values for \(count) rows of \(width)")
        var sum = [Double](repeating: 0, count: width)
        for r in 0 ..< count { for c in 0 ..< width { sum[c] += Double(rows[r * width + c]) } }
        let means = sum.map { $0 / Double(count) }
        var squares = [Double](repeating: 0, count: width)
        for r in 0 ..< count {
            for c in 0 ..< width {
                let d = Double(rows[r * width + c]) - means[c]
                squares[c] += d * d
            }
        }
        setStatistics(mean: means, std: squares.map { ($0 / Double(count)).squareRoot() })
    }

    /// Takes each column's mean and population standard deviation computed elsewhere (a feature store streams them);
    /// a standard deviation under `minimumStd` becomes 1.
    public func setStatistics(mean means: [Double], std stds: [Double]) {
        precondition(means.count == width && stds.count == width, "Standardize: \(means.count) means, \(stds.count) stds for width \(width)")
        mean.data = means.map { Float($0) }
        std.data = stds.map { $0 >= Self.minimumStd ? Float($0) : 1 }
    }

    /// - Parameter x: (B, width).
    /// - Returns: (B, width), standardised; the gradient flows to `x` scaled by 1/std.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let width = self.width
        precondition(x.shape.count == 2 && x.shape[1] == width, "Standardize: input \(x.shape), expected (B, \(width))")
        let m = mean.data, inverse = std.data.map { 1 / $0 }
        var y = x.data
        for r in 0 ..< x.shape[0] { for c in 0 ..< width { y[r * width + c] = (y[r * width + c] - m[c]) * inverse[c] } }
        let result = Tensor(shape: x.shape, data: y)
        guard Tensor.needsGrad(x) else { return result }
        result.record("standardize", parents: [x]) { dy in
            var dx = dy
            for r in 0 ..< dx.count / width { for c in 0 ..< width { dx[r * width + c] *= inverse[c] } }
            x.accumulateGrad(dx)
        }
        return result
    }

    /// Moves this map into the Linear layer that reads it: with W' = W / std (per input column) and
    /// b' = b − W' · mean, W' x + b' = W ((x − mean) / std) + b. Computed in double precision.
    /// - Parameters:
    ///   - weight: the Linear's (out, in) weight; columns `firstColumn ..< firstColumn + width` are this map's.
    ///   - bias: its (out) bias.
    ///   - firstColumn: where this map's columns start in the Linear's input (a concatenation's offset).
    /// - Returns: the folded weight and bias.
    public func fold(weight: WeightTensor, bias: WeightTensor, firstColumn: Int = 0) -> (weight: WeightTensor, bias: WeightTensor) {
        let outputs = weight.shape[0], inputs = weight.shape[1], width = self.width
        precondition(weight.shape.count == 2 && bias.shape == [outputs] && firstColumn >= 0 && firstColumn + width <= inputs,
                     "Standardize.fold: weight \(weight.shape), bias \(bias.shape), columns \(firstColumn) + \(width)")
        var w = weight.floats, b = bias.floats
        for o in 0 ..< outputs {
            var shift = 0.0
            for c in 0 ..< width {
                let scaled = Double(w[o * inputs + firstColumn + c]) / Double(std.data[c])
                w[o * inputs + firstColumn + c] = Float(scaled)
                shift += scaled * Double(mean.data[c])
            }
            b[o] = Float(Double(b[o]) - shift)
        }
        return (WeightTensor(shape: weight.shape, floats: w), WeightTensor(shape: bias.shape, floats: b))
    }
}
