// RunOutputs.swift — how a run's files reach the disk without harming the user's: outputs never replace an
// input, one run at a time per output, the whole set committed together, and Ctrl-C handled.
import Foundation

// MARK: Inputs are never outputs

/// The identity of an existing file: device and inode, so two paths naming one file (a symlink, a hard link,
/// `a/../b`) compare equal.
private func fileIdentity(_ url: URL) -> (dev: UInt64, ino: UInt64)? {
    var s = stat()
    guard stat(url.path, &s) == 0 else { return nil }
    return (UInt64(s.st_dev), UInt64(s.st_ino))
}

/// What a file is to a run, for an error that names it: the file an option names, or one of the images.
public enum FileRole: Sendable {
    case option(InvalidOption.Name)
    case image

    /// "image", or the option followed by `suffix` (e.g. "--csv-path file").
    func phrase(naming: (InvalidOption.Name) -> String, suffix: String) -> String {
        switch self {
        case .option(let name): return naming(name) + suffix
        case .image: return "image"
        }
    }
}

/// Refuses before any work starts when an output path names one of the inputs: an output equal to the
/// labels.csv, a weights file or an image would be silently replaced at the end of the run.
/// - Parameters:
///   - outputs: (role, path) of every file the command will write.
///   - inputs: (role, path) of every file it reads.
/// - Throws: an error naming both.
public func refuseOutputsOverInputs(outputs: [(FileRole, URL)], inputs: [(FileRole, URL)]) throws {
    var inputPaths = [String: FileRole]()
    var inputIdentities = [String: FileRole]()
    for (role, url) in inputs {
        inputPaths[url.resolvingSymlinksInPath().standardizedFileURL.path] = role
        if let id = fileIdentity(url) { inputIdentities["\(id.dev):\(id.ino)"] = role }
    }
    for (role, url) in outputs {
        let path = url.resolvingSymlinksInPath().standardizedFileURL.path
        var clash = inputPaths[path]
        if clash == nil, let id = fileIdentity(url) { clash = inputIdentities["\(id.dev):\(id.ino)"] }
        if let clash {
            let path = url.path
            throw OptionNamingError { name in
                "\(role.phrase(naming: name, suffix: "")) \(path) is the \(clash.phrase(naming: name, suffix: " file")) this run reads; "
                    + "choose another output path"
            }
        }
    }
}

// MARK: Signals

/// SIGINT and SIGTERM end a run cleanly: the handler only records the signal; the loop checks it after each
/// step, writes what can be resumed and exits 128 + signal. A second signal kills at once (default action).
public enum InterruptSignal {
    nonisolated(unsafe) private static var received: sig_atomic_t = 0

    /// Installs the handlers (idempotent).
    public static func install() {
        for sig in [SIGINT, SIGTERM] {
            signal(sig) { number in
                InterruptSignal.received = number
                signal(number, SIG_DFL)
            }
        }
    }

    /// The signal received since `install()`, if any.
    public static var pending: Int32? { received == 0 ? nil : received }

    /// Throws `RunInterrupted` when a signal has arrived.
    static func check() throws {
        if let signal = pending { throw RunInterrupted(signal: signal, detail: "") }
    }

    /// Throws `RunInterrupted` when a signal has arrived, after running `keep` (what is worth saving first).
    static func check(keeping keep: () throws -> Void) throws {
        guard pending != nil else { return }
        try keep()
        try check()
    }
}

/// A run stopped by SIGINT or SIGTERM; the command exits 128 + signal.
public struct RunInterrupted: NamesOptions {
    public let signal: Int32
    /// When it stopped and what was kept on disk.
    public var detail: String
    /// The checkpoint that continues the run, when one was kept.
    public var resumeCheckpoint: URL?

    init(signal: Int32, detail: String, resumeCheckpoint: URL? = nil) {
        self.signal = signal
        self.detail = detail
        self.resumeCheckpoint = resumeCheckpoint
    }

    public var exitCode: Int32 { 128 + signal }

    public func message(naming: (InvalidOption.Name) -> String) -> String {
        "interrupted by \(signal == SIGINT ? "SIGINT" : signal == SIGTERM ? "SIGTERM" : "signal \(signal)")" + detail
            + (resumeCheckpoint.map { "; rerun the command with \(naming(.resumePath)) \($0.path) to continue" } ?? "")
    }
}

// MARK: One consistent set of outputs per run

