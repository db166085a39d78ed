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
        help: ArgumentHelp(
            "RabbitMQ's management API.",
            discussion: "Default: WARREN_MANAGEMENT_URL, else http://localhost:15672. With user and password in it (http://user:password@host:15672) it logs in as that user, else as the AMQP URL's; the vhost comes from the AMQP URL."))
    var managementURL: String?

    @Option(
        name: .customLong("management-timeout"),
        help: ArgumentHelp("How long the management API may take for a whole answer (at most 10m).", valueName: "duration"))
    var managementTimeout = DurationArgument(.seconds(10), description: "10s")

    var text: String { managementURL ?? ProcessInfo.processInfo.environment["WARREN_MANAGEMENT_URL"] ?? "http://localhost:15672" }

    /// Where the URL came from, for messages.
    var source: String { managementURL != nil ? "--management-url" : "WARREN_MANAGEMENT_URL" }

    /// A `--management-url` that cannot be the management API's is a usage error before anything
    /// is tried. (WARREN_MANAGEMENT_URL is checked when a command reads it: `replay` without
    /// `--to` does not, and must not fail for it.)
    func validate() throws {
        if managementURL != nil {
            do {
                _ = try ManagementURL(text, source: source)
            } catch let failure as CLIFailure {
                throw ValidationError(failure.message)
            }
        }
        try managementTimeout.check("--management-timeout", atMost: .seconds(600), written: "10m")
    }

    func api(for configuration: AMQPConfiguration) throws -> ManagementAPI {
        let url = try ManagementURL(text, source: source)
        // The URL's user goes with the URL's password (none: empty), never with the AMQP one's.
        let (user, password) = url.user.map { ($0, url.password ?? "") } ?? (configuration.user, configuration.password)
        return ManagementAPI(url: url, user: user, password: password, vhost: configuration.vhost, timeout: managementTimeout.duration)
    }
}

/// A management URL as given, split into what requests go to (without credentials), the user and
/// password in it if any, and how it is shown (the password as `***`, never printed).
struct ManagementURL: Sendable, CustomStringConvertible {
    /// `scheme://host[:port][/path]`, scheme in lower case, no credentials.
    let base: String
    let user: String?
    let password: String?
    /// As given, with the password replaced by `***`.
    let description: String

    /// A usage error unless `text` is an http(s) URL with a host and a port in 1…65535; `source`
    /// (`--management-url`) names it in the message.
    init(_ text: String, source: String = "--management-url") throws {
        let example = "e.g. http://localhost:15672"
        guard var components = URLComponents(string: text), let scheme = components.scheme?.lowercased(), scheme == "http" || scheme == "https" else {
            throw CLIFailure(.usage, "\(source) '\(Terminal.escape(Self.redacted(text)))' is not an http(s) URL, \(example)")
        }
        components.scheme = scheme
        let user = components.user
        let password = components.password
        if components.percentEncodedPassword != nil { components.percentEncodedPassword = "***" }
        let shown = components.string ?? Self.redacted(text)
        guard let host = components.host, !host.isEmpty else {
            throw CLIFailure(.usage, "\(source) '\(Terminal.escape(shown))' names no host, \(example)")
        }
        if let port = components.port, !(1...65535).contains(port) {
            throw CLIFailure(.usage, "\(source) '\(Terminal.escape(shown))' has port \(port), outside 1…65535, \(example)")
        }
        components.user = nil
        components.password = nil
        components.query = nil
        components.fragment = nil
        guard let base = components.string else {
            throw CLIFailure(.usage, "\(source) '\(Terminal.escape(shown))' is not an http(s) URL, \(example)")
        }
        self.base = base
        self.user = user
        self.password = password
        description = shown
    }

