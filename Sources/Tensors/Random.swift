// Random.swift — a seedable generator for initialisation, dropout masks and test data.
import Foundation

/// A small, fast, seedable generator (xoshiro256**, seeded through SplitMix64).
/// It is a reference type so that layers can share one stream (e.g. every Dropout of a model).
/// Streams differ from PyTorch's: parity tests copy PyTorch's parameters instead of re-drawing them.
/// See https://prng.di.unimi.it/ for the algorithm.
public final class RandomGenerator {
    private var s0: UInt64 = 0, s1: UInt64 = 0, s2: UInt64 = 0, s3: UInt64 = 0

    /// - Parameter seed: any value; equal seeds give equal streams.
    public init(seed: UInt64) { reseed(seed) }

    /// Restarts the stream from `seed`.
    public func reseed(_ seed: UInt64) {
        var x = seed
        func splitMix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s0 = splitMix(); s1 = splitMix(); s2 = splitMix(); s3 = splitMix()
    }

    /// The next 64 random bits.
    @inline(__always)
    public func next() -> UInt64 {
        let result = ((s1 &* 5) << 7 | (s1 &* 5) >> 57) &* 9
        let t = s1 << 17
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3
        s2 ^= t
        s3 = (s3 << 45) | (s3 >> 19)
        return result
    }

    /// Uniform in [0, 1) with 24 random bits.
    @inline(__always)
    public func nextFloat() -> Float { Float(next() >> 40) * (1.0 / 16_777_216.0) }

    /// Uniform in [0, 1) with 53 random bits.
    @inline(__always)
    public func nextDouble() -> Double { Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0) }

    /// Uniform in [low, high).
    public func uniform(_ low: Float, _ high: Float) -> Float { low + (high - low) * nextFloat() }

    /// Standard normal (Box–Muller).
    public func normal() -> Float {
        let u1 = max(nextDouble(), 1e-300)
        let u2 = nextDouble()
        return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }

    /// A uniformly drawn integer in 0..<upperBound.
    public func nextInt(below upperBound: Int) -> Int {
        precondition(upperBound > 0)
        return Int(next() % UInt64(upperBound))
    }

    /// `count` values uniform in [low, high).
    public func uniformArray(count: Int, low: Float, high: Float) -> [Float] {
        var out = [Float](repeating: 0, count: count)
        out.withUnsafeMutableBufferPointer { p in
            for i in 0..<count { p[i] = low + (high - low) * nextFloat() }
        }
        return out
    }

    /// `count` values normal with the given mean and standard deviation (both Box–Muller outputs used).
    public func normalArray(count: Int, mean: Float = 0, std: Float = 1) -> [Float] {
        [Float](unsafeUninitializedCapacity: count) { out, initialized in
            var i = 0
            while i < count {
                let u1 = max(nextDouble(), 1e-300), u2 = nextDouble()
                let radius = (-2 * log(u1)).squareRoot(), angle = 2 * Double.pi * u2
                out[i] = mean + std * Float(radius * cos(angle))
                if i + 1 < count { out[i + 1] = mean + std * Float(radius * sin(angle)) }
                i += 2
            }
            initialized = count
        }
    }
}
