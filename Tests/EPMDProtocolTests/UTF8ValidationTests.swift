import EPMDProtocol
import Testing

@Suite struct UTF8ValidationTests {
    @Test("valid strings count code points")
    func valid() {
        #expect(UTF8Validation.codePointCount(Array("foo".utf8)) == 3)
        #expect(UTF8Validation.codePointCount([UInt8]()) == 0)
        #expect(UTF8Validation.codePointCount(Array("\u{1F608}".utf8)) == 1)
        #expect(UTF8Validation.codePointCount(Array("é€\u{10FFFF}".utf8)) == 3)
    }

    @Test(
        "overlong forms, surrogates, values above U+10FFFF and truncated sequences are refused",
        arguments: [
            [0xFF, 0xFE], [0xC0, 0xAF], [0xC1, 0xBF], [0xE0, 0x80, 0xAF], [0xED, 0xA0, 0x80], [0xF0, 0x80, 0x80, 0xAF],
            [0xF4, 0x90, 0x80, 0x80], [0xF5, 0x80, 0x80, 0x80], [0xE2, 0x82], [0x80], [0xC3],
        ] as [[UInt8]]
    )
    func invalid(bytes: [UInt8]) {
        #expect(UTF8Validation.codePointCount(bytes) == nil)
    }
}
