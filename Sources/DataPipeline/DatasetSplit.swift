// DatasetSplit.swift — the seeded train/validation split.
import SeededRandom

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
