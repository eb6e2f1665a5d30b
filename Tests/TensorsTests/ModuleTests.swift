// ModuleTests.swift — state-dict keys and shapes against torchvision's, strict/non-strict loading,
// train/eval, freezing and initialisation.
import Foundation
import Models
import NN
import Tensors
import WeightFiles
import XCTest

final class ModuleTests: XCTestCase {
    /// Every torchvision ResNet's state_dict keys, in order, with shapes (Fixtures/torchvision_resnet_keys.txt).
    func testResNetKeysMatchTorchvision() throws {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "torchvision_resnet_keys", withExtension: "txt", subdirectory: "Fixtures"))
        var expected: [Int: [String]] = [:]
        for line in try String(contentsOf: url, encoding: .utf8).split(separator: "\n") {
            let parts = line.split(separator: " ")
            expected[Int(parts[0])!, default: []].append("\(parts[1]) \(parts.count > 2 ? String(parts[2]) : "")")
        }
        for depth in [18, 34, 50, 101, 152] {
            let model = ResNet(depth: depth)
            let ours = model.stateDict().map { "\($0.key) \($0.tensor.shape.map(String.init).joined(separator: ","))" }
            XCTAssertEqual(ours, expected[depth], "resnet\(depth) state_dict keys/shapes differ from torchvision's")
        }
    }

    func testFusionModelKeys() {
        let model = FusionModel(metaDim: 84, backbone: ResNet(config: .narrow(numClasses: nil)))
        let keys = model.stateDict().keys
        XCTAssertEqual(keys.first, "backbone.conv1.weight")
        XCTAssertTrue(keys.contains("backbone.layer1.0.downsample.1.num_batches_tracked"))
        XCTAssertFalse(keys.contains { $0.hasPrefix("backbone.fc") })
        XCTAssertEqual(Array(keys.suffix(8)), ["meta_net.0.weight", "meta_net.0.bias", "meta_net.3.weight", "meta_net.3.bias",
                                               "head.0.weight", "head.0.bias", "head.3.weight", "head.3.bias"])
        XCTAssertEqual(model.stateDict()["meta_net.0.weight"]?.shape, [128, 84])
        XCTAssertEqual(model.stateDict()["head.0.weight"]?.shape, [256, 64 + 64])
        XCTAssertEqual(FusionModel(metaDim: 84).stateDict()["head.0.weight"]?.shape, [256, 2048 + 64])
    }

    func testStrictAndNonStrictLoading() throws {
        let source = ResNet(config: .narrow(numClasses: 10), generator: RandomGenerator(seed: 1))
        let target = ResNet(config: .narrow(numClasses: 10), generator: RandomGenerator(seed: 2))
        XCTAssertNotEqual(source.conv1.weight.data, target.conv1.weight.data)
        try target.loadStateDict(source.stateDict())
        XCTAssertEqual(source.stateDict(), target.stateDict())

        var broken = source.stateDict()
        broken["fc.bias"] = nil
        broken["fc.extra"] = WeightTensor(shape: [1], floats: [0])
        XCTAssertThrowsError(try target.loadStateDict(broken)) { error in
            let report = (error as! StateDictError).report
            XCTAssertEqual(report.missingKeys, ["fc.bias"])
            XCTAssertEqual(report.unexpectedKeys, ["fc.extra"])
            XCTAssertTrue("\(error)".contains("fc.bias") && "\(error)".contains("fc.extra"))
        }
        let report = try target.loadStateDict(broken, strict: false)
        XCTAssertEqual(report.missingKeys, ["fc.bias"])

        var wrongShape = source.stateDict()
        wrongShape["conv1.weight"] = WeightTensor(shape: [8, 3, 3, 3], floats: [Float](repeating: 0, count: 216))
        XCTAssertThrowsError(try target.loadStateDict(wrongShape, strict: false)) { error in
            XCTAssertEqual((error as! StateDictError).report.shapeMismatches.map(\.key), ["conv1.weight"])
        }
        // A rejected load changes nothing.
        XCTAssertEqual(target.conv1.weight.data, source.conv1.weight.data)

        // A torchvision classifier's file into the fusion backbone: strip nothing, drop fc.
        let fusion = FusionModel(metaDim: 12, backbone: ResNet(config: .narrow(numClasses: nil)))
        let backboneReport = try fusion.backbone.loadStateDict(source.stateDict(), strict: false)
        XCTAssertEqual(backboneReport.unexpectedKeys, ["fc.weight", "fc.bias"])
        XCTAssertEqual(fusion.backbone.conv1.weight.data, source.conv1.weight.data)
        XCTAssertEqual(fusion.stateDict().strippingPrefix("backbone.").count, source.stateDict().count - 2)
    }

    /// A frozen convolution keeps its weights packed ahead; any change to them (written in place, or a new array)
    /// is seen, and the output is always the plain convolution's. Likewise a folded conv + batch norm in eval mode.
    func testWeightsPackedAheadFollowEveryChange() {
        let generator = RandomGenerator(seed: 3)
        // Winograd F(4x4, 3x3), Winograd F(2x2, 3x3), grouped pointwise, implicit GEMM (planes below 7×7)
        for (kernel, size) in [(3, 14), (3, 9), (1, 7), (3, 6)] {
            let conv = Conv2d(16, 24, kernelSize: kernel, padding: kernel / 2, generator: generator)
            let x = Tensor.randn([2, 16, size, size], generator: generator)
            func plain() -> [Float] { conv2d(x, weight: conv.weight, bias: conv.bias, padding: (kernel / 2, kernel / 2)).data }
            conv.weight.requiresGrad = false
            XCTAssertEqual(conv(x).data, plain())
            XCTAssertEqual(conv(x).data, plain(), "second call, packed ahead")
            conv.weight.data[5] += 1  // in place
            XCTAssertEqual(conv(x).data, plain(), "after an in-place write")
            conv.weight.data = conv.weight.data.map { $0 * 0.5 }  // a new array
            XCTAssertEqual(conv(x).data, plain(), "after new weights")
            // Another kernel table and back: each call is that table's own convolution.
            Kernels.backend = .reference
            XCTAssertEqual(conv(x).data, plain(), "reference table")
            Kernels.backend = .optimized
            XCTAssertEqual(conv(x).data, plain(), "optimized table again")
            conv.weight.requiresGrad = true
            XCTAssertEqual(conv(x).data, plain(), "trainable again")
        }
    }

    func testTrainEvalFreeze() {
        let model = FusionModel(metaDim: 12, backbone: ResNet(config: .narrow(numClasses: nil)))
        let all = model.parameters().count
        XCTAssertEqual(model.trainableParameters().count, all)
        model.backbone.freeze()
        XCTAssertEqual(model.trainableParameters().count, 8, "meta_net.0/3 and head.0/3 weights and biases")
        XCTAssertTrue(model.namedBuffers().allSatisfy { !$0.1.requiresGrad })

        model.eval()
        XCTAssertTrue(model.namedModules().allSatisfy { !$0.1.training })
        model.train()
        XCTAssertTrue(model.backbone.layer2.training)

        // Frozen backbone in training mode (the seed's behaviour): no backbone gradients, running stats still move.
        let g = RandomGenerator(seed: 4)
        let x = Tensor.randn([2, 3, 32, 32], generator: g), meta = Tensor.randn([2, 12], generator: g)
        let before = model.backbone.bn1.runningMean.data
        crossEntropy(model(x, meta), labels: [0, 1]).backward()
        XCTAssertTrue(model.backbone.parameters().allSatisfy { $0.grad == nil })
        XCTAssertTrue(model.head.parameters().allSatisfy { $0.grad != nil })
        XCTAssertNotEqual(model.backbone.bn1.runningMean.data, before)
        XCTAssertEqual(model.backbone.bn1.numBatchesTracked.item, 1)
        XCTAssertEqual(Adam(parameters: model.parameters()).parameters.count, 8)
    }

    func testDefaultInitialisation() {
        let g = RandomGenerator(seed: 9)
        let linear = Linear(400, 300, generator: g)
        let bound = 1 / Float(400).squareRoot()
        XCTAssertTrue(linear.weight.data.allSatisfy { abs($0) <= bound })
        XCTAssertGreaterThan(linear.weight.data.map(abs).max()!, 0.95 * bound, "uniform over the whole ±1/√fan_in range")
        XCTAssertTrue(linear.bias!.data.allSatisfy { abs($0) <= bound })
        let conv = Conv2d(16, 32, kernelSize: 3, generator: g)
        XCTAssertTrue(conv.weight.data.allSatisfy { abs($0) <= 1 / Float(16 * 9).squareRoot() })

        // torchvision's convs: normal with std √(2/fan_out).
        let model = ResNet(config: .narrow(numClasses: 10), generator: g)
        let w = model.layer1[0] is Bottleneck ? (model.layer1[0] as! Bottleneck).conv2.weight : model.conv1.weight
        let n = Double(w.count)
        let mean = w.data.reduce(0.0) { $0 + Double($1) } / n
        let std = (w.data.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / n).squareRoot()
        XCTAssertEqual(std, (2.0 / Double(4 * 9)).squareRoot(), accuracy: 0.1 * (2.0 / 36).squareRoot())
        XCTAssertEqual(model.bn1.weight.data, [Float](repeating: 1, count: 8))
        XCTAssertEqual(model.bn1.runningVar.data, [Float](repeating: 1, count: 8))

        // Same seed, same model.
        let a = ResNet(config: .narrow(), generator: RandomGenerator(seed: 11)).stateDict()
        let b = ResNet(config: .narrow(), generator: RandomGenerator(seed: 11)).stateDict()
        XCTAssertEqual(a, b)
    }
}

