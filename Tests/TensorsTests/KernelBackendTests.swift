import CKernels
import CKernelsReference
import Tensors
import Foundation
import XCTest

/// Kernels.backend chooses the table every op calls through: an op's result must be, bit for bit, what the
/// chosen implementation's C function gives when called directly.
final class KernelBackendTests: XCTestCase {
    override func tearDown() { Kernels.backend = .optimized }

    private func words(_ table: ck_kernel_table) -> [UInt] {
        withUnsafeBytes(of: table) { Array($0.bindMemory(to: UInt.self)) }
    }

    func testBackendSelectsItsTable() {
        Kernels.backend = .optimized
        XCTAssertEqual(words(Kernels.table), words(ck_optimized_kernels().pointee))
        Kernels.backend = .reference
        XCTAssertEqual(words(Kernels.table), words(ck_reference_kernels().pointee))
        XCTAssertNotEqual(words(ck_optimized_kernels().pointee), words(ck_reference_kernels().pointee))
    }

    func testConvolutionRunsTheSelectedImplementation() {
        // Fixed, irregular values in (−1, 1): the same input on every run.
        func values(_ count: Int) -> [Float] { (0..<count).map { Float(sin(Double($0) * 12.9898 + 0.5)) } }
        let x = Tensor(shape: [2, 6, 8, 8], data: values(2 * 6 * 64))
        let weight = Tensor(shape: [4, 6, 3, 3], data: values(4 * 6 * 9))
        var shape = ck_conv2d_shape(batch: 2, in_channels: 6, in_height: 8, in_width: 8, out_channels: 4, kernel_height: 3,
                                    kernel_width: 3, stride_height: 1, stride_width: 1, pad_height: 1, pad_width: 1)
        var optimized = [Float](repeating: .nan, count: 2 * 4 * 64), reference = optimized
        let bytes = ck_conv2d_workspace_size(&shape)
        let workspace = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        defer { workspace.deallocate() }
        XCTAssertEqual(ck_conv2d_forward_f32(&optimized, x.data, weight.data, nil, &shape, workspace, bytes), 0)
        XCTAssertEqual(ck_conv2d_forward_f32_ref(&reference, x.data, weight.data, nil, &shape, nil, 0), 0)
        XCTAssertNotEqual(optimized, reference, "the two implementations must be told apart by this input")

        Kernels.backend = .optimized
        XCTAssertEqual(conv2d(x, weight: weight, padding: (1, 1)).data, optimized)
        Kernels.backend = .reference
        XCTAssertEqual(conv2d(x, weight: weight, padding: (1, 1)).data, reference)
    }
}
