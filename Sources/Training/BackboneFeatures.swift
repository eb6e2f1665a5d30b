import DataPipeline
import Foundation
import Models
import Tensors

/// Backbone features (inference mode) of `indices` of `dataset`, rows in the order of `indices`: from the
/// on-disk cache where present, the rest computed now and added to the cache.
/// - Returns: the (indices.count × width) rows, how many were computed and how many came from the cache.
func backboneFeatures(model: FusionModel, dataset: ImageDataset, indices: [Int], cache: FeatureCache?, batchSize: Int,
                      numWorkers: Int, progress: ProgressReporter, warn: (String) -> Void) throws
    -> (features: [Float], computed: Int, reused: Int)
{
    let width = model.backbone.featureCount
    var features = [Float](repeating: 0, count: indices.count * width)
    let keys = indices.map { FeatureCache.imageKey(dataset.samples[$0].imageURL) ?? dataset.samples[$0].imageURL.path }
    let cached = cache?.lookup(keys) ?? Array(repeating: nil, count: indices.count)
    var missing = [Int]()  // positions in `indices`
    for (position, row) in cached.enumerated() {
        if let row { features.replaceSubrange(position * width ..< (position + 1) * width, with: row) } else { missing.append(position) }
    }
    guard !missing.isEmpty else { return (features, 0, indices.count) }
    let wasTraining = model.backbone.training
    model.backbone.eval()
    defer { model.backbone.train(wasTraining) }
    let loader = try DataLoader(dataset: dataset, indices: missing.map { indices[$0] }, batchSize: max(batchSize, 8),
                                shuffle: false, numWorkers: numWorkers)
    let iterator = loader.epoch(0)
    var done = 0
    let start = Date()
    var newRows = [(key: String, features: [Float])]()
    while let batch = try iterator.next() {
        let images = Tensor(shape: [batch.count, 3, batch.imageSize, batch.imageSize], data: batch.images)
        let out = withNoGrad { model.imageFeatures(images) }
        for j in 0 ..< batch.count {
            let position = missing[done + j]
            let row = Array(out.data[j * width ..< (j + 1) * width])
            features.replaceSubrange(position * width ..< (position + 1) * width, with: row)
            newRows.append((keys[position], row))
        }
        done += batch.count
        progress.report("backbone features", done: done, total: missing.count, since: start)
        // On SIGINT/SIGTERM keep what was computed (stored below), then stop.
        if InterruptSignal.pending != nil { break }
    }
    progress.clear()
    if let cache {
        do { try cache.store(newRows) } catch { warn("warning: feature cache not written: \(error)") }
    }
    try InterruptSignal.check()
    return (features, missing.count, indices.count - missing.count)
}
