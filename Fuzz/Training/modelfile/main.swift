// Fuzz target `modelfile`: `TrainedModel.load(data:name:)`, the reader of the model files `resnet50 train` writes and
// `evaluate` / `predict` read: safetensors parse, metadata checks (meta_dim, max_boxes, backbone, threshold),
// building the FusionModel, strict state-dict load, finite-weights check.
//
// Each input is read three ways, so mutations reach the metadata checks and the model behind them rather than
// dying in the safetensors parser:
//   1. as a whole model file;
//   2. as the JSON header of a model file whose tensor bytes are those of a valid small model (the template:
//      backbone `bottleneck layers=1,1,1,1 stem=8 widths=8,8,8,8`, max_boxes 2), so tensor entries, shapes,
//      dtypes, offsets and metadata can all change over real weights;
//   3. as the metadata, one `key=value` per line, of the template's tensors.
// Messages are checked scalar by scalar: "\r\n" is one Character, equal to neither "\n" nor "\r".
// Seeds: Fuzz/corpus/modelfile/ (a file of each kind; `FUZZ_WRITE_SEEDS=DIR` makes the harness write the
// template-derived ones to DIR and exit).
import DataPipeline
import Foundation
import Models
import NN
import Tensors
import WeightFiles

private let fileName = "fuzz.safetensors"
private let templateBackbone = "bottleneck layers=1,1,1,1 stem=8 widths=8,8,8,8"
private let templateMaxBoxes = 2

/// The template model as safetensors: its header's tensor entries (the JSON object's members, no braces) and
/// its tensor bytes. Kept as arrays: LeakSanitizer does not see the tagged references inside a global `Data` or
/// `String` and would report them as leaked at exit (a failed run).
private struct Template {
    let tensorMembers: [UInt8]
    let body: [UInt8]
}

private func templateMetadata() -> [(String, String)] {
    [("format", "pt"), ("meta_dim", String(BoxEncoding.metaDim(maxBoxes: templateMaxBoxes)!)),
     ("max_boxes", String(templateMaxBoxes)), ("backbone", templateBackbone), ("threshold", "0.5")]
}

private let template: Template = {
    guard case .success(let config) = BackboneCodec.decode(templateBackbone),
          let metaDim = BoxEncoding.metaDim(maxBoxes: templateMaxBoxes) else { fatalError("template backbone") }
    let model = FusionModel(metaDim: metaDim, backbone: ResNet(config: config, generator: RandomGenerator(seed: 1)),
                            generator: RandomGenerator(seed: 1))
    // The real writer, through a temporary file; then split into header and body.
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("modelfile-template-\(getpid()).safetensors")
    do {
        try SafetensorsFile.save(model.stateDict(), to: url)
    } catch { fatalError("writing the template: \(error)") }
    defer { try? FileManager.default.removeItem(at: url) }
    guard let bytes = try? Data(contentsOf: url), bytes.count >= 8 else { fatalError("reading the template") }
    let headerLength = bytes.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
    let header = String(decoding: bytes[8 ..< 8 + headerLength], as: UTF8.self)
        .trimmingCharacters(in: .whitespaces)
    guard header.hasPrefix("{"), header.hasSuffix("}") else { fatalError("template header \(header.prefix(80))") }
    return Template(tensorMembers: Array(header.dropFirst().dropLast().utf8), body: Array(bytes[(8 + headerLength)...]))
}()

/// A safetensors file: 8-byte little-endian header length, the header padded with spaces to 8 bytes, the body.
private func safetensors(header: Data, body: Data) -> Data {
    var header = header
    while header.count % 8 != 0 { header.append(0x20) }
    var file = Data(count: 8)
    for i in 0 ..< 8 { file[i] = UInt8(truncatingIfNeeded: header.count >> (8 * i)) }
    file.append(header)
    file.append(body)
    return file
}

/// `text` as a JSON string literal.
private func jsonQuote(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}

/// The template's tensors under `metadata`.
private func templateFile(metadata: [(String, String)]) -> Data {
    let members = metadata.map { jsonQuote($0.0) + ":" + jsonQuote($0.1) }.joined(separator: ",")
    var header = Data("{\"__metadata__\":{\(members)},".utf8)
    header.append(contentsOf: template.tensorMembers)
    header.append(UInt8(ascii: "}"))
    return safetensors(header: header, body: Data(template.body))
}

