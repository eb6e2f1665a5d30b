import Foundation
import XCTest
import WeightFiles

/// The .pth reader against files torch 2.x wrote (Tests/TorchFixtureScripts/make_weight_fixtures.py).
/// Every comparison is exact (see `assertMatches`).
final class TorchCheckpointTests: XCTestCase {
    func testSmallStateDictMatchesTorchLoad() throws {
        // A bare OrderedDict in folder "small_state": float32/16, bfloat16, float64, int64/32, uint8,
        // int8, bool, a 0-d num_batches_tracked, a Parameter, views with offsets, strides and stride 0,
        // an empty tensor, and > 256 pickle memo entries (LONG_BINPUT/LONG_BINGET).
        let checkpoint = try TorchCheckpoint.load(from: Fixtures.url("small_state.pth"))
        let expected = Fixtures.tensors(of: "small_state.pth")
        XCTAssertFalse(checkpoint.isNested)
        XCTAssertTrue(checkpoint.extras.isEmpty)
        XCTAssertEqual(checkpoint.stateDict.keys, expected.map(\.key), "keys in file order")
        for tensor in expected { assertMatches(checkpoint.stateDict[tensor.key], tensor) }
    }

    func testViewsAreMaterializedInLogicalOrder() throws {
        let sd = try TorchCheckpoint.load(from: Fixtures.url("small_state.pth")).stateDict
        let base = try XCTUnwrap(sd["base"]).floats   // (3, 4)
        let transposed = try XCTUnwrap(sd["transposed"])
        XCTAssertEqual(transposed.shape, [4, 3])
        for i in 0..<4 { for j in 0..<3 { XCTAssertEqual(transposed.floats[i * 3 + j], base[j * 4 + i]) } }
        let slice = try XCTUnwrap(sd["slice"])   // base[1:, 1:3]
        XCTAssertEqual(slice.floats, [base[5], base[6], base[9], base[10]])
        XCTAssertEqual(try XCTUnwrap(sd["row"]).floats, Array(base[8..<12]))
        let expanded = try XCTUnwrap(sd["expanded"])   // (3, 1) expanded to (3, 4): stride 0
        for i in 0..<3 { XCTAssertEqual(Set(expanded.floats[(i * 4)..<(i * 4 + 4)]).count, 1) }
        XCTAssertEqual(try XCTUnwrap(sd["num_batches_tracked"]).integers, [7])
        XCTAssertEqual(try XCTUnwrap(sd["num_batches_tracked"]).shape, [])
        XCTAssertEqual(try XCTUnwrap(sd["empty"]).shape, [0, 3])
    }

    func testFolderNamesAndPickleProtocol4() throws {
        for name in ["archive_folder.pth", "renamed_folder.pth", "protocol4.pth"] {
            let sd = try TorchCheckpoint.load(from: Fixtures.url(name)).stateDict
            let expected = Fixtures.tensors(of: name)
            XCTAssertEqual(sd.keys, expected.map(\.key), name)
            for tensor in expected { assertMatches(sd[tensor.key], tensor) }
        }
    }

    func testBigEndianByteOrderIsSwapped() throws {
        let sd = try TorchCheckpoint.load(from: Fixtures.url("big_endian.pth")).stateDict
        let expected = Fixtures.tensors(of: "big_endian.pth")
        XCTAssertEqual(sd.keys, expected.map(\.key))
        for tensor in expected { assertMatches(sd[tensor.key], tensor) }
    }

