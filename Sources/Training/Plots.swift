import Foundation

// Plain SVG 1.1 written by hand: no scripts, no external fonts or styles, so any browser (and rsvg-convert)
// draws it as is.

private let trainColor = "#1f77b4", validationColor = "#d62728", gridColor = "#e0e0e0", inkColor = "#333333"

private func number(_ v: Double) -> String { String(format: "%.2f", v) }

private func escaped(_ text: String) -> String {
    text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
        .replacingOccurrences(of: ">", with: "&gt;")
}

private func text(_ s: String, x: Double, y: Double, size: Int = 12, anchor: String = "middle", color: String = inkColor,
                  extra: String = "") -> String {
    "<text x=\"\(number(x))\" y=\"\(number(y))\" font-family=\"Helvetica, Arial, sans-serif\" font-size=\"\(size)\" "
        + "text-anchor=\"\(anchor)\" fill=\"\(color)\"\(extra)>\(escaped(s))</text>\n"
}

/// Tick values for an axis from `low` to `high`: about five round steps (1, 2 or 5 × 10ⁿ).
private func ticks(_ low: Double, _ high: Double) -> [Double] {
    let span = max(high - low, 1e-12)
    let raw = span / 5, magnitude = pow(10, floor(log10(raw)))
    let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? raw
    var values = [Double](), v = ceil(low / step - 1e-9) * step
    while v <= high + step * 1e-9 { values.append(abs(v) < step * 1e-9 ? 0 : v); v += step }
    return values
}

/// One plot area with axes, grid and tick labels; maps data to pixels.
private struct Panel {
    let x0: Double, y0: Double, width: Double, height: Double
    let xRange: (Double, Double), yRange: (Double, Double)

    func px(_ x: Double) -> Double { x0 + (x - xRange.0) / max(xRange.1 - xRange.0, 1e-12) * width }
    func py(_ y: Double) -> Double { y0 + height - (y - yRange.0) / max(yRange.1 - yRange.0, 1e-12) * height }

    func frame(title: String, xLabel: String, yLabel: String, xTicks: [Double], yTicks: [Double],
               xFormat: (Double) -> String, yFormat: (Double) -> String) -> String {
        var s = ""
        for t in yTicks {
            s += "<line x1=\"\(number(x0))\" y1=\"\(number(py(t)))\" x2=\"\(number(x0 + width))\" y2=\"\(number(py(t)))\" "
                + "stroke=\"\(gridColor)\" stroke-width=\"1\"/>\n"
            s += text(yFormat(t), x: x0 - 6, y: py(t) + 4, size: 11, anchor: "end")
        }
        for t in xTicks {
            s += "<line x1=\"\(number(px(t)))\" y1=\"\(number(y0 + height))\" x2=\"\(number(px(t)))\" y2=\"\(number(y0 + height + 4))\" "
                + "stroke=\"\(inkColor)\" stroke-width=\"1\"/>\n"
            s += text(xFormat(t), x: px(t), y: y0 + height + 17, size: 11)
        }
        s += "<rect x=\"\(number(x0))\" y=\"\(number(y0))\" width=\"\(number(width))\" height=\"\(number(height))\" "
            + "fill=\"none\" stroke=\"\(inkColor)\" stroke-width=\"1\"/>\n"
        s += text(title, x: x0 + width / 2, y: y0 - 10, size: 14, extra: " font-weight=\"bold\"")
        s += text(xLabel, x: x0 + width / 2, y: y0 + height + 36, size: 12)
        let cx = x0 - 44, cy = y0 + height / 2
        s += text(yLabel, x: cx, y: cy, size: 12, extra: " transform=\"rotate(-90 \(number(cx)) \(number(cy)))\"")
        return s
    }

    func polyline(_ points: [(Double, Double)], color: String, dashed: Bool = false) -> String {
        let p = points.map { "\(number(px($0.0))),\(number(py($0.1)))" }.joined(separator: " ")
        return "<polyline points=\"\(p)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\""
            + (dashed ? " stroke-dasharray=\"6 4\"" : "") + "/>\n"
    }

