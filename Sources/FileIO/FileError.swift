// FileError.swift — why FileIO could not read or write a file.
import Foundation

/// A file FileIO could not read or write: the path and what went wrong, one line (`is a FIFO (named pipe), not a
/// regular file`, `writing failed: No space left on device`).
public struct FileError: LocalizedError, CustomStringConvertible {
    public let path: String
    public let reason: String
    public var description: String { "\(path): \(reason)" }
    public var errorDescription: String? { reason }
}