    func testSeedCheckpointWithNestedStateDictAndExtras() throws {
        // {"state_dict": module.state_dict() (an OrderedDict carrying _metadata), "meta_dim": 84, …}
        let checkpoint = try TorchCheckpoint.load(from: Fixtures.url("checkpoint.pth"))
        XCTAssertTrue(checkpoint.isNested)
        let expected = Fixtures.tensors(of: "checkpoint.pth")
        XCTAssertEqual(checkpoint.stateDict.keys, expected.map(\.key))
        XCTAssertTrue(checkpoint.stateDict.keys.contains("backbone.1.num_batches_tracked"))
        for tensor in expected { assertMatches(checkpoint.stateDict[tensor.key], tensor) }

        XCTAssertEqual(checkpoint.extras.map(\.key),
                       ["meta_dim", "max_boxes", "lr", "tag", "big", "neg", "flag", "nothing", "history"])
        XCTAssertEqual(checkpoint[extra: "meta_dim"]?.intValue, 84)
        XCTAssertEqual(checkpoint[extra: "max_boxes"]?.intValue, 10)
        XCTAssertEqual(checkpoint[extra: "lr"], .float(0.001))
        XCTAssertEqual(checkpoint[extra: "tag"], .string("seed run"))
        XCTAssertEqual(checkpoint[extra: "big"], .int(1 << 40))     // LONG1
        XCTAssertEqual(checkpoint[extra: "neg"], .int(-5))          // BININT
        XCTAssertEqual(checkpoint[extra: "flag"], .bool(true))
        XCTAssertEqual(checkpoint[extra: "nothing"], CheckpointValue.none)
        XCTAssertEqual(checkpoint[extra: "history"], .other("list"))

        // The convenience entry point returns the nested state dict.
        XCTAssertEqual(try StateDict.load(from: Fixtures.url("checkpoint.pth")), checkpoint.stateDict)
    }

    func testInMemoryLoadNamesTheGivenName() throws {
        let data = try Data(contentsOf: Fixtures.url("small_state.pth"))
        XCTAssertEqual(try TorchCheckpoint.load(data: data, name: "memory.pth").stateDict.count,
                       Fixtures.tensors(of: "small_state.pth").count)
        XCTAssertThrowsError(try TorchCheckpoint.load(data: data.prefix(100), name: "memory.pth")) {
            XCTAssertTrue("\($0)".hasPrefix("memory.pth: "), "\($0)")
        }
    }

    func testPrefixesAndStrictComparison() throws {
        let sd = try TorchCheckpoint.load(from: Fixtures.url("checkpoint.pth")).stateDict
        let backbone = sd.strippingPrefix("backbone.")
        XCTAssertEqual(backbone.keys, sd.keys.filter { $0.hasPrefix("backbone.") }.map { String($0.dropFirst(9)) })
        XCTAssertEqual(backbone.addingPrefix("backbone."), sd.filtered { $0.hasPrefix("backbone.") })

        var expected = sd.map { (key: $0.key, shape: $0.tensor.shape) }
        XCTAssertTrue(sd.mismatches(against: expected).isEmpty)
        let dropped = expected.removeLast()
        expected.append((key: "head.9.weight", shape: [1]))
        expected[0].shape = [9, 9]
        let report = sd.mismatches(against: expected)
        XCTAssertEqual(report.missingKeys, ["head.9.weight"])
        XCTAssertEqual(report.unexpectedKeys, [dropped.key])
        XCTAssertEqual(report.shapeMismatches.map(\.key), [sd.keys[0]])
        XCTAssertEqual(report.description,
                       "missing keys: head.9.weight; unexpected keys: \(dropped.key); shape mismatches: \(sd.keys[0]) expects [9, 9] but the file has \(sd[sd.keys[0]]!.shape)")
    }

    func testStateDictKeepsInsertionOrderAndReplacesInPlace() {
        var sd = StateDict()
        sd["b"] = WeightTensor(shape: [1], floats: [1])
        sd["a"] = WeightTensor(shape: [1], floats: [2])
        sd["b"] = WeightTensor(shape: [2], floats: [3, 4])
        XCTAssertEqual(sd.keys, ["b", "a"])
        XCTAssertEqual(sd["b"]?.floats, [3, 4])
        sd["b"] = nil
        XCTAssertEqual(sd.keys, ["a"])
        XCTAssertEqual(sd.map(\.key), ["a"])
    }
}
