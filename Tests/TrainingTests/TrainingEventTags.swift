import Training

/// A run's events as short tags, in order, so a test can assert the sequence a caller sees: "started",
/// "epoch 3/12" (with " replayed" for an epoch restored from a checkpoint), "finished", "warning: …" and
/// "random backbone".
func tag(_ event: TrainingEvent) -> String {
    switch event {
    case .warning(let line): return line
    case .randomBackbone: return "random backbone"
    case .started: return "started"
    case .epochFinished(let record, let epochs, let replayed): return "epoch \(record.epoch)/\(epochs)" + (replayed ? " replayed" : "")
    case .finished: return "finished"
    }
}

/// The tags of the events a caller would show as the run's transcript (warnings left out).
func transcriptTags(_ events: [TrainingEvent]) -> [String] {
    events.compactMap { event in
        switch event {
        case .warning, .randomBackbone: return nil
        default: return tag(event)
        }
    }
}
