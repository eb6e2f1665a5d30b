// EpochLoop.swift — the epochs of a run: one training and one validation pass each, the best epoch kept by the
// selection metric, the epoch log and the resume checkpoint rewritten after each, early stopping.
import DataParallel
import DataPipeline
import Foundation
import Models
import NN
import Tensors

extension Trainer {
    /// Trains the epochs after those in `state`, updating it after each.
    /// - Parameter outputs: where rank 0 stages the epoch log and resume checkpoint; nil on the other ranks.
    /// - Returns: the last epoch's P(class 1) on the validation split, in split order.
    func runEpochs(_ run: PreparedRun, features: FeatureRows, state: inout RunState, files: RunFiles, outputs: OutputSet?,
                   wallStart: Date) throws -> [Double] {
        let model = run.model
        let trainLoader = try DataLoader(dataset: run.dataset, indices: run.split.train, batchSize: options.batchSize,
                                         shuffle: true, seed: options.seed, numWorkers: options.numWorkers)
        let validationLoader = try DataLoader(dataset: run.dataset, indices: run.split.validation, batchSize: options.batchSize,
                                              shuffle: false, seed: options.seed, numWorkers: options.numWorkers)
        let log = outputs.map { EpochLog(url: $0.staged(files.epochLog)) }
        let reducer = group.isParallel ? GradientReducer(parameters: run.optimizer.parameters, group: group) : nil
        reducer?.attach()
        defer { reducer?.detach() }
        let batchNormSync = options.syncBatchNorm && group.isParallel ? BatchNormSync(reducer: group) : nil
        if let batchNormSync { model.backbone.setBatchNormSync(batchNormSync) }
        defer { if batchNormSync != nil { model.backbone.setBatchNormSync(nil) } }
        var lastProbabilities = [Double]()
        for epoch in state.records.count + 1 ... options.epochs {
            let start = Date()
            let learningRate = options.learningRateSchedule.learningRate(epoch: epoch, epochs: options.epochs,
                                                                         warmup: options.warmupEpochs, base: options.learningRate)
            run.optimizer.learningRate = learningRate
            run.dropoutGenerator.reseed(Self.dropoutSeed(options.seed, epoch: epoch))
            model.train()
            if options.usesCachedFeatures { model.backbone.eval() }
            let finished = state.records.count
            func interrupted(_ error: RunInterrupted) -> RunInterrupted {
                var error = error
                let job = group.isParallel
                    ? " (one of \(group.size) ranks; mpirun stops them all when one fails: see its message)" : ""
                if finished == 0 {
                    error.detail = "\(job) during epoch \(epoch), before any epoch finished: nothing to resume, no files written"
                } else {
                    error.detail = "\(job) during epoch \(epoch): \(files.resume.path) holds the run after epoch \(finished)"
                    error.resumeCheckpoint = files.resume
                }
                return error
            }
            let training: EpochMetrics, validation: EpochMetrics, probabilities: [Double]
            do {
                (training, _) = try runEpoch(run, loader: trainLoader, epoch: epoch - 1, features: features, reducer: reducer,
                                             batchNormSync: batchNormSync, training: true, label: "epoch \(epoch)/\(options.epochs) train")
                model.eval()
                shareBatchNormStatistics(model)
                (validation, probabilities) = try withNoGrad {
                    try runEpoch(run, loader: validationLoader, epoch: 0, features: features, reducer: nil, batchNormSync: nil, training: false,
                                 label: "epoch \(epoch)/\(options.epochs) validation")
                }
                // A stop that abandoned a collective above leaves numbers that must not reach the checkpoint.
                try InterruptSignal.check()
            } catch let error as RunInterrupted { throw interrupted(error) }
            let record = EpochRecord(epoch: epoch, training: training, validation: validation, learningRate: learningRate,
                                     seconds: Date().timeIntervalSince(start))
            state.records.append(record)
            lastProbabilities = probabilities
            if state.bestEpoch == 0 || options.selectBy.prefers(validation, over: state.records[state.bestEpoch - 1].validation) {
                state.bestEpoch = epoch
                state.bestState = model.stateDict()
                state.bestProbabilities = probabilities
            }
            progress.clear()
            events(.epochFinished(record, epochs: options.epochs, replayed: false))
            if let log {
                do { try log.write(state.records, bestEpoch: state.bestEpoch) } catch {
                    throw TrainingError("\(files.epochLog.path): \(error.localizedDescription)")
                }
            }
            if let patience = options.patience, epoch < options.epochs, epoch - state.bestEpoch >= patience {
                state.stoppedEarly = true
            }
            if let outputs {
                do {
                    try ResumeCheckpoint.save(state, settings: run.settings, model: model, optimizer: run.optimizer,
                                              storeBackbone: !options.usesCachedFeatures,
                                              wallSeconds: state.wallSeconds + Date().timeIntervalSince(wallStart),
                                              to: outputs.staged(files.resume))
                } catch {
                    throw TrainingError("\(files.resume.path): \(error)")
                }
            }
            if state.stoppedEarly { break }
        }
        return lastProbabilities
    }

