import Foundation
import Imaging
import SeededRandom

/// A batch in the layouts the model takes: plain Swift arrays, no tensor type.
public struct Batch: Sendable {
    /// Number of samples in the batch (the last batch of an epoch may be short).
    public let count: Int
    /// Side of the square images (224).
    public let imageSize: Int
    /// Values per metadata row (`4 + 8·maxBoxes`).
    public let metaDim: Int
    /// `[count, 3, imageSize, imageSize]` float32, normalized, NCHW.
    public var images: [Float]
    /// `[count, metaDim]` float32.
    public var metadata: [Float]
    /// `count` labels, 0 or 1.
    public var labels: [Int]
    /// Positions of the samples in `ImageDataset.samples`.
    public let sampleIndices: [Int]
}

/// Preprocessed crops kept as uint8 (`crop² × 3` bytes each) so later epochs decode nothing. Entries are added
/// until the budget is spent, then the cache stops growing (no eviction: every epoch reads every image, so
/// evicting would only trade one miss for another). Thread-safe.
public final class CropCache: @unchecked Sendable {
    public let budgetBytes: Int
    private var crops: [Int: [UInt8]] = [:]
    private var used = 0
    private let lock = NSLock()

    /// - Parameter budgetBytes: the most bytes of crops held; 0 disables caching.
    public init(budgetBytes: Int) { self.budgetBytes = max(0, budgetBytes) }

    public func crop(_ index: Int) -> [UInt8]? {
        lock.lock(); defer { lock.unlock() }
        return crops[index]
    }

    /// Keeps `crop` if it fits the budget.
    public func insert(_ crop: [UInt8], for index: Int) {
        lock.lock(); defer { lock.unlock() }
        guard crops[index] == nil, used + crop.count <= budgetBytes else { return }
        crops[index] = crop
        used += crop.count
    }

    public var bytesUsed: Int { lock.lock(); defer { lock.unlock() }; return used }
    public var count: Int { lock.lock(); defer { lock.unlock() }; return crops.count }
}

/// The samples of a labels.csv with their image preprocessing; hands out preprocessed crops.
public final class ImageDataset: @unchecked Sendable {
    public let samples: [LabeledSample]
    /// The labels file the samples came from, for error messages.
    public let source: String
    public let metaDim: Int
    public let preprocessing: Preprocessing
    public let cache: CropCache
    /// Largest image accepted, in pixels.
    public let maxPixels: Int
    private let plans = ResizePlanCache()

    /// - Parameters:
    ///   - table: the read labels.csv.
    ///   - preprocessing: torchvision's transform (`.imagenet`: Resize 256, CenterCrop 224, ImageNet stats).
    ///   - cacheBudgetBytes: memory for cached uint8 crops (150 528 bytes per 224² image); 0 disables.
    ///   - maxPixels: decoder pixel limit.
    public init(table: LabelsTable, preprocessing: Preprocessing = .imagenet,
                cacheBudgetBytes: Int = 2 << 30, maxPixels: Int = JPEGDecoder.defaultMaxPixels) {
        samples = table.samples
        source = table.source
        metaDim = table.metaDim
        self.preprocessing = preprocessing
        cache = CropCache(budgetBytes: cacheBudgetBytes)
        self.maxPixels = maxPixels
    }

    /// The uint8 crop (`crop² × 3`, interleaved RGB) of sample `index`, from the cache or decoded now.
    /// - Parameters:
    ///   - index: position in `samples`.
    ///   - decoder: a decoder owned by the calling thread; it reads JPEG and PNG, by content.
    /// - Throws: `DataError.badImage` naming the CSV row when the image cannot be decoded.
    public func crop(at index: Int, decoder: ImageDecoder) throws -> [UInt8] {
        if let c = cache.crop(index) { return c }
        let s = samples[index]
        let c: [UInt8]
        do {
            let data = try ImageFile.read(s.imageURL)
            c = try preprocessing.crop(encoded: data, source: s.imageURL.path, decoder: decoder, plans: plans)
        } catch let e as ImagingError {
            throw DataError.badImage(row: s.row, name: s.imageName, reason: e.description).located(in: source)
        }
        cache.insert(c, for: index)
        return c
    }
}

