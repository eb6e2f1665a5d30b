// GradientReducer.swift — summing a data-parallel step's gradients across ranks while backward still runs.
import CMPI
import Tensors

/// Sums the gradients of `parameters` over the ranks of a group, in buckets started during backward, as PyTorch's
/// DistributedDataParallel does (Li et al., "PyTorch Distributed", VLDB 2020): parameters are bucketed in reverse
/// order (backward produces the last layers' gradients first), and a bucket's all-reduce starts the moment its
/// last gradient is ready, so communication overlaps the rest of backward.
///
/// Use: `attach()` once; per step `backward()` then `finish()`, after which every rank holds the same summed
/// gradients. Buckets are started strictly in order, so every rank issues the same collectives in the same order
/// even if hooks fire in a different order. A rank with nothing to contribute this step (an empty share of a short
/// last batch) calls `finishWithoutGradients()` instead: its buckets are zeros.
public final class GradientReducer {
    public let group: ProcessGroup
    private let parameters: [Tensor]
    private struct Bucket {
        /// Indices into `parameters` and each one's offset in `storage`.
        var members: [(parameter: Int, offset: Int)]
        var storage: UnsafeMutablePointer<Float>
        var count: Int
        var pending: Int
        var request: OpaquePointer?
    }
    private var buckets: [Bucket] = []
    private var bucketOf: [ObjectIdentifier: Int] = [:]
    private var nextToStart = 0
    /// Seconds spent in `finish()`: waiting for the all-reduces backward did not hide (the exposed part of
    /// communication) and copying the sums back, summed since the last `resetTimers()`.
    public private(set) var exposedWaitSeconds = 0.0

    /// - Parameters:
    ///   - parameters: the trainable parameters, in the order the model registers them.
    ///   - group: the ranks to sum over.
    ///   - bucketBytes: the size of a bucket (DDP's default: 25 MiB); the first bucket, which backward fills
    ///     first, is 1 MiB so communication starts early.
    public init(parameters: [Tensor], group: ProcessGroup, bucketBytes: Int = 25 << 20, firstBucketBytes: Int = 1 << 20) {
        self.parameters = parameters
        self.group = group
        var next = parameters.count
        for count in Self.bucketParameterCounts(parameters.map(\.count), bucketBytes: bucketBytes, firstBucketBytes: firstBucketBytes) {
            let members = (next - count ..< next).reversed()
            var offsets = [(parameter: Int, offset: Int)](), size = 0
            for index in members {
                offsets.append((index, size))
                size += parameters[index].count
            }
            let storage = UnsafeMutablePointer<Float>.allocate(capacity: max(size, 1))
            buckets.append(Bucket(members: offsets, storage: storage, count: size, pending: offsets.count, request: nil))
            next -= count
        }
        for (b, bucket) in buckets.enumerated() {
            for member in bucket.members { bucketOf[ObjectIdentifier(parameters[member.parameter])] = b }
        }
    }

    /// The bucketing rule, in one place (the scaling model of `bench-mpi` uses it too): parameters in reverse order,
    /// a bucket closed once it holds `firstBucketBytes` (the first) or `bucketBytes` (the others). A model whose
    /// gradients all fit in `bucketBytes` is one bucket: its backward is too short to hide anything, and one
    /// all-reduce pays the network's latency once (the frozen-backbone head: 2.2 MB).
    /// - Parameter counts: each parameter's element count, in registration order.
    /// - Returns: how many parameters each bucket holds, in the order buckets are reduced.
    public static func bucketParameterCounts(_ counts: [Int], bucketBytes: Int = 25 << 20, firstBucketBytes: Int = 1 << 20) -> [Int] {
        let bytes = MemoryLayout<Float>.stride
        guard counts.reduce(0, +) * bytes > bucketBytes else { return counts.isEmpty ? [] : [counts.count] }
        var result = [Int](), members = 0, size = 0
        for count in counts.reversed() {
            members += 1
            size += count
            if size * bytes >= (result.isEmpty ? firstBucketBytes : bucketBytes) {
                result.append(members)
                (members, size) = (0, 0)
            }
        }
        if members > 0 { result.append(members) }
        return result
    }

    deinit {
        detach()
        for bucket in buckets {
            if let request = bucket.request { _ = cmpi_wait(request) }
            bucket.storage.deallocate()
        }
    }

    public var bucketCount: Int { buckets.count }

    /// Hooks every parameter's gradient-ready event.
    public func attach() {
        for parameter in parameters {
            parameter.gradientReady = { [unowned self] tensor in self.gradientReady(tensor) }
        }
    }

    public func detach() {
        for parameter in parameters { parameter.gradientReady = nil }
    }

    private func gradientReady(_ tensor: Tensor) {
        guard let b = bucketOf[ObjectIdentifier(tensor)] else { return }
        buckets[b].pending -= 1
        startReadyBuckets()
        // Open MPI advances nonblocking collectives only inside MPI calls: poke the ones in flight.
        for bucket in buckets[..<nextToStart] { if let request = bucket.request { _ = cmpi_test(request) } }
    }

    private func startReadyBuckets() {
        while nextToStart < buckets.count, buckets[nextToStart].pending == 0 { start(nextToStart) }
    }

    /// Copies the bucket's gradients (zeros where none) into its storage and starts its all-reduce.
    private func start(_ b: Int, zeros: Bool = false) {
        let bucket = buckets[b]
        for member in bucket.members {
            let parameter = parameters[member.parameter], destination = bucket.storage + member.offset
            if !zeros, let grad = parameter.grad {
                grad.withUnsafeBufferPointer { destination.update(from: $0.baseAddress!, count: parameter.count) }
            } else {
                destination.update(repeating: 0, count: parameter.count)
            }
        }
        if group.usesMPI && !group.abandoned {
            buckets[b].request = cmpi_iallreduce_sum(bucket.storage, Int64(bucket.count), CMPI_FLOAT32)
            if buckets[b].request == nil { group.check(Int32(CMPI_MPI_ERROR), "all-reduce of gradients") }
        }
        nextToStart = b + 1
    }

    /// After backward: starts what backward did not (parameters that got no gradient count as zeros), waits for
    /// every bucket, and sets each parameter's gradient to the sum over ranks.
    public func finish() { complete(zeros: false) }

    /// For a rank that ran no backward this step: contributes zeros, receives the sums.
    public func finishWithoutGradients() { complete(zeros: true) }

    private func complete(zeros: Bool) {
        while nextToStart < buckets.count { start(nextToStart, zeros: zeros) }
        let waitStart = ContinuousClock.now
        for b in buckets.indices {
            if let request = buckets[b].request {
                buckets[b].request = nil
                group.check(cmpi_wait(request), "all-reduce of gradients")
            }
            let bucket = buckets[b]
            for member in bucket.members {
                let parameter = parameters[member.parameter]
                parameter.grad = Array(UnsafeBufferPointer(start: bucket.storage + member.offset, count: parameter.count))
            }
            buckets[b].pending = bucket.members.count
        }
        let waited = ContinuousClock.now - waitStart
        exposedWaitSeconds += Double(waited.components.seconds) + Double(waited.components.attoseconds) * 1e-18
        nextToStart = 0
    }

    public func resetTimers() { exposedWaitSeconds = 0 }
}