    /// The dropout stream of an epoch: a function of the seed and the epoch alone.
    static func dropoutSeed(_ seed: UInt64, epoch: Int) -> UInt64 {
        (seed ^ 0xD509_0E75) &+ UInt64(epoch) &* 0xA076_1D64_78BD_642F
    }

    /// Without synchronised BatchNorm each rank's running statistics follow its own shares; validation and the saved
    /// model use rank 0's, on every rank (as DDP broadcasts buffers from rank 0).
    private func shareBatchNormStatistics(_ model: FusionModel) {
        guard group.isParallel, !options.usesCachedFeatures, !(options.syncBatchNorm) else { return }
        let buffers = model.backbone.namedModules().compactMap { $0.1 as? BatchNorm2d }
            .flatMap { [$0.runningMean, $0.runningVar, $0.numBatchesTracked] }
        var packed = buffers.flatMap(\.data)
        group.broadcast(&packed, from: 0)
        var offset = 0
        for buffer in buffers {
            buffer.data = Array(packed[offset ..< offset + buffer.count])
            offset += buffer.count
        }
    }

    /// One pass over a loader: training steps with `training`, evaluation otherwise.
    ///
    /// The epoch's order is cut into global batches of `group.size` × batch size; each rank runs its share (an even,
    /// contiguous split), its loss is its part of the global batch's mean, and the reducer sums the gradients, so
    /// every rank takes the step one process takes on the whole global batch. A rank whose share of a short last
    /// batch is empty runs the step on two copies of that batch's first sample with a zero loss gradient, only to
    /// take part in the collectives (BatchNorm's, then the gradients').
    /// - Returns: the metrics and P(class 1) per sample in the loader's order of that epoch (evaluation only).
    private func runEpoch(_ run: PreparedRun, loader: DataLoader, epoch: Int, features: FeatureRows, reducer: GradientReducer?,
                          batchNormSync: BatchNormSync?, training: Bool, label: String) throws -> (EpochMetrics, [Double]) {
        let model = run.model, classWeights = run.classWeights
        var metrics = MetricsAccumulator()
        var probabilities = [Double]()
        let start = Date()
        var done = 0, batch = 0
        let order = loader.shuffle ? loader.order(epoch: epoch) : loader.indices
        let shares = GlobalBatchShare.cut(order, globalBatchSize: loader.batchSize * group.size, group: group)
        let samples = loader.dataset.samples

        func step(_ share: GlobalBatchShare, logits: Tensor, labels: [Int]) throws {
            batch += 1
            if training { FaultInjection.killIfRequested(group: group, epoch: epoch + 1, batch: batch) }
            let weightOf = { (label: Int) in Double(classWeights?[label] ?? 1) }
            let loss = crossEntropy(logits, labels: labels, classWeights: classWeights,
                                    weightTotal: group.isParallel && !share.isEmpty ? share.globalLabels(samples).map(weightOf).reduce(0, +) : nil)
            // A non-finite loss poisons every weight the step touches, and every later number with it: stop here.
            guard loss.item.isFinite else {
                let place = "\(label), batch \(batch) of \(shares.count)", value = pythonFixed(Double(loss.item), decimals: 4)
                let output = options.output
                throw OptionNamingError { name in
                    "\(place): the loss is \(value); stopping. Lower \(name(.learningRate)), or check the weights and labels.csv "
                        + "for non-finite values. Nothing was written: an earlier run's files at \(output) are unchanged"
                }
            }
            if training {
                run.optimizer.zeroGrad()
                loss.backward(gradient: share.isEmpty ? [0] : nil)
                reducer?.finish()
                run.optimizer.step()
            } else if !share.isEmpty {
                probabilities += positiveProbabilities(logits)
            }
            if !share.isEmpty {
                let predictions = (0 ..< labels.count).map { logits.data[2 * $0 + 1] > logits.data[2 * $0] ? 1 : 0 }
                metrics.add(shareOfBatchMeanLoss: Double(loss.item), globalBatchCount: share.globalCount,
                            predictions: predictions, labels: labels)
            }
            done += share.globalCount
            progress.report(label, done: done, total: order.count, since: start)
            try InterruptSignal.check()
        }
        /// The samples this rank runs for a share: its own, or the placeholders of an empty share.
        func stepSamples(_ share: GlobalBatchShare) -> ArraySlice<Int> {
            share.isEmpty ? [share.global.first!, share.global.first!] : share.local
        }
        func prepare(_ share: GlobalBatchShare) {
            batchNormSync?.contributes = !share.isEmpty
            model.setRowsOutside(before: share.rowsBefore, after: share.rowsAfter)
        }
        // Evaluation of an empty share runs nothing: evaluation has no collectives.
        let runnable = training ? shares : shares.filter { !$0.isEmpty }
        if options.usesCachedFeatures {
            let width = model.backbone.featureCount, metaDim = model.metaDim
            for share in runnable {
                let indices = stepSamples(share)
                // This rank's rows only: from a feature store, the pages of the other ranks' rows are never touched.
                let rows = features.rows(indices)
                var meta = [Float](), labels = [Int]()
                for i in indices {
                    meta.append(contentsOf: samples[i].metadata)
                    labels.append(samples[i].label)
                }
                prepare(share)
                let logits = model.classify(features: Tensor(shape: [indices.count, width], data: rows),
                                            meta: Tensor(shape: [indices.count, metaDim], data: meta))
                try step(share, logits: logits, labels: labels)
            }
        } else {
            let iterator = loader.batches(of: runnable.flatMap(stepSamples), sizes: runnable.map { stepSamples($0).count })
            for share in runnable {
                guard let batch = try iterator.next() else { break }
                let images = Tensor(shape: [batch.count, 3, batch.imageSize, batch.imageSize], data: batch.images)
                let meta = Tensor(shape: [batch.count, batch.metaDim], data: batch.metadata)
                prepare(share)
                try step(share, logits: model(images, meta), labels: batch.labels)
            }
        }
        model.setRowsOutside(before: 0, after: 0)
        metrics.sum(over: group)
        if !training, group.isParallel {
            // Every rank's probabilities, back in the order of the split (global batch by global batch).
            let perRank = (0 ..< group.size).map { rank in
                shares.map { ProcessGroup.share(of: $0.globalCount, rank: rank, ranks: group.size).count }.reduce(0, +)
            }
            let all = group.gather(probabilities, counts: perRank)
            var rankStart = [Int](), running = 0
            for count in perRank { rankStart.append(running); running += count }
            var ordered = [Double]()
            ordered.reserveCapacity(order.count)
            for share in shares {
                for rank in 0 ..< group.size {
                    let n = ProcessGroup.share(of: share.globalCount, rank: rank, ranks: group.size).count
                    ordered += all[rankStart[rank] ..< rankStart[rank] + n]
                    rankStart[rank] += n
                }
            }
            probabilities = ordered
        }
        return (metrics.result, probabilities)
    }
}