    func dots(_ points: [(Double, Double)], color: String) -> String {
        points.map { "<circle cx=\"\(number(px($0.0)))\" cy=\"\(number(py($0.1)))\" r=\"2.5\" fill=\"\(color)\"/>\n" }.joined()
    }
}

/// A one-row legend: a line sample and a label per entry, `step` pixels apart.
private func legend(x: Double, y: Double, step: Double, entries: [(String, String, Bool)]) -> String {
    var s = ""
    for (i, (label, color, dashed)) in entries.enumerated() {
        let lx = x + Double(i) * step
        s += "<line x1=\"\(number(lx))\" y1=\"\(number(y))\" x2=\"\(number(lx + 24))\" y2=\"\(number(y))\" stroke=\"\(color)\" "
            + "stroke-width=\"2\"" + (dashed ? " stroke-dasharray=\"4 3\"" : "") + "/>\n"
        s += text(label, x: lx + 30, y: y + 4, size: 12, anchor: "start")
    }
    return s
}

/// Two panels, loss and F1 per epoch, training vs validation, with the best epoch marked.
/// - Parameters:
///   - records: the epochs, in order.
///   - bestEpoch: the kept epoch (a dashed vertical line).
///   - selectBy: named in the marker's label.
public func learningCurvesSVG(records: [EpochRecord], bestEpoch: Int, selectBy: SelectionMetric) -> String {
    let width = 960.0, height = 400.0
    let epochs = records.map { Double($0.epoch) }
    let xRange = (1.0, max(2.0, Double(records.last?.epoch ?? 2)))
    let xTicks = ticks(xRange.0, xRange.1).filter { $0 >= 1 && $0 == $0.rounded() }
    let losses = records.flatMap { [$0.training.loss, $0.validation.loss] }.filter(\.isFinite)
    let lossTop = max(losses.max() ?? 1, 1e-3) * 1.05
    var lossTicks = ticks(0, lossTop)
    if let last = lossTicks.last, last < lossTop, lossTicks.count >= 2 { lossTicks.append(last + lossTicks[1] - lossTicks[0]) }
    let loss = Panel(x0: 80, y0: 50, width: 360, height: 270, xRange: xRange, yRange: (0, lossTicks.last ?? 1))
    let f1 = Panel(x0: 570, y0: 50, width: 360, height: 270, xRange: xRange, yRange: (0, 1))
    let epochFormat: (Double) -> String = { String(Int($0)) }
    var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" "
        + "viewBox=\"0 0 \(Int(width)) \(Int(height))\">\n"
    s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    s += loss.frame(title: "Loss", xLabel: "epoch", yLabel: "cross-entropy", xTicks: xTicks, yTicks: lossTicks,
                    xFormat: epochFormat, yFormat: { String(format: "%g", $0) })
    s += f1.frame(title: "F1 (class 1, argmax)", xLabel: "epoch", yLabel: "F1", xTicks: xTicks, yTicks: ticks(0, 1),
                  xFormat: epochFormat, yFormat: { String(format: "%.1f", $0) })
    for (panel, value) in [(loss, { (m: EpochMetrics) in m.loss }), (f1, { (m: EpochMetrics) in m.confusion.f1 })] {
        let train = zip(epochs, records.map { value($0.training) }).map { ($0, $1) }
        let validation = zip(epochs, records.map { value($0.validation) }).map { ($0, $1) }
        s += panel.polyline(train, color: trainColor) + panel.dots(train, color: trainColor)
        s += panel.polyline(validation, color: validationColor) + panel.dots(validation, color: validationColor)
        if bestEpoch >= 1 {
            let bx = panel.px(Double(bestEpoch))
            s += "<line x1=\"\(number(bx))\" y1=\"\(number(panel.y0))\" x2=\"\(number(bx))\" y2=\"\(number(panel.y0 + panel.height))\" "
                + "stroke=\"#555555\" stroke-width=\"1\" stroke-dasharray=\"4 3\"/>\n"
        }
    }
    s += legend(x: 250, y: 382, step: 150, entries: [("training", trainColor, false), ("validation", validationColor, false),
                                                     ("best epoch \(bestEpoch) (by \(selectBy.rawValue))", "#555555", true)])
    s += "</svg>\n"
    return s
}

