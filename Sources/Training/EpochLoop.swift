// EpochLoop.swift — the epochs of a run: one training and one validation pass each, the best epoch kept by the
// selection metric, the epoch log and the resume checkpoint rewritten after each, early stopping.
import DataPipeline
import Foundation
import Models
import NN
import Tensors

extension Trainer {
    /// Trains the epochs after those in `state`, updating it after each.
    /// - Returns: the last epoch's P(class 1) on the validation split, in split order.
    func runEpochs(_ run: PreparedRun, features: [Float], state: inout RunState, outputs: OutputSet,
                   wallStart: Date) throws -> [Double] {
        let files = outputs.files, model = run.model
        let trainLoader = try DataLoader(dataset: run.dataset, indices: run.split.train, batchSize: options.batchSize,
                                         shuffle: true, seed: options.seed, numWorkers: options.numWorkers)
        let validationLoader = try DataLoader(dataset: run.dataset, indices: run.split.validation, batchSize: options.batchSize,
                                              shuffle: false, seed: options.seed, numWorkers: options.numWorkers)
        let log = EpochLog(url: outputs.staged(files.epochLog))
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
                if finished == 0 {
                    error.detail = " during epoch \(epoch), before any epoch finished: nothing to resume, no files written"
                } else {
                    error.detail = " during epoch \(epoch): \(files.resume.path) holds the run after epoch \(finished)"
                    error.resumeCheckpoint = files.resume
                }
                return error
            }
            let training: EpochMetrics, validation: EpochMetrics, probabilities: [Double]
            do {
                (training, _) = try runEpoch(run, loader: trainLoader, epoch: epoch - 1, features: features, training: true,
                                             label: "epoch \(epoch)/\(options.epochs) train")
                model.eval()
                (validation, probabilities) = try withNoGrad {
                    try runEpoch(run, loader: validationLoader, epoch: 0, features: features, training: false,
                                 label: "epoch \(epoch)/\(options.epochs) validation")
                }
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
            do { try log.write(state.records, bestEpoch: state.bestEpoch) } catch {
                throw TrainingError("\(files.epochLog.path): \(error.localizedDescription)")
            }
            if let patience = options.patience, epoch < options.epochs, epoch - state.bestEpoch >= patience {
                state.stoppedEarly = true
            }
            do {
                try ResumeCheckpoint.save(state, settings: run.settings, model: model, optimizer: run.optimizer,
                                          storeBackbone: !options.usesCachedFeatures,
                                          wallSeconds: state.wallSeconds + Date().timeIntervalSince(wallStart),
                                          to: outputs.staged(files.resume))
            } catch {
                throw TrainingError("\(files.resume.path): \(error)")
            }
            if state.stoppedEarly { break }
        }
        return lastProbabilities
    }

    /// The dropout stream of an epoch: a function of the seed and the epoch alone.
    static func dropoutSeed(_ seed: UInt64, epoch: Int) -> UInt64 {
        (seed ^ 0xD509_0E75) &+ UInt64(epoch) &* 0xA076_1D64_78BD_642F
    }

    /// One pass over a loader: training steps with `training`, evaluation otherwise.
    /// - Returns: the metrics and P(class 1) per sample in the loader's order of that epoch (evaluation only).
    private func runEpoch(_ run: PreparedRun, loader: DataLoader, epoch: Int, features: [Float], training: Bool,
                          label: String) throws -> (EpochMetrics, [Double]) {
        let model = run.model, classWeights = run.classWeights
        var metrics = MetricsAccumulator()
        var probabilities = [Double]()
        let start = Date()
        var done = 0, batch = 0
        let total = loader.indices.count
        func step(logits: Tensor, labels: [Int]) throws {
            let loss = crossEntropy(logits, labels: labels, classWeights: classWeights)
            batch += 1
            // A non-finite loss poisons every weight the step touches, and every later number with it: stop here.
            guard loss.item.isFinite else {
                let place = "\(label), batch \(batch) of \(loader.batchCount)", value = pythonFixed(Double(loss.item), decimals: 4)
                let output = options.output
                throw OptionNamingError { name in
                    "\(place): the loss is \(value); stopping. Lower \(name(.learningRate)), or check the weights and labels.csv "
                        + "for non-finite values. Nothing was written: an earlier run's files at \(output) are unchanged"
                }
            }
            if training {
                run.optimizer.zeroGrad()
                loss.backward()
                run.optimizer.step()
            } else {
                probabilities += positiveProbabilities(logits)
            }
            let predictions = (0 ..< labels.count).map { logits.data[2 * $0 + 1] > logits.data[2 * $0] ? 1 : 0 }
            metrics.add(batchMeanLoss: Double(loss.item), predictions: predictions, labels: labels)
            done += labels.count
            progress.report(label, done: done, total: total, since: start)
            try InterruptSignal.check()
        }
        if options.usesCachedFeatures {
            let width = model.backbone.featureCount, metaDim = model.metaDim
            let order = loader.shuffle ? loader.order(epoch: epoch) : loader.indices
            let samples = loader.dataset.samples
            for batchStart in stride(from: 0, to: order.count, by: loader.batchSize) {
                let indices = order[batchStart ..< min(batchStart + loader.batchSize, order.count)]
                var rows = [Float](), meta = [Float](), labels = [Int]()
                rows.reserveCapacity(indices.count * width)
                for i in indices {
                    rows.append(contentsOf: features[i * width ..< (i + 1) * width])
                    meta.append(contentsOf: samples[i].metadata)
                    labels.append(samples[i].label)
                }
                let logits = model.classify(features: Tensor(shape: [indices.count, width], data: rows),
                                            meta: Tensor(shape: [indices.count, metaDim], data: meta))
                try step(logits: logits, labels: labels)
            }
        } else {
            let iterator = loader.epoch(epoch)
            while let batch = try iterator.next() {
                let images = Tensor(shape: [batch.count, 3, batch.imageSize, batch.imageSize], data: batch.images)
                let meta = Tensor(shape: [batch.count, batch.metaDim], data: batch.metadata)
                try step(logits: model(images, meta), labels: batch.labels)
            }
        }
        return (metrics.result, probabilities)
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
