// FeatureStoreExtraction.swift — `resnet50 features --store`: every image's backbone features written to a
// memory-mappable feature store, batch by batch, so neither extraction nor training holds the whole matrix.
import DataParallel
import DataPipeline
import FeatureStore
import Foundation
import Models
import Tensors

/// The images one rank computes when the images to compute are cut into batches of `perBatch`: a contiguous run of
/// whole batches, so each image sees the batch one process would give it (hence the same bits).
func featureRowShare(count: Int, perBatch: Int, rank: Int, ranks: Int) -> Range<Int> {
    let batchCount = (count + perBatch - 1) / perBatch
    let batches = ProcessGroup.share(of: batchCount, rank: rank, ranks: ranks)
    return min(batches.lowerBound * perBatch, count) ..< min(batches.upperBound * perBatch, count)
}

extension Trainer {
    /// Writes the features of every image the CSV lists, in CSV order, to a feature store at `url` with its index
    /// (`FeatureStoreIndex`). Under mpirun each rank writes its share to a hidden part file next to `url`, and rank
    /// 0 joins the parts in order; memory holds one batch (and one copy chunk) at a time. The feature cache is not
    /// used: a store is the bulk form of it.
    /// - Returns: the number of rows.
    public func extractFeatures(toStore url: URL, elementType: FeatureElementType) throws -> Int {
        try options.validate()
        setKernelThreads()
        let table = try readLabels()
        try refuseOutputsOverInputs(outputs: [(.option(.outputPath), url), (.option(.outputPath), FeatureStoreIndex.indexURL(for: url))],
                                    inputs: inputFiles(table: table))
        let dataset = ImageDataset(table: table, cacheBudgetBytes: 0)
        let (model, weightsKey, _) = try buildModel(metaDim: table.metaDim)
        try requireSameRunOnEveryRank(runSettings(table: table, weightsKey: weightsKey))
        model.backbone.freeze()
        model.backbone.eval()
        let width = model.backbone.featureCount, count = table.samples.count
        let perBatch = max(options.batchSize, 8)
        func storeError(_ error: Error) -> OptionNamingError {
            let text = "\(error)"
            return OptionNamingError { name in "\(name(.outputPath)) \(url.path): \(text)" }
        }
        do {
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        } catch { throw storeError(error) }
        func partURL(_ rank: Int) -> URL {
            url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).part-\(rank)-of-\(group.size)")
        }
        // This rank's rows, straight into the store (one process) or into its part.
        let mine = featureRowShare(count: count, perBatch: perBatch, rank: group.rank, ranks: group.size)
        let target = group.isParallel ? partURL(group.rank) : url
        do {
            let writer = try FeatureStoreWriter(url: target, width: width, elementType: elementType, expectedRows: mine.count)
            if !mine.isEmpty {
                let loader = try DataLoader(dataset: dataset, indices: Array(mine), batchSize: perBatch, shuffle: false,
                                            numWorkers: options.numWorkers)
                let iterator = loader.epoch(0)
                let start = Date()
                var done = 0
                while let batch = try iterator.next() {
                    let images = Tensor(shape: [batch.count, 3, batch.imageSize, batch.imageSize], data: batch.images)
                    try writer.append(withNoGrad { model.imageFeatures(images) }.data)
                    done += batch.count
                    progress.report("backbone features", done: done, total: mine.count, since: start)
                    try InterruptSignal.check()
                }
                progress.clear()
            }
            try writer.finish()
        } catch let error as RunInterrupted {
            throw error
        } catch let error as DataError {
            throw error
        } catch { throw storeError(error) }
        group.barrier()
        try InterruptSignal.check()
        if group.isParallel && group.isWriter {
            do {
                let writer = try FeatureStoreWriter(url: url, width: width, elementType: elementType, expectedRows: count)
                let chunk = 256
                for rank in 0 ..< group.size {
                    let part = try FeatureStore(url: partURL(rank))
                    for start in stride(from: 0, to: part.rowCount, by: chunk) {
                        try writer.append(part.rows(start ..< min(start + chunk, part.rowCount)))
                    }
                }
                try writer.finish()
            } catch { throw storeError(error) }
        }
        if group.isWriter {
            let keys = table.samples.map { FeatureCache.imageKey($0.imageURL) ?? $0.imageURL.path }
            do {
                try FeatureStoreIndex.write(for: url, rows: count, width: width, elementType: elementType,
                                            modelKey: featureCacheKey(weightsKey: weightsKey),
                                            imagesDigest: FeatureStoreIndex.imagesDigest(keys))
            } catch { throw storeError(error) }
        }
        // Every part is read before any is removed.
        group.barrier()
        if group.isParallel { try? FileManager.default.removeItem(at: partURL(group.rank)) }
        return count
    }
}