/// Batches over a list of sample indices, optionally reshuffled every epoch, with images decoded and
/// preprocessed on `numWorkers` background threads while the caller computes.
public final class DataLoader {
    public let dataset: ImageDataset
    public let indices: [Int]
    public let batchSize: Int
    public let shuffle: Bool
    public let seed: UInt64
    public let numWorkers: Int
    /// Batches the workers may run ahead of the consumer.
    public let prefetchBatches: Int

    /// - Parameters:
    ///   - dataset: the samples.
    ///   - indices: which samples, in their unshuffled order (e.g. `DatasetSplit.train`).
    ///   - batchSize: samples per batch (the last one may be smaller), ≥ 1.
    ///   - shuffle: reshuffle every epoch (training) or keep `indices` order (validation).
    ///   - seed: epoch `e` is shuffled with SplitMix64(seed ⊕ (e+1)·0x9E3779B97F4A7C15), so an epoch's order
    ///     does not depend on which epochs ran before it.
    ///   - numWorkers: decoding threads; 0 decodes on the caller's thread.
    ///   - prefetchBatches: how far ahead workers may run.
    public init(dataset: ImageDataset, indices: [Int], batchSize: Int, shuffle: Bool, seed: UInt64 = 0,
                numWorkers: Int = 2, prefetchBatches: Int = 2) throws {
        guard batchSize >= 1 else { throw DataError.invalidArgument("--batch-size must be ≥ 1, got \(batchSize)") }
        guard numWorkers >= 0 else { throw DataError.invalidArgument("--num-workers must be ≥ 0, got \(numWorkers)") }
        guard indices.allSatisfy({ $0 >= 0 && $0 < dataset.samples.count }) else {
            throw DataError.invalidArgument("sample index out of range")
        }
        self.dataset = dataset
        self.indices = indices
        self.batchSize = batchSize
        self.shuffle = shuffle
        self.seed = seed
        self.numWorkers = numWorkers
        self.prefetchBatches = max(1, prefetchBatches)
    }

    public var batchCount: Int { (indices.count + batchSize - 1) / batchSize }

    /// The sample order of epoch `epoch` (0-based).
    public func order(epoch: Int) -> [Int] {
        guard shuffle else { return indices }
        var o = indices
        var rng = SplitMix64(seed: seed ^ (UInt64(truncatingIfNeeded: epoch + 1) &* 0x9E37_79B9_7F4A_7C15))
        rng.shuffle(&o)
        return o
    }

    /// Starts epoch `epoch`: call `next()` on the result until it returns nil.
    public func epoch(_ epoch: Int) -> EpochIterator {
        EpochIterator(loader: self, order: order(epoch: epoch))
    }

    /// A pass over `order` in batches of the given sizes (0 allowed: an empty batch), one per `next()`: how a
    /// data-parallel rank reads its share of each global batch.
    /// - Precondition: the sizes add up to `order.count`, and `order` holds indices of the dataset.
    public func batches(of order: [Int], sizes: [Int]) -> EpochIterator {
        precondition(sizes.allSatisfy { $0 >= 0 } && sizes.reduce(0, +) == order.count, "batches: sizes \(sizes.count) for \(order.count) samples")
        precondition(order.allSatisfy { $0 >= 0 && $0 < dataset.samples.count }, "batches: sample index out of range")
        return EpochIterator(loader: self, order: order, batchSizes: sizes)
    }
}

/// One pass over a loader's samples. Stopping early (dropping the iterator) stops its workers.
public final class EpochIterator {
    private final class Shared: @unchecked Sendable {
        let cond = NSCondition()
        var nextClaim = 0
        var consumed = 0
        var results: [Int: Result<[UInt8], Error>] = [:]
        var cancelled = false
    }

