import Foundation
import SeededRandom
import XCTest
import WeightFiles

final class SafetensorsTests: XCTestCase {
    func testReadsTheSafetensorsPackagesOutput() throws {
        let file = try SafetensorsFile.load(from: Fixtures.url("reference.safetensors"))
        let expected = Fixtures.tensors(of: "reference.safetensors")
        XCTAssertEqual(Set(file.stateDict.keys), Set(expected.map(\.key)))
        for tensor in expected { assertMatches(file.stateDict[tensor.key], tensor) }
        let metadata = (Fixtures.expected["reference.safetensors"] as! [String: Any])["metadata"] as! [String: String]
        XCTAssertEqual(file.metadata, metadata)
        XCTAssertEqual(try StateDict.load(from: Fixtures.url("reference.safetensors")), file.stateDict)
    }

    func testRoundTripOfRandomTensorsInEveryDtype() throws {
        var rng = SplitMix64(seed: 42)
        func floats(_ n: Int) -> [Float] { (0..<n).map { _ in Float.random(in: -3...3, using: &rng) } }
        var sd = StateDict()
        sd["conv.weight"] = WeightTensor(shape: [4, 3, 3, 3], floats: floats(108))
        sd["scalar"] = WeightTensor(shape: [], floats: floats(1))
        sd["empty"] = WeightTensor(shape: [0, 5], floats: [])
        sd["bn.num_batches_tracked"] = WeightTensor(shape: [], integers: [123_456_789_012])
        sd["ints"] = WeightTensor(shape: [5], integers: (0..<5).map { _ in Int64.random(in: -1000...1000, using: &rng) }, dtype: .int32)
        sd["bytes"] = WeightTensor(shape: [3], integers: [0, 17, 255], dtype: .uint8)
        sd["mask"] = WeightTensor(shape: [2], integers: [1, 0], dtype: .bool)
        sd["double"] = WeightTensor(shape: [2], floats: floats(2), dtype: .float64)
        // float16 / bfloat16 hold values they can represent exactly, so the round trip is exact.
        let halves = floats(6).map { (($0 * 64).rounded() / 64) }
        sd["half"] = WeightTensor(shape: [2, 3], floats: halves, dtype: .float16)
        sd["bf16"] = WeightTensor(shape: [3, 2], floats: halves, dtype: .bfloat16)
        sd["name with \"quotes\" and \\ / ünicode"] = WeightTensor(shape: [1], floats: [0.5])

        let url = try temporaryDirectory(self).appendingPathComponent("model.safetensors")
        let metadata = ["format": "pt", "epoch": "7", "note": "line\nbreak \"quoted\""]
        try SafetensorsFile.save(sd, metadata: metadata, to: url)
        let loaded = try SafetensorsFile.load(from: url)
        XCTAssertEqual(loaded.stateDict, sd)
        XCTAssertEqual(loaded.stateDict.keys, sd.keys, "file order is the state dict's order")
        XCTAssertEqual(loaded.metadata, metadata)

        // Header length: a multiple of 8, so the data section is aligned.
        let data = try Data(contentsOf: url)
        let headerLength = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        XCTAssertEqual(headerLength % 8, 0)
    }

    func testPthToSafetensorsKeepsEveryTensor() throws {
        let sd = try TorchCheckpoint.load(from: Fixtures.url("small_state.pth")).stateDict
        let url = try temporaryDirectory(self).appendingPathComponent("converted.safetensors")
        try SafetensorsFile.save(sd, to: url)
        let back = try SafetensorsFile.load(from: url)
        XCTAssertEqual(back.stateDict, sd)
        XCTAssertEqual(back.metadata, [:])
    }

    func testFloat16AndBFloat16RoundingMatchesTorch() throws {
        // torch's float32 → float16 / bfloat16 conversions (round to nearest even, overflow to inf,
        // float16 subnormals), compared bit for bit through a written file.
        let cases = Fixtures.expected["rounding"] as! [String: [NSNumber]]
        let source = cases["float32_bits"]!.map { Float(bitPattern: UInt32($0.uint32Value)) }
        let directory = try temporaryDirectory(self)
        for (dtype, key) in [(WeightDType.float16, "float16_bits"), (.bfloat16, "bfloat16_bits")] {
            let url = directory.appendingPathComponent("\(dtype).safetensors")
            var sd = StateDict()
            sd["x"] = WeightTensor(shape: [source.count], floats: source, dtype: dtype)
            try SafetensorsFile.save(sd, to: url)
            let data = try Data(contentsOf: url)
            let payload = [UInt8](data.suffix(source.count * 2))
            let written = (0..<source.count).map { Int(payload[2 * $0]) | Int(payload[2 * $0 + 1]) << 8 }
            XCTAssertEqual(written, cases[key]!.map(\.intValue), "\(dtype)")
        }
    }

    func testSaveReplacesAtomicallyAndLeavesNoTemporaryFiles() throws {
        let directory = try temporaryDirectory(self)
        let url = directory.appendingPathComponent("weights.safetensors")
        var first = StateDict()
        first["a"] = WeightTensor(shape: [2], floats: [1, 2])
        try SafetensorsFile.save(first, to: url)
        var second = StateDict()
        second["b"] = WeightTensor(shape: [3], floats: [3, 4, 5])
        try SafetensorsFile.save(second, to: url)
        XCTAssertEqual(try SafetensorsFile.load(from: url).stateDict, second)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["weights.safetensors"])
    }

    func testSaveIntoAMissingDirectoryNamesTheFile() throws {
        let url = try temporaryDirectory(self).appendingPathComponent("no/such/dir/out.safetensors")
        var sd = StateDict()
        sd["a"] = WeightTensor(shape: [1], floats: [1])
        assertWeightFileError(try SafetensorsFile.save(sd, to: url), file: url, kind: .io, "temporary file")
    }
}
