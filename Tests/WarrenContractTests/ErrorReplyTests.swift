import Foundation
import Testing
import WarrenContract

@Suite("Error reply: one decoder for every caller")
struct ErrorReplyTests {
    @Test("every code survives the trip", arguments: ServiceError.Code.allCases)
    func roundTrip(code: ServiceError.Code) {
        let error = ServiceError(code, "no user 42 — «ünïcødé» \u{202E}")
        #expect(ErrorReply.decode(ErrorReply(error: error).body, operation: "users.get") == error)
    }

    @Test("the wire form is the schema's")
    func wireForm() throws {
        let object = try JSONSerialization.jsonObject(with: ErrorReply(error: .notFound("gone")).body) as? [String: [String: String]]
        #expect(object == ["error": ["code": "not_found", "message": "gone"]])
    }

    @Test("what other clients send is read tolerantly")
    func tolerant() {
        #expect(ErrorReply.decode(Data(#"{"error":{"code":"conflict"}}"#.utf8), operation: "o") == .conflict("conflict"))
        #expect(ErrorReply.decode(Data(#"{"error":{"code":"invalid","message":7}}"#.utf8), operation: "o") == .invalid("invalid"))
        #expect(
            ErrorReply.decode(Data(#"{"extra":1,"error":{"code":"timeout","message":"slow","detail":[1]}}"#.utf8), operation: "o")
                == .timeout("slow"))
    }

    @Test("a service's message is passed on up to 2,000 characters, cut there with the count of the rest")
    func boundedMessage() {
        let long = String(repeating: "é", count: 4 * 1024 * 1024)
        let error = ErrorReply.decode(ErrorReply(error: .invalid(long)).body, operation: "users.get")
        #expect(error.code == .invalid)
        #expect(error.message.unicodeScalars.count < 2_100)
        #expect(error.message.hasSuffix("… (\(4 * 1024 * 1024 - 2_000) more characters)"))
        let exact = String(repeating: "m", count: 2_000)
        #expect(ErrorReply.decode(ErrorReply(error: .invalid(exact)).body, operation: "o").message == exact)
    }

    @Test(
        "a body that breaks the contract is internal, naming the operation",
        arguments: [
            "", "null", "[]", "42", #""error""#, "{", #"{"error":null}"#, #"{"error":"not_found"}"#, #"{"error":{}}"#,
            #"{"error":{"code":"NOT_FOUND","message":"x"}}"#, #"{"error":{"code":"teapot","message":"x"}}"#, #"{"error":{"code":1}}"#,
            #"{"code":"not_found","message":"x"}"#, "\u{FEFF}{", String(repeating: "[", count: 100_000),
        ])
    func hostile(body: String) {
        let error = ErrorReply.decode(Data(body.utf8), operation: "users.get")
        #expect(error.code == .internal)
        #expect(error.message.contains("users.get"))
    }

    @Test("bytes that are not UTF-8 are internal too")
    func notUTF8() {
        #expect(ErrorReply.decode(Data([0xFF, 0xFE, 0x00, 0x7B]), operation: "x").code == .internal)
    }
}