    /// `text` with whatever lies between `//user:` and `@` hidden, for text that is no URL.
    static func redacted(_ text: String) -> String {
        guard let slashes = text.range(of: "//") else { return text }
        let authority = text[slashes.upperBound...].prefix { $0 != "/" }
        guard let at = authority.lastIndex(of: "@"), let colon = authority[..<at].firstIndex(of: ":") else { return text }
        return String(text[..<text.index(after: colon)]) + "***" + String(text[at...])
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

    let url: ManagementURL
    let user: String
    let password: String
    let vhost: String
    /// For the whole exchange: connecting, the answer's head and all of its body.
    var timeout: Duration = .seconds(10)

    func queues() async throws -> [Queue] {
        let path = "api/queues/\(Self.escape(vhost))?columns=name"
        return try await confirmed(get(path, as: [Queue].self), path: path)
    }

    func bindings() async throws -> [Binding] {
        let path = "api/bindings/\(Self.escape(vhost))"
        return try await confirmed(get(path, as: [Binding].self), path: path)
    }

    /// The most of a management answer read: far more than the bindings of a large broker.
    static let maxResponseBytes = 64 << 20

    /// What came back: the status and the body, read whole.
    private enum Answer: Sendable {
        /// `location`: the `Location` header (for a redirect).
        case whole(status: Int, body: Data, location: String?)
        /// Unreachable: nothing answered (refused, no such host, TLS failed); `reason` says which
        /// when the error does.
        case unreachable(reason: String?)
        /// More than its bound: `maxResponseBytes` for a 200, `maxRefusalBytes` for a refusal.
        case tooLarge(status: Int)
        case timedOut
    }

    private func get<T: Decodable>(_ path: String, as type: T.Type) async throws -> T {
        let (status, body) = try await fetch(path)
        guard status == 200 else {
            // RabbitMQ refuses with a JSON body of its own: without it, whatever answered is not
            // its management API, and a 404 from it says nothing about the vhost.
            guard let refusal = try? JSONDecoder().decode(Refusal.self, from: body) else {
                throw notRabbitMQ(status: status, path: path)
            }
            switch status {
            case 401:
                throw refusedLogin(refusal)
            case 404:
                throw CLIFailure(.failed, "the management API does not know vhost '\(Terminal.escape(vhost))': check the vhost in --url or AMQP_URL")
            default:
                throw CLIFailure(.failed, "the management API answered \(status) for /\(path)")
            }
        }
        do {
            return try JSONDecoder().decode(type, from: body)
        } catch {
            throw notRabbitMQ(status: status, path: path)
        }
    }

    /// What `/api/overview` names in every RabbitMQ version with the management plugin.
    private struct Overview: Decodable {
        var management_version: String
        var rabbitmq_version: String
    }

    /// `list`, once its sender is known to be RabbitMQ's management API. An empty list (`[]`)
    /// is what any JSON server may answer, and believing it would report an empty broker: then
    /// `/api/overview` must name the versions (one more request, only then; a non-empty list
    /// already had RabbitMQ's fields).
    private func confirmed<Element>(_ list: [Element], path: String) async throws -> [Element] {
        guard list.isEmpty else { return list }
        let (status, body) = try await fetch("api/overview")
        guard status == 200, (try? JSONDecoder().decode(Overview.self, from: body)) != nil else {
            throw notRabbitMQ(status: 200, path: path, detail: "and /api/overview (HTTP \(status)) names no RabbitMQ version")
        }
        return list
    }

    /// The status and whole body of a GET of `path`, or the failure to get them: unreachable,
    /// too slow, too large, or a redirect (never followed: it would carry the credentials to
    /// wherever it points, and the user should name the right URL).
    private func fetch(_ path: String) async throws -> (status: Int, body: Data) {
        let base = url.base.hasSuffix("/") ? url.base : url.base + "/"
        var request = HTTPClientRequest(url: base + path)
        request.headers.add(name: "Authorization", value: "Basic " + Data("\(user):\(password)".utf8).base64EncodedString())
        request.headers.add(name: "Accept", value: "application/json")
        switch await exchange(request) {
        case .unreachable(let reason):
            throw CLIFailure(
                .unreachable,
                "cannot reach RabbitMQ's management API at \(url)\(reason.map { " (\($0))" } ?? ""): is the plugin on? `rabbitmq-plugins enable rabbitmq_management` (scripts/broker.sh does it); --management-url or WARREN_MANAGEMENT_URL points elsewhere")
        case .timedOut:
            let milliseconds = timeout.wholeMilliseconds
            let seconds = milliseconds % 1000 == 0 ? "\(milliseconds / 1000) s" : "\(milliseconds) ms"
            throw CLIFailure(
                .unreachable,
                "RabbitMQ's management API at \(url) did not answer whole within \(seconds) (/\(path)): is it overloaded, or does --management-url or WARREN_MANAGEMENT_URL point elsewhere? (--management-timeout gives it longer)")
        case .tooLarge(let status) where status == 200:
            throw CLIFailure(
                .unreachable,
                "the answer of \(url) for /\(path) is larger than \(Self.maxResponseBytes >> 20) MB, more than RabbitMQ's management API sends: --management-url or WARREN_MANAGEMENT_URL points elsewhere")
        case .tooLarge(let status):
            throw notRabbitMQ(status: status, path: path)
        case .whole(let status, _, let location?) where (300..<400).contains(status):
            throw redirected(status: status, to: location, path: path)
        case .whole(let status, let body, _):
            return (status, body)
        }
    }

    /// The request and its whole answer, raced against `timeout`: a server that sends a head and
    /// then stalls, trickles or never ends its body is cut off then, like one that never answers.
    /// The client's own deadline covers only the head; it is the same instant, with the race's end
    /// a little later as the backstop. A connection that fails fails the request at once: the
    /// client is told not to retry connecting until the deadline (async-http-client's default),
    /// which made a refused port wait the whole `--management-timeout` to say "cannot reach".
    private func exchange(_ request: HTTPClientRequest) async -> Answer {
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow, timeout: .init(connect: .milliseconds(timeout.wholeMilliseconds)))
        configuration.connectionPool.retryConnectionEstablishment = false
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        let answer = await exchange(request, with: client)
        try? await client.shutdown()
        return answer
    }

