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
        let file = try AtomicFileWriter(url: url)
        do {
            try produce { chunk in try chunk.withUnsafeBytes { try file.write($0) } }
        } catch {
            file.abandon()
            throw error
        }
        try file.commit()  // removes the temporary itself when it fails
    }

    /// `.NAME.tmp-`: what every temporary file of `url` starts with.
    public static func temporaryPrefix(for url: URL) -> String { "." + url.lastPathComponent + ".tmp-" }

    /// Removes `PREFIX<pid>-…` files whose process no longer exists (a write killed before its rename). Files of
    /// live processes are theirs to finish; anything not named like a temporary is never touched.
    static func removeAbandonedTemporaries(in folder: String, prefix: String) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return }
        for name in names where name.hasPrefix(prefix) {
            let rest = name.dropFirst(prefix.count)
            guard let dash = rest.firstIndex(of: "-"), let pid = pid_t(rest[..<dash]), pid > 0 else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { unlink(folder + "/" + name) }
        }
    }
}
