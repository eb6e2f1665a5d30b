import UntrustedJSON
import XCTest

/// The reader itself, in both dialects; the callers' tests (HostileInputTests, LabelsRobustnessTests) pin what
/// each format makes of it.
final class JSONParserTests: XCTestCase {
    let strict = JSONDialect.strict(maximumNesting: 4)
    let python = JSONDialect.python(maximumNesting: 4)

    func parse(_ text: String, _ dialect: JSONDialect) -> Result<JSONValue, JSONSyntaxError> {
        Result { try JSONValue.parse(text, dialect: dialect) }.mapError { $0 as! JSONSyntaxError }
    }

    func testNumbersAreKeptAsWritten() throws {
        for dialect in [strict, python] {
            XCTAssertEqual(try parse(#"[-0, 1e3, 2.50, 18446744073709551616, 1E+400]"#, dialect).get(),
                           .array([.number("-0"), .number("1e3"), .number("2.50"), .number("18446744073709551616"),
                                   .number("1E+400")]))
            for bad in ["01", "1.", "-", "+1", ".5", "1e", "1e+", "0x10", "-NaN", "nan", "inf"] {
                XCTAssertThrowsError(try parse("[\(bad)]", dialect).get(), bad)
            }
        }
    }

    func testNonFiniteLiteralsOnlyInThePythonDialect() throws {
        XCTAssertEqual(try parse("[NaN, Infinity, -Infinity]", python).get(),
                       .array([.number("NaN"), .number("Infinity"), .number("-Infinity")]))
        for literal in ["NaN", "Infinity", "-Infinity"] {
            guard case .failure(let error) = parse("[\(literal)]", strict) else { return XCTFail(literal) }
            XCTAssertTrue(error.message.contains("no NaN or Infinity"), error.description)
            XCTAssertEqual(error.offset, literal.hasPrefix("-") ? 2 : 1)
        }
    }

    func testDuplicateNames() throws {
        guard case .failure(let error) = parse(#"{"a": 1, "b": 2, "a": 3}"#, strict) else { return XCTFail() }
        XCTAssertEqual(error.duplicateName, "a")
        XCTAssertEqual(error.offset, 17)
        // Python's dict: the first one's place, the last one's value.
        XCTAssertEqual(try parse(#"{"a": 1, "b": 2, "a": 3}"#, python).get(),
                       .object([.init("a", .number("3")), .init("b", .number("2"))]))
        // Past the few names found by scanning, a dictionary finds them.
        let many = (0 ..< 50).map { "\"k\($0)\": \($0)" }.joined(separator: ", ")
        XCTAssertThrowsError(try parse("{\(many), \"k40\": 0}", strict).get())
        guard case .object(let members) = try parse("{\(many), \"k40\": 0, \"k3\": 1}", python).get() else {
            return XCTFail()
        }
        XCTAssertEqual(members.count, 50)
        XCTAssertEqual(members[40].value, .number("0"))
        XCTAssertEqual(members[3].value, .number("1"))
        XCTAssertEqual(members.map(\.name), (0 ..< 50).map { "k\($0)" })
    }

    func testNestingLimit() throws {
        for dialect in [strict, python] {
            XCTAssertNoThrow(try parse("[[{\"a\": [1]}]]", dialect).get())
            guard case .failure(let error) = parse("[[{\"a\": [[1]]}]]", dialect) else { return XCTFail() }
            XCTAssertEqual(error.message, "nesting deeper than 4")
            // Far deeper than any stack holds: refused at the limit, not recursed into.
            XCTAssertThrowsError(try parse(String(repeating: "[", count: 1_000_000), dialect).get())
        }
    }

    func testTrailingGarbageAndWhitespace() throws {
        for dialect in [strict, python] {
            XCTAssertEqual(try parse(" \t\n{}\r\n ", dialect).get(), .object([]))
            for bad in ["[] []", "{} x", "1 2", "[]\u{FEFF}", "\u{FEFF}[]", "", " ", "[1,]", #"{"a" 1}"#, "[tru]"] {
                XCTAssertThrowsError(try parse(bad, dialect).get(), bad)
            }
        }
        guard case .failure(let error) = parse("[] x", strict) else { return XCTFail() }
        XCTAssertEqual(error.description, "unexpected text after the JSON value at byte 3")
    }

    func testStrings() throws {
        for dialect in [strict, python] {
            XCTAssertEqual(try parse(#"["\u0050\"\\\/\b\f\n\r\t", "\ud83d\ude00", "é"]"#, dialect).get(),
                           .array([.string("P\"\\/\u{08}\u{0C}\n\r\t"), .string("😀"), .string("é")]))
            for bad in ["[\"tab\there\"]", #"["\x"]"#, #"["\u12"]"#, #"["open]"#] {
                XCTAssertThrowsError(try parse(bad, dialect).get(), bad)
            }
        }
        // Lone surrogates: refused by RFC 8259's dialect, U+FFFD in Python's (which keeps them as they are).
        XCTAssertThrowsError(try parse(#"["\ud800"]"#, strict).get())
        XCTAssertThrowsError(try parse(#"["\udc00"]"#, strict).get())
        XCTAssertEqual(try parse(#"["\ud800\u0041", "\udc00"]"#, python).get(),
                       .array([.string("\u{FFFD}A"), .string("\u{FFFD}")]))
        // Bytes that are not UTF-8.
        let bytes: [UInt8] = [UInt8(ascii: "\""), 0xFF, UInt8(ascii: "\"")]
        XCTAssertThrowsError(try bytes.withUnsafeBytes { try JSONValue.parse($0, dialect: strict) })
    }

    func testQuoteRoundTrips() throws {
        let text = "a\"b\\c\nd\u{01}é"
        XCTAssertEqual(try parse(JSONValue.quote(text), strict).get(), .string(text))
    }
}
