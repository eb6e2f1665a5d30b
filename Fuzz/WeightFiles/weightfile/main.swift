// Fuzz target `weightfile`: the format-detecting entry point (`StateDict.load(data:name:)`), which picks
// the safetensors or the .pth reader from the bytes, or names the format it does not read.
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let input = fuzzData(start, count)
    expectLoadOrCleanError(name: "fuzz.weights") {
        touchEveryValue(try StateDict.load(data: input, name: "fuzz.weights"))
    }
    return 0
}
