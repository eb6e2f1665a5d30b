// ColumnStatistics.swift — per-column mean and spread of a store's rows without holding the rows in memory.

extension FeatureStore {
    /// Rows copied per chunk of `columnMeanAndStd`: 256 rows of 2048 floats is a 2 MB buffer.
    static let statisticsChunkRows = 256

    /// Each column's mean and population standard deviation (divided by the row count, as
    /// `NN.Standardize.setStatistics` takes them) over the rows at `indices`, in double precision, reading
    /// `statisticsChunkRows` rows at a time: memory stays one chunk however many rows there are.
    ///
    /// Two passes (sum, then squared distances from the mean), each adding rows in the order of `indices`, exactly as
    /// `setStatistics(rows:count:)` does over the same rows, so `Float(mean)` and `Float(std)` are bit-identical to
    /// what it stores (before its rule that a std under `Standardize.minimumStd` becomes 1). A row listed twice counts
    /// twice.
    /// - Parameter indices: at least one row, each in `0 ..< rowCount` (a precondition, as in `copyRows`).
    /// - Returns: `width` means and `width` standard deviations.
    public func columnMeanAndStd<Indices: Collection>(rows indices: Indices) -> (mean: [Double], std: [Double])
        where Indices.Element == Int {
        let count = indices.count
        precondition(count >= 1, "FeatureStore.columnMeanAndStd: no rows")
        let width = self.width
        let chunkRows = Self.statisticsChunkRows
        var buffer = [Float](repeating: 0, count: chunkRows * width)
        var chunk = [Int]()
        chunk.reserveCapacity(chunkRows)

        /// Calls `add` with each chunk of rows in the order of `indices`.
        func forEachChunk(_ add: (UnsafeBufferPointer<Float>, Int) -> Void) {
            var iterator = indices.makeIterator()
            while true {
                chunk.removeAll(keepingCapacity: true)
                while chunk.count < chunkRows, let index = iterator.next() { chunk.append(index) }
                if chunk.isEmpty { break }
                buffer.withUnsafeMutableBufferPointer { copyRows(chunk, into: $0) }
                buffer.withUnsafeBufferPointer { add($0, chunk.count) }
            }
        }

        var sums = [Double](repeating: 0, count: width)
        sums.withUnsafeMutableBufferPointer { sums in
            forEachChunk { rows, rowCount in
                for r in 0 ..< rowCount { for c in 0 ..< width { sums[c] += Double(rows[r * width + c]) } }
            }
        }
        let means = sums.map { $0 / Double(count) }
        var squares = [Double](repeating: 0, count: width)
        squares.withUnsafeMutableBufferPointer { squares in
            means.withUnsafeBufferPointer { means in
                forEachChunk { rows, rowCount in
                    for r in 0 ..< rowCount {
                        for c in 0 ..< width {
                            let d = Double(rows[r * width + c]) - means[c]
                            squares[c] += d * d
                        }
                    }
                }
            }
        }
        return (means, squares.map { ($0 / Double(count)).squareRoot() })
    }
}
