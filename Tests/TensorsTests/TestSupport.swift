// TestSupport.swift — fixture reading (.rnfx, written by Tests/TorchFixtureScripts/make_model_fixtures.py),
// error measures and the finite-difference gradient check shared by the tests.
import Foundation
import NN
import Tensors
import WeightFiles
import XCTest

/// A fixture file: named float32 tensors (as weight-file tensors, so a prefix of them is a state dict).
struct Fixture {
    let entries: [String: WeightTensor]
    let order: [String]

    /// Reads `Fixtures/<name>.rnfx` from the test bundle.
    init(named name: String) throws {
        guard let url = Bundle.module.url(forResource: name, withExtension: "rnfx", subdirectory: "Fixtures") else {
            throw FixtureError("fixture \(name).rnfx is not in the test bundle")
        }
        try self.init(url: url)
    }

    init(url: URL) throws {
        let bytes = [UInt8](try Data(contentsOf: url, options: .alwaysMapped))
        var offset = 0
        func u32() throws -> Int {
            guard offset + 4 <= bytes.count else { throw FixtureError("\(url.lastPathComponent): truncated at \(offset)") }
            defer { offset += 4 }
            return Int(UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16 | UInt32(bytes[offset + 3]) << 24)
        }
        guard bytes.count >= 12, Array(bytes[0..<4]) == Array("RNFX".utf8) else { throw FixtureError("\(url.lastPathComponent): not an RNFX file") }
        offset = 4
        guard try u32() == 1 else { throw FixtureError("\(url.lastPathComponent): unknown version") }
        let count = try u32()
        var entries: [String: WeightTensor] = [:]
        var order: [String] = []
        for _ in 0..<count {
            let nameLength = try u32()
            guard offset + nameLength <= bytes.count else { throw FixtureError("\(url.lastPathComponent): truncated name") }
            let name = String(decoding: bytes[offset..<offset + nameLength], as: UTF8.self)
            offset += nameLength
            let rank = try u32()
            var shape: [Int] = []
            for _ in 0..<rank { shape.append(try u32()) }
            let n = shape.reduce(1, *)
            guard offset + 4 * n <= bytes.count else { throw FixtureError("\(url.lastPathComponent): truncated data of \(name)") }
            let values = [Float](unsafeUninitializedCapacity: n) { out, initialized in
                bytes.withUnsafeBytes { raw in
                    for i in 0..<n { out[i] = Float(bitPattern: raw.loadUnaligned(fromByteOffset: offset + 4 * i, as: UInt32.self).littleEndian) }
                }
                initialized = n
            }
            offset += 4 * n
            entries[name] = WeightTensor(shape: shape, floats: values)
            order.append(name)
        }
        self.entries = entries
        self.order = order
    }

    subscript(_ name: String) -> WeightTensor {
        guard let entry = entries[name] else { fatalError("fixture has no entry \(name)") }
        return entry
    }

    /// A tensor of the entry `name`.
    func tensor(_ name: String, requiresGrad: Bool = false) -> Tensor {
        let e = self[name]
        return Tensor(shape: e.shape, data: e.floats, requiresGrad: requiresGrad)
    }

    /// The entries under `prefix` (prefix removed) as a state dict, in file order.
    func stateDict(prefix: String) -> StateDict {
        StateDict(order.filter { $0.hasPrefix(prefix) }.map { (String($0.dropFirst(prefix.count)), entries[$0]!) })
    }

    /// Integer values of an entry (labels, settings).
    func ints(_ name: String) -> [Int] { self[name].floats.map { Int($0) } }
}

struct FixtureError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Max-norm relative error ‖a − b‖∞ / ‖b‖∞ (b the reference; 1e-12 guards an all-zero reference). A NaN or infinity
/// in one array where the other has something else is an infinite error (Swift's max(x, .nan) is x, so it would
/// otherwise pass unseen); equal non-finite values agree.
func relativeError(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count, "relativeError: \(a.count) vs \(b.count) values")
    var diff = 0.0, scale = 0.0
    for i in 0..<a.count {
        if !a[i].isFinite || !b[i].isFinite {
            if a[i] == b[i] || (a[i].isNaN && b[i].isNaN) { continue }
            return .infinity
        }
        diff = max(diff, abs(Double(a[i]) - Double(b[i])))
        scale = max(scale, abs(Double(b[i])))
    }
    return diff / max(scale, 1e-12)
}

/// Asserts `relativeError(actual, expected) <= tolerance` and returns the error.
@discardableResult
func assertClose(_ actual: [Float]?, _ expected: [Float], tolerance: Double, _ what: String,
                 file: StaticString = #filePath, line: UInt = #line) -> Double {
    guard let actual else {
        XCTFail("\(what): no value", file: file, line: line)
        return .infinity
    }
    guard actual.count == expected.count else {
        XCTFail("\(what): \(actual.count) values, expected \(expected.count)", file: file, line: line)
        return .infinity
    }
    let error = relativeError(actual, expected)
    XCTAssertLessThanOrEqual(error, tolerance, "\(what): relative error \(error)", file: file, line: line)
    return error
}

/// Central finite differences against the tape's gradients.
///
/// With a fixed random cotangent r, checks ∂(Σ r·f)/∂xᵢ at `samples` random coordinates of every input:
/// |fd − analytic| ≤ atol + rtol·|analytic|. f is evaluated in float32 and the sum in double; with h = 1e-2
/// the rounding error of fd is about 1e-4 for outputs of a few hundred values and its truncation error
/// O(h²·f‴), hence the default tolerances (atol 2e-3, rtol 1e-2). Ops with kinks (relu, max) need inputs
/// kept farther than h from them.
func checkGradients(_ inputs: [Tensor], h: Float = 1e-2, samples: Int = 16, atol: Double = 2e-3, rtol: Double = 1e-2,
                    seed: UInt64 = 7, _ what: String, file: StaticString = #filePath, line: UInt = #line,
                    _ f: () -> Tensor) {
    let generator = RandomGenerator(seed: seed)
    for x in inputs { x.grad = nil; x.requiresGrad = true }
    let y = f()
    let r = generator.normalArray(count: y.count)
    y.backward(gradient: r)
    func objective() -> Double {
        let out = withNoGrad { f() }
        var s = 0.0
        for i in 0..<out.count { s += Double(r[i]) * Double(out.data[i]) }
        return s
    }
    var worst = 0.0
    for (index, x) in inputs.enumerated() {
        guard let analytic = x.grad else {
            XCTFail("\(what): input \(index) got no gradient", file: file, line: line)
            continue
        }
        for _ in 0..<min(samples, x.count) {
            let i = generator.nextInt(below: x.count)
            let saved = x.data[i]
            x.data[i] = saved + h
            let plus = objective()
            x.data[i] = saved - h
            let minus = objective()
            x.data[i] = saved
            let fd = (plus - minus) / (2 * Double(h))
            let error = abs(fd - Double(analytic[i]))
            worst = max(worst, error / (atol + rtol * abs(Double(analytic[i]))))
            XCTAssertLessThanOrEqual(error, atol + rtol * abs(Double(analytic[i])),
                                     "\(what): input \(index)[\(i)] finite difference \(fd) vs tape \(analytic[i])", file: file, line: line)
        }
    }
}

/// Runs `body` once per kernel backend, restoring the optimized one afterwards.
func forEachBackend(_ body: (KernelBackend) throws -> Void) rethrows {
    defer { Kernels.backend = .optimized }
    for backend in [KernelBackend.optimized, .reference] {
        Kernels.backend = backend
        try body(backend)
    }
}
