// WeightFileModelTests.swift — models through weight files: a torch-written .pth into the narrow ResNet
// (same logits as torch), save/reload round trips in .pth and safetensors, and, when the large fixture is
// available, torchvision's ResNet-50 .pth at 224x224.
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

    /// torchvision's ResNet-50 `.pth` (random weights, written by the fixture script with `--resnet50`):
    /// no missing or unexpected keys, and the 224x224 forward matches torch's within 1e-4.
    func testTorchvisionResNet50PthWhenAvailable() throws {
        guard let path = ProcessInfo.processInfo.environment["RESNETFUSION_RESNET50_FIXTURE"] else {
            throw XCTSkip("RESNETFUSION_RESNET50_FIXTURE not set")
        }
        let fixture = try Fixture(url: URL(fileURLWithPath: path))
        let pth = URL(fileURLWithPath: path).deletingPathExtension().appendingPathExtension("pth")
        let model = ResNet.resnet50()
        let report = try model.loadStateDict(WeightFiles.StateDict.load(from: pth))
        XCTAssertTrue(report.isEmpty, "\(report)")
        model.eval()
        let logits = withNoGrad { model(fixture.tensor("input")) }
        let error = assertClose(logits.data, fixture["eval/logits"].floats, tolerance: 1e-4, "resnet50 from .pth")
        print("parity resnet50 from torchvision .pth, eval 224x224: logits rel err \(error)")

        // The same file into the fusion model's backbone (fc ignored).
        let fusion = FusionModel(metaDim: 84, backbone: ResNet(config: .depth(50, numClasses: nil)))
        let backboneReport = try fusion.loadBackbone(WeightFiles.StateDict.load(from: pth))
        XCTAssertEqual(backboneReport.unexpectedKeys, ["fc.weight", "fc.bias"])
        XCTAssertEqual(fusion.backbone.conv1.weight.data, model.conv1.weight.data)
    }
}
