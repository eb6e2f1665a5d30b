// ProcessGroup.swift — the processes of a data-parallel job and the collectives between them (Open MPI through
// CMPI). A process not started by mpirun is a group of one: every collective is then the identity and MPI is
// never initialised, so a single-process run pays nothing for this module.
import CMPI
import Tensors
import Foundation

/// This job's processes ("ranks") and the collective operations training needs: sums, a gather, a broadcast.
///
/// Every rank must make the same collective calls in the same order. A wait polls the stop check
/// (`ProcessGroup.stopRequested`): when mpirun ends the job because another rank died, it sends SIGTERM, the check
/// turns true, the wait gives up and `abandoned` is set; later collectives then return at once. The caller checks
/// `abandoned` (or its own signal flag) before it trusts or saves anything computed since.
public final class ProcessGroup: @unchecked Sendable {
    /// This process's group: all of mpirun's processes when mpirun started this one, else this process alone.
    /// The first use initialises MPI (only under mpirun).
    public static let world: ProcessGroup = {
        guard cmpi_launched_by_mpirun() != 0 else { return ProcessGroup(rank: 0, size: 1, usesMPI: false) }
        var rank: Int32 = 0, size: Int32 = 0
        guard cmpi_init(&rank, &size) == Int32(CMPI_OK) else {
            FileHandle.standardError.write(Data("resnet50: error: MPI_Init failed; is Open MPI's runtime (openmpi-bin) installed?\n".utf8))
            exit(1)
        }
        cmpi_set_stop_callback { ProcessGroup.stopRequested() ? 1 : 0 }
        return ProcessGroup(rank: Int(rank), size: Int(size), usesMPI: true)
    }()

    /// This process's rank as mpirun's environment gives it, before (or without) MPI_Init: 0 when not under mpirun.
    public static var launcherRank: Int {
        let environment = ProcessInfo.processInfo.environment
        return (environment["OMPI_COMM_WORLD_RANK"] ?? environment["PMIX_RANK"]).flatMap { Int($0) } ?? 0
    }

    /// Polled while a collective waits: true when the process has been asked to stop (SIGTERM/SIGINT).
    nonisolated(unsafe) public static var stopRequested: () -> Bool = { false }

    /// 0 ..< size; rank 0 prints and writes files.
    public let rank: Int
    public let size: Int
    /// Whether MPI was initialised (false for a group of one not started by mpirun).
    public let usesMPI: Bool
    /// A collective gave up waiting (a stop was requested): results since are meaningless.
    public private(set) var abandoned = false

    init(rank: Int, size: Int, usesMPI: Bool) {
        self.rank = rank
        self.size = size
        self.usesMPI = usesMPI
    }

    /// A group of one, whatever launched the process (tests, and commands that never run in parallel).
    public static let single = ProcessGroup(rank: 0, size: 1, usesMPI: false)

    public var isParallel: Bool { size > 1 }
    /// Ranks of this job on this machine (Open MPI's OMPI_COMM_WORLD_LOCAL_SIZE; 1 without mpirun): they share
    /// its cores.
    public var ranksOnThisMachine: Int {
        guard usesMPI, let text = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_LOCAL_SIZE"], let n = Int(text), n >= 1 else { return 1 }
        return min(n, size)
    }
    public var isWriter: Bool { rank == 0 }

    /// Records a stop (`abandoned`); any other failure ends the job with a message naming this rank.
    func check(_ status: Int32, _ what: String) {
        if status == Int32(CMPI_STOPPED) { abandoned = true; return }
        if status != Int32(CMPI_OK) {
            FileHandle.standardError.write(Data("resnet50 (rank \(rank) of \(size)): error: MPI \(what) failed (status \(status))\n".utf8))
            cmpi_abort(1)
        }
    }

    /// Element-wise sums over all ranks, in place.
    public func sum(_ values: inout [Double]) {
        guard usesMPI, !abandoned, !values.isEmpty else { return }
        let status = values.withUnsafeMutableBufferPointer { cmpi_allreduce_sum($0.baseAddress, Int64($0.count), CMPI_FLOAT64) }
        check(status, "all-reduce")
    }

    public func sum(_ values: inout [Float]) {
        guard usesMPI, !abandoned, !values.isEmpty else { return }
        let status = values.withUnsafeMutableBufferPointer { cmpi_allreduce_sum($0.baseAddress, Int64($0.count), CMPI_FLOAT32) }
        check(status, "all-reduce")
    }

