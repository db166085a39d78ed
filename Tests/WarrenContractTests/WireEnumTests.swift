import Foundation
import Testing
import WarrenContract

@Suite("Closed sets of names on the wire: refused naming the allowed values, in the contract's words")
struct WireEnumTests {
    enum Status: String, WireEnum { case pending, confirmed, cancelled }
    struct Filter: Decodable { var status: Status? }
    struct Nested: Decodable { var filters: [Filter] }

    /// Values no `Status` is: another case, other spellings, other JSON types, text Swift would quote.
    static let hostileValues: [String] = [
        #""bogus""#, #""Pending""#, #""PENDING""#, #"" pending""#, #""pending ""#, #""""#, #""pending\u0000""#,
        #""Cannot initialize""#, "1", "true", "[]", "{}", #"["pending"]"#,
    ]

    @Test("a value outside the set is invalid, naming the field and the allowed values, never Swift's text", arguments: hostileValues)
    func refused(value: String) {
        let error = #expect(throws: ServiceError.self) { try WireJSON.decode(Filter.self, from: Data(#"{"status":\#(value)}"#.utf8)) }
        #expect(error?.code == .invalid)
        let message = error?.message ?? ""
        #expect(message.contains("'status'"), "\(message)")
        for leak in ["Cannot initialize", "String value", "Status", "Swift", "Expected to decode", "debugDescription"] {
            #expect(!message.contains(leak), "\(value): \(message)")
        }
    }

    @Test("a string outside the set: one sentence listing every allowed value, with the full path", arguments: [#""bogus""#, #""Pending""#, #""""#])
    func message(value: String) {
        let error = #expect(throws: ServiceError.self) { try WireJSON.decode(Filter.self, from: Data(#"{"status":\#(value)}"#.utf8)) }
        #expect(error?.message == "field 'status' must be one of pending, confirmed, cancelled")
        let nested = #expect(throws: ServiceError.self) {
            try WireJSON.decode(Nested.self, from: Data(#"{"filters":[{"status":"pending"},{"status":\#(value)}]}"#.utf8))
        }
        #expect(nested?.message == "field 'filters[1].status' must be one of pending, confirmed, cancelled")
    }

    @Test("every value in the set decodes, and absent or null is nil")
    func accepted() throws {
        for status in Status.allCases {
            #expect(try WireJSON.decode(Filter.self, from: Data(#"{"status":"\#(status.rawValue)"}"#.utf8)).status == status)
        }
        #expect(try WireJSON.decode(Filter.self, from: Data("{}".utf8)).status == nil)
        #expect(try WireJSON.decode(Filter.self, from: Data(#"{"status":null}"#.utf8)).status == nil)
    }

    @Test("the contract's own sets refuse the same way: error codes and flow statuses")
    func contractSets() {
        struct Coded: Decodable { var code: ServiceError.Code }
        let code = #expect(throws: ServiceError.self) { try WireJSON.decode(Coded.self, from: Data(#"{"code":"teapot"}"#.utf8)) }
        #expect(code?.message == "field 'code' must be one of \(ServiceError.Code.allCases.map(\.rawValue).joined(separator: ", "))")
        struct Flow: Decodable { var status: EventFlow.Status }
        let flow = #expect(throws: ServiceError.self) { try WireJSON.decode(Flow.self, from: Data(#"{"status":"Complete"}"#.utf8)) }
        #expect(flow?.message == "field 'status' must be one of complete, stopped, empty")
    }

    @Test("Foundation's own refusals (a UUID, a URL) name the field without Foundation's text")
    func foundationText() {
        struct Identified: Decodable { var id: UUID; var link: URL? }
        for body in [#"{"id":"not-a-uuid"}"#, #"{"id":"0b9e5b4c-6f1e-4a8e-9c1d-2f3a4b5c6d7e","link":""}"#] {
            let error = #expect(throws: ServiceError.self) { try WireJSON.decode(Identified.self, from: Data(body.utf8)) }
            let message = error?.message ?? ""
            #expect(message.hasPrefix("field '"), "\(message)")
            #expect(message.hasSuffix("' is invalid"), "\(message)")
            #expect(!message.contains("Attempted"), "\(message)")
        }
    }

    @Test("Warren's own refusals still say why: an impossible date, an unknown filter of events.query")
    func ownText() {
        struct Stamped: Decodable { var at: Date }
        let date = #expect(throws: ServiceError.self) { try WireJSON.decode(Stamped.self, from: Data(#"{"at":"2026-02-30T00:00:00Z"}"#.utf8)) }
        #expect(date?.message.hasPrefix("field 'at' is invalid: not an ISO 8601 time") == true, "\(date?.message ?? "")")
        let filter = #expect(throws: ServiceError.self) { try WireJSON.decode(EventsQuery.self, from: Data(#"{"colour":"red"}"#.utf8)) }
        #expect(filter?.message.hasPrefix("field 'colour' is invalid: not a filter of events.query; known: ") == true, "\(filter?.message ?? "")")
    }
}
