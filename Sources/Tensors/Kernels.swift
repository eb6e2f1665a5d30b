// Kernels.swift — the binding to CKernels: which implementation runs (the optimized kernels or their
// reference twins, each a ck_kernel_table), the shared workspace buffer, thread count, status checking,
// and the pointer access the ops hand to the kernels.
import CKernels
import CKernelsReference

/// Which C implementation the ops call. The reference twins are plain loops (no BLAS, no OpenMP);
/// tests run both and compare, benchmarks time one against the other.
public enum KernelBackend: Sendable {
    case optimized
    case reference

    /// This implementation's C functions: ck_optimized_kernels() from CKernels or ck_reference_kernels()
    /// from CKernelsReference.
    public var kernels: ck_kernel_table {
        switch self {
        case .optimized: return ck_optimized_kernels().pointee
        case .reference: return ck_reference_kernels().pointee
        }
    }
}

/// Run-time settings of the C kernels.
public enum Kernels {
    /// The implementation every op calls. Not thread-safe: set it before running a graph.
    nonisolated(unsafe) public static var backend: KernelBackend = .optimized

    /// The kernels every op calls: `backend`'s table, read when the op (or its backward) runs.
    public static var table: ck_kernel_table { backend.kernels }

    /// Sets the OpenMP thread count of the optimized kernels (`n <= 0`: all cores).
    /// Workspace sizes depend on it, so call it before building or running a graph.
    public static func setNumThreads(_ n: Int) { ck_set_num_threads(Int32(n)) }

    /// The thread count the optimized kernels use.
    public static var numThreads: Int { Int(ck_get_num_threads()) }

    /// Stops with the kernel's own description of `status` when it is not `CK_OK`. A failing kernel
    /// means the Swift side passed inconsistent shapes: a programming error, not an input error.
    @inline(__always)
    public static func check(_ status: Int32, _ op: StaticString) {
        if status != 0 {
            fatalError("\(op): \(String(cString: ck_status_string(status))) (status \(status))")
        }
    }
}

/// The scratch memory kernels ask for through their `..._workspace_size` companions. One buffer is
/// reused by every call and grows when a larger size is asked for (the kernels' one allocation of their own,
/// the matrix product's per-thread packing buffers, is described in ckernels.h).
/// Not thread-safe: ops run one at a time (threads live inside the kernels).
public final class Workspace {
    /// The buffer the ops use.
    nonisolated(unsafe) public static let shared = Workspace()

    private var pointer: UnsafeMutableRawPointer?
    /// Bytes currently allocated.
    public private(set) var capacity: Int = 0

    public init() {}

    deinit { pointer?.deallocate() }

    /// Calls `body` with a buffer of at least `bytes` bytes (64-byte aligned), growing it if needed.
    /// - Parameters:
    ///   - bytes: the size a kernel's `..._workspace_size` reported.
    ///   - body: receives the buffer and its usable size.
    public func withBuffer<R>(bytes: Int, _ body: (UnsafeMutableRawPointer?, Int) -> R) -> R {
        if bytes == 0 { return body(pointer, capacity) }
        if bytes > capacity {
            pointer?.deallocate()
            // Grow geometrically so that a sweep of slightly increasing shapes does not reallocate each time.
            let newCapacity = max(bytes, capacity + capacity / 2)
            pointer = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 64)
            capacity = newCapacity
        }
        return body(pointer, capacity)
    }

    /// Frees the buffer (the next call allocates again).
    public func release() {
        pointer?.deallocate()
        pointer = nil
        capacity = 0
    }
}

/// Calls `body` with the base addresses of several arrays' values at once (nil for a nil array), valid
/// during `body`: one closure where a kernel call with many inputs would otherwise nest one per array.
@inline(__always)
func withBaseAddresses<R>(_ arrays: [Float]?..., body: ([UnsafePointer<Float>?]) -> R) -> R {
    var addresses = [UnsafePointer<Float>?]()
    addresses.reserveCapacity(arrays.count)
    func pin(_ index: Int) -> R {
        guard index < arrays.count else { return body(addresses) }
        guard let array = arrays[index] else {
            addresses.append(nil)
            return pin(index + 1)
        }
        return array.withUnsafeBufferPointer { buffer in
            addresses.append(buffer.baseAddress)
            return pin(index + 1)
        }
    }
    return pin(0)
}

/// Calls `body` with the values of two arrays for writing.
@inline(__always)
func withMutableBaseAddresses<R>(_ a: inout [Float], _ b: inout [Float],
                                 body: (UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Float>?) -> R) -> R {
    a.withUnsafeMutableBufferPointer { ap in b.withUnsafeMutableBufferPointer { bp in body(ap.baseAddress, bp.baseAddress) } }
}

/// Calls `body` with an optional array's storage for writing, or with nil when there is no array.
@inline(__always)
func withOptionalMutableBaseAddress<R>(_ array: inout [Float]?, body: (UnsafeMutablePointer<Float>?) -> R) -> R {
    guard array != nil else { return body(nil) }
    return array!.withUnsafeMutableBufferPointer { body($0.baseAddress) }
}

/// Calls `body` with the values of two optional tensors for writing (nil for a missing tensor).
@inline(__always)
func withMutableBaseAddresses<R>(_ a: Tensor?, _ b: Tensor?,
                                 body: (UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Float>?) -> R) -> R {
    withOptionalMutablePointer(a) { ap in withOptionalMutablePointer(b) { bp in body(ap, bp) } }
}

/// Calls `body` with the tensor's values for writing, or with nil when there is no tensor.
@inline(__always)
func withOptionalMutablePointer<R>(_ t: Tensor?, _ body: (UnsafeMutablePointer<Float>?) -> R) -> R {
    guard let t else { return body(nil) }
    return t.data.withUnsafeMutableBufferPointer { body($0.baseAddress) }
}

#if os(Linux)
/// glibc's `mallopt` (malloc.h is not part of Swift's Glibc module).
@_silgen_name("mallopt")
private func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32
#endif

extension Kernels {
    /// Makes the C allocator keep freed memory for reuse instead of returning it to the system.
    ///
    /// Activations are large arrays allocated and freed every step; glibc serves arrays above its mmap
    /// threshold (at most 32 MB) with fresh pages and trims freed heap memory, so each step pays page faults
    /// and kernel zeroing on every new activation (about a tenth of a ResNet-50 training step). Raising both
    /// thresholds keeps the pages mapped; resident memory then stays at the peak of a step. Process-wide:
    /// call it once at start-up from an executable (the training command), not from library code.
    public static func retainFreedMemory() {
        #if os(Linux)
        // M_TRIM_THRESHOLD = -1, M_TOP_PAD = -2, M_MMAP_THRESHOLD = -3 (malloc.h).
        _ = glibcMallopt(-3, 1 << 30)
        _ = glibcMallopt(-1, Int32.max)
        _ = glibcMallopt(-2, 64 << 20)
        #endif
    }
}
