// Shared by every WeightFiles fuzz target (Fuzz/<Module>/*.swift is compiled into each of the module's targets).
import Foundation

/// Runs one load and checks the contract the fuzzers enforce: it returns, or it throws a
/// `WeightFileError` whose one-line description starts with the file name. Anything else (another error
/// type, a multi-line message) is a bug, so the harness traps and libFuzzer keeps the input.
func expectLoadOrCleanError(name: String, _ load: () throws -> Void) {
    do {
        try load()
    } catch let error as WeightFileError {
        let text = error.description
        if !text.hasPrefix(name + ": ") || text.contains("\n") {
            fatalError("malformed error message: \(text)")
        }
    } catch {
        fatalError("a loader threw \(type(of: error)), not a WeightFileError: \(error)")
    }
}

/// Reads every value of every tensor, so a tensor whose storage was sized wrongly is caught by
/// AddressSanitizer here rather than by a later user of the tensor.
func touchEveryValue(_ stateDict: StateDict) {
    var checksum: Float = 0
    for (_, tensor) in stateDict {
        if tensor.count != (tensor.integers?.count ?? tensor.floats.count) {
            fatalError("tensor of shape \(tensor.shape) holds \(tensor.integers?.count ?? tensor.floats.count) values")
        }
        for value in tensor.floats { checksum += value }
        _ = tensor.allFinite
    }
    blackHole(checksum)
}

@inline(never)
func blackHole<T>(_ value: T) {
    withExtendedLifetime(value) {}
}

/// The fuzz input as `Data` (copied: the loaders may keep slices of it).
func fuzzData(_ start: UnsafeRawPointer, _ count: Int) -> Data {
    Data(bytes: start, count: count)
}
