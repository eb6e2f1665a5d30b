import Foundation
import SeededRandom
import XCTest
import WeightFiles

/// Each malformed fixture gives one line naming the file and the problem; none crashes the process.
final class MalformedFileTests: XCTestCase {
    private func bad(_ name: String) -> URL { Fixtures.url("malformed/" + name) }

    func testTruncatedZip() {
        let url = bad("truncated.pth")
        assertWeightFileError(try TorchCheckpoint.load(from: url), file: url, kind: .corrupt, "truncated")
        assertWeightFileError(try StateDict.load(from: url), file: url, kind: .corrupt, "truncated")
    }

    func testLegacyNonZipFormat() {
        let url = bad("not_a_zip.pth")
        assertWeightFileError(try TorchCheckpoint.load(from: url), file: url, kind: .unsupported, "legacy")
    }

    func testUnknownGlobalIsRefusedNotCalled() {
        let url = bad("os_system.pth")
        assertWeightFileError(try TorchCheckpoint.load(from: url), file: url, kind: .disallowed,
                              "global 'os.system' is not allowed")
        let torchURL = bad("torch_load_global.pth")
        assertWeightFileError(try TorchCheckpoint.load(from: torchURL), file: torchURL, kind: .disallowed,
                              "global 'torch.serialization.load' is not allowed")
    }

    func testUnknownAndDisallowedOpcodes() {
        let url = bad("unknown_opcode.pth")
        assertWeightFileError(try TorchCheckpoint.load(from: url), file: url, kind: .disallowed,
                              "unknown pickle opcode 0xff at offset 5")
        let inst = bad("inst_opcode.pth")
        assertWeightFileError(try TorchCheckpoint.load(from: inst), file: inst, kind: .disallowed,
                              "opcode INST (0x69) at offset 3 is not allowed")
    }

    func testBrokenPickleStructure() {
        let memo = bad("bad_memo.pth")
        assertWeightFileError(try TorchCheckpoint.load(from: memo), file: memo, kind: .corrupt, "memo index 7")
        let stop = bad("no_stop.pth")
        assertWeightFileError(try TorchCheckpoint.load(from: stop), file: stop, kind: .corrupt, "without a STOP")
        let pickle = bad("no_data_pkl.pth")
        assertWeightFileError(try TorchCheckpoint.load(from: pickle), file: pickle, kind: .corrupt, "no data.pkl")
    }

    func testStorageShorterThanTheTensor() {
        // The record holds 4 floats; the persistent id and the tensor both claim 10.
        let short = bad("short_storage.pth")
        assertWeightFileError(try TorchCheckpoint.load(from: short), file: short, kind: .tensor,
                              "tensor 'w'", "has 16 bytes", "storage shorter than the tensor")
        // The persistent id says 4 elements (matching the record); the tensor's extent needs 10.
        let past = bad("tensor_past_storage.pth")
        assertWeightFileError(try TorchCheckpoint.load(from: past), file: past, kind: .tensor,
                              "tensor 'w'", "needs 10 elements", "holds 4", "storage shorter than the tensor")
        let missing = bad("missing_storage.pth")
        assertWeightFileError(try TorchCheckpoint.load(from: missing), file: missing, kind: .corrupt,
                              "storage record 'data/0' is missing")
    }

    func testViewsExpandingFarPastTheFileAreRefused() {
        // torch loads this (a stride-0 view shares its one-float storage); copying it would take 40 GB.
        let url = bad("expand_bomb.pth")
        assertWeightFileError(try TorchCheckpoint.load(from: url), file: url, kind: .tensor,
                              "tensor 'w' would expand to 10000000000 elements", "memory budget")
    }

    func testSafetensorsHeaderLengthPastTheEnd() {
        let url = bad("header_past_end.safetensors")
        assertWeightFileError(try SafetensorsFile.load(from: url), file: url, kind: .corrupt,
                              "header length 10000 runs past the end of the file (89 bytes)")
        let tiny = bad("tiny.safetensors")
        assertWeightFileError(try SafetensorsFile.load(from: tiny), file: tiny, kind: .corrupt, "too short")
    }