/// Loads `data` and checks the contract: the model comes back consistent with its metadata, or the load throws a
/// error whose one-line message, as the command prints it, starts with `--model <name>: `. Anything else traps.
private func check(_ data: Data) {
    do {
        let trained = try TrainedModel.load(data: data, name: fileName)
        guard let maxBoxes = trained.metadata["max_boxes"].flatMap(Int.init), maxBoxes == trained.maxBoxes,
              BoxEncoding.metaDim(maxBoxes: maxBoxes) == trained.model.metaDim else {
            fatalError("loaded a model whose meta_dim \(trained.model.metaDim) does not fit max_boxes \(trained.maxBoxes)")
        }
        if let threshold = trained.threshold, !(threshold.isFinite && (0 ... 1).contains(threshold)) {
            fatalError("loaded threshold \(threshold)")
        }
        for (key, tensor) in trained.model.stateDict() where !tensor.allFinite {
            fatalError("loaded a non-finite value in \(key)")
        }
    } catch let error as NamesOptions {
        // The line the command prints: the model file named by its flag.
        let text = error.message { $0 == .modelPath ? "--model" : "\($0)" }
        if !text.hasPrefix("--model \(fileName): ") || text.unicodeScalars.contains(where: { $0 == "\n" || $0 == "\r" }) {
            fatalError("malformed error message: \(text.debugDescription.prefix(2000))")
        }
    } catch {
        fatalError("TrainedModel.load threw \(type(of: error)), not an error naming its option: \(error)")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let input = Data(bytes: start, count: count)
    // 1. A whole file.
    check(input)
    // 2. The header of a file over the template's tensor bytes.
    check(safetensors(header: input, body: Data(template.body)))
    // 3. The template's tensors under metadata given as key=value lines (split at the first '=').
    let text = String(decoding: input, as: UTF8.self)
    var metadata: [(String, String)] = []
    for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
        guard let equals = line.firstIndex(of: "=") else { continue }
        metadata.append((String(line[..<equals]), String(line[line.index(after: equals)...])))
    }
    if !metadata.isEmpty { check(templateFile(metadata: metadata)) }
    return 0
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>>>) -> CInt {
    guard let folder = ProcessInfo.processInfo.environment["FUZZ_WRITE_SEEDS"] else { return 0 }
    func write(_ name: String, _ data: Data) {
        do { try data.write(to: URL(fileURLWithPath: folder).appendingPathComponent(name)) } catch {
            fatalError("writing seed \(name): \(error)")
        }
    }
    func lines(_ pairs: [(String, String)]) -> Data { Data(pairs.map { "\($0.0)=\($0.1)\n" }.joined().utf8) }
    let valid = templateMetadata()
    // Kind 3: metadata lines.
    write("meta_valid.txt", lines(valid))
    write("meta_no_threshold.txt", lines(valid.filter { $0.0 != "threshold" }))
    write("meta_basic_backbone.txt", lines(valid.map { $0.0 == "backbone" ? ($0.0, "basic layers=1,1,1,1 stem=8 widths=8,8,8,8") : $0 }))
    write("meta_max_boxes_limit.txt", lines([("meta_dim", "8004"), ("max_boxes", "1000"), ("backbone", templateBackbone),
                                             ("threshold", "1")]))
    write("meta_bad_threshold.txt", lines(valid.map { $0.0 == "threshold" ? ($0.0, "nan") : $0 }))
    // Kind 2: the template's whole header with its metadata (the tensor bytes come from the template).
    let file = templateFile(metadata: valid)
    let headerLength = file.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
    write("header_valid.json", file[8 ..< 8 + headerLength])
    // Kind 1: small whole files (a valid model is ~200 KB, past -max_len; its header is seed kind 2).
    let small = safetensors(header: Data(("{\"__metadata__\":{\"meta_dim\":\"20\",\"max_boxes\":\"2\",\"backbone\":\""
        + templateBackbone + "\",\"threshold\":\"0.5\"},\"head.3.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}").utf8),
        body: Data(count: 8))
    write("file_one_tensor.safetensors", small)
    write("file_metadata_only.safetensors", safetensors(header: Data("{\"__metadata__\":{\"meta_dim\":\"4\",\"max_boxes\":\"0\"}}".utf8),
                                                         body: Data()))
    print("wrote seeds to \(folder)")
    exit(0)
}
