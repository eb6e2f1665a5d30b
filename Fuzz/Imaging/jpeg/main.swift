// Fuzz target `jpeg`: an image file as the loader reads it — format detection, the header checks, the
// full decode, and decode + resize + center crop (libjpeg-turbo's region decode in CImaging and the SIMD
// resampler for JPEG; PNG through the same entry point), all instrumented except the system libraries.
//
// The decoders' pixel limit is lowered so one input cannot spend seconds decoding a legitimately huge image;
// the limit's own check is part of what is fuzzed.
import Foundation

private let source = "fuzz.img"
/// 4 Mpx: a 1280x960 frame fits with room to spare; an input claiming more is refused from its header.
private let decoder = ImageDecoder(maxPixels: 1 << 22)
private let plans = ResizePlanCache()
private let preprocessing = Preprocessing.imagenet

/// Returns, or throws an `ImagingError` whose description is one line naming the file. Anything else traps.
private func expectResultOrCleanError(_ body: () throws -> Void) {
    do {
        try body()
    } catch let error as ImagingError {
        let text = error.description
        if !text.contains(source) || text.contains("\n") { fatalError("malformed error message: \(text)") }
    } catch {
        fatalError("threw \(type(of: error)), not an ImagingError: \(error)")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let input = Data(bytes: start, count: count)
    var size: (width: Int, height: Int)?
    expectResultOrCleanError {
        let header = try decoder.header(input, source: source)
        size = (header.width, header.height)
    }
    expectResultOrCleanError {
        let image = try decoder.decode(input, source: source)
        if image.pixels.count != image.width * image.height * 3 { fatalError("\(image.pixels.count) bytes for \(image.width)x\(image.height)") }
        if let size, size != (image.width, image.height) { fatalError("header \(size) but decoded \(image.width)x\(image.height)") }
        // The reference resize + crop of the decoded image, and the fast path straight from the bytes: the
        // same bytes, as the package's tests require for valid images.
        let reference = preprocessing.crop(image, plans: plans)
        let fast = try preprocessing.crop(encoded: input, source: source, decoder: decoder, plans: plans)
        if reference.count != 224 * 224 * 3 || fast != reference { fatalError("fast crop differs from the reference") }
    }
    // Bytes the full decode refuses must be refused by the crop path too, without crashing.
    expectResultOrCleanError {
        let crop = try preprocessing.crop(encoded: input, source: source, decoder: decoder, plans: plans)
        if crop.count != 224 * 224 * 3 { fatalError("crop of \(crop.count) bytes") }
    }
    return 0
}