    func testSafetensorsWrongShapesAndOffsets() {
        let shape = bad("wrong_shape.safetensors")
        assertWeightFileError(try SafetensorsFile.load(from: shape), file: shape, kind: .tensor,
                              "tensor 'a' has shape [2, 2] of F32 (16 bytes) but data_offsets [0, 24] span 24 bytes")
        let past = bad("offsets_past_end.safetensors")
        assertWeightFileError(try SafetensorsFile.load(from: past), file: past, kind: .corrupt,
                              "tensor 'a' data_offsets [0, 24] run past the end of the 16-byte data section")
        let overlap = bad("overlapping.safetensors")
        assertWeightFileError(try SafetensorsFile.load(from: overlap), file: overlap, kind: .corrupt,
                              "tensor 'b'", "overlaps")
        let gap = bad("gap.safetensors")
        assertWeightFileError(try SafetensorsFile.load(from: gap), file: gap, kind: .corrupt, "tensor 'b'", "gap")
        let dtype = bad("unknown_dtype.safetensors")
        assertWeightFileError(try SafetensorsFile.load(from: dtype), file: dtype, kind: .unsupported,
                              "unsupported dtype 'Q7'")
        let json = bad("bad_json.safetensors")
        assertWeightFileError(try SafetensorsFile.load(from: json), file: json, kind: .corrupt, "not valid JSON")
    }

    func testMissingFile() {
        let url = bad("does_not_exist.pth")
        assertWeightFileError(try TorchCheckpoint.load(from: url), file: url, kind: .io, "cannot read")
    }

    /// Every prefix of valid files (a truncated download) fails cleanly: zip records, the CRC and the
    /// safetensors offsets catch it.
    func testEveryTruncationFailsCleanly() throws {
        let pth = try Data(contentsOf: Fixtures.url("checkpoint.pth"))
        for length in 0..<pth.count {
            XCTAssertThrowsError(try TorchCheckpoint.load(data: pth.prefix(length), name: "cut.pth"), "cut at \(length)") {
                XCTAssertTrue("\($0)".hasPrefix("cut.pth: "), "\($0)")
            }
        }
        let safetensors = try Data(contentsOf: Fixtures.url("reference.safetensors"))
        for length in 0..<safetensors.count {
            XCTAssertThrowsError(try SafetensorsFile.load(data: safetensors.prefix(length), name: "cut.safetensors")) {
                XCTAssertTrue("\($0)".hasPrefix("cut.safetensors: "), "\($0)")
            }
        }
    }

