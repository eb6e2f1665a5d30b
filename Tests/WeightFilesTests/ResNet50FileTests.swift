import Foundation
import XCTest
import WeightFiles

/// A torchvision resnet50 state dict of random weights (~100 MB, never committed). Runs only when
/// RESNET50_PTH points at a file written by
/// `python Tests/TorchFixtureScripts/make_weight_fixtures.py --resnet50 PATH`, which also writes
/// PATH.shapes.json (keys, shapes, dtypes and a few values as torch saw them) and PATH.safetensors (the same
/// weights through the safetensors package).
///
/// An optional extra: what only this file shows is our reader on full-size archives written by torch.save and by
/// the safetensors package themselves. The full-size checks that need no such file run in every test run in
/// TensorsTests/SeededResNet50ParityTests: the same 320 keys, shapes and dtypes drawn from a seed, written by our
/// .pth and safetensors writers and read back exactly, then loaded into the model and compared with torch.
final class ResNet50FileTests: XCTestCase {
    func testTorchvisionResNet50Loads() throws {
        guard let path = ProcessInfo.processInfo.environment["RESNET50_PTH"] else {
            throw XCTSkip("set RESNET50_PTH to a torchvision resnet50 .pth to run")
        }
        let url = URL(fileURLWithPath: path)
        let reference = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path + ".shapes.json")))
            as! [String: Any]
        let keys = reference["keys"] as! [[Any]]

        let start = Date()
        let checkpoint = try TorchCheckpoint.load(from: url)
        let seconds = Date().timeIntervalSince(start)
        let sd = checkpoint.stateDict
        XCTAssertEqual(sd.count, 320)
        XCTAssertEqual(sd.keys, keys.map { $0[0] as! String })
        for entry in keys {
            let key = entry[0] as! String
            XCTAssertEqual(sd[key]?.shape, (entry[1] as! [NSNumber]).map(\.intValue), key)
            XCTAssertEqual(sd[key].map { torchName($0.dtype) }, entry[2] as? String, key)
        }
        for (key, values) in reference["first_values"] as! [String: [NSNumber]] {
            XCTAssertEqual(Array(try XCTUnwrap(sd[key]).floats.prefix(values.count)), values.map(\.floatValue), key)
        }
        let expected = keys.map { (key: $0[0] as! String, shape: ($0[1] as! [NSNumber]).map(\.intValue)) }
        XCTAssertTrue(sd.mismatches(against: expected).isEmpty)
        let parameters = sd.reduce(0) { $0 + $1.tensor.count }
        print("resnet50: \(sd.count) tensors, \(parameters) elements, loaded in \(String(format: "%.2f", seconds)) s")

        // Both writers on a full-size state dict, read back exactly. With WEIGHTFILES_EXPORT_DIR set the
        // files land there, for torch.load / safetensors to check by hand.
        let directory = try ProcessInfo.processInfo.environment["WEIGHTFILES_EXPORT_DIR"].map(URL.init(fileURLWithPath:))
            ?? temporaryDirectory(self)
        let safetensors = directory.appendingPathComponent("resnet50-swift.safetensors")
        let pth = directory.appendingPathComponent("resnet50-swift.pth")
        try SafetensorsFile.save(sd, to: safetensors)
        try TorchCheckpoint(stateDict: sd.addingPrefix("backbone."), extras: [("meta_dim", .int(84))], isNested: true)
            .save(to: pth)
        XCTAssertEqual(try SafetensorsFile.load(from: safetensors).stateDict, sd)
        XCTAssertEqual(try StateDict.load(from: pth).strippingPrefix("backbone."), sd)

        // The same weights written by safetensors.torch.save_file (no metadata): torchvision's ResNet-50
        // header is 0x7080 bytes, so the file starts with 0x80 and was once taken for a legacy pickle.
        let packageFile = URL(fileURLWithPath: path + ".safetensors")
        if FileManager.default.fileExists(atPath: packageFile.path) {
            let fromPackage = try StateDict.load(from: packageFile)
            XCTAssertEqual(try Data(contentsOf: packageFile).first, 0x80)
            XCTAssertEqual(Set(fromPackage.keys), Set(sd.keys))
            for (key, tensor) in sd { XCTAssertEqual(fromPackage[key], tensor, key) }
            XCTAssertEqual(try SafetensorsFile.load(from: packageFile).stateDict, fromPackage)
        }
    }
}
