// Initializers.swift — PyTorch's default initialisations, drawn from a seedable generator.
import Foundation
import Tensors

/// Weight initialisers with PyTorch's formulas (`torch.nn.init`). The draws come from `RandomGenerator`,
/// so values differ from PyTorch's while the distributions are the same.
public enum Initializer {
    /// The generator layers draw from when none is given. Reseed it for reproducible models.
    nonisolated(unsafe) public static var defaultGenerator = RandomGenerator(seed: 0)

    /// Fan-in and fan-out of a weight of shape (out, in, k...) as `torch.nn.init._calculate_fan_in_and_fan_out`.
    public static func fans(_ shape: [Int]) -> (fanIn: Int, fanOut: Int) {
        precondition(shape.count >= 2, "fans: shape \(shape) has fewer than 2 dimensions")
        let receptive = shape.dropFirst(2).reduce(1, *)
        return (shape[1] * receptive, shape[0] * receptive)
    }

    /// PyTorch's default for Linear and Conv weights: `kaiming_uniform_(a=√5)`, i.e. uniform in ±1/√fan_in.
    public static func defaultWeight(_ shape: [Int], generator: RandomGenerator) -> [Float] {
        kaimingUniform(shape, a: 5.0.squareRoot(), generator: generator)
    }

    /// PyTorch's default bias of Linear and Conv: uniform in ±1/√fan_in of the weight.
    public static func defaultBias(count: Int, fanIn: Int, generator: RandomGenerator) -> [Float] {
        let bound = fanIn > 0 ? Float(1 / Double(fanIn).squareRoot()) : 0
        return generator.uniformArray(count: count, low: -bound, high: bound)
    }

    /// `kaiming_uniform_(a, mode='fan_in', nonlinearity='leaky_relu')`: bound = gain·√(3/fan_in), gain = √(2/(1+a²)).
    /// He et al. 2015, https://arxiv.org/abs/1502.01852.
    public static func kaimingUniform(_ shape: [Int], a: Double, generator: RandomGenerator) -> [Float] {
        let gain = (2 / (1 + a * a)).squareRoot()
        let bound = Float(gain * (3 / Double(fans(shape).fanIn)).squareRoot())
        return generator.uniformArray(count: shape.reduce(1, *), low: -bound, high: bound)
    }

    /// `kaiming_normal_(mode='fan_out', nonlinearity='relu')`: std = √(2/fan_out), torchvision's ResNet conv init.
    public static func kaimingNormalFanOut(_ shape: [Int], generator: RandomGenerator) -> [Float] {
        let std = Float((2 / Double(fans(shape).fanOut)).squareRoot())
        return generator.normalArray(count: shape.reduce(1, *), mean: 0, std: std)
    }
}
