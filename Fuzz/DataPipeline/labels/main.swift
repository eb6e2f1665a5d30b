// Fuzz target `labels`: labels.csv as the user's file reaches it — the CSV reader, header and column rules,
// label and number rules, and the bounding_boxes JSON reader and encoding — without the file system.
//
// Each input is read three ways: as a whole labels.csv; as the rows under a valid header (so mutations spend
// their time in the rows rather than in failing the header); and as one bounding_boxes cell.
import Foundation

/// The file name errors must start with.
private let csvName = "fuzz.csv"
/// Built per input: a global `Data` would be reported as leaked (LeakSanitizer cannot follow the tagged
/// pointer inside it).
private func validHeader() -> Data { Data((LabelsTable.requiredColumns.joined(separator: ",") + "\n").utf8) }

/// Every name resolves, to its own path: the reader's rules run to the end of the file.
private func findImage(_ name: String) -> ImageFinder.Result {
    .found(URL(fileURLWithPath: "/fuzz-images").appendingPathComponent(name))
}

/// Reading returns a table whose rows are all `metaDim` wide and finite, or throws a `DataError` whose
/// description is one line naming the file. Anything else traps, and libFuzzer keeps the input.
private func expectTableOrCleanError(_ csv: Data, maxBoxes: Int) {
    do {
        let table = try LabelsTable(csvData: csv, csvName: csvName, maxBoxes: maxBoxes, findImage: findImage)
        for sample in table.samples {
            guard sample.metadata.count == table.metaDim, sample.label == 0 || sample.label == 1 else {
                fatalError("row \(sample.row): \(sample.metadata.count) values (metaDim \(table.metaDim)), label \(sample.label)")
            }
            guard sample.metadata.allSatisfy(\.isFinite) else { fatalError("row \(sample.row): non-finite metadata") }
        }
        if let warning = table.boxWarning, warning.contains("\n") { fatalError("multi-line warning: \(warning)") }
    } catch let error as DataError {
        let text = error.description
        if !text.hasPrefix(csvName + " ") || text.contains("\n") || text.contains("\r") {
            fatalError("malformed error message: \(text)")
        }
    } catch {
        fatalError("threw \(type(of: error)), not a DataError: \(error)")
    }
}

/// A cell's boxes encode to `8·K` numbers, finite whenever the cell has no non-finite box number.
private func checkCell(_ cell: String, maxBoxes: Int) {
    let (boxes, status) = BoxEncoding.parseCell(cell)
    if status == .unparseable, !boxes.isEmpty { fatalError("unparseable cell with \(boxes.count) boxes") }
    let encoded = BoxEncoding.encode(boxes, maxBoxes: maxBoxes)
    if encoded.count != BoxEncoding.valuesPerBox * maxBoxes { fatalError("\(encoded.count) values for K = \(maxBoxes)") }
    if BoxEncoding.firstNonFiniteValue(in: boxes) == nil, !encoded.allSatisfy(\.isFinite) {
        fatalError("non-finite encoding of finite boxes")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let input = Data(bytes: start, count: count)
    // K from the input's length: every K small enough to keep runs fast, including 0.
    let maxBoxes = count % 5
    expectTableOrCleanError(input, maxBoxes: maxBoxes)
    expectTableOrCleanError(validHeader() + input, maxBoxes: maxBoxes)
    checkCell(String(decoding: input, as: UTF8.self), maxBoxes: maxBoxes)
    return 0
}
