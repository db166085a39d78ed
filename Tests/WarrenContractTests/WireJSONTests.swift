import Foundation
import Testing
import WarrenContract
import WarrenTestSupport

/// The wire's JSON is UTF-8 (RFC 8259 §8.1, schemas/warren): a request in another encoding is
/// refused with a reason, not guessed.
struct WireJSONTests {
    struct Request: Decodable { var id: String }

    @Test("a request in UTF-16 or UTF-32, or with a raw NUL or a byte that is not UTF-8, is invalid; in UTF-8 it decodes")
    func utf8Only() throws {
        let json = #"{"id":"42"}"#
        #expect(try WireJSON.decode(Request.self, from: Data(json.utf8)).id == "42")
        let others = HostileValues.otherEncodings(of: json)
        #expect(others.count == 8)
        for (name, body) in others {
            #expect(!WireJSON.isUTF8Text(body), "\(name)")
            #expect(throws: ServiceError.invalid("the body must be JSON in UTF-8"), "\(name)") {
                try WireJSON.decode(Request.self, from: body)
            }
        }
    }
}
