// AtomicFile.swift — the package's one way to replace a file: a crash leaves the old file or the new one.
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writing through a temporary file in the destination's folder, then `rename(2)` over the destination.
///
/// The temporary file is flushed (`fsync`) before the rename and the folder after it, so that after a power loss
/// the destination holds either its old bytes or all of the new ones (`Data.write(options: .atomic)` renames
/// without flushing, which can leave an empty file). The temporary file is named `.NAME.tmp-PID-RANDOM`: a write
/// killed before its rename leaves it behind, and the next write of NAME removes those whose process is gone.
public enum AtomicFile {
    /// Writes `data` to `url` atomically.
    /// - Parameters:
    ///   - createFolder: create the destination's folder (and its parents) first when it is missing.
    public static func write(_ data: Data, to url: URL, createFolder: Bool = false) throws {
        if createFolder {
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        }
        try write(to: url) { sink in try sink(data) }
    }

    /// Writes what `produce` hands to its sink, in order, to `url` atomically (large files are written as they
    /// are produced, never held whole in memory).
    /// - Parameter url: the destination; its folder must exist.
    /// - Throws: `FileError`, or whatever `produce` throws; either way the temporary file is removed.
    public static func write(to url: URL, _ produce: (_ sink: (Data) throws -> Void) throws -> Void) throws {
        let path = url.path
        let folder = url.deletingLastPathComponent().path
        let prefix = temporaryPrefix(for: url)
        removeAbandonedTemporaries(in: folder, prefix: prefix)
        let temporary = folder + "/" + prefix + "\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        func failure(_ what: String) -> FileError {
            FileError(path: path, reason: "\(what) failed: \(String(cString: strerror(errno)))")
        }
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw failure("creating a temporary file in \(folder)") }
        var closed = false
        defer {
            if !closed { close(fd) }
        }
        do {
            try produce { chunk in
                try chunk.withUnsafeBytes { raw in
                    var done = 0
                    while done < raw.count {
                        let n = posixWrite(fd, raw.baseAddress! + done, raw.count - done)
                        if n < 0 {
                            if errno == EINTR { continue }
                            throw failure("writing")
                        }
                        done += n
                    }
                }
            }
            guard fsync(fd) == 0 else { throw failure("flushing") }
            closed = true
            guard close(fd) == 0 else { throw failure("closing") }
            guard rename(temporary, path) == 0 else { throw failure("renaming the temporary file over it") }
        } catch {
            unlink(temporary)
            throw error
        }
        // Make the rename itself durable.
        let folderFD = open(folder, O_RDONLY | O_CLOEXEC)
        if folderFD >= 0 {
            _ = fsync(folderFD)
            close(folderFD)
        }
    }

    /// `.NAME.tmp-`: what every temporary file of `url` starts with.
    public static func temporaryPrefix(for url: URL) -> String { "." + url.lastPathComponent + ".tmp-" }

    /// Removes `PREFIX<pid>-…` files whose process no longer exists (a write killed before its rename). Files of
    /// live processes are theirs to finish; anything not named like a temporary is never touched.
    private static func removeAbandonedTemporaries(in folder: String, prefix: String) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return }
        for name in names where name.hasPrefix(prefix) {
            let rest = name.dropFirst(prefix.count)
            guard let dash = rest.firstIndex(of: "-"), let pid = pid_t(rest[..<dash]), pid > 0 else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { unlink(folder + "/" + name) }
        }
    }
}

@inline(__always)
private func posixWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
    write(fd, buffer, count)
}
