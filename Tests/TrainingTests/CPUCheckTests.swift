import Foundation
import XCTest

/// The `resnet50` executable on a CPU without AVX2 and FMA, simulated with RESNETFUSION_SIMULATE_CPU=baseline:
/// one line on stderr and status 1, before any subcommand runs.
final class CPUCheckTests: XCTestCase {
    /// The executable sits next to the test bundle in the build folder (`swift build --build-tests` builds both).
    private func executable() throws -> URL {
        let url = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("resnet50")
        guard FileManager.default.isExecutableFile(atPath: url.path) else {
            XCTFail("\(url.path) not built; run swift build --build-tests first (make test does)")
            throw CocoaError(.fileNoSuchFile)
        }
        return url
    }

    private func run(_ arguments: [String], simulate: String?) throws -> (status: Int32, stdout: String, stderr: String) {
        let process = Process()
        process.executableURL = try executable()
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["RESNETFUSION_SIMULATE_CPU"] = simulate
        process.environment = environment
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile(), stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
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
