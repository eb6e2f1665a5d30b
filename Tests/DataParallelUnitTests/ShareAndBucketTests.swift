import DataParallel
import Tensors
import XCTest

/// The pure arithmetic of data parallelism: how a batch is shared among ranks, and how gradients are bucketed.
final class ShareAndBucketTests: XCTestCase {
    func testSharesAreEvenContiguousAndCoverTheBatch() {
        for ranks in 1 ... 7 {
            for count in 0 ... 40 {
                let shares = (0 ..< ranks).map { ProcessGroup.share(of: count, rank: $0, ranks: ranks) }
                XCTAssertEqual(shares.first?.lowerBound, 0)
                XCTAssertEqual(shares.last?.upperBound, count)
                for (a, b) in zip(shares, shares.dropFirst()) { XCTAssertEqual(a.upperBound, b.lowerBound) }
                let sizes = shares.map(\.count)
                XCTAssertLessThanOrEqual(sizes.max()! - sizes.min()!, 1, "count \(count), ranks \(ranks): \(sizes)")
                XCTAssertEqual(sizes, sizes.sorted(by: >), "the larger shares come first")
            }
        }
    }

    func testBucketsFollowTheRule() {
        let mib = 1 << 20, floatsPerMiB = mib / 4
        // Small enough for one bucket: one all-reduce.
        XCTAssertEqual(GradientReducer.bucketParameterCounts([10, 20, 30]), [3])
        XCTAssertEqual(GradientReducer.bucketParameterCounts([]), [])
        XCTAssertEqual(GradientReducer.bucketParameterCounts([floatsPerMiB * 25]), [1], "exactly bucketBytes is one bucket")
        // Larger: reverse order, the first bucket closes at 1 MiB, the next ones at 25 MiB, the rest in the last.
        let counts = [floatsPerMiB * 30, floatsPerMiB * 10, floatsPerMiB * 10, floatsPerMiB * 10, floatsPerMiB / 2, floatsPerMiB / 2]
        XCTAssertEqual(GradientReducer.bucketParameterCounts(counts), [2, 3, 1])
        XCTAssertEqual(GradientReducer.bucketParameterCounts(counts).reduce(0, +), counts.count)
        // ResNet-50's fusion model: 24 M floats, 96 MB, in a handful of buckets, every parameter in one.
        let buckets = GradientReducer.bucketParameterCounts(Array(repeating: 235_000, count: 102))
        XCTAssertEqual(buckets.reduce(0, +), 102)
        XCTAssertEqual(buckets.count, 5)
    }

    func testReducerOfOneRankIsTheIdentity() {
        let a = Tensor(shape: [3], data: [1, 2, 3], requiresGrad: true), b = Tensor(shape: [2], data: [4, 5], requiresGrad: true)
        let reducer = GradientReducer(parameters: [a, b], group: .single)
        reducer.attach()
        let loss = add(a, a)
        _ = b
        loss.backward(gradient: [1, 1, 1])
        reducer.finish()
        XCTAssertEqual(a.grad, [2, 2, 2])
        XCTAssertEqual(b.grad, [0, 0], "a parameter that got no gradient is reduced as zeros")
        reducer.detach()
        XCTAssertNil(a.gradientReady)
    }

    /// The tape's hook fires once per parameter, after its last contribution.
    func testGradientReadyFiresAfterTheLastContribution() {
        let w = Tensor(shape: [2], data: [1, 2], requiresGrad: true)
        var seen = [[Float]?]()
        w.gradientReady = { seen.append($0.grad) }
        let y = add(add(w, w), w)
        y.backward(gradient: [1, 1])
        XCTAssertEqual(seen.count, 1)
        XCTAssertEqual(seen.first ?? nil, [3, 3])
    }
}