    private let loader: DataLoader
    private let order: [Int]
    private let shared = Shared()
    private var position = 0
    /// Explicit batch sizes (`DataLoader.batches(of:sizes:)`), else nil: `loader.batchSize` each.
    private let batchSizes: [Int]?
    private var batchesTaken = 0
    private var localDecoder: ImageDecoder?

    init(loader: DataLoader, order: [Int], batchSizes: [Int]? = nil) {
        self.loader = loader
        self.order = order
        self.batchSizes = batchSizes
        if loader.numWorkers == 0 {
            localDecoder = ImageDecoder(maxPixels: loader.dataset.maxPixels)
        } else {
            let window = loader.prefetchBatches * loader.batchSize + loader.numWorkers
            for _ in 0 ..< min(loader.numWorkers, order.count) {
                let t = Thread { [shared, order, dataset = loader.dataset] in
                    Self.work(shared: shared, order: order, dataset: dataset, window: window)
                }
                t.name = "resnetfusion.decode"
                t.start()
            }
        }
    }

    deinit {
        shared.cond.lock()
        shared.cancelled = true
        shared.cond.broadcast()
        shared.cond.unlock()
    }

    private static func work(shared: Shared, order: [Int], dataset: ImageDataset, window: Int) {
        let decoder = ImageDecoder(maxPixels: dataset.maxPixels)
        while true {
            shared.cond.lock()
            while !shared.cancelled, shared.nextClaim < order.count, shared.nextClaim - shared.consumed >= window {
                shared.cond.wait()
            }
            if shared.cancelled || shared.nextClaim >= order.count {
                shared.cond.unlock()
                return
            }
            let pos = shared.nextClaim
            shared.nextClaim += 1
            shared.cond.unlock()
            let r = Result { try dataset.crop(at: order[pos], decoder: decoder) }
            shared.cond.lock()
            shared.results[pos] = r
            shared.cond.broadcast()
            shared.cond.unlock()
        }
    }

    private func take(_ pos: Int) throws -> [UInt8] {
        if let d = localDecoder { return try loader.dataset.crop(at: order[pos], decoder: d) }
        shared.cond.lock()
        defer { shared.cond.unlock() }
        while true {
            if let r = shared.results.removeValue(forKey: pos) {
                shared.consumed += 1
                shared.cond.broadcast()
                return try r.get()
            }
            shared.cond.wait()
        }
    }

    /// The next batch, nil after the last; throws the first image error (naming its CSV row).
    public func next() throws -> Batch? {
        let end: Int
        if let batchSizes {
            guard batchesTaken < batchSizes.count else { return nil }
            end = position + batchSizes[batchesTaken]
            batchesTaken += 1
        } else {
            guard position < order.count else { return nil }
            end = min(position + loader.batchSize, order.count)
        }
        let ds = loader.dataset
        let n = end - position
        let side = ds.preprocessing.cropSize
        let plane = 3 * side * side
        var images = [Float](repeating: 0, count: n * plane)
        var metadata = [Float](repeating: 0, count: n * ds.metaDim)
        var labels = [Int](repeating: 0, count: n)
        let idx = Array(order[position ..< end])
        for b in 0 ..< n {
            let crop = try take(position + b)
            images.withUnsafeMutableBufferPointer { ds.preprocessing.normalize(crop, into: $0.baseAddress! + b * plane) }
            let s = ds.samples[idx[b]]
            metadata.replaceSubrange(b * ds.metaDim ..< (b + 1) * ds.metaDim, with: s.metadata)
            labels[b] = s.label
        }
        position = end
        return Batch(count: n, imageSize: side, metaDim: ds.metaDim, images: images, metadata: metadata,
                     labels: labels, sampleIndices: idx)
    }
}
