// SeededResNet50Weights.swift — torchvision's full ResNet-50 state dict (320 tensors, 25.6 M values) drawn from
// SplitMix64, value for value what Tests/TorchFixtureScripts/make_seeded_resnet50_fixture.py draws in numpy: the
// full-size parity test needs no 100 MB file. The recipe is in that script's docstring; change both together.
import Foundation
import SeededRandom
import Tensors
import WeightFiles

// The draw uses SplitMix64 because its i-th output depends only on seed + i·gamma, so numpy can draw millions of
// them at once and reproduce the stream exactly.

enum SeededResNet50 {
    static let weightSeed: UInt64 = 50
    static let inputSeed: UInt64 = 224
    static let cotangentSeed: UInt64 = 2048

    /// (u − 0.5)·width + center in Float for the next draw, u = (z >> 40)·2⁻²⁴ in [0, 1). u − 0.5 is exact, so
    /// the value takes one or two correctly rounded Float operations, as numpy's float32 arithmetic does.
    @inline(__always)
    static func centered(_ generator: inout SplitMix64, width: Float, center: Float) -> Float {
        let u = Float(generator.next() >> 40) * 0x1p-24
        let scaled = (u - 0.5) * width
        return center == 0 ? scaled : scaled + center
    }

    /// `count` consecutive values of one stream.
    static func values(_ generator: inout SplitMix64, count: Int, width: Float, center: Float = 0) -> [Float] {
        [Float](unsafeUninitializedCapacity: count) { out, initialized in
            for i in 0..<count { out[i] = centered(&generator, width: width, center: center) }
            initialized = count
        }
    }

    /// torchvision resnet50's keys and shapes in state_dict order, as torch listed them
    /// (Fixtures/torchvision_resnet_keys.txt, lines "50 key d0,d1,...").
    static func torchvisionKeys() throws -> [(key: String, shape: [Int])] {
        let url = try XCTUnwrapURL(Bundle.module.url(forResource: "torchvision_resnet_keys", withExtension: "txt", subdirectory: "Fixtures"))
        return try String(contentsOf: url, encoding: .utf8).split(separator: "\n").compactMap { line in
            let parts = line.split(separator: " ")
            guard parts.first == "50" else { return nil }
            let shape = parts.count > 2 ? parts[2].split(separator: ",").map { Int($0)! } : []
            return (String(parts[1]), shape)
        }
    }

    /// The drawn state dict: float32 tensors, `num_batches_tracked` int64, in torchvision's key order.
    static func stateDict() throws -> WeightFiles.StateDict {
        var generator = SplitMix64(seed: weightSeed)
        var entries: [(String, WeightTensor)] = []
        for (key, shape) in try torchvisionKeys() {
            let count = shape.reduce(1, *)
            if key.hasSuffix("num_batches_tracked") {
                let counters = (0..<count).map { _ in Int64(generator.next() >> 54) }
                entries.append((key, WeightTensor(shape: shape, integers: counters)))
                continue
            }
            let width: Float, center: Float
            if key.hasSuffix(".weight") && (shape.count == 2 || shape.count == 4) {
                // conv and fc: uniform with variance 1/fan_in, so the residual stream stays O(1) in eval mode.
                let fanIn = shape.dropFirst().reduce(1, *)
                (width, center) = (Float(2 * (3.0 / Double(fanIn)).squareRoot()), 0)
            } else if key == "fc.bias" {
                (width, center) = (Float(2 / Double(2048).squareRoot()), 0)
            } else if key.hasSuffix("running_var") {
                (width, center) = (1, 1)
            } else if key.hasSuffix("running_mean") || key.hasSuffix(".bias") {
                (width, center) = (0.2, 0)
            } else if key.hasSuffix(".weight") {
                // BatchNorm scale; a bottleneck's last one smaller so blocks do not compound in eval mode.
                (width, center) = (0.5, key.contains(".bn3.") ? 0.5 : 1)
            } else {
                throw FixtureError("no draw rule for \(key)")
            }
            entries.append((key, WeightTensor(shape: shape, floats: values(&generator, count: count, width: width, center: center))))
        }
        return WeightFiles.StateDict(entries)
    }

    /// Two images, (2, 3, 224, 224), in [-1.75, 2.25): the range of ImageNet-normalised pixels.
    static func input() -> Tensor {
        var generator = SplitMix64(seed: inputSeed)
        return Tensor(shape: [2, 3, 224, 224], data: values(&generator, count: 2 * 3 * 224 * 224, width: 4, center: 0.25))
    }

    /// The cotangent of the training-mode backward, (2, 2048) in [-1, 1).
    static func cotangent() -> [Float] {
        var generator = SplitMix64(seed: cotangentSeed)
        return values(&generator, count: 2 * 2048, width: 2)
    }
}

private func XCTUnwrapURL(_ url: URL?) throws -> URL {
    guard let url else { throw FixtureError("torchvision_resnet_keys.txt is not in the test bundle") }
    return url
}
