import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Warren
import WarrenAMQP
import WarrenContract

/// `--management-url`: where RabbitMQ's management API answers.
struct ManagementOptions: ParsableArguments {
    @Option(
        name: .customLong("management-url"),
        help: ArgumentHelp("RabbitMQ's management API.", discussion: "Default: WARREN_MANAGEMENT_URL, else http://localhost:15672. User, password and vhost come from the AMQP URL."))
    var managementURL: String?

    func api(for configuration: AMQPConfiguration) throws -> ManagementAPI {
        let text = managementURL ?? ProcessInfo.processInfo.environment["WARREN_MANAGEMENT_URL"] ?? "http://localhost:15672"
        guard let url = URL(string: text), url.scheme == "http" || url.scheme == "https" else {
            throw CLIFailure(.usage, "--management-url '\(text)' is not an http(s) URL, e.g. http://localhost:15672")
        }
        return ManagementAPI(baseURL: url, user: configuration.user, password: configuration.password, vhost: configuration.vhost)
    }
}

extension ManagementOptions {
    /// The routes from `warren.events` to each of `queues` (subscribers' `<service>.events`), for
    /// a command that puts events straight into them: it may put there only what the exchange
    /// would. Refuses when the bindings cannot be read (exit 3) or a queue has none (exit 1):
    /// guessing could hand a service an event it would take for something else. `command` and
    /// `outcome` ("nothing was sent") complete the message.
    func eventRoutes(to queues: [String], configuration: AMQPConfiguration, command: String, outcome: String) async throws -> [String: QueueRoutes] {
        guard !queues.isEmpty else { return [:] }
        let bindings: [ManagementAPI.Binding]
        do {
            bindings = try await api(for: configuration).bindings()
        } catch let failure as CLIFailure where failure.kind != .usage {
            let names = queues.map { Terminal.escape($0) }.joined(separator: ", ")
            throw CLIFailure(failure.kind, "\(failure.message)\n\(command) reads which event types \(names) is bound for; \(outcome)")
        }
        var routes: [String: QueueRoutes] = [:]
        for queue in queues {
            let queueRoutes = QueueRoutes(queue: queue, bindings: bindings)
            guard !queueRoutes.bindingKeys.isEmpty else {
                throw CLIFailure(
                    .failed,
                    "queue \(Terminal.escape(queue)) is not bound to \(EventPublisher.exchange): its service subscribes to no event type, so \(command) may put none there; \(outcome) (`warren topology` shows the bindings)")
            }
            routes[queue] = queueRoutes
        }
        return routes
    }
}

/// RabbitMQ's management HTTP API, for what AMQP cannot do: list queues and bindings.
/// Depths and consumer counts are read over AMQP instead (exact and current, where the
/// management statistics lag by seconds). Spoken with async-http-client, which the graph
/// already holds (URLSession would link libcurl into the `warren` binary).
struct ManagementAPI: Sendable {
    struct Queue: Decodable, Sendable {
        var name: String
    }

    struct Binding: Decodable, Sendable {
        var source: String
        var destination: String
        var destination_type: String
        var routing_key: String
    }

    let baseURL: URL
    let user: String
    let password: String
    let vhost: String

    func queues() async throws -> [Queue] {
        try await get("api/queues/\(Self.escape(vhost))?columns=name", as: [Queue].self)
    }

    func bindings() async throws -> [Binding] {
        try await get("api/bindings/\(Self.escape(vhost))", as: [Binding].self)
    }

    /// The most of a management answer read: far more than the bindings of a large broker.
    static let maxResponseBytes = 64 << 20

    private func get<T: Decodable>(_ path: String, as type: T.Type) async throws -> T {
        let base = baseURL.absoluteString.hasSuffix("/") ? baseURL.absoluteString : baseURL.absoluteString + "/"
        guard let url = URL(string: base + path) else { throw CLIFailure(.usage, "cannot build a management URL from \(baseURL)") }
        var request = HTTPClientRequest(url: url.absoluteString)
        request.headers.add(name: "Authorization", value: "Basic " + Data("\(user):\(password)".utf8).base64EncodedString())
        request.headers.add(name: "Accept", value: "application/json")
        // One deadline for the answer and its body: a broker that stops mid-answer is reported too.
        let deadline = NIODeadline.now() + .seconds(10)
        let response: HTTPClientResponse
        do {
            response = try await HTTPClient.shared.execute(request, deadline: deadline)
        } catch {
            throw CLIFailure(
                .unreachable,
                "cannot reach RabbitMQ's management API at \(baseURL): is the plugin on? `rabbitmq-plugins enable rabbitmq_management` (scripts/broker.sh does it); --management-url or WARREN_MANAGEMENT_URL points elsewhere")
        }
        let status = Int(response.status.code)
        guard status == 200 else {
            // RabbitMQ refuses with a JSON body of its own: without it, whatever answered is not
            // its management API, and a 404 from it says nothing about the vhost.
            let body = try? await response.body.collect(upTo: Self.maxRefusalBytes)
            guard let body, (try? JSONDecoder().decode(Refusal.self, from: Data(body.readableBytesView))) != nil else {
                throw notRabbitMQ(status: status, path: path)
            }
            switch status {
            case 401:
                throw CLIFailure(.unreachable, "the management API refused user '\(user)': it needs the management tag (`rabbitmqctl set_user_tags \(user) management`)")
            case 404:
                throw CLIFailure(.failed, "the management API does not know vhost '\(vhost)': check the vhost in --url or AMQP_URL")
            default:
                throw CLIFailure(.failed, "the management API answered \(status) for \(url.path)")
            }
        }
        let data: Data
        do {
            data = Data(try await response.body.collect(upTo: Self.maxResponseBytes).readableBytesView)
        } catch {
            throw CLIFailure(.failed, "the management API's answer for \(url.path) did not arrive whole within 10 s and \(Self.maxResponseBytes >> 20) MB (\(error))")
        }
        do {
            return try JSONDecoder().decode(type, from: data)
        } catch {
            throw notRabbitMQ(status: status, path: path)
        }
    }

    /// How RabbitMQ's management API says no (`{"error":"Object Not Found","reason":"Not Found"}`);
    /// what another server answers has no such body.
    private struct Refusal: Decodable {
        var error: JSONValue
        var reason: JSONValue
    }

    /// The most of a refusal read: RabbitMQ's are a line.
    static let maxRefusalBytes = 64 << 10

    /// The URL answers, but not as RabbitMQ's management API (another server, a proxy's page):
    /// the API is as good as unreachable (exit 3), and its answer says nothing about the vhost.
    /// `path` is as sent (`api/queues/%2F?columns=name`).
    private func notRabbitMQ(status: Int, path: String) -> CLIFailure {
        CLIFailure(
            .unreachable,
            "\(baseURL) does not answer like RabbitMQ's management API (HTTP \(status) for /\(path)): --management-url or WARREN_MANAGEMENT_URL points elsewhere (RabbitMQ's listens on port 15672 by default)")
    }

    /// Vhosts and names go into the path percent-encoded; `/` becomes `%2F`.
    static func escape(_ component: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return component.addingPercentEncoding(withAllowedCharacters: allowed) ?? component
    }
}
