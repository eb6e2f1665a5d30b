import DataParallel
import Foundation

/// A test hook: `RESNETFUSION_KILL_RANK=R:E:B` makes rank R send itself SIGKILL at the start of batch B (1-based) of
/// training epoch E, so the data-parallel tests can kill a rank mid-epoch at a known place (a timer-based kill
/// would race the run). Unset, nothing happens; a malformed value is ignored.
struct FaultInjection {
    let rank: Int, epoch: Int, batch: Int

    static let fromEnvironment: FaultInjection? = {
        guard let text = ProcessInfo.processInfo.environment["RESNETFUSION_KILL_RANK"] else { return nil }
        let parts = text.split(separator: ":").compactMap { Int($0) }
        guard parts.count == 3 else { return nil }
        return FaultInjection(rank: parts[0], epoch: parts[1], batch: parts[2])
    }()

    /// Kills this process when (rank, epoch, batch) is the configured place.
    static func killIfRequested(group: ProcessGroup, epoch: Int, batch: Int) {
        guard let fault = fromEnvironment, fault.rank == group.rank, fault.epoch == epoch, fault.batch == batch else { return }
        kill(getpid(), SIGKILL)
    }
}