final class FusionLoadingTests: XCTestCase {
    /// A torchvision classifier's state dict loads into the backbone, fc ignored; a missing backbone key is an error.
    func testLoadBackboneFromTorchvisionLayout() throws {
        let torchvision = ResNet(config: .narrow(numClasses: 10), generator: RandomGenerator(seed: 21))
        let fusion = FusionModel(metaDim: 12, backbone: ResNet(config: .narrow(numClasses: nil), generator: RandomGenerator(seed: 22)))
        let headBefore = fusion.head.stateDict()
        let report = try fusion.loadBackbone(torchvision.stateDict())
        XCTAssertEqual(report.unexpectedKeys, ["fc.weight", "fc.bias"])
        XCTAssertEqual(fusion.backbone.stateDict(), torchvision.stateDict().filtered { !$0.hasPrefix("fc.") })
        XCTAssertEqual(fusion.head.stateDict(), headBefore)

        // The same from a saved fusion model's backbone slice.
        let other = FusionModel(metaDim: 12, backbone: ResNet(config: .narrow(numClasses: nil), generator: RandomGenerator(seed: 23)))
        try other.loadBackbone(fusion.stateDict())
        XCTAssertEqual(other.backbone.stateDict(), fusion.backbone.stateDict())

        var incomplete = torchvision.stateDict()
        incomplete["layer4.0.bn3.running_var"] = nil
        XCTAssertThrowsError(try fusion.loadBackbone(incomplete)) { error in
            XCTAssertEqual((error as! StateDictError).report.missingKeys, ["layer4.0.bn3.running_var"])
        }
    }