    private func exchange(_ request: HTTPClientRequest, with client: HTTPClient) async -> Answer {
        let deadline = NIODeadline.now() + .milliseconds(timeout.wholeMilliseconds)
        let backstop = timeout + .milliseconds(500)
        return await withTaskGroup(of: Answer.self) { group in
            group.addTask {
                let response: HTTPClientResponse
                do {
                    response = try await client.execute(request, deadline: deadline)
                } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout {
                    return .timedOut
                } catch {
                    return Task.isCancelled ? .timedOut : .unreachable(reason: Self.reason(error))
                }
                let status = Int(response.status.code)
                let limit = status == 200 ? Self.maxResponseBytes : Self.maxRefusalBytes
                do {
                    let body = Data(try await response.body.collect(upTo: limit).readableBytesView)
                    return .whole(status: status, body: body, location: response.headers.first(name: "location"))
                } catch is NIOTooManyBytesError {
                    return .tooLarge(status: status)
                } catch {
                    // Cut off by the race (or the connection dropped mid-body): not whole.
                    return .timedOut
                }
            }
            group.addTask {
                try? await Task.sleep(for: backstop)
                return .timedOut
            }
            let first = await group.next() ?? .timedOut
            group.cancelAll()
            return first
        }
    }

    /// Why a connection failed, in words, when the error says: refused, or too slow to connect.
    static func reason(_ error: any Error) -> String? {
        if let error = error as? HTTPClientError, error == .connectTimeout { return "connecting took too long" }
        if let error = error as? IOError, error.errnoCode == ECONNREFUSED { return "connection refused: nothing listens there" }
        return nil
    }

    /// A 3xx: the URL is not where the API answers, and the redirect says where it may be.
    private func redirected(status: Int, to location: String, path: String) -> CLIFailure {
        // A Location ending in the path asked for names the URL to use; another, the page's.
        let suggestion =
            location.hasSuffix("/" + path) && location.count > path.count + 1
            ? "use \(Terminal.escape(String(location.dropLast(path.count + 1)))) as --management-url or WARREN_MANAGEMENT_URL"
            : "use that URL as --management-url or WARREN_MANAGEMENT_URL"
        return CLIFailure(
            .unreachable,
            "the management URL \(url) answered with a redirect to \(Terminal.escape(location)) (HTTP \(status) for /\(path)); \(suggestion)")
    }

    /// A 401 from RabbitMQ: a failed login (`Login failed`) or a user without the management
    /// tag (`Not management user`); the credentials' source is named.
    private func refusedLogin(_ refusal: Refusal) -> CLIFailure {
        let source = url.user != nil ? "--management-url" : "--url or AMQP_URL"
        let who = "the management API refused user '\(Terminal.escape(user))'"
        switch refusal.reason {
        case .string("Not management user"):
            return CLIFailure(.unreachable, "\(who): it needs the management tag (`rabbitmqctl set_user_tags \(Terminal.escape(user)) management`)")
        case .string("Login failed"):
            return CLIFailure(.unreachable, "\(who): wrong user or password; check them in \(source)")
        default:
            return CLIFailure(.unreachable, "\(who) (\(Terminal.escape(ErrorReply.bounded(refusal.reason.jsonText(pretty: false))))): check the user and password in \(source)")
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
    /// `path` is as sent (`api/queues/%2F?columns=name`); `detail` follows it.
    private func notRabbitMQ(status: Int, path: String, detail: String? = nil) -> CLIFailure {
        CLIFailure(
            .unreachable,
            "\(url) does not answer like RabbitMQ's management API (HTTP \(status) for /\(path))\(detail.map { " \($0)" } ?? ""): --management-url or WARREN_MANAGEMENT_URL points elsewhere (RabbitMQ's listens on port 15672 by default)")
    }

    /// Vhosts and names go into the path percent-encoded; `/` becomes `%2F`.
    static func escape(_ component: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return component.addingPercentEncoding(withAllowedCharacters: allowed) ?? component
    }
}
