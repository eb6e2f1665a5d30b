import DataParallel
import DataPipeline
import Foundation
import Models
import Tensors

/// Backbone features (inference mode) of `indices` of `dataset`, rows in the order of `indices`: from the
/// on-disk cache where present, the rest computed now and added to the cache.
///
/// In a group of several ranks the images to compute are cut into the batches one process would run (`batchSize`,
/// at least 8), each rank computes a contiguous run of those batches, and the rows are gathered in order: every
/// rank ends with every row, the same bits one process computes, since each image sees the same batch.
/// - Returns: the (indices.count × width) rows, how many were computed and how many came from the cache.
func backboneFeatures(model: FusionModel, dataset: ImageDataset, indices: [Int], cache: FeatureCache?, batchSize: Int,
                      numWorkers: Int, group: ProcessGroup = .single, progress: ProgressReporter,
                      warn: (String) -> Void) throws -> (features: [Float], computed: Int, reused: Int)
{
    let width = model.backbone.featureCount
    var features = [Float](repeating: 0, count: indices.count * width)
    let keys = indices.map { FeatureCache.imageKey(dataset.samples[$0].imageURL) ?? dataset.samples[$0].imageURL.path }
    let cached = cache?.lookup(keys) ?? Array(repeating: nil, count: indices.count)
    // Ranks on different machines read different caches: a row counts as cached only where every rank has it, so
    // every rank computes the same list of missing images (the gather below depends on it).
    var cachedEverywhere = cached.map { $0 == nil ? 0 : 1 }
    group.sum(&cachedEverywhere)
    var missing = [Int]()  // positions in `indices`
    for (position, row) in cached.enumerated() {
        if let row, cachedEverywhere[position] == group.size {
            features.replaceSubrange(position * width ..< (position + 1) * width, with: row)
        } else {
            missing.append(position)
        }
    }
    guard !missing.isEmpty else { return (features, 0, indices.count) }
    let wasTraining = model.backbone.training
    model.backbone.eval()
    defer { model.backbone.train(wasTraining) }

    // This rank's batches of the images to compute, and every rank's row count for the gather.
    let perBatch = max(batchSize, 8), batchCount = (missing.count + perBatch - 1) / perBatch
    func rows(ofRank rank: Int) -> Range<Int> {
        let batches = ProcessGroup.share(of: batchCount, rank: rank, ranks: group.size)
        return batches.lowerBound * perBatch ..< min(batches.upperBound * perBatch, missing.count)
    }
    let mine = Array(missing[rows(ofRank: group.rank)])
    var computedRows = [Float]()
    computedRows.reserveCapacity(mine.count * width)
    if !mine.isEmpty {
        let loader = try DataLoader(dataset: dataset, indices: mine.map { indices[$0] }, batchSize: perBatch,
                                    shuffle: false, numWorkers: numWorkers)
        let iterator = loader.epoch(0)
        let start = Date()
        while let batch = try iterator.next() {
            let images = Tensor(shape: [batch.count, 3, batch.imageSize, batch.imageSize], data: batch.images)
            computedRows += withNoGrad { model.imageFeatures(images) }.data
            progress.report("backbone features", done: computedRows.count / width, total: mine.count, since: start)
            // One process keeps what it computed on SIGINT/SIGTERM (stored below). Ranks stop only together: the
            // gather needs every rank's rows, and a stop abandons it.
            if !group.isParallel, InterruptSignal.pending != nil { break }
        }
        progress.clear()
    }
    let doneCount = computedRows.count / width
    let gathered = group.gather(computedRows, counts: (0 ..< group.size).map { rows(ofRank: $0).count }, unit: width)
    try InterruptSignal.check(keeping: { () throws -> Void in
        // What one process finished before the signal is worth caching; a group's gather was abandoned.
        guard !group.isParallel, let cache else { return }
        let newRows = (0 ..< doneCount).map { (keys[missing[$0]], Array(computedRows[$0 * width ..< ($0 + 1) * width])) }
        do { try cache.store(newRows) } catch { warn("warning: feature cache not written: \(error)") }
    })
    for (row, position) in missing.enumerated() {
        features.replaceSubrange(position * width ..< (position + 1) * width, with: gathered[row * width ..< (row + 1) * width])
    }
    if let cache, group.isWriter {
        let newRows = missing.enumerated().map { row, position in (keys[position], Array(gathered[row * width ..< (row + 1) * width])) }
        do { try cache.store(newRows) } catch { warn("warning: feature cache not written: \(error)") }
    }
    return (features, missing.count, indices.count - missing.count)
}
