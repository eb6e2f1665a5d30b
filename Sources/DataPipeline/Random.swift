/// SplitMix64 (Steele, Lea, Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014; the
/// constants of Vigna's reference `splitmix64.c`). Small, seedable with any 64-bit value, and the same on every
/// platform and Swift version, so a `--seed` gives the same split and the same batch order everywhere.
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

    /// Uniform in `0 ..< bound` without modulo bias (rejection on the top of the 64-bit range).
    public mutating func next(below bound: Int) -> Int {
        precondition(bound > 0)
        let b = UInt64(bound)
        let limit = UInt64.max - (UInt64.max % b)  // values ≥ limit would bias the remainder
        while true {
            let v = next()
            if v < limit { return Int(v % b) }
        }
    }

    /// Fisher–Yates shuffle written out (Swift's `shuffle(using:)` may change between releases).
    public mutating func shuffle<T>(_ a: inout [T]) {
        guard a.count > 1 else { return }
        for i in stride(from: a.count - 1, to: 0, by: -1) {
            let j = next(below: i + 1)
            if i != j { a.swapAt(i, j) }
        }
    }
}

/// The train/validation split of the seed: `val_size = max(1, floor(0.2·N))` drawn at random, the rest train.
public struct DatasetSplit: Equatable, Sendable {
    /// Sample indices for training, in the drawn order.
    public let train: [Int]
    /// Sample indices for validation, in the drawn order (validation is never reshuffled).
    public let validation: [Int]

    /// - Parameters:
    ///   - count: number of samples N (≥ 2 so both parts are non-empty).
    ///   - seed: `--seed`; a permutation of 0..<N is drawn with SplitMix64(seed), its first N − val_size
    ///     entries train and the last val_size validate (as `torch.utils.data.random_split` lays them out).
    ///   - validationFraction: 0.2 in the seed.
    public init(count: Int, seed: UInt64, validationFraction: Double = 0.2) throws {
        guard count >= 2 else {
            throw DataError.invalidArgument("need at least 2 samples to split into training and validation, have \(count)")
        }
        let valSize = max(1, Int((validationFraction * Double(count)).rounded(.down)))
        var perm = Array(0 ..< count)
        var rng = SplitMix64(seed: seed)
        rng.shuffle(&perm)
        train = Array(perm[0 ..< count - valSize])
        validation = Array(perm[(count - valSize)...])
    }
}
