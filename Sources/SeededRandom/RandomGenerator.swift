// RandomGenerator.swift — the fast stream behind initialisation, dropout masks and test tensors.

/// A small, fast, seedable generator (xoshiro256**, its state seeded through `SplitMix64`).
/// It is a reference type so that layers can share one stream (e.g. every Dropout of a model).
/// Streams differ from PyTorch's: parity tests copy PyTorch's parameters instead of re-drawing them.
/// See https://prng.di.unimi.it/ for the algorithm.
public final class RandomGenerator: RandomNumberGenerator {
    private var s0: UInt64 = 0, s1: UInt64 = 0, s2: UInt64 = 0, s3: UInt64 = 0

    /// - Parameter seed: any value; equal seeds give equal streams.
    public init(seed: UInt64) { reseed(seed) }

    /// Restarts the stream from `seed`.
    public func reseed(_ seed: UInt64) {
        var seeder = SplitMix64(seed: seed)
        s0 = seeder.next(); s1 = seeder.next(); s2 = seeder.next(); s3 = seeder.next()
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

    /// This generator seen as a value, so that the shared draws of `RandomNumberGenerator` (mutating methods,
    /// which a class's own same-named methods would otherwise shadow) advance this stream.
    private struct Stream: RandomNumberGenerator {
        let generator: RandomGenerator
        @inline(__always) mutating func next() -> UInt64 { generator.next() }
    }

    private var stream: Stream { Stream(generator: self) }

    /// Uniform in [0, 1) with 24 random bits.
    public func nextFloat() -> Float { var s = stream; return s.nextFloat() }

    /// Uniform in [0, 1) with 53 random bits.
    public func nextDouble() -> Double { var s = stream; return s.nextDouble() }

    /// Uniform in [low, high).
    public func uniform(_ low: Float, _ high: Float) -> Float { var s = stream; return s.uniform(low, high) }

    /// Standard normal (Box–Muller).
    public func normal() -> Float { var s = stream; return s.normal() }

    /// A uniformly drawn integer in 0..<upperBound, without modulo bias (see `next(below:)`).
    public func nextInt(below upperBound: Int) -> Int { var s = stream; return s.next(below: upperBound) }

    /// `count` values uniform in [low, high).
    public func uniformArray(count: Int, low: Float, high: Float) -> [Float] {
        var s = stream
        return (0 ..< count).map { _ in s.uniform(low, high) }
    }

    /// `count` values normal with the given mean and standard deviation (both Box–Muller outputs used).
    public func normalArray(count: Int, mean: Float = 0, std: Float = 1) -> [Float] {
        var s = stream
        return [Float](unsafeUninitializedCapacity: count) { out, initialized in
            var i = 0
            while i < count {
                let (first, second) = s.normalPair()
                out[i] = mean + std * Float(first)
                if i + 1 < count { out[i + 1] = mean + std * Float(second) }
                i += 2
            }
            initialized = count
        }
    }
}
