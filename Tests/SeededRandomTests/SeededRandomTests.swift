import SeededRandom
import XCTest

/// Replays fixed 64-bit values, so a test can put a draw exactly at a rejection threshold.
private struct ScriptedGenerator: RandomNumberGenerator {
    var values: [UInt64]
    mutating func next() -> UInt64 { values.removeFirst() }
}

final class SeededRandomTests: XCTestCase {
    /// The first outputs of Vigna's reference splitmix64.c, computed independently (Python, 64-bit wrap-around).
    func testSplitMix64MatchesTheReference() {
        var zero = SplitMix64(seed: 0)
        XCTAssertEqual((0 ..< 5).map { _ in zero.next() },
                       [0xE220_A839_7B1D_CDAF, 0x6E78_9E6A_A1B9_65F4, 0x06C4_5D18_8009_454F,
                        0xF88B_B8A8_724C_81EC, 0x1B39_896A_51A8_749B])
        var other = SplitMix64(seed: 1_234_567)
        XCTAssertEqual((0 ..< 5).map { _ in other.next() },
                       [0x599E_D017_FB08_FC85, 0x2C73_F084_5854_0FA5, 0x883E_BCE5_A3F2_7C77,
                        0x3FBE_F740_E917_7B3F, 0xE3B8_3467_08CB_5ECD])
    }

    /// xoshiro256** seeded with four SplitMix64 outputs (reference values computed the same way).
    func testRandomGeneratorMatchesTheReference() {
        let generator = RandomGenerator(seed: 42)
        XCTAssertEqual((0 ..< 3).map { _ in generator.next() },
                       [0x1578_0B2E_0C2E_C716, 0x6104_D986_6D11_3A7E, 0xAE17_5332_39E4_99A1])
        generator.reseed(42)
        XCTAssertEqual(generator.next(), 0x1578_0B2E_0C2E_C716, "reseeding restarts the stream")
    }

    /// 2⁶⁴ − 1 ≡ 5 (mod 10): the threshold is 2⁶⁴ − 6, the six values at or above it are redrawn, and the first
    /// value below it is kept (reduced modulo the bound).
    func testBoundedDrawsRejectExactlyAtTheThreshold() {
        XCTAssertEqual(SplitMix64.rejectionThreshold(below: 10), UInt64.max - 5)
        XCTAssertEqual(SplitMix64.rejectionThreshold(below: 3), UInt64.max, "2⁶⁴ − 1 is a multiple of 3")
        var atThreshold = ScriptedGenerator(values: [UInt64.max - 5, UInt64.max, UInt64.max - 6])
        XCTAssertEqual(atThreshold.next(below: 10), Int((UInt64.max - 6) % 10))
        XCTAssertTrue(atThreshold.values.isEmpty, "both values at or above the threshold were redrawn")
        var belowThreshold = ScriptedGenerator(values: [UInt64.max - 6, 7])
        XCTAssertEqual(belowThreshold.next(below: 10), 9)
        XCTAssertEqual(belowThreshold.values, [7], "a value below the threshold is kept")
        // RandomGenerator's integer draws are the same unbiased draw over its own stream.
        let a = RandomGenerator(seed: 9), b = RandomGenerator(seed: 9)
        for bound in [1, 2, 7, 1000, Int.max] {
            var stream = b
            XCTAssertEqual(a.nextInt(below: bound), stream.next(below: bound))
        }
    }

    /// Every residue is drawn about equally often (2000 draws over 0..<5: each count within ±25% of 400).
    func testBoundedDrawsCoverTheRange() {
        var rng = SplitMix64(seed: 3)
        var counts = [Int](repeating: 0, count: 5)
        for _ in 0 ..< 2000 { counts[rng.next(below: 5)] += 1 }
        XCTAssertTrue(counts.allSatisfy { (300 ... 500).contains($0) }, "\(counts)")
    }

    /// The shuffle is pinned: the train/validation split of every `--seed` depends on it.
    func testShuffleIsDeterministic() {
        var values = Array(0 ..< 10)
        var rng = SplitMix64(seed: 42)
        rng.shuffle(&values)
        XCTAssertEqual(values, [0, 9, 5, 8, 6, 4, 7, 2, 1, 3])
        var again = Array(0 ..< 10), same = SplitMix64(seed: 42)
        same.shuffle(&again)
        XCTAssertEqual(again, values)
        var single = [7], any = SplitMix64(seed: 1), untouched = SplitMix64(seed: 1)
        any.shuffle(&single)
        XCTAssertEqual(single, [7])
        XCTAssertEqual(any.next(), untouched.next(), "a one-element shuffle draws nothing")
    }

    /// Uniform draws use the top bits: 24 for Float, 53 for Double, scaled into [low, high).
    func testUniformAndNormalDraws() {
        var scripted = ScriptedGenerator(values: [UInt64.max, 1 << 63, UInt64.max, 0, 1 << 63])
        XCTAssertEqual(scripted.nextFloat(), 1 - 0x1p-24)
        XCTAssertEqual(scripted.nextDouble(), 0.5)
        XCTAssertEqual(scripted.uniform(2.0, 4.0), 4 - 0x1p-52)
        // u1 = 0 is clamped (no log(0)); u2 = 0.5 points the pair at (−r, 0).
        let (first, second) = scripted.normalPair()
        XCTAssertEqual(first, -(-2 * log(1e-300)).squareRoot(), accuracy: 1e-9)
        XCTAssertEqual(second, 0, accuracy: 1e-9)
        let generator = RandomGenerator(seed: 5)
        let values = generator.uniformArray(count: 1000, low: -1, high: 1)
        XCTAssertTrue(values.allSatisfy { $0 >= -1 && $0 < 1 })
        let normals = RandomGenerator(seed: 5).normalArray(count: 4001, mean: 2, std: 3)
        XCTAssertEqual(normals.count, 4001)
        let mean = normals.reduce(0, +) / Float(normals.count)
        XCTAssertEqual(mean, 2, accuracy: 0.2)
    }
}
