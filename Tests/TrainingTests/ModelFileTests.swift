import DataPipeline
import Foundation
import Models
import NN
import Tensors
import Training
import WeightFiles
import XCTest

/// `TrainedModel.load(data:name:)`, the in-memory entry point (the `modelfile` fuzz target's), and inputs the
/// fuzz target found.
final class ModelFileTests: XCTestCase {
    private let narrow = "bottleneck layers=1,1,1,1 stem=8 widths=8,8,8,8"

    /// A valid small model file (max_boxes 2) with `metadata` merged over its own.
    private func modelFile(_ metadata: [String: String?] = [:]) throws -> Data {
        guard let metaDim = BoxEncoding.metaDim(maxBoxes: 2) else { throw XCTSkip("metaDim") }
        let config = ResNetConfig(block: .bottleneck, layers: [1, 1, 1, 1], stemWidth: 8, widths: [8, 8, 8, 8], numClasses: nil)
        let model = FusionModel(metaDim: metaDim, backbone: ResNet(config: config, generator: RandomGenerator(seed: 1)),
                                generator: RandomGenerator(seed: 2))
        var merged = ["meta_dim": String(metaDim), "max_boxes": "2", "backbone": narrow, "threshold": "0.5"]
        for (key, value) in metadata { merged[key] = value }
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("rnf-modelfile-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try SafetensorsFile.save(model.stateDict(), metadata: merged, to: url)
        return try Data(contentsOf: url)
    }

    /// The error's line as the command prints it: the model file named by its flag.
    private func loadError(_ data: Data) -> String {
        do {
            _ = try TrainedModel.load(data: data, name: "m.safetensors")
            return "loaded"
        } catch let error as NamesOptions {
            return error.message { $0 == .modelPath ? "--model" : "\($0)" }
        } catch {
            return "\(error)"
        }
    }

    func testLoadFromDataReadsAValidFileAndNamesItInErrors() throws {
        let trained = try TrainedModel.load(data: try modelFile(), name: "m.safetensors")
        XCTAssertEqual(trained.maxBoxes, 2)
        XCTAssertEqual(trained.model.metaDim, 20)
        XCTAssertEqual(trained.threshold, 0.5)

        let error = loadError(try modelFile(["threshold": "1.5"]))
        XCTAssertEqual(error, "--model m.safetensors: threshold '1.5' is not a probability")
        XCTAssertTrue(loadError(Data("not a model".utf8)).hasPrefix("--model m.safetensors: "))
    }

    /// Fuzz finding (modelfile): ~120 bytes of metadata naming a wide backbone, or none (ResNet-50), over a small
    /// model's tensors made the loader build and initialise the whole network (4.5 s and ~0.5 GB for the one below)
    /// before the strict state-dict load refused it. The file must now hold at least the backbone's convolution
    /// weights before anything is built.
    func testBackboneLargerThanTheFileIsRefusedBeforeItIsBuilt() throws {
        let wide = "bottleneck layers=3,4,6,3 stem=64 widths=128,256,512,1024"
        let start = Date()
        let error = loadError(try modelFile(["backbone": wide]))
        XCTAssertTrue(error.hasPrefix("--model m.safetensors: backbone '\(wide)' needs "), error)
        XCTAssertTrue(error.contains("convolution weights but the file holds"), error)
        XCTAssertFalse(error.contains("\n"))

        let resNet50 = loadError(try modelFile(["backbone": nil]))
        XCTAssertTrue(resNet50.hasPrefix("--model m.safetensors: backbone 'bottleneck layers=3,4,6,3 stem=64 "
            + "widths=64,128,256,512' needs "), resNet50)
        // Building either network takes seconds; refusing them is arithmetic.
        XCTAssertLessThan(Date().timeIntervalSince(start), 5)

        // A backbone the file does hold but with other shapes still reaches the strict load and its message.
        let basic = loadError(try modelFile(["backbone": "basic layers=1,1,1,1 stem=8 widths=8,8,8,8"]))
        XCTAssertTrue(basic.hasPrefix("--model m.safetensors: state dict does not match the model"), basic)
    }

    /// Fuzz findings (modelfile): a carriage return in the backbone or threshold text, or a line break in a tensor name,
    /// reached the message verbatim, making it several lines (the harness's contract, as for the weight-file readers:
    /// one line starting with `--model NAME: `). Text from the file is now escaped and cut.
    func testFileTextInMessagesStaysOnOneLine() throws {
        let backbone = loadError(try modelFile(["backbone": "bottleneck\rlayers=1,1,1,1 stem=8 widths=8,8,8,8"]))
        XCTAssertEqual(backbone, "--model m.safetensors: unknown backbone 'bottleneck\\rlayers=1,1,1,1 stem=8 widths=8,8,8,8'")
        let threshold = loadError(try modelFile(["threshold": "0.5\r\n"]))
        XCTAssertEqual(threshold, "--model m.safetensors: threshold '0.5\\r\\n' is not a probability")
        let long = loadError(try modelFile(["threshold": String(repeating: "9", count: 100_000)]))
        XCTAssertLessThan(long.count, 300, long)

        // A tensor named with a line break, in a file whose metadata is otherwise fine (stem and widths 1: 400 weights).
        var header = #"{"__metadata__":{"meta_dim":"20","max_boxes":"2","backbone":"bottleneck layers=1,1,1,1 stem=1 widths=1,1,1,1"},"#
            + #""backbone.x\ny":{"dtype":"F32","shape":[400],"data_offsets":[0,1600]}}"#
        while header.utf8.count % 8 != 0 { header += " " }
        var file = Data((0 ..< 8).map { UInt8(truncatingIfNeeded: header.utf8.count >> (8 * $0)) })
        file.append(Data(header.utf8))
        file.append(Data(count: 1600))
        let key = loadError(file)
        XCTAssertTrue(key.hasPrefix("--model m.safetensors: state dict does not match the model"), key)
        XCTAssertTrue(key.contains("backbone.x\\ny"), key)
        XCTAssertFalse(key.unicodeScalars.contains { $0 == "\n" || $0 == "\r" }, key)
    }

    /// The check's bound is a lower bound: every backbone the codec accepts holds at least that many values.
    func testParameterBoundNeverRefusesALoadableBackbone() throws {
        for text in [narrow, "basic layers=1,1,1,1 stem=8 widths=8,8,8,8", "basic layers=2,1,1,1 stem=8 widths=8,8,16,16",
                     "bottleneck layers=2,1,1,1 stem=8 widths=4,8,8,16", "basic layers=1,2,1,3 stem=3 widths=1,5,2,7"] {
            let backbone = text.hasPrefix("basic")
                ? ResNetConfig(block: .basic, layers: ints(text, "layers"), stemWidth: ints(text, "stem")[0], widths: ints(text, "widths"), numClasses: nil)
                : ResNetConfig(block: .bottleneck, layers: ints(text, "layers"), stemWidth: ints(text, "stem")[0], widths: ints(text, "widths"), numClasses: nil)
            let model = FusionModel(metaDim: 20, backbone: ResNet(config: backbone, generator: RandomGenerator(seed: 1)))
            let url = FileManager.default.temporaryDirectory.appendingPathComponent("rnf-modelfile-\(UUID().uuidString).safetensors")
            defer { try? FileManager.default.removeItem(at: url) }
            try SafetensorsFile.save(model.stateDict(), metadata: ["meta_dim": "20", "max_boxes": "2", "backbone": text], to: url)
            XCTAssertNoThrow(try TrainedModel.load(data: try Data(contentsOf: url), name: "m.safetensors"), text)
        }
    }

    private func ints(_ text: String, _ name: String) -> [Int] {
        let part = text.split(separator: " ").first { $0.hasPrefix(name + "=") }!
        return part.dropFirst(name.count + 1).split(separator: ",").map { Int($0)! }
    }
}
