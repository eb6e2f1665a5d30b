import FileIO
import Foundation

/// Why a weight file could not be read or written. Weight files are untrusted input: every problem
/// found in one ends here, never in a crash.
///
/// `description` is one line, `<file>: <problem>`, for example
/// `resnet50.pth: pickle global 'os.system' is not allowed (…)`.
public struct WeightFileError: Error, CustomStringConvertible, Sendable {
    /// What kind of problem it is, for callers that react differently (e.g. retry a download on `.io`).
    public enum Kind: String, Sendable {
        /// The file could not be opened, read, written or renamed.
        case io
        /// The container is broken: not a zip, truncated, a bad header or offsets.
        case corrupt
        /// The file is well formed but uses something this reader does not implement (a compressed
        /// zip entry, a dtype, a legacy format).
        case unsupported
        /// The pickle names a global or uses an opcode outside the allowlist.
        case disallowed
        /// Tensor data does not agree with its declared shape, dtype or storage.
        case tensor
    }

    /// The file the problem was found in, as given by the caller.
    public let path: String
    public let kind: Kind
    /// What is wrong, one line, without the path.
    public let problem: String

    public init(path: String, kind: Kind, problem: String) {
        self.path = path
        self.kind = kind
        self.problem = problem.replacingOccurrences(of: "\n", with: " ")
    }

    public var description: String { "\(path): \(problem)" }
}

/// A problem found below the file level; `WeightFileError` adds the path when it leaves the module.
struct FormatProblem: Error {
    let kind: WeightFileError.Kind
    let message: String

    init(_ kind: WeightFileError.Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    static func corrupt(_ message: String) -> FormatProblem { FormatProblem(.corrupt, message) }
    static func unsupported(_ message: String) -> FormatProblem { FormatProblem(.unsupported, message) }
    static func disallowed(_ message: String) -> FormatProblem { FormatProblem(.disallowed, message) }
    static func tensor(_ message: String) -> FormatProblem { FormatProblem(.tensor, message) }
}

/// Runs `body`, turning a `FormatProblem` into a `WeightFileError` naming `path`.
func naming<T>(_ path: String, _ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let problem as FormatProblem {
        throw WeightFileError(path: path, kind: problem.kind, problem: problem.message)
    }
}

/// Reads a whole weight file, memory-mapped, through FileIO's regular-file reader (a FIFO, a device such as
/// `/dev/zero` or a directory is refused instead of blocking or reading forever).
func readFile(_ url: URL) throws -> Data {
    do {
        return try RegularFile.read(url, byteLimit: Int.max, mapped: true)
    } catch let error as FileError {
        throw WeightFileError(path: url.path, kind: .io, problem: "cannot read the file: \(error.reason)")
    }
}

/// Writes `url` through FileIO's atomic write, its failures reported as `WeightFileError`s of kind `.io`.
func writeAtomically(to url: URL, _ produce: (_ sink: (Data) throws -> Void) throws -> Void) throws {
    do {
        try AtomicFile.write(to: url, produce)
    } catch let error as FileError {
        throw WeightFileError(path: error.path, kind: .io, problem: error.reason)
    }
}

/// A name read from a file (tensor key, zip entry, metadata key) as error messages show it: quoted, control
/// characters escaped so the message stays one line, and cut to 120 characters, because a hostile file can
/// make a name megabytes long.
func shown(_ name: String) -> String {
    var out = "'"
    var length = 0
    for scalar in name.unicodeScalars {
        if length == 120 {
            out += "…(\(name.utf8.count) bytes)"
            break
        }
        if scalar.value < 0x20 || scalar.value == 0x7F {
            out += "\\u{" + String(scalar.value, radix: 16) + "}"
        } else {
            out.unicodeScalars.append(scalar)
        }
        length += 1
    }
    return out + "'"
}