    public func sum(_ values: inout [Int]) {
        guard usesMPI, !abandoned, !values.isEmpty else { return }
        var wide = values.map { Int64($0) }
        let status = wide.withUnsafeMutableBufferPointer { cmpi_allreduce_sum($0.baseAddress, Int64($0.count), CMPI_INT64) }
        check(status, "all-reduce")
        values = wide.map { Int($0) }
    }

    /// Rank `root`'s values on every rank (the count must be the same everywhere).
    public func broadcast(_ values: inout [Float], from root: Int = 0) {
        guard usesMPI, !abandoned, !values.isEmpty else { return }
        let status = values.withUnsafeMutableBytes { cmpi_broadcast($0.baseAddress, Int64($0.count), Int32(root)) }
        check(status, "broadcast")
    }

    /// Every rank's `local` values concatenated in rank order, on every rank.
    /// - Parameters:
    ///   - local: this rank's part: whole units of `unit` values.
    ///   - counts: each rank's part, in units (the same array on every rank).
    ///   - unit: values per unit (a feature row's width; 1 for scalars).
    public func gather<T: BitwiseCopyable>(_ local: [T], counts: [Int], unit: Int = 1) -> [T] {
        precondition(counts.count == size && counts[rank] * unit == local.count && unit > 0, "gather: \(local.count) values, counts \(counts), unit \(unit)")
        guard usesMPI, size > 1 else { return local }
        var offsets = [Int64](), running = 0
        for count in counts {
            offsets.append(Int64(running))
            running += count
        }
        let total = running * unit
        guard !abandoned else { return Self.zeroed(count: total) }
        var status = Int32(CMPI_OK)
        let result = [T](unsafeUninitializedCapacity: total) { buffer, initialized in
            let wideCounts = counts.map { Int64($0) }
            local.withUnsafeBytes { send in
                status = cmpi_allgatherv(send.baseAddress, Int64(counts[rank]), buffer.baseAddress, wideCounts, offsets,
                                         Int64(unit * MemoryLayout<T>.stride))
            }
            // Stopped: the contents are unspecified but every element is a plain value of T's size.
            initialized = total
        }
        check(status, "all-gather")
        return result
    }

    /// `count` values of all-zero bytes (what a gather returns once the group is abandoned).
    private static func zeroed<T: BitwiseCopyable>(count: Int) -> [T] {
        [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            UnsafeMutableRawBufferPointer(buffer).initializeMemory(as: UInt8.self, repeating: 0)
            initialized = count
        }
    }

    public func barrier() {
        guard usesMPI, !abandoned else { return }
        check(cmpi_barrier(), "barrier")
    }

    /// Ends every process of the job at once (MPI_Abort); the exit status goes to mpirun.
    public func abort(exitCode: Int32) -> Never {
        if usesMPI { cmpi_abort(exitCode) }
        exit(exitCode)
    }

    /// MPI_Finalize, once, before a normal exit: Open MPI's mpirun counts a rank that exits without it as failed.
    public func finish() {
        guard usesMPI, !finished else { return }
        finished = true
        _ = cmpi_finalize()
    }
    private var finished = false
}

extension ProcessGroup {
    /// The rows rank `rank` of `ranks` takes of `count` consecutive ones: an even split, the first `count % ranks`
    /// ranks one more. Contiguous and in rank order, so concatenating the ranks' shares gives the original order.
    public static func share(of count: Int, rank: Int, ranks: Int) -> Range<Int> {
        precondition(count >= 0 && ranks > 0 && (0 ..< ranks).contains(rank))
        let base = count / ranks, extra = count % ranks
        let start = rank * base + min(rank, extra)
        return start ..< start + base + (rank < extra ? 1 : 0)
    }

    /// This rank's share of `count` rows (see `share(of:rank:ranks:)`).
    public func share(of count: Int) -> Range<Int> { Self.share(of: count, rank: rank, ranks: size) }

    /// Every rank's share size of `count` rows, in rank order.
    public func shareCounts(of count: Int) -> [Int] { (0 ..< size).map { Self.share(of: count, rank: $0, ranks: size).count } }
}

/// Synchronised BatchNorm sums its statistics over the group.
extension ProcessGroup: CrossProcessSum {}
