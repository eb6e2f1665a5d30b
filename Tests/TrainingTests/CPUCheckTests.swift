import Foundation
import XCTest

/// The `resnet50` executable on a CPU without AVX2 and FMA, simulated with RESNETFUSION_SIMULATE_CPU=baseline:
/// one line on stderr and status 1, before any subcommand runs.
final class CPUCheckTests: XCTestCase {
    private func run(_ arguments: [String], simulate: String?) throws -> (status: Int32, stdout: String, stderr: String) {
        try ResNet50Executable.run(arguments, environment: simulate.map { ["RESNETFUSION_SIMULATE_CPU": $0] } ?? [:])
    }

    func testOldCPUGetsOneLineAndStatusOne() throws {
        for arguments in [["--help"], ["train", "--csv-path", "/nonexistent.csv"]] {
            let result = try run(arguments, simulate: "baseline")
            XCTAssertEqual(result.status, 1, "\(arguments): \(result.stderr)")
            XCTAssertEqual(result.stderr,
                           "resnet50: this build needs a CPU with AVX2 and FMA (x86-64-v3); this CPU lacks: AVX2, FMA\n")
            XCTAssertEqual(result.stdout, "")
        }
    }

    func testThisCPUPassesTheCheck() throws {
        let result = try run(["--help"], simulate: nil)
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertFalse(result.stderr.contains("x86-64-v3"), result.stderr)
        XCTAssertTrue(result.stdout.contains("USAGE"), result.stdout)
    }
}
