// FeatureStoreWriter.swift — writing a feature store row batch by row batch, committed atomically.
import FileIO
import Foundation

/// Streams rows into a new feature store (format: the top of FeatureStore.swift). Rows go to a temporary file in the
/// destination's folder (FileIO.AtomicFileWriter); `finish()` writes the header, flushes and renames it over `url`.
/// Until then, and forever if the writer is dropped without `finish()` or a write fails, nothing is at `url` that
/// was not there before, and the temporary is removed.
///
/// One writer is used from one thread at a time.
public final class FeatureStoreWriter {
    public let url: URL
    public let width: Int
    public let elementType: FeatureElementType
    /// The row count `finish()` insists on, when given.
    public let expectedRows: Int?
    /// Rows appended so far.
    public private(set) var rowCount = 0

    /// nil once finished or abandoned.
    private var file: AtomicFileWriter?
    /// Half-precision bits of the rows being appended (fp16 stores only), reused between calls.
    private var halfBits: [UInt16] = []
    /// Rows converted and written per `write` call: 256 KB of output at width 2048 in fp16.
    private static let rowsPerWrite = 64

    /// Creates the temporary file and reserves the header's place.
    /// - Parameters:
    ///   - url: the destination; its folder must exist. An existing file there is replaced only by `finish()`.
    ///   - width: elements per row, 1...65536.
    ///   - elementType: fp32 (exact) or fp16 (rounded to nearest, ties to even).
    ///   - expectedRows: when known, the disk space is reserved up front (a full disk fails now, not hours later) and
    ///     `finish()` refuses any other count.
    /// - Throws: `FeatureStoreError` when the temporary cannot be created or the space reserved.
    public init(url: URL, width: Int, elementType: FeatureElementType = .float32, expectedRows: Int? = nil) throws {
        precondition((1 ... FeatureStoreHeader.widthLimit).contains(width),
                     "FeatureStoreWriter: width \(width) is outside 1...\(FeatureStoreHeader.widthLimit)")
        precondition((expectedRows ?? 0) >= 0, "FeatureStoreWriter: expectedRows \(expectedRows!) is negative")
        self.url = url
        self.width = width
        self.elementType = elementType
        self.expectedRows = expectedRows
        do {
            let file = try AtomicFileWriter(url: url)
            if let expectedRows {
                let (elements, overflow1) = expectedRows.multipliedReportingOverflow(by: width)
                let (bytes, overflow2) = elements.multipliedReportingOverflow(by: elementType.size)
                let (total, overflow3) = bytes.addingReportingOverflow(FeatureStoreHeader.alignment)
                guard !overflow1, !overflow2, !overflow3 else {
                    throw FeatureStoreError(path: url.path, reason: "\(expectedRows) rows × \(width) \(elementType) overflow 64 bits")
                }
                try file.reserve(byteCount: total)
            }
            // Zeros where the header goes; `finish()` writes it once the row count is known.
            try [UInt8](repeating: 0, count: FeatureStoreHeader.alignment).withUnsafeBytes { try file.write($0) }
            self.file = file
        } catch let error as FileError {
            throw FeatureStoreError(path: error.path, reason: error.reason)
        }
    }

    deinit { file?.abandon() }

    /// Appends whole rows (row-major, a multiple of `width` elements; anything else is a programming error and stops
    /// the process). fp16 stores round each value to the nearest half (ties to even; beyond ±65504 it becomes ±inf).
    /// - Throws: `FeatureStoreError` when writing fails; the writer is then abandoned and later calls throw too.
    public func append(rows: UnsafeBufferPointer<Float>) throws {
        precondition(rows.count % width == 0, "FeatureStoreWriter.append: \(rows.count) values are not whole rows of \(width)")
        let file = try openFile()
        do {
            switch elementType {
            case .float32:
                try file.write(UnsafeRawBufferPointer(rows))
            case .float16:
                let chunk = Self.rowsPerWrite * width
                if halfBits.count < chunk { halfBits = [UInt16](repeating: 0, count: chunk) }
                var start = 0
                while start < rows.count {
                    let end = min(start + chunk, rows.count)
                    try halfBits.withUnsafeMutableBufferPointer { bits in
                        for i in start ..< end { bits[i - start] = Float16(rows[i]).bitPattern }
                        try file.write(UnsafeRawBufferPointer(start: bits.baseAddress!, count: (end - start) * 2))
                    }
                    start = end
                }
            }
        } catch let error as FileError {
            abandon()
            throw FeatureStoreError(path: error.path, reason: error.reason)
        }
        rowCount += rows.count / width
    }

    /// Appends whole rows; see `append(rows:)`.
    public func append(_ rows: [Float]) throws {
        try rows.withUnsafeBufferPointer { try append(rows: $0) }
    }

    /// Writes the header, flushes the file and renames it over `url`. The writer is done afterwards.
    /// - Throws: `FeatureStoreError` when the row count differs from `expectedRows` or the commit fails; nothing is
    ///   left at `url` that was not there before, and the temporary is removed.
    public func finish() throws {
        let file = try openFile()
        if let expectedRows, expectedRows != rowCount {
            abandon()
            throw FeatureStoreError(path: url.path, reason: "expected \(expectedRows) rows, \(rowCount) were appended; nothing written")
        }
        let header = FeatureStoreHeader(elementType: elementType, rows: rowCount, width: width).encoded()
        do {
            try header.withUnsafeBytes { try file.write($0, atOffset: 0) }
            try file.commit()
            self.file = nil
        } catch let error as FileError {
            abandon()
            throw FeatureStoreError(path: error.path, reason: error.reason)
        }
    }

    /// Removes the temporary file; nothing is written to `url`. Does nothing once finished or abandoned.
    public func abandon() {
        file?.abandon()
        file = nil
    }

    private func openFile() throws -> AtomicFileWriter {
        guard let file else {
            throw FeatureStoreError(path: url.path, reason: "this writer is finished or was abandoned after an error")
        }
        return file
    }
}
