// CrossProcessSum.swift — the collective a synchronized batch norm needs in data-parallel training, as a protocol:
// the Tensors module knows nothing of MPI; the process launcher supplies the implementation.

/// Sums arrays element-wise across the processes of a data-parallel job, in place: afterwards every process
/// holds the same totals. Every process must call it the same number of times in the same order.
public protocol CrossProcessSum: AnyObject {
    func sum(_ values: inout [Double])
}

/// What a BatchNorm layer needs to normalize with the statistics of the global batch.
///
/// One instance is meant to be shared by every batch norm of a model (see `Module.setBatchNormSync`), so a
/// training loop flips `contributes` once per step. `batchNorm2d(…, sync:)` makes one `reducer.sum` call in each
/// training forward and one in the backward when its input needs a gradient; both depend only on the model's
/// structure and frozen parameters, so every process makes the same calls in the same order.
public final class BatchNormSync {
    public let reducer: CrossProcessSum
    /// False on a process whose slice of this global batch is empty and that runs the step on placeholder
    /// samples only to take part in the collective calls: its sums count as zero (values and count).
    public var contributes: Bool = true
    public init(reducer: CrossProcessSum) {
        self.reducer = reducer
    }
}
