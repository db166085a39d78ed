import Foundation
import NIOCore
import NIOHTTP1
import Testing
@testable import WarrenGateway

/// `/docs`: one page generated from both contracts at start-up, and the raw files beside it.
@Suite("Documentation served by the gateway")
struct GatewayDocsTests {
    @Test("the page lists every operation, its parameters, statuses and schemas, and the AMQP messages")
    func page() throws {
        let asyncAPI = try String(
            contentsOf: GatewayProcess.repository.appendingPathComponent("schemas/asyncapi.yaml"), encoding: .utf8)
        let document = try RouteTable.decode(OpenAPIContractTests.text)
        let docs = try GatewayDocs(openAPIText: OpenAPIContractTests.text, document: document, asyncAPIText: asyncAPI)
        let html = String(buffer: try docs.response(for: .docs).body)
        #expect(try docs.response(for: .docs).headers.first(name: "content-type") == "text/html; charset=utf-8")
        for route in try RouteTable(document: document).routes {
            #expect(html.contains("id=\"\(route.operationID)\""), "\(route.operationID)")
        }
        for expected in ["<code>Idempotency-Key</code>", "<td>415</td>", "href=\"#response-Error\"", "href=\"#schema-NewOrder\"", "id=\"schema-NewOrder\"", "orders.create", "warren.events", "{service}.rpc"] {
            #expect(html.contains(expected), "\(expected)")
        }
        #expect(String(buffer: try docs.response(for: .openapi).body) == OpenAPIContractTests.text)
        #expect(String(buffer: try docs.response(for: .asyncapi).body) == asyncAPI)
    }

    @Test("what the documents say is escaped; without an asyncapi.yaml its route is 404")
    func escaping() throws {
        let text = """
            openapi: 3.1.0
            info: {title: '<b>T</b>', version: '1', description: 'a & b <script>alert(1)</script>'}
            paths:
              /x:
                get:
                  operationId: '"><img src=x>'
                  summary: "it's <i>"
                  x-warren-operation: a.b
                  parameters: [{name: '<u>', in: query, schema: {type: string}}]
            """
        let docs = try GatewayDocs(openAPIText: text, document: try RouteTable.decode(text), asyncAPIText: nil)
        let html = String(buffer: try docs.response(for: .docs).body)
        for raw in ["<b>T", "<script>", "<img", "<i>", "<u>", "it's"] {
            #expect(!html.contains(raw), "\(raw) unescaped")
        }
        for escaped in ["&lt;script&gt;", "a &amp; b", "&quot;&gt;&lt;img src=x&gt;", "it&#39;s &lt;i&gt;", "&lt;u&gt;"] {
            #expect(html.contains(escaped), "\(escaped)")
        }
        #expect(throws: GatewayError.notFound("this gateway has no asyncapi.yaml beside its OpenAPI document")) {
            try docs.response(for: .asyncapi)
        }
        #expect(throws: GatewayConfigurationError.self) {
            try GatewayDocs(openAPIText: text, document: try RouteTable.decode(text), asyncAPIText: "[a, b")
        }
    }

    @Test("an AsyncAPI document that is not YAML, not a mapping, or an alias bomb stops the start, saying which", arguments: [
        ("[a, b", "the AsyncAPI document beside the OpenAPI document is not valid YAML"),
        ("- a\n- b\n", "the AsyncAPI document beside the OpenAPI document is not a YAML mapping"),
        (RouteTableTests.aliasBomb, "the AsyncAPI document beside the OpenAPI document expands to more than"),
    ])
    func refusedAsyncAPI(_ asyncAPI: String, _ message: String) throws {
        let text = OpenAPIContractTests.text
        let document = try RouteTable.decode(text)
        let error = #expect(throws: GatewayConfigurationError.self) {
            try GatewayDocs(openAPIText: text, document: document, asyncAPIText: asyncAPI)
        }
        #expect(error?.description.hasPrefix(message) == true, "\(String(describing: error))")
    }
}
