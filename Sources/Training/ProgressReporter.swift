import Foundation

/// A one-line progress bar with images/s and ETA on stderr, only when stderr is a terminal, so stdout keeps
/// exactly the seed's lines and logs stay clean.
final class ProgressReporter {
    private let enabled: Bool
    /// - Parameter enabled: false silences it (the ranks other than 0 of a data-parallel run).
    init(enabled: Bool = true) { self.enabled = enabled && isatty(STDERR_FILENO) != 0 }
    private var lastDraw = Date.distantPast
    private var drawn = false

    func report(_ label: String, done: Int, total: Int, since start: Date) {
        guard enabled, total > 0 else { return }
        let now = Date()
        guard done == total || now.timeIntervalSince(lastDraw) > 0.2 else { return }
        lastDraw = now
        let elapsed = now.timeIntervalSince(start)
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        let eta = rate > 0 ? Double(total - done) / rate : 0
        let width = 24, filled = width * done / total
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let line = String(format: "\r%@ [%@] %d/%d  %.1f img/s  ETA %02d:%02d ", label, bar, done, total, rate,
                          Int(eta) / 60, Int(eta) % 60)
        FileHandle.standardError.write(line.data(using: .utf8)!)
        drawn = true
    }

    func clear() {
        guard enabled, drawn else { return }
        FileHandle.standardError.write("\r\u{1B}[K".data(using: .utf8)!)
        drawn = false
    }
}
