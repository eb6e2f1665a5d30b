import Foundation
import XCTest
import WeightFiles

/// The .pth writer, read back by this module's reader. That torch itself loads the output was checked
/// by hand: run the tests with WEIGHTFILES_EXPORT_DIR=DIR, then
/// `python -c "import torch; print(torch.load('DIR/swift-written.pth', weights_only=True))"`.
final class TorchCheckpointWriterTests: XCTestCase {
    func testNestedCheckpointRoundTrip() throws {
        let original = try TorchCheckpoint.load(from: Fixtures.url("checkpoint.pth"))
        let writable = original.extras.filter { if case .other = $0.value { return false } else { return true } }
        let checkpoint = TorchCheckpoint(stateDict: original.stateDict, extras: writable, isNested: true)
        let url = try temporaryDirectory(self).appendingPathComponent("model.pth")
        try checkpoint.save(to: url)
        let back = try TorchCheckpoint.load(from: url)
        XCTAssertTrue(back.isNested)
        XCTAssertEqual(back.stateDict, original.stateDict)
        XCTAssertEqual(back.stateDict.keys, original.stateDict.keys)
        XCTAssertEqual(back.extras.map(\.key), writable.map(\.key))
        XCTAssertEqual(back.extras.map(\.value), writable.map(\.value))
        try export(checkpoint, "swift-written.pth")
    }

    func testBareStateDictRoundTripKeepsDtypesAndScalars() throws {
        let original = try TorchCheckpoint.load(from: Fixtures.url("small_state.pth")).stateDict
        let url = try temporaryDirectory(self).appendingPathComponent("bare.pth")
        try TorchCheckpoint(stateDict: original, isNested: false).save(to: url)
        let back = try TorchCheckpoint.load(from: url)
        XCTAssertFalse(back.isNested)
        XCTAssertEqual(back.stateDict, original)
        XCTAssertEqual(back.stateDict["num_batches_tracked"]?.shape, [])
        try export(TorchCheckpoint(stateDict: original, isNested: false), "swift-written-bare.pth")
        if let directory = ProcessInfo.processInfo.environment["WEIGHTFILES_EXPORT_DIR"] {
            try SafetensorsFile.save(original, metadata: ["format": "pt"],
                                     to: URL(fileURLWithPath: directory).appendingPathComponent("swift-written.safetensors"))
        }
    }

    func testIntegersOfEveryWidthAndFloatsSurvive() throws {
        var sd = StateDict()
        sd["w"] = WeightTensor(shape: [2, 2], floats: [1, -2, 3.5, 1e-20])
        let extras: [(key: String, value: CheckpointValue)] = [
            ("small", .int(7)), ("medium", .int(60_000)), ("negative", .int(-70_000)), ("huge", .int(-(1 << 50))),
            ("max", .int(Int64.max)), ("rate", .float(-1.25e-7)), ("flag", .bool(false)), ("name", .string("ü ✓")),
            ("nothing", .none), ("weights", .tensor(WeightTensor(shape: [2], floats: [0.25, 0.75]))),
        ]
        let url = try temporaryDirectory(self).appendingPathComponent("extras.pth")
        try TorchCheckpoint(stateDict: sd, extras: extras, isNested: true).save(to: url)
        let back = try TorchCheckpoint.load(from: url)
        XCTAssertEqual(back.stateDict, sd)
        XCTAssertEqual(back.extras.map(\.key), extras.map(\.key))
        XCTAssertEqual(back.extras.map(\.value), extras.map(\.value))
    }

    func testUnwritableExtraNamesTheFile() throws {
        let url = try temporaryDirectory(self).appendingPathComponent("bad.pth")
        let checkpoint = TorchCheckpoint(stateDict: StateDict(), extras: [("history", .other("list"))], isNested: true)
        assertWeightFileError(try checkpoint.save(to: url), file: url, kind: .unsupported, "extra 'history'")
        XCTAssertFalse(FileManager.default.fileExists(atPath: url.path))
    }

    private func export(_ checkpoint: TorchCheckpoint, _ name: String) throws {
        guard let directory = ProcessInfo.processInfo.environment["WEIGHTFILES_EXPORT_DIR"] else { return }
        try checkpoint.save(to: URL(fileURLWithPath: directory).appendingPathComponent(name))
    }
}