/// One rank's part of one global batch.
struct GlobalBatchShare {
    /// The whole global batch: sample indices in epoch order.
    let global: ArraySlice<Int>
    /// This rank's samples: a contiguous run of `global`.
    let local: ArraySlice<Int>

    var globalCount: Int { global.count }
    var isEmpty: Bool { local.isEmpty }
    /// Rows of the global batch before and after this rank's (dropout skips their mask draws).
    var rowsBefore: Int { local.startIndex - global.startIndex }
    var rowsAfter: Int { global.endIndex - local.endIndex }

    func globalLabels(_ samples: [LabeledSample]) -> [Int] { global.map { samples[$0].label } }

    /// `order` in global batches of `globalBatchSize` (the last may be short), with this rank's share of each.
    static func cut(_ order: [Int], globalBatchSize: Int, group: ProcessGroup) -> [GlobalBatchShare] {
        stride(from: 0, to: order.count, by: globalBatchSize).map { start in
            let global = order[start ..< min(start + globalBatchSize, order.count)]
            let mine = group.share(of: global.count)
            return GlobalBatchShare(global: global, local: global[(start + mine.lowerBound) ..< (start + mine.upperBound)])
        }
    }
}

extension SelectionMetric {
    /// True when `candidate` is strictly better than `best`.
    func prefers(_ candidate: EpochMetrics, over best: EpochMetrics) -> Bool {
        switch self {
        case .valF1:
            let f = candidate.confusion.f1, g = best.confusion.f1
            return f > g || (f == g && candidate.loss < best.loss)
        case .valLoss:
            return candidate.loss < best.loss
        }
    }
}
