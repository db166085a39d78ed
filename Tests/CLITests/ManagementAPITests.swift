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
        // An empty list, which RabbitMQ also sends: its /api/overview (here `[]` too) tells them apart.
        Impostor(status: .ok, contentType: "application/json", answer: "[]"),
        Impostor(status: .ok, contentType: "application/json", answer: #"{"rabbitmq_version":"3.13.0"}"#),
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

        let wrongPassword = try Self.url(Broker.url, user: "guest", password: "not-the-password")
        let refused = try await WarrenCLI.run(["dlq", "list"], url: wrongPassword)
        #expect(refused.status == 3, "\(refused)")
        #expect(refused.stderr.contains("the management API refused user 'guest': wrong user or password; check them in --url or AMQP_URL"), "\(refused)")
        #expect(!refused.stderr.contains("management tag"), "\(refused)")
        #expect(!refused.stderr.contains("does not answer like"), "\(refused)")
    }

    @Test("a user that logs in without the management tag is told to get it (exit 3)")
    func userWithoutManagementTag() async throws {
        try await TestVhost.with { vhost, _ in
            let user = "warren-untagged-\(UUID().uuidString.prefix(8).lowercased())"
            _ = try BrokerControl.run(["add_user", user, "untagged-pw"])
            defer { _ = try? BrokerControl.run(["delete_user", user]) }
            _ = try BrokerControl.run(["set_permissions", "-p", vhost.name, user, ".*", ".*", ".*"])
            let url = try Self.url(vhost.url, user: user, password: "untagged-pw")
            let result = try await WarrenCLI.run(["dlq", "list"], url: url)
            #expect(result.status == 3, "\(result)")
            #expect(result.stderr.contains("the management API refused user '\(user)': it needs the management tag"), "\(result)")
            #expect(!result.stderr.contains("wrong user or password"), "\(result)")
        }
    }

    @Test("user and password in --management-url are the ones it logs in with, and the password is never printed")
    func credentialsInManagementURL() async throws {
        try await TestVhost.with { vhost, _ in
            let wrongAMQP = try Self.url(vhost.url, user: "guest", password: "not-the-password")
            // The management API takes the URL's own user: it lets the command through to AMQP,
            // which refuses the AMQP URL's wrong password.
            let own = try await WarrenCLI.run(["dlq", "list", "--management-url", "http://guest:guest@localhost:15672"], url: wrongAMQP)
            #expect(own.status == 3, "\(own)")
            #expect(own.stderr.contains("the broker refused user 'guest'"), "\(own)")
            #expect(!own.stderr.contains("management API refused"), "\(own)")
            // A wrong password there is the management URL's, named as such, and not shown.
            let wrong = try await WarrenCLI.run(["dlq", "list", "--management-url", "http://guest:TopSecret1@localhost:15672"], url: vhost.url)
            #expect(wrong.status == 3, "\(wrong)")
            #expect(wrong.stderr.contains("the management API refused user 'guest': wrong user or password; check them in --management-url"), "\(wrong)")
            #expect(!wrong.stderr.contains("TopSecret1"), "\(wrong)")
            // Without them, the AMQP URL's user and password, as before.
            let fallback = try await WarrenCLI.run(["dlq", "list", "--json", "--management-url", "http://localhost:15672"], url: vhost.url)
            #expect(fallback.status == 0, "\(fallback)")
        }
    }

    @Test("a management URL's password is shown as *** in every message")
    func passwordRedacted() async throws {
        try await StubHTTPServer.with(status: .notFound, contentType: "text/plain", answer: "404 page not found") { base in
            let withCredentials = base.replacingOccurrences(of: "http://", with: "http://admin:TopSecret1@")
            let impostor = try await WarrenCLI.run(["dlq", "list", "--management-url", withCredentials], url: Broker.url)
            #expect(impostor.status == 3, "\(impostor)")
            #expect(impostor.stderr.contains(base.replacingOccurrences(of: "http://", with: "http://admin:***@") + " does not answer like"), "\(impostor)")
            #expect(!impostor.stderr.contains("TopSecret1"), "\(impostor)")
        }
        let unreachable = try await WarrenCLI.run(["dlq", "list", "--management-url", "http://admin:TopSecret1@127.0.0.1:1"], url: Broker.url)
        #expect(unreachable.status == 3, "\(unreachable)")
        #expect(unreachable.stderr.contains("http://admin:***@127.0.0.1:1"), "\(unreachable)")
        #expect(!unreachable.stderr.contains("TopSecret1"), "\(unreachable)")
        let notHTTP = try await WarrenCLI.run(["dlq", "list", "--management-url", "ftp://admin:TopSecret1@127.0.0.1"], url: Broker.url)
        #expect(notHTTP.status == 2, "\(notHTTP)")
        #expect(notHTTP.stderr.contains("ftp://admin:***@127.0.0.1"), "\(notHTTP)")
        #expect(!notHTTP.stderr.contains("TopSecret1"), "\(notHTTP)")
    }

    @Test(
        "a redirect is named with where it points, never followed (the credentials would go along) (exit 3)",
        arguments: [HTTPResponse.Status.movedPermanently, .found, .seeOther, .temporaryRedirect, .permanentRedirect])
    func redirect(_ status: HTTPResponse.Status) async throws {
        // To the real management API: followed, the command would succeed.
        let location = "http://localhost:15672/api/queues/%2F?columns=name"
        try await StubHTTPServer.with(status: status, contentType: "text/html", answer: "<a>moved</a>", location: location) { base in
            let result = try await WarrenCLI.run(["dlq", "list", "--management-url", base], url: Broker.url)
            #expect(result.status == 3, "\(result)")
            #expect(
                result.stderr.contains(
                    "the management URL \(base) answered with a redirect to \(location) (HTTP \(status.code) for /api/queues/%2F?columns=name); use http://localhost:15672 as --management-url or WARREN_MANAGEMENT_URL"),
                "\(result)")
            #expect(result.stdout.isEmpty, "\(result)")
        }
    }

    @Test("a redirect's Location is shown escaped, and elsewhere than the API's path it is suggested as it is")
    func hostileRedirect() async throws {
        try await StubHTTPServer.with(status: .found, contentType: "text/html", answer: "", location: "/login?next=\u{1b}[2J") { base in
            let result = try await WarrenCLI.run(["dlq", "list", "--management-url", base], url: Broker.url)
            #expect(result.status == 3, "\(result)")
            #expect(result.stderr.contains("answered with a redirect to /login?next="), "\(result)")
            #expect(result.stderr.contains("; use that URL as --management-url or WARREN_MANAGEMENT_URL"), "\(result)")
            #expect(!result.stderr.contains("\u{1b}"), "\(result)")
        }
    }

    @Test("a refused management port fails at once, saying so, not after --management-timeout (exit 3)")
    func refusedAtOnce() async throws {
        let started = ContinuousClock.now
        let result = try await WarrenCLI.run(["dlq", "list", "--management-url", "http://127.0.0.1:1", "--management-timeout", "60s"], url: Broker.url)
        let took = ContinuousClock.now - started
        #expect(result.status == 3, "\(result)")
        #expect(
            result.stderr.contains("cannot reach RabbitMQ's management API at http://127.0.0.1:1 (connection refused: nothing listens there)"),
            "\(result)")
        // Retrying the connection until the deadline took the whole 60 s; the margin is for
        // starting a debug binary on a loaded machine.
        #expect(took < .seconds(20), "took \(took): \(result)")
    }

    @Test("an empty vhost's empty lists are believed from RabbitMQ itself (its /api/overview names its version)")
    func emptyListFromRabbitMQ() async throws {
        try await TestVhost.with { vhost, _ in
            let result = try await WarrenCLI.run(["dlq", "list", "--json"], url: vhost.url)
            #expect(result.status == 0, "\(result)")
            #expect((result.json as? [Any])?.isEmpty == true, "\(result)")
        }
    }

    @Test("the scheme of a management URL is case-insensitive")
    func schemeCase() async throws {
        try await TestVhost.with { vhost, _ in
            let result = try await WarrenCLI.run(["dlq", "list", "--json", "--management-url", "HTTP://localhost:15672"], url: vhost.url)
            #expect(result.status == 0, "\(result)")
            #expect(result.json as? [Any] != nil, "\(result)")
        }
    }

    @Test(
        "a management URL with no host or a port outside 1…65535 is a usage error at once (exit 2)",
        arguments: ["http://localhost:99999", "http://localhost:0", "http://", "https://:15672", "localhost:15672", "ftp://localhost:15672"])
    func badManagementURL(_ url: String) async throws {
        // Exit 2 with the option named is the parser's validation: no request was tried (one would
        // end in exit 3 after the deadline).
        let result = try await WarrenCLI.run(["dlq", "list", "--management-url", url], url: Broker.url)
        #expect(result.status == 2, "\(result)")
        #expect(result.stderr.split(separator: "\n").first?.contains("--management-url") == true, "\(result)")
        #expect(!result.stderr.contains("cannot reach") && !result.stderr.contains("did not answer"), "\(result)")
    }

    @Test("a bad WARREN_MANAGEMENT_URL is a usage error naming it where it is read, and no matter where it is not")
    func badManagementURLFromEnvironment() async throws {
        let read = try await WarrenCLI.run(["dlq", "list"], url: Broker.url, environment: ["WARREN_MANAGEMENT_URL": "http://admin:TopSecret1@localhost:0"])
        #expect(read.status == 2, "\(read)")
        #expect(read.stderr.contains("WARREN_MANAGEMENT_URL 'http://admin:***@localhost:0' has port 0"), "\(read)")
        #expect(!read.stderr.contains("TopSecret1"), "\(read)")
        // replay without --to never reads it: it finds no broker (exit 3), not a usage error.
        let unread = try await WarrenCLI.run(["replay", "--since", "1h"], url: HostileOptionTests.deadBroker, environment: ["WARREN_MANAGEMENT_URL": "http://"])
        #expect(unread.status == 3, "\(unread)")
    }

    @Test(
        "a management API that sends a head and then stalls, trickles or never ends its body is cut off at the deadline (exit 3)",
        arguments: [StubHTTPServer.Body.stalling, .trickling(interval: .milliseconds(400)), .endless])
    func bodyCutOff(_ mode: StubHTTPServer.Body) async throws {
        try await StubHTTPServer.with(status: .ok, contentType: "application/json", answer: "[", sending: mode) { base in
            let started = ContinuousClock.now
            let result = try await WarrenCLI.run(["dlq", "list", "--management-url", base, "--management-timeout", "1s"], url: Broker.url)
            let took = ContinuousClock.now - started
            #expect(result.status == 3, "\(result)")
            // Started, ran 1 s, ended: never the trickle's 40 s nor an endless read (the margin is
            // for starting a debug binary on a loaded machine).
            #expect(took < .seconds(15), "took \(took): \(result)")
            #expect(
                result.stderr.contains("RabbitMQ's management API at \(base) did not answer whole within 1 s")
                    || result.stderr.contains("is larger than 64 MB"), "\(result)")
            #expect(!result.stderr.contains("Error"), "\(result)")
            #expect(result.stdout.isEmpty, "\(result)")
        }
    }

    @Test("an endless answer stops at the size bound, said in words (exit 3)")
    func sizeBound() async throws {
        try await StubHTTPServer.with(status: .ok, contentType: "application/json", answer: "[", sending: .endless) { base in
            let result = try await WarrenCLI.run(["dlq", "list", "--management-url", base, "--management-timeout", "5m"], url: Broker.url)
            #expect(result.status == 3, "\(result)")
            #expect(result.stderr.contains("the answer of \(base) for /api/queues/%2F?columns=name is larger than 64 MB"), "\(result)")
            #expect(!result.stderr.contains("NIO"), "\(result)")
        }
    }

    @Test("--management-timeout takes a duration up to 10m", arguments: ["0", "-1s", "11m", "nan", "abc"])
    func badTimeout(_ value: String) async throws {
        let result = try await WarrenCLI.run(["dlq", "list", "--management-timeout", value], url: Broker.url)
        #expect(result.status == 2, "\(result)")
        #expect(result.stderr.split(separator: "\n").first?.contains("--management-timeout") == true, "\(result)")
    }

    /// The tests' broker URL (`guest:guest@…`) with other credentials.
    static func url(_ url: String, user: String, password: String) throws -> String {
        let changed = url.replacingOccurrences(of: "guest:guest@", with: "\(user):\(password)@")
        try #require(changed != url, "the broker URL has no guest:guest@ to change")
        return changed
    }
}