/// The files of one training run, written as a set.
///
/// Everything is first written into a hidden staging folder next to the model (`.X.partial/`); the end of the run
/// renames the files into place, the last model last. A run that fails leaves the previous run's set untouched. The
/// staging folder holds a `COMMIT` marker while the renames happen: a run killed in that window is finished
/// (rolled forward) by the next run on the same output, so a set is never left half old, half new. An advisory
/// `flock` on `.X.lock` keeps a second run off the same output, and opening it checks the folder is writable
/// before the first epoch.
public final class OutputSet {
    public let files: RunFiles
    public let staging: URL
    private let lockURL: URL
    private var lockDescriptor: Int32 = -1
    private static let commitMarker = "COMMIT"

    /// Takes the lock, finishes or removes what an earlier killed run left, and creates an empty staging folder.
    /// - Throws: `TrainingError` when the folder cannot be written or another run holds the lock.
    public init(files: RunFiles) throws {
        self.files = files
        let folder = files.last.deletingLastPathComponent()
        staging = Self.stagingFolder(for: files)
        lockURL = folder.appendingPathComponent("." + files.last.lastPathComponent + ".lock")
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        } catch {
            throw outputError("cannot create the folder \(folder.path) (\(error.localizedDescription))")
        }
        lockDescriptor = open(lockURL.path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard lockDescriptor >= 0 else {
            throw outputError("the folder \(folder.path) is not writable (\(String(cString: strerror(errno))))")
        }
        guard flock(lockDescriptor, LOCK_EX | LOCK_NB) == 0 else {
            close(lockDescriptor)
            lockDescriptor = -1
            let lock = lockURL.path, path = files.last.path
            throw OptionNamingError { name in
                "\(name(.output)) \(path): another run is writing this model now (lock \(lock)); wait for it or choose another \(name(.output))"
            }
        }
        try recoverEarlierRun()
        do {
            try FileManager.default.createDirectory(at: staging, withIntermediateDirectories: false)
            // Writable for real: a read-only bind mount or a full disk shows up here, not after the first epoch.
            let probe = staging.appendingPathComponent("probe")
            try Data("ok".utf8).write(to: probe)
            try FileManager.default.removeItem(at: probe)
        } catch {
            throw outputError("cannot write in \(folder.path) (\(error.localizedDescription))")
        }
    }

    /// A failure to write the run's files, naming the model it was writing.
    private func outputError(_ problem: String) -> OptionNamingError {
        let path = files.last.path
        return OptionNamingError { name in "\(name(.output)) \(path): \(problem)" }
    }

    /// `.X.safetensors.partial/` next to the model: where a run's files wait for the commit.
    public static func stagingFolder(for files: RunFiles) -> URL {
        files.last.deletingLastPathComponent().appendingPathComponent("." + files.last.lastPathComponent + ".partial",
                                                                      isDirectory: true)
    }

    deinit {
        if lockDescriptor >= 0 { close(lockDescriptor) }
    }

    /// Where the run writes `final` until the commit.
    public func staged(_ final: URL) -> URL { staging.appendingPathComponent(final.lastPathComponent) }

    /// The commit order: pictures and logs first, then the resume checkpoint, the best model, and the last model last.
    private var commitOrder: [URL] {
        [files.epochLog, files.summary, files.curves, files.precisionRecall, files.resume, files.best, files.last]
    }

    /// Renames every staged file into place and removes the staging folder.
    public func commit() throws {
        let marker = staging.appendingPathComponent(Self.commitMarker)
        do {
            try Data().write(to: marker)
            try renameStaged(only: nil)
        } catch {
            throw outputError(error.localizedDescription)
        }
    }

    /// A run that ends early keeps only what lets it be resumed (the checkpoint and the epoch log of its finished
    /// epochs); everything else staged is removed.
    public func keepResumable() {
        try? renameStaged(only: [files.epochLog, files.resume])
    }

    /// Removes the staging folder and everything in it.
    public func discard() {
        try? FileManager.default.removeItem(at: staging)
    }

    private func renameStaged(only selection: [URL]?) throws {
        for final in selection ?? commitOrder {
            let source = staged(final)
            guard FileManager.default.fileExists(atPath: source.path) else { continue }
            guard rename(source.path, final.path) == 0 else {
                throw TrainingError("cannot move \(source.path) to \(final.path): \(String(cString: strerror(errno)))")
            }
        }
        discard()
    }

    /// A staging folder left by a killed run: rolled forward if it was committing, otherwise removed.
    private func recoverEarlierRun() throws {
        guard FileManager.default.fileExists(atPath: staging.path) else { return }
        if FileManager.default.fileExists(atPath: staging.appendingPathComponent(Self.commitMarker).path) {
            try renameStaged(only: nil)
        } else {
            discard()
        }
    }
}
