// WeightFileModelTests.swift — models through weight files: a torch-written .pth into the narrow ResNet
// (same logits as torch), save/reload round trips in .pth and safetensors. The full ResNet-50 through a .pth
// is SeededResNet50ParityTests.
import Foundation
import Models
import NN
import Tensors
import WeightFiles
import XCTest

final class WeightFileModelTests: XCTestCase {
    /// `torch.save(model.state_dict())` of the narrow bottleneck fixture loads strictly and gives torch's logits.
    func testTorchSavedNarrowResNetLoads() throws {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "narrow_bottleneck", withExtension: "pth", subdirectory: "Fixtures"))
        let fixture = try Fixture(named: "narrow_bottleneck")
        let model = ResNet(config: .narrow(numClasses: 10))
        let report = try model.loadStateDict(WeightFiles.StateDict.load(from: url))
        XCTAssertTrue(report.isEmpty, "\(report)")
        model.eval()
        let logits = withNoGrad { model(fixture.tensor("input")) }
        assertClose(logits.data, fixture["eval/logits"].floats, tolerance: 1e-4, "logits from the .pth weights")
    }

    /// Saving a trained-looking state (running statistics moved, counter > 0) and loading it back is exact,
    /// and `num_batches_tracked` is written as int64 like PyTorch.
    func testRoundTripThroughBothFormats() throws {
        let g = RandomGenerator(seed: 17)
        let model = FusionModel(metaDim: 12, backbone: ResNet(config: .narrow(numClasses: nil), generator: g), generator: g)
        _ = model(Tensor.randn([2, 3, 32, 32], generator: g), Tensor.randn([2, 12], generator: g))  // train-mode forward
        let file = model.stateDict()
        XCTAssertEqual(file["backbone.bn1.num_batches_tracked"]?.dtype, .int64)
        XCTAssertEqual(file["backbone.bn1.num_batches_tracked"]?.integers, [1])
        XCTAssertEqual(file["head.3.weight"]?.dtype, .float32)

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tensors-tests-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let pth = directory.appendingPathComponent("model.pth"), safetensors = directory.appendingPathComponent("model.safetensors")
        try TorchCheckpoint(stateDict: file, isNested: false).save(to: pth)
        try SafetensorsFile.save(file, to: safetensors)
        for url in [pth, safetensors] {
            let other = FusionModel(metaDim: 12, backbone: ResNet(config: .narrow(numClasses: nil), generator: RandomGenerator(seed: 99)))
            XCTAssertNotEqual(other.stateDict(), model.stateDict())
            try other.loadStateDict(WeightFiles.StateDict.load(from: url))
            XCTAssertEqual(other.stateDict(), model.stateDict(), url.lastPathComponent)
        }
    }
}
