// SplitMix64.swift — the package's one seedable 64-bit step, and the draws every seeded stream shares.
import Foundation

/// SplitMix64 (Steele, Lea, Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014; the
/// constants of Vigna's reference `splitmix64.c`). Small, seedable with any 64-bit value, and the same on every
/// platform and Swift version, so a `--seed` gives the same split, the same batch order and the same demo data
/// everywhere. It also seeds `RandomGenerator`'s xoshiro256** state.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

// The draws below are written out rather than taken from the standard library (`Int.random(in:using:)`,
// `shuffle(using:)`), whose algorithms may change between Swift releases: seeded results must not.
extension RandomNumberGenerator {
    /// The first 64-bit value a bounded draw rejects: `⌊(2⁶⁴ − 1) / bound⌋ · bound`. Accepting only values below
    /// it leaves a whole number of copies of `0 ..< bound`, so `value % bound` is unbiased.
    public static func rejectionThreshold(below bound: Int) -> UInt64 {
        precondition(bound > 0, "a bounded draw needs a positive bound, got \(bound)")
        let b = UInt64(bound)
        return UInt64.max - (UInt64.max % b)
    }

    /// Uniform in `0 ..< bound` without modulo bias (rejection on the top of the 64-bit range).
    public mutating func next(below bound: Int) -> Int {
        let threshold = Self.rejectionThreshold(below: bound)
        while true {
            let value = next()
            if value < threshold { return Int(value % UInt64(bound)) }
        }
    }

    /// Fisher–Yates, from the last element down (`torch.randperm`'s layout is not copied; this order is pinned).
    public mutating func shuffle<T>(_ elements: inout [T]) {
        guard elements.count > 1 else { return }
        for i in stride(from: elements.count - 1, to: 0, by: -1) {
            let j = next(below: i + 1)
            if i != j { elements.swapAt(i, j) }
        }
    }

    /// Uniform in [0, 1) from the top 24 bits (every value a multiple of 2⁻²⁴, so exact in `Float`).
    public mutating func nextFloat() -> Float { Float(next() >> 40) * (1.0 / 16_777_216.0) }

    /// Uniform in [0, 1) from the top 53 bits (every value a multiple of 2⁻⁵³, so exact in `Double`).
    public mutating func nextDouble() -> Double { Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0) }

    /// Uniform in [low, high).
    public mutating func uniform(_ low: Float, _ high: Float) -> Float { low + (high - low) * nextFloat() }

    /// Uniform in [low, high).
    public mutating func uniform(_ low: Double, _ high: Double) -> Double { low + (high - low) * nextDouble() }

    /// Two independent standard normals from two uniforms (Box–Muller); `normal()` keeps the first.
    public mutating func normalPair() -> (Double, Double) {
        let u1 = max(nextDouble(), 1e-300), u2 = nextDouble()
        let radius = (-2 * log(u1)).squareRoot(), angle = 2 * Double.pi * u2
        return (radius * cos(angle), radius * sin(angle))
    }

    /// A standard normal (the first of a Box–Muller pair; the second is dropped).
    public mutating func normal() -> Float { Float(normalPair().0) }
}