    /// One optimizer step on the fusion model with a frozen backbone lowers the loss on a fixed batch
    /// (the training loop's path end to end: forward, loss, backward, Adam on trainable parameters).
    func testFrozenBackboneTrainingStepLowersLoss() {
        let g = RandomGenerator(seed: 31)
        let model = FusionModel(metaDim: 12, backbone: ResNet(config: .narrow(numClasses: nil), generator: g), generator: g,
                                dropoutGenerator: RandomGenerator(seed: 32))
        model.backbone.freeze()
        model.train()
        model.backbone.eval()
        let x = Tensor.randn([6, 3, 32, 32], generator: g), meta = Tensor.randn([6, 12], generator: g)
        let labels = [0, 1, 1, 0, 1, 0]
        let adam = Adam(parameters: model.trainableParameters(), learningRate: 1e-3)
        func evalLoss() -> Float {
            model.eval()
            defer { model.train(); model.backbone.eval() }
            return withNoGrad { crossEntropy(model(x, meta), labels: labels).item }
        }
        let before = evalLoss()
        for _ in 0..<20 {
            adam.zeroGrad()
            crossEntropy(model(x, meta), labels: labels).backward()
            adam.step()
        }
        XCTAssertLessThan(evalLoss(), before * 0.8)
    }
}