    /// Random damage anywhere in a .pth (zip headers, central directory, records) ends in a
    /// `WeightFileError` or a load, never a crash. Half the mutations hit the central directory and end
    /// record, where the CRC does not help. 3000 seeded mutations.
    func testMutatedZipNeverCrash() throws {
        let original = [UInt8](try Data(contentsOf: Fixtures.url("checkpoint.pth")))
        let centralStart = original.count - 22 - 46 * 12   // roughly: the directory of ~12 records
        var rng = SplitMix64(seed: 3)
        var failures = 0
        for round in 0..<3000 {
            var bytes = original
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                let at = round % 2 == 0 ? Int.random(in: max(0, centralStart)..<bytes.count, using: &rng)
                                        : Int.random(in: 0..<bytes.count, using: &rng)
                switch Int.random(in: 0..<3, using: &rng) {
                case 0: bytes[at] = UInt8.random(in: 0...255, using: &rng)
                case 1: bytes[at] = [0x00, 0xFF, 0x7F, 0x80].randomElement(using: &rng)!
                default: bytes[at] ^= 1 << UInt8.random(in: 0...7, using: &rng)
                }
            }
            do {
                _ = try TorchCheckpoint.load(data: Data(bytes), name: "mutated.pth")
            } catch let error as WeightFileError {
                XCTAssertTrue(error.description.hasPrefix("mutated.pth: "))
                failures += 1
            }
        }
        XCTAssertGreaterThan(failures, 1500, "most mutations are detected")
    }

    /// Random damage to a safetensors header (and its length field) ends in a `WeightFileError` or a
    /// load whose tensors still tile the data section. 3000 seeded mutations.
    func testMutatedSafetensorsNeverCrash() throws {
        let original = [UInt8](try Data(contentsOf: Fixtures.url("reference.safetensors")))
        let headerEnd = 8 + Int(original[0]) + Int(original[1]) << 8
        var rng = SplitMix64(seed: 11)
        var failures = 0
        for _ in 0..<3000 {
            var bytes = original
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                let at = Int.random(in: 0..<headerEnd, using: &rng)
                switch Int.random(in: 0..<3, using: &rng) {
                case 0: bytes[at] = UInt8.random(in: 0...255, using: &rng)
                case 1: bytes[at] = [UInt8]("0123456789[]{},:\"".utf8).randomElement(using: &rng)!
                default: bytes[at] ^= 1 << UInt8.random(in: 0...7, using: &rng)
                }
            }
            do {
                let file = try SafetensorsFile.load(data: Data(bytes), name: "mutated.safetensors")
                let total = file.stateDict.reduce(0) { $0 + $1.tensor.count * $1.tensor.dtype.byteCount }
                XCTAssertLessThanOrEqual(total, bytes.count)
            } catch let error as WeightFileError {
                XCTAssertTrue(error.description.hasPrefix("mutated.safetensors: "))
                XCTAssertFalse(error.description.contains("\n"))
                failures += 1
            }
        }
        XCTAssertGreaterThan(failures, 1000, "most mutations are detected")
    }

    /// Random damage to data.pkl (inside a zip with valid CRCs, so the unpickler sees it) must end in a
    /// `WeightFileError` or a successful load, never a crash or a hang. 3000 seeded mutations.
    func testMutatedPicklesNeverCrash() throws {
        let original = try Data(contentsOf: Fixtures.url("small_state.pth"))
        let entries = try ZipArchive.storedEntries(of: original, name: "small_state.pth")
        let pickleIndex = try XCTUnwrap(entries.firstIndex { $0.0.hasSuffix("/data.pkl") })
        // The rebuilt zip, unmutated, loads like the original (the harness itself works).
        XCTAssertEqual(try TorchCheckpoint.load(data: ZipWriter.archive(entries), name: "rebuilt.pth").stateDict,
                       try TorchCheckpoint.load(data: original, name: "original.pth").stateDict)
        var rng = SplitMix64(seed: 7)
        var failures = 0
        for _ in 0..<3000 {
            var pickle = [UInt8](entries[pickleIndex].1)
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let at = Int.random(in: 0..<pickle.count, using: &rng)
                switch Int.random(in: 0..<4, using: &rng) {
                case 0: pickle[at] = UInt8.random(in: 0...255, using: &rng)
                case 1: pickle.removeSubrange(at..<min(pickle.count, at + Int.random(in: 1...16, using: &rng)))
                case 2: pickle.insert(UInt8.random(in: 0...255, using: &rng), at: at)
                default: pickle[at] ^= 1 << UInt8.random(in: 0...7, using: &rng)
                }
                if pickle.isEmpty { pickle = [0x2E] }
            }
            var mutated = entries
            mutated[pickleIndex].1 = Data(pickle)
            do {
                _ = try TorchCheckpoint.load(data: ZipWriter.archive(mutated), name: "mutated.pth")
            } catch let error as WeightFileError {
                XCTAssertTrue(error.description.hasPrefix("mutated.pth: "))
                XCTAssertFalse(error.description.contains("\n"))
                failures += 1
            }
        }
        XCTAssertGreaterThan(failures, 2000, "most mutations are detected")
    }
}
