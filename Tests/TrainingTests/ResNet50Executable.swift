import Foundation
import XCTest

/// The built `resnet50` executable, as the command-line tests run it.
enum ResNet50Executable {
    /// The executable sits next to the test bundle in the build folder (`swift build --build-tests` builds both).
    /// Missing, it is a failure, not a skip: a suite that passes without ever running the command proves nothing
    /// about it.
    static func url() throws -> URL {
        let url = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("resnet50")
        guard FileManager.default.isExecutableFile(atPath: url.path) else {
            XCTFail("\(url.path) is not built; build it first: swift build -c release --product resnet50 "
                + "(swift build -c release --build-tests and make test build it too)")
            throw CocoaError(.fileNoSuchFile)
        }
        return url
    }

    /// A process of `resnet50 arguments…`, with `environment` added to this process's, not yet started.
    static func process(_ arguments: [String], environment: [String: String] = [:]) throws -> (Process, stdout: Pipe, stderr: Pipe) {
        let process = Process()
        process.executableURL = try url()
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        return (process, out, err)
    }

    /// Runs `resnet50 arguments…` to its end.
    static func run(_ arguments: [String], environment: [String: String] = [:]) throws
        -> (status: Int32, stdout: String, stderr: String)
    {
        let (process, out, err) = try process(arguments, environment: environment)
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile(), stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
    }
}