/// The input standardisation of the frozen mode: its statistics, its gradient, and its fold into the next Linear.
final class StandardizeTests: XCTestCase {
    /// Hand-checkable: columns (1, 3) → mean 2, std 1; (5, 5) → constant, only centred; (0, 4) → mean 2, std 2.
    func testStatisticsByHand() {
        let map = Standardize(width: 3)
        map.setStatistics(rows: [1, 5, 0, 3, 5, 4], count: 2)
        XCTAssertEqual(map.mean.data, [2, 5, 2])
        XCTAssertEqual(map.std.data, [1, 1, 2])
        let y = map(Tensor(shape: [1, 3], data: [3, 7, 8]))
        XCTAssertEqual(y.data, [1, 2, 3])
    }

    func testGradientIsScaledByInverseStd() {
        let map = Standardize(width: 2)
        map.setStatistics(rows: [0, 10, 4, 30], count: 2)  // std 2 and 10
        let x = Tensor(shape: [2, 2], data: [1, 2, 3, 4], requiresGrad: true)
        let y = map(x)
        y.backward(gradient: [1, 1, 2, 5])
        XCTAssertEqual(x.grad!, [0.5, 0.1, 1, 0.5], "dx = dy / std")
    }

    /// Linear(standardise(x)) equals the folded Linear(x), on a concatenation's column range as `head.0` reads it.
    func testFoldIntoLinearKeepsOutputs() {
        let rng = RandomGenerator(seed: 11)
        let width = 6, extra = 3, outputs = 4, rows = 5
        let map = Standardize(width: width)
        let sample = (0 ..< 20 * width).map { i in Float(i % width) * 3 + 10 * rng.normal() + Float(i % width == 2 ? 50 : 0) }
        map.setStatistics(rows: sample, count: 20)
        let layer = Linear(width + extra, outputs, generator: rng)
        let x = Tensor.randn([rows, width], generator: rng), tail = Tensor.randn([rows, extra], generator: rng)
        let expected = withNoGrad { layer(concat([map(x), tail], axis: 1)) }
        let folded = map.fold(weight: WeightTensor(shape: layer.weight.shape, floats: layer.weight.data),
                              bias: WeightTensor(shape: [outputs], floats: layer.bias!.data), firstColumn: 0)
        let plain = Linear(width + extra, outputs, generator: rng)
        plain.weight.data = folded.weight.floats
        plain.bias!.data = folded.bias.floats
        let got = withNoGrad { plain(concat([x, tail], axis: 1)) }
        XCTAssertNotEqual(folded.weight.floats, layer.weight.data)
        for (u, v) in zip(expected.data, got.data) { XCTAssertEqual(u, v, accuracy: 1e-5 * max(1, abs(u))) }
    }

    /// The exported state dict has exactly the seed's keys and the same logits as the model with its standardisation.
    func testFusionModelExportFoldsStandardization() throws {
        let rng = RandomGenerator(seed: 3)
        let model = FusionModel(metaDim: 12, backbone: ResNet(config: .narrow(numClasses: nil), generator: rng), generator: rng)
        let plainKeys = model.stateDict().keys
        model.standardizeInputs()
        let width = model.backbone.featureCount
        model.featureStandardization!.setStatistics(rows: (0 ..< 8 * width).map { _ in 4 + 3 * rng.normal() }, count: 8)
        model.metaStandardization!.setStatistics(rows: (0 ..< 8 * 12).map { _ in 20 * rng.nextFloat() }, count: 8)
        XCTAssertTrue(model.stateDict().keys.contains("feature_standardization.mean"), "a resume checkpoint keeps the statistics")
        let exported = model.exportedStateDict()
        XCTAssertEqual(exported.keys, plainKeys)
        let reloaded = FusionModel(metaDim: 12, backbone: ResNet(config: .narrow(numClasses: nil), generator: rng), generator: rng)
        try reloaded.loadStateDict(exported, strict: true)
        model.eval(); reloaded.eval()
        let features = Tensor.randn([3, width], generator: rng), meta = Tensor.randn([3, 12], generator: rng)
        let a = withNoGrad { model.classify(features: features, meta: meta) }
        let b = withNoGrad { reloaded.classify(features: features, meta: meta) }
        for (u, v) in zip(a.data, b.data) { XCTAssertEqual(u, v, accuracy: 1e-5 * max(1, abs(u))) }
    }
}
