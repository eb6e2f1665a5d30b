// Fuzz target `safetensors`: the safetensors reader (header length, JSON header, offsets, elements).
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let input = fuzzData(start, count)
    expectLoadOrCleanError(name: "fuzz.safetensors") {
        let file = try SafetensorsFile.load(data: input, name: "fuzz.safetensors")
        touchEveryValue(file.stateDict)
        // A file that loads holds no more tensor bytes than the file itself.
        let tensorBytes = file.stateDict.reduce(0) { $0 + $1.tensor.count * $1.tensor.dtype.byteCount }
        if tensorBytes > count { fatalError("\(tensorBytes) bytes of tensors from a \(count)-byte file") }
    }
    return 0
}
