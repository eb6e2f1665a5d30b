import DataPipeline
import Foundation

/// The largest values the options accept: each bounds an allocation or a loop that a typo (an extra zero, a
/// pasted 2^61) would otherwise turn into an allocation abort or a hang. The README's troubleshooting table
/// lists them.
public enum OptionLimits {
    public static let epochs = 1 ... 100_000
    /// One batch of 224² images is 0.6 MB of input per image; a training step holds ~100 MB of activations per image.
    public static let batchSize = 1 ... 4096
    public static let numWorkers = 0 ... 256
    public static let threads = 1 ... 1024
    public static let maxBoxes = 0 ... BoxEncoding.maxBoxesLimit
}

/// An error whose one line names options: the library names them by their properties (`TrainingOptions.epochs`),
/// the command line by its flags (`--epochs`), from the one sentence here.
public protocol NamesOptions: Error, CustomStringConvertible {
    func message(naming: (InvalidOption.Name) -> String) -> String
}

extension NamesOptions {
    public var description: String { message { "TrainingOptions.\($0.rawValue)" } }
}

/// A run-time failure whose sentence names options (a weight that cannot be derived, a loss that diverged).
public struct OptionNamingError: NamesOptions {
    private let compose: @Sendable ((InvalidOption.Name) -> String) -> String
    public init(_ compose: @escaping @Sendable ((InvalidOption.Name) -> String) -> String) { self.compose = compose }
    public func message(naming: (InvalidOption.Name) -> String) -> String { compose(naming) }
}

/// An option value the library refuses, in the library's own terms: which option, what is wrong, the value.
/// The command line names the same option by its flag (`message(naming:)`), so the wording lives here once.
public struct InvalidOption: NamesOptions, Equatable {
    /// The options that can be out of range, by their property names in `TrainingOptions` / `InferenceOptions`.
    public enum Name: String, Sendable, CaseIterable {
        case epochs, batchSize, numWorkers, maxBoxes, learningRate, patience, warmupEpochs, weightDecay, positiveWeight,
             threads, threshold, imagesDirectory, csvPath, resumePath, weights, output, modelPath, outputPath, split,
             featureStorePath, freezeBackbone
    }

    public enum Problem: Equatable, Sendable {
        case outsideRange(ClosedRange<Int>)
        case notPositive
        case negative
        case notAutoOrPositive
        /// Warm-up must leave at least one epoch of the schedule.
        case notBelowEpochs
        case notProbability
        case noSuchFolder
        case noSuchReadableFile
    }

    /// The type whose property `name` is ("TrainingOptions", "InferenceOptions").
    public let owner: String
    public let name: Name
    public let problem: Problem
    /// The refused value as given.
    public let value: String

    public init(owner: String, name: Name, problem: Problem, value: String) {
        self.owner = owner
        self.name = name
        self.problem = problem
        self.value = value
    }

    /// The one-line message with each option named by `naming` (a property path here, a flag in the command).
    public func message(naming: (Name) -> String) -> String {
        let option = naming(name)
        switch problem {
        case .outsideRange(let range): return "\(option) must be in \(range.lowerBound)…\(range.upperBound) (got \(value))"
        case .notPositive: return "\(option) must be a positive number (got \(value))"
        case .negative: return "\(option) must be 0 or a positive number (got \(value))"
        case .notAutoOrPositive: return "\(option) must be 'auto' or a positive number (got \(value))"
        case .notBelowEpochs: return "\(option) must be 0 or more and below \(naming(.epochs)) (got \(value))"
        case .notProbability: return "\(option) must be a probability in [0, 1] (got \(value))"
        case .noSuchFolder: return "\(option) \(value): no such folder"
        case .noSuchReadableFile: return "\(option) \(value): no such readable file"
        }
    }

    public var description: String { message { "\(owner).\($0.rawValue)" } }

    /// Checks `value` against `range`.
    static func check(_ value: Int, _ range: ClosedRange<Int>, _ name: Name, of owner: String) throws {
        guard range.contains(value) else {
            throw InvalidOption(owner: owner, name: name, problem: .outsideRange(range), value: String(value))
        }
    }

    /// Checks that `path` is an existing folder.
    static func requireFolder(_ path: String, _ name: Name, of owner: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw InvalidOption(owner: owner, name: name, problem: .noSuchFolder, value: path)
        }
    }

    /// Checks that `path` names a readable file.
    static func requireReadableFile(_ path: String, _ name: Name, of owner: String) throws {
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw InvalidOption(owner: owner, name: name, problem: .noSuchReadableFile, value: path)
        }
    }
}

extension TrainingOptions {
    /// Refuses values no run can use, before any file is read: the numbers first, then the input paths.
    /// `Trainer` calls it; the command calls it earlier, while parsing its flags.
    public func validate() throws {
        let owner = "TrainingOptions"
        try InvalidOption.check(epochs, OptionLimits.epochs, .epochs, of: owner)
        try InvalidOption.check(batchSize, OptionLimits.batchSize, .batchSize, of: owner)
        try InvalidOption.check(numWorkers, OptionLimits.numWorkers, .numWorkers, of: owner)
        try InvalidOption.check(maxBoxes, OptionLimits.maxBoxes, .maxBoxes, of: owner)
        guard learningRate > 0, learningRate.isFinite else {
            throw InvalidOption(owner: owner, name: .learningRate, problem: .notPositive, value: "\(learningRate)")
        }
        if let patience { try InvalidOption.check(patience, OptionLimits.epochs, .patience, of: owner) }
        guard warmupEpochs >= 0, warmupEpochs < epochs else {
            throw InvalidOption(owner: owner, name: .warmupEpochs, problem: .notBelowEpochs, value: "\(warmupEpochs)")
        }
        guard weightDecay >= 0, weightDecay.isFinite else {
            throw InvalidOption(owner: owner, name: .weightDecay, problem: .negative, value: "\(weightDecay)")
        }
        if case .value(let w)? = positiveWeight, !(w > 0 && w.isFinite) {
            throw InvalidOption(owner: owner, name: .positiveWeight, problem: .notAutoOrPositive, value: "\(w)")
        }
        if let threads { try InvalidOption.check(threads, OptionLimits.threads, .threads, of: owner) }
        try InvalidOption.requireFolder(imagesDirectory, .imagesDirectory, of: owner)
        try InvalidOption.requireReadableFile(csvPath, .csvPath, of: owner)
        if let resumePath { try InvalidOption.requireReadableFile(resumePath, .resumePath, of: owner) }
        if let featureStorePath {
            try InvalidOption.requireReadableFile(featureStorePath, .featureStorePath, of: owner)
            guard usesCachedFeatures else {
                throw OptionNamingError { name in
                    "\(name(.featureStorePath)) gives the backbone's features: it needs \(name(.freezeBackbone)) with BatchNorm in eval mode"
                }
            }
        }
    }
}

extension InferenceOptions {
    /// Refuses values no scoring run can use, before the model or any image is read. The CSV is checked later:
    /// `predict` runs without one.
    public func validate() throws {
        let owner = "InferenceOptions"
        try InvalidOption.check(batchSize, OptionLimits.batchSize, .batchSize, of: owner)
        try InvalidOption.check(numWorkers, OptionLimits.numWorkers, .numWorkers, of: owner)
        if let threads { try InvalidOption.check(threads, OptionLimits.threads, .threads, of: owner) }
        if let threshold, !(threshold >= 0 && threshold <= 1) {
            throw InvalidOption(owner: owner, name: .threshold, problem: .notProbability, value: "\(threshold)")
        }
        try InvalidOption.requireFolder(imagesDirectory, .imagesDirectory, of: owner)
    }
}
