// RegularFile.swift — reading a user's file without trusting what sits at its path.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Whole-file reads for paths a user gives (labels.csv, frames, weight files): only regular files are read. A FIFO
/// named like a frame would block `open` until some writer appears, `/dev/zero` or `/dev/urandom` would be read
/// forever, and a directory cannot be read; each is one clear error instead.
public enum RegularFile {
    /// The largest file read whole (a 1280x960 frame is about 0.5 MB; labels.csv of a million rows about 200 MB).
    public static let defaultByteLimit = 1 << 30

    /// Reads the file at `url`, refusing anything that is not a regular file or is larger than `byteLimit`.
    /// - Parameters:
    ///   - url: the path; symlinks are followed (to a regular file, they are fine).
    ///   - byteLimit: the largest size accepted.
    ///   - firstBytes: read at most this many bytes from the start (nil: the whole file).
    ///   - mapped: memory-map the whole file instead of copying it (weight files: hundreds of MB read once, mostly
    ///     by sequential decoding); the file's type is checked on the open descriptor first, as for a copy.
    /// - Throws: `FileError` naming the path and what is there.
    public static func read(_ url: URL, byteLimit: Int = defaultByteLimit, firstBytes: Int? = nil,
                            mapped: Bool = false) throws -> Data {
        let (descriptor, size) = try openForReading(url)
        defer { close(descriptor) }
        let wanted = min(size, firstBytes ?? size)
        guard wanted <= byteLimit else {
            throw FileError(path: url.path, reason: "is \(size) bytes, over the limit of \(byteLimit) bytes")
        }
        if mapped && firstBytes == nil {
            do { return try Data(contentsOf: url, options: .alwaysMapped) } catch {
                throw FileError(path: url.path, reason: error.localizedDescription)
            }
        }
        var data = Data(count: wanted)
        var filled = 0
        try data.withUnsafeMutableBytes { buffer in
            while filled < wanted {
                let n = Glibc.read(descriptor, buffer.baseAddress! + filled, wanted - filled)
                if n < 0 && errno == EINTR { continue }
                guard n >= 0 else { throw FileError(path: url.path, reason: String(cString: strerror(errno))) }
                if n == 0 { break }  // the file shrank while being read: what was there is what is decoded
                filled += n
            }
        }
        if filled < wanted { data.removeSubrange(filled...) }
        return data
    }

    /// Opens the file at `url` for reading, refusing anything that is not a regular file: for readers that keep the
    /// descriptor (a memory-mapped feature store), so that the file checked is the file read.
    /// - Returns: the descriptor (blocking mode, close-on-exec; the caller closes it) and the file's size.
    /// - Throws: `FileError` naming the path and what is there.
    public static func openForReading(_ url: URL) throws -> (descriptor: Int32, size: Int) {
        // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused right after, by its type.
        let descriptor = Glibc.open(url.path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard descriptor >= 0 else { throw FileError(path: url.path, reason: String(cString: strerror(errno))) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            let reason = String(cString: strerror(errno))
            close(descriptor)
            throw FileError(path: url.path, reason: reason)
        }
        let kind = status.st_mode & S_IFMT
        guard kind == S_IFREG else {
            close(descriptor)
            let what: String
            switch kind {
            case S_IFIFO: what = "a FIFO (named pipe)"
            case S_IFDIR: what = "a directory"
            case S_IFCHR, S_IFBLK: what = "a device"
            case S_IFSOCK: what = "a socket"
            default: what = "not a regular file"
            }
            throw FileError(path: url.path, reason: "is \(what), not a regular file")
        }
        _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) & ~O_NONBLOCK)
        return (descriptor, Int(status.st_size))
    }
}