/// The precision–recall curve of (probabilities, labels) with the tuned threshold and the argmax rule (0.5)
/// marked.
/// - Parameters:
///   - probabilities: P(class 1) per validation sample.
///   - labels: 0 or 1 per sample.
///   - threshold: the tuned threshold and its F1.
///   - title: the heading.
public func precisionRecallSVG(probabilities: [Double], labels: [Int], threshold: ThresholdChoice, title: String) -> String {
    let width = 560.0, height = 520.0
    let panel = Panel(x0: 80, y0: 50, width: 440, height: 360, xRange: (0, 1), yRange: (0, 1.02))
    var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" "
        + "viewBox=\"0 0 \(Int(width)) \(Int(height))\">\n"
    s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    s += panel.frame(title: title, xLabel: "recall", yLabel: "precision", xTicks: ticks(0, 1), yTicks: ticks(0, 1),
                     xFormat: { String(format: "%.1f", $0) }, yFormat: { String(format: "%.1f", $0) })
    let curve = precisionRecallCurve(scores: probabilities, labels: labels)
    if let first = curve.first {
        // Average precision's step function: precision holds until recall reaches the next point.
        var points = [(0.0, first.precision)]
        for p in curve {
            points.append((p.recall, points.last!.1))
            points.append((p.recall, p.precision))
        }
        s += panel.polyline(points, color: validationColor)
        let positives = Double(labels.filter { $0 == 1 }.count) / Double(max(1, labels.count))
        s += panel.polyline([(0, positives), (1, positives)], color: "#999999", dashed: true)
        s += text("chance (\(String(format: "%.2f", positives)))", x: panel.px(1) - 4, y: panel.py(positives) - 5, size: 11,
                  anchor: "end", color: "#777777")
    } else {
        s += text("no positives in the validation split", x: panel.px(0.5), y: panel.py(0.5))
    }
    func confusion(at t: Double) -> BinaryConfusion {
        var c = BinaryConfusion()
        for (p, l) in zip(probabilities, labels) { c.add(prediction: p >= t ? 1 : 0, label: l) }
        return c
    }
    let marks = [(threshold.threshold, "tuned threshold \(String(format: "%.3f", threshold.threshold)): F1 \(String(format: "%.3f", threshold.f1))",
                  "#2ca02c"),
                 (0.5, "0.5 (argmax): F1 \(String(format: "%.3f", confusion(at: 0.5).f1))", "#ff7f0e")]
    for (i, (t, label, color)) in marks.enumerated() {
        let c = confusion(at: t)
        guard c.truePositives + c.falsePositives > 0 else { continue }
        s += "<circle cx=\"\(number(panel.px(c.recall)))\" cy=\"\(number(panel.py(c.precision)))\" r=\"\(i == 0 ? 7 : 5)\" "
            + "fill=\"\(color)\" fill-opacity=\"0.8\" stroke=\"\(inkColor)\" stroke-width=\"1\"/>\n"
        s += "<circle cx=\"\(number(110))\" cy=\"\(number(470 + Double(i) * 20))\" r=\"5\" fill=\"\(color)\" stroke=\"\(inkColor)\" stroke-width=\"1\"/>\n"
        s += text(label + String(format: " (precision %.3f, recall %.3f)", c.precision, c.recall), x: 122, y: 474 + Double(i) * 20,
                  size: 12, anchor: "start")
    }
    s += "</svg>\n"
    return s
}
