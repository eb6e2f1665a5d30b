// ModelParityTests.swift — whole models against PyTorch/torchvision on the same weights and inputs
// (Fixtures/narrow_*.rnfx, fusion_narrow.rnfx): logits relative error ≤ 1e-4, loss ≤ 1e-4, every parameter
// gradient ≤ 1e-3, BatchNorm buffers after the forward ≤ 1e-4, in training and evaluation mode, with
// both kernel backends. Relative error is per tensor: ‖ours − torch‖∞ / ‖torch‖∞.
import Models
import NN
import Tensors
import XCTest

final class ModelParityTests: XCTestCase {
    /// Loads `fixture`'s state into `model` and compares one forward/backward per mode.
    private func checkParity(_ model: Module, fixture: Fixture, name: String,
                             forward: (Module) -> Tensor) throws {
        XCTAssertEqual(model.stateDict().keys, fixture.stateDict(prefix: "state/").keys, "\(name): state_dict key order differs from torch's")
        let labels = fixture.ints("labels")
        let classWeights = fixture.entries["class_weights"]?.floats
        try forEachBackend { backend in
            for mode in ["train", "eval"] {
                let report = try model.loadStateDict(fixture.stateDict(prefix: "state/"))
                XCTAssertTrue(report.isEmpty, "\(name): \(report)")
                model.zeroGrad()
                model.train(mode == "train")
                if mode == "train" {
                    // Dropout masks cannot match PyTorch's generator: the fixture ran them in eval mode too.
                    for (_, m) in model.namedModules() where m is Dropout { m.eval() }
                }
                let logits = forward(model)
                let loss = crossEntropy(logits, labels: labels, classWeights: classWeights)
                loss.backward()
                let tag = "\(name) \(mode) \(backend)"
                let logitsError = assertClose(logits.data, fixture["\(mode)/logits"].floats, tolerance: 1e-4, "\(tag) logits")
                assertClose(loss.data, fixture["\(mode)/loss"].floats, tolerance: 1e-4, "\(tag) loss")
                var worstGrad = 0.0, worstKey = ""
                for (key, p) in model.namedParameters() {
                    let e = assertClose(p.grad, fixture["\(mode)/grad/\(key)"].floats, tolerance: 1e-3, "\(tag) grad \(key)")
                    if e > worstGrad { (worstGrad, worstKey) = (e, key) }
                }
                for (key, b) in model.namedBuffers() {
                    assertClose(b.data, fixture["\(mode)/buffer_after/\(key)"].floats, tolerance: 1e-4, "\(tag) buffer \(key)")
                }
                print("parity \(tag): logits rel err \(logitsError), worst gradient rel err \(worstGrad) (\(worstKey))")
            }
        }
    }

    func testNarrowBottleneckResNet() throws {
        let fixture = try Fixture(named: "narrow_bottleneck")
        let model = ResNet(config: .narrow(numClasses: 10))
        let x = fixture.tensor("input")
        try checkParity(model, fixture: fixture, name: "narrow bottleneck") { ($0 as! ResNet)(x) }
    }

    func testNarrowBasicResNetWithClassWeights() throws {
        let fixture = try Fixture(named: "narrow_basic")
        let model = ResNet(config: .narrowBasic(numClasses: 10))
        let x = fixture.tensor("input")
        try checkParity(model, fixture: fixture, name: "narrow basic") { ($0 as! ResNet)(x) }
    }

    func testFusionModel() throws {
        let fixture = try Fixture(named: "fusion_narrow")
        let model = FusionModel(metaDim: 20, backbone: ResNet(config: .narrow(numClasses: nil)))
        let x = fixture.tensor("input"), meta = fixture.tensor("meta")
        try checkParity(model, fixture: fixture, name: "fusion") { ($0 as! FusionModel)(x, meta) }
    }

    /// Evaluation without gradients folds each BatchNorm into its convolution: same logits as torch.
    func testFoldedInferenceMatchesTorch() throws {
        for (name, config) in [("narrow_bottleneck", ResNetConfig.narrow(numClasses: 10)), ("narrow_basic", .narrowBasic(numClasses: 10))] {
            let fixture = try Fixture(named: name)
            let model = ResNet(config: config)
            try model.loadStateDict(fixture.stateDict(prefix: "state/"))
            model.eval()
            let logits = withNoGrad { model(fixture.tensor("input")) }
            let error = assertClose(logits.data, fixture["eval/logits"].floats, tolerance: 1e-4, "\(name) folded eval logits")
            print("parity \(name) eval, no grad (BatchNorm folded): logits rel err \(error)")
        }
    }

    /// The folded weights are kept between inference passes: any change to a convolution weight, a batch
    /// norm's running statistics, or weights loaded from a state dict must refold them.
    func testFoldCacheFollowsChangedValues() throws {
        let fixture = try Fixture(named: "narrow_bottleneck")
        let model = ResNet(config: .narrow(numClasses: 10))
        try model.loadStateDict(fixture.stateDict(prefix: "state/"))
        model.eval()
        let input = fixture.tensor("input")
        let before = withNoGrad { model(input) }.data
        XCTAssertEqual(withNoGrad { model(input) }.data, before, "a second pass reuses the fold: same logits")

        // In-place writes, as an optimizer step or a statistics update would make them.
        model.conv1.weight.data[3] += 0.5
        model.bn1.runningVar.data[0] *= 4
        let after = withNoGrad { model(input) }.data
        XCTAssertNotEqual(after, before)
        // A fresh model with the same values has nothing cached: its logits are what the changed model must give.
        let fresh = ResNet(config: .narrow(numClasses: 10))
        try fresh.loadStateDict(model.stateDict())
        fresh.eval()
        XCTAssertEqual(after, withNoGrad { fresh(input) }.data, "changed values were refolded")

        // Loading a state dict replaces values too.
        try model.loadStateDict(fixture.stateDict(prefix: "state/"))
        XCTAssertEqual(withNoGrad { model(input) }.data, before, "reloaded weights were refolded")
    }
}
