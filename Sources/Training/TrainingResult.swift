import Foundation
import Models

/// A training failure with one line for the user (file, row or key named in it).
public struct TrainingError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One finished epoch.
public struct EpochRecord: Sendable, Equatable {
    public let epoch: Int
    public let training: EpochMetrics
    public let validation: EpochMetrics
    /// The learning rate of the epoch's steps.
    public let learningRate: Float
    public let seconds: Double
}

/// What a run produced.
public struct TrainingResult {
    /// Every finished epoch, including those of the run a resume continued.
    public let records: [EpochRecord]
    public let outputURL: URL
    public let files: RunFiles
    /// The last epoch's model (the one saved at `outputURL`).
    public let model: FusionModel
    /// The epoch whose model is in `files.best`.
    public let bestEpoch: Int
    /// Threshold tuned for F1 on the validation split: for the best model and for the last one.
    public let bestThreshold: ThresholdChoice
    public let lastThreshold: ThresholdChoice
    /// True when `TrainingOptions.patience` ended the run before `TrainingOptions.epochs`.
    public let stoppedEarly: Bool
    /// The class-1 weight of the loss (nil: unweighted).
    public let positiveWeight: Float?
    /// Backbone passes the run needed (cached-feature mode: images not found in the on-disk cache).
    public let featuresComputed: Int
    /// Images whose features came from the on-disk cache.
    public let featuresReused: Int
}

/// What a run reports while it goes, in order, so a caller can show it (the command prints the seed's transcript
/// from these) without the library writing to stdout or stderr.
public enum TrainingEvent {
    /// A problem the run works around (box cells that are not valid JSON, a feature cache it cannot write), as
    /// one line starting "warning: ".
    case warning(String)
    /// `WeightsSource.none`: the backbone starts from random weights; expect far lower accuracy.
    case randomBackbone
    /// Data, model and any resumed state are ready; `kernelThreads` threads run the kernels.
    case started(kernelThreads: Int)
    /// An epoch finished, of `epochs`; `replayed`: restored from the resume checkpoint, not trained in this session.
    case epochFinished(EpochRecord, epochs: Int, replayed: Bool)
    /// Every file of the run is in place.
    case finished(TrainingResult)
}
