// AtomicFileWriter.swift — AtomicFile's temporary file as an object: for files written over many calls (a feature
// store of gigabytes appended batch by batch) and patched in place before they are committed.
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file written to a temporary in the destination's folder and renamed over the destination by `commit()`, with
/// AtomicFile's guarantees: the temporary is flushed before the rename and the folder after it, and it is named
/// `.NAME.tmp-PID-RANDOM` so that a later write of NAME removes it if this process dies first. A writer dropped or
/// `abandon`ed without a commit removes its temporary and leaves the destination as it was.
///
/// One writer is used from one thread at a time.
public final class AtomicFileWriter {
    /// The destination.
    public let url: URL
    /// The temporary file's path (removed on abandon, renamed on commit).
    public let temporaryPath: String
    private var descriptor: Int32
    private var finished = false
    /// Bytes appended by `write(_:)` (the file's length at commit).
    public private(set) var length = 0
    /// The length `reserve` extended the file to (0: none).
    private var reserved = 0

    /// Creates the temporary file (removing abandoned temporaries of `url` first).
    /// - Parameter url: the destination; its folder must exist.
    /// - Throws: `FileError` when the temporary cannot be created.
    public init(url: URL) throws {
        self.url = url
        let folder = url.deletingLastPathComponent().path
        let prefix = AtomicFile.temporaryPrefix(for: url)
        AtomicFile.removeAbandonedTemporaries(in: folder, prefix: prefix)
        temporaryPath = folder + "/" + prefix + "\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        descriptor = open(temporaryPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw FileError(path: url.path, reason: "creating a temporary file in \(folder) failed: \(String(cString: strerror(errno)))")
        }
    }

    deinit { abandon() }

    private func failure(_ what: String) -> FileError {
        FileError(path: url.path, reason: "\(what) failed: \(String(cString: strerror(errno)))")
    }

    /// Appends `bytes` at the end of what was written so far.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        precondition(!finished, "AtomicFileWriter: write after commit or abandon (\(url.path))")
        var done = 0
        while done < bytes.count {
            let n = posixWrite(descriptor, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw failure("writing")
            }
            done += n
        }
        length += bytes.count
    }

    /// Overwrites bytes already written (or the zeros of a gap) at `offset`, without moving the end: a header whose
    /// counts are known only when the body is done.
    public func write(_ bytes: UnsafeRawBufferPointer, atOffset offset: Int) throws {
        precondition(!finished, "AtomicFileWriter: write after commit or abandon (\(url.path))")
        precondition(offset >= 0 && offset + bytes.count <= length,
                     "AtomicFileWriter: patching \(bytes.count) bytes at \(offset) past the \(length) written")
        var done = 0
        while done < bytes.count {
            let n = pwrite(descriptor, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw failure("writing at offset \(offset + done)")
            }
            done += n
        }
    }

    /// Reserves disk space for a file of `byteCount` bytes, so that a full disk is reported now rather than after
    /// hours of writing. `commit()` cuts the file back to the bytes written if fewer were.
    /// - Throws: `FileError` when the space is not there (ENOSPC, EFBIG); a filesystem that cannot reserve is not an error.
    public func reserve(byteCount: Int) throws {
        precondition(!finished, "AtomicFileWriter: reserve after commit or abandon (\(url.path))")
        guard byteCount > 0 else { return }
        let code = posix_fallocate(descriptor, 0, off_t(byteCount))
        if code == 0 {
            reserved = max(reserved, byteCount)
        } else if code == ENOSPC || code == EFBIG {
            errno = code
            throw failure("reserving \(byteCount) bytes")
        }
    }

    /// Flushes the temporary, renames it over the destination and flushes the folder. On failure the temporary is
    /// removed and the destination is unchanged.
    public func commit() throws {
        precondition(!finished, "AtomicFileWriter: commit after commit or abandon (\(url.path))")
        do {
            if reserved > length { guard ftruncate(descriptor, off_t(length)) == 0 else { throw failure("truncating") } }
            guard fsync(descriptor) == 0 else { throw failure("flushing") }
            let closing = close(descriptor)
            descriptor = -1
            guard closing == 0 else { throw failure("closing") }
            guard rename(temporaryPath, url.path) == 0 else { throw failure("renaming the temporary file over it") }
        } catch {
            abandon()
            throw error
        }
        finished = true
        // Make the rename itself durable.
        let folderDescriptor = open(url.deletingLastPathComponent().path, O_RDONLY | O_CLOEXEC)
        if folderDescriptor >= 0 {
            _ = fsync(folderDescriptor)
            close(folderDescriptor)
        }
    }

    /// Closes and removes the temporary; the destination is untouched. Does nothing after `commit()` or a first
    /// `abandon()`.
    public func abandon() {
        guard !finished else { return }
        finished = true
        if descriptor >= 0 { close(descriptor) }
        descriptor = -1
        unlink(temporaryPath)
    }
}

/// write(2) (inside `AtomicFileWriter`, `write` names its own method).
@inline(__always)
private func posixWrite(_ descriptor: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
    write(descriptor, buffer, count)
}
