import Foundation
import Hummingbird
import Testing
import WarrenTestSupport

/// An answer from an HTTP server that is not RabbitMQ's management API.
struct Impostor: Sendable, CustomTestStringConvertible {
    let status: HTTPResponse.Status
    let contentType: String
    let answer: String

    var testDescription: String { "\(status.code) \(contentType) \(answer.prefix(40))" }

    static let all = [
        Impostor(status: .notFound, contentType: "text/plain", answer: "404 page not found"),
        Impostor(status: .notFound, contentType: "text/html", answer: "<html><body><h1>Not Found</h1></body></html>"),
        Impostor(status: .notFound, contentType: "application/json", answer: #"{"message":"no route for /api/queues"}"#),
        Impostor(status: .notFound, contentType: "application/json", answer: #"{"error":"Object Not Found"}"#),
        Impostor(status: .notFound, contentType: "application/json", answer: ""),
        Impostor(status: .ok, contentType: "text/html", answer: "<!doctype html><title>Grafana</title>"),
        Impostor(status: .ok, contentType: "application/json", answer: #"{"status":"ok"}"#),
        Impostor(status: .unauthorized, contentType: "text/html", answer: "<h1>401 Authorization Required</h1>"),
        Impostor(status: .badGateway, contentType: "text/html", answer: "<h1>502 Bad Gateway</h1>"),
    ]
}

@Suite("warren and RabbitMQ's management API", .timeLimit(.minutes(3)))
struct ManagementAPITests {
    @Test(
        "a management URL that answers, but not like RabbitMQ's management API, is named as such (exit 3), never taken for an unknown vhost",
        arguments: Impostor.all)
    func impostor(_ impostor: Impostor) async throws {
        try await StubHTTPServer.with(status: impostor.status, contentType: impostor.contentType, answer: impostor.answer) { base in
            let result = try await WarrenCLI.run(["dlq", "list"], url: Broker.url, environment: ["WARREN_MANAGEMENT_URL": base])
            #expect(result.status == 3, "\(result)")
            #expect(
                result.stderr.contains("\(base) does not answer like RabbitMQ's management API (HTTP \(impostor.status.code) for /api/queues/%2F?columns=name)"),
                "\(result)")
            #expect(!result.stderr.contains("vhost"), "\(result)")
            #expect(!result.stderr.contains("management tag"), "\(result)")
            #expect(result.stdout.isEmpty, "\(result)")
        }
    }

    @Test("an impostor behind --management-url stops requeue before anything moves, and says which URL")
    func impostorStopsRequeue() async throws {
        try await TestVhost.with { vhost, connection in
            let parked = try await parkDeadLetters(2, service: "payments", on: connection)
            try await StubHTTPServer.with(status: .notFound, contentType: "text/plain", answer: "404 page not found") { base in
                let result = try await WarrenCLI.run(["dlq", "requeue", "payments", "--all", "--management-url", base], url: vhost.url)
                #expect(result.status == 3, "\(result)")
                #expect(result.stderr.contains("\(base) does not answer like RabbitMQ's management API (HTTP 404 for /api/bindings/"), "\(result)")
                #expect(result.stderr.contains("nothing was requeued"), "\(result)")
            }
            #expect(try await depth("payments.events", on: connection) == 0)
            #expect(try await ids(in: "payments.events.dlq", on: connection) == parked)
        }
    }

    @Test("RabbitMQ's own refusals keep their messages: an unknown vhost (exit 1), a refused login (exit 3)")
    func rabbitMQRefusals() async throws {
        let vhost = "warren-no-such-vhost-\(UUID().uuidString.prefix(8).lowercased())"
        let unknown = try await WarrenCLI.run(["dlq", "list"], url: Broker.url + vhost)
        #expect(unknown.status == 1, "\(unknown)")
        #expect(unknown.stderr.contains("the management API does not know vhost '\(vhost)'"), "\(unknown)")
        #expect(!unknown.stderr.contains("does not answer like"), "\(unknown)")

        let wrongPassword = Broker.url.replacingOccurrences(of: "guest:guest@", with: "guest:not-the-password@")
        try #require(wrongPassword != Broker.url, "the broker URL has no guest:guest@ to change")
        let refused = try await WarrenCLI.run(["dlq", "list"], url: wrongPassword)
        #expect(refused.status == 3, "\(refused)")
        #expect(refused.stderr.contains("the management API refused user 'guest'"), "\(refused)")
        #expect(!refused.stderr.contains("does not answer like"), "\(refused)")
    }
}
