import Foundation
import NIOHTTP1
import OpenAPIKit
import Testing
import Warren
import WarrenTestSupport
import Yams
import Yams
@testable import WarrenGateway

/// schemas/openapi.yaml against the gateway's code, in process (no broker, no server): the routes
/// it serves, the statuses its error mapping can answer each with, the error codes it writes.
@Suite("OpenAPI contract against the gateway")
struct OpenAPIContractTests {
    static let text: String = {
        let path = GatewayProcess.repository.appendingPathComponent("schemas/openapi.yaml").path
        return (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    }()

    @Test("the contract parsed once (composed, bounded, decoded from the node) is the document YAMLDecoder reads from the text, response keys such as 200 included")
    func decodedOnceAsFromText() throws {
        let once = try RouteTable.decode(Self.text)
        let fromText = try YAMLDecoder().decode(OpenAPI.Document.self, from: Self.text)
        #expect(once == fromText)
        let statuses = once.paths.values.compactMap(\.pathItemValue).flatMap(\.endpoints).flatMap { $0.operation.responses.keys }
        #expect(statuses.contains(OpenAPI.Response.StatusCode.status(code: 200)), "\(statuses)")
    }

    @Test("every operation of the document is a route the gateway serves, and every route is a documented operation")
    func routesAreDocumented() throws {
        let document = try RouteTable.decode(Self.text)
        let table = try RouteTable(document: document)
        var documented: [String: String] = [:]
        for (path, item) in document.paths {
            for endpoint in try #require(item.pathItemValue).endpoints {
                documented["\(endpoint.method.rawValue.uppercased()) \(path.rawValue)"] = endpoint.operation.operationId
            }
        }
        let served = Dictionary(uniqueKeysWithValues: table.routes.map { ("\($0.method) \($0.path)", $0.operationID) })
        #expect(served == documented, "routes and operations (with their operationId) must be the same set")
        #expect(Set(document.allOperationIds).count == table.routes.count, "operationIds are unique")

        for route in table.routes {
            // The route is what the gateway's matcher selects for a request to it.
            let path = route.path.replacingOccurrences(of: #"\{[^}]+\}"#, with: "x", options: .regularExpression)
            guard case .found(let matched, _) = table.match(method: route.method, path: path) else {
                Issue.record("\(route.method) \(path) does not reach its route")
                continue
            }
            #expect(matched.operationID == route.operationID)
            // A service operation is on the wire too: its request and reply have a JSON Schema.
            if case .operation(let operation) = route.target {
                let service = RouteTable.service(of: operation)
                let folder = service == "events" ? "event-store" : service
                for part in ["request", "reply"] {
                    let file = "schemas/\(folder)/\(operation).\(part).schema.json"
                    #expect(
                        FileManager.default.fileExists(atPath: GatewayProcess.repository.appendingPathComponent(file).path),
                        "\(route.operationID): no \(file)")
                }
            }
        }
        // Everything the gateway answers itself is reachable through the document.
        let builtins = Set(table.routes.compactMap { route -> String? in
            Route.Target.builtins.first { $0.value == route.target }?.key
        })
        #expect(builtins == Set(Route.Target.builtins.keys))
        if case .notFound = table.match(method: "GET", path: "/not-in-the-document") {} else { Issue.record("an undocumented path is served") }
    }

    /// The statuses the gateway itself can answer a request to `route` with, taken from the code
    /// that writes them where it can be called (the rest say where they are written).
    static func gatewayStatuses(_ route: Route, operation: OpenAPI.Operation) -> Set<Int> {
        var statuses: Set<Int> = [
            // Any request, before or without its route: not HTTP/1.1, too slow, too large, a URL
            // or head over the limits, an Expect other than 100-continue.
            GatewayHTTPHandler.gatewayError(.invalidMethod, onRequestLine: false).status,
            408,  // HTTPEdgeGuard.timedOut
            GatewayHTTPHandler.tooLarge(1).status,
            GatewayHTTPHandler.gatewayError(.headerOverflow, onRequestLine: true).status,
            GatewayHTTPHandler.gatewayError(.headerOverflow, onRequestLine: false).status,
            417,  // GatewayHTTPHandler.received
        ]
        if route.target != .health, route.target != .metrics { statuses.insert(429) }  // GatewayResponder.select
        if route.access != .public { statuses.insert(GatewayError.unauthorized("").status) }
        if route.access == .admin || route.selfParameter != nil { statuses.insert(GatewayError.forbidden("").status) }
        if route.ownership != nil { statuses.insert(GatewayError.notFound("").status) }
        if route.hasBody { statuses.insert(415) }  // GatewayResponder.readBody
        if case .operation = route.target {
            // A call that failed, a reply the service rejected.
            for code in [ServiceError.Code.invalid, .internal, .unavailable, .timeout] {
                statuses.insert(GatewayError(ServiceError(code, "")).status)
            }
            // A reply that broke the reply format (GatewayResponder.replyBody).
            statuses.insert(GatewayError.badGateway("").status)
            // The same Idempotency-Key with another body: the service's inbox answers conflict.
            let takesKey = operation.parameters.contains { $0.parameterValue?.name == "Idempotency-Key" }
            if takesKey { statuses.insert(GatewayError(ServiceError(.conflict, "")).status) }
        }
        return statuses
    }

    @Test("each status the gateway can answer an operation with is documented on it, with the JSON error body")
    func statusesAreDocumented() throws {
        let document = try RouteTable.decode(Self.text)
        let table = try RouteTable(document: document)
        let errorReference = "#/components/responses/Error"
        for route in table.routes {
            let item = try #require(document.paths[OpenAPI.Path(rawValue: route.path)]?.pathItemValue)
            let operation = try #require(item.endpoints.first { $0.method.rawValue.uppercased() == route.method }?.operation)
            let missing = Self.gatewayStatuses(route, operation: operation).subtracting(route.documentedStatuses)
            #expect(missing.isEmpty, "\(route.operationID) (\(route.method) \(route.path)) does not document \(missing.sorted())")
            for (status, response) in operation.responses {
                guard case .status(let code) = status.value, code >= 400, route.target != .health || code != 503 else { continue }
                #expect(response.reference?.absoluteString == errorReference, "\(route.operationID) \(code): the JSON error body")
            }
            #expect(route.documentedStatuses.contains(route.successStatus), "\(route.operationID): its success")
        }
    }

    @Test("an invalid contract stops the gateway before it reaches the broker: one critical line naming the problem, exit 1")
    func invalidContractRefused() async throws {
        // The bug the contract once had: an unquoted comma in a flow mapping makes a stray key.
        let broken = Self.text.replacingOccurrences(
            of: "'200': {description: 'A Bearer token (HS256 JWT; sub = user id, role, exp)',",
            with: "'200': {description: A Bearer token (HS256 JWT, sub = user id, role, exp),")
        #expect(broken != Self.text)
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("openapi-broken-\(UUID().uuidString.prefix(8)).yaml")
        try broken.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let (message, log) = try await Self.refusedStart(openAPIPath: file.path)
        #expect(message.contains("cannot start: the document is not valid OpenAPI"), "\(message)")
        #expect(message.contains("/auth/token"), "names where: \(message)")
        #expect(!log.contains("broker"), "\(log)")
    }

    /// Starts `api-gateway` on the contract at `openAPIPath` and a broker port nothing listens
    /// on (the gateway must not get that far), and expects it to stop with exit 1 and one
    /// critical line: that line's message and the whole log.
    static func refusedStart(openAPIPath: String) async throws -> (message: String, log: String) {
        let process = try ServiceProcess(
            "api-gateway", environment: ["OPENAPI_PATH": openAPIPath, "AMQP_URL": "amqp://guest:guest@127.0.0.1:1/", "LOG_FORMAT": "json"])
        let deadline = ContinuousClock.now + .seconds(20)
        while process.isRunning, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        #expect(await process.stop() == 1)
        let critical = process.logLines.filter { $0["level"] as? String == "critical" }
        #expect(critical.count == 1, "\(process.log)")
        return (critical.first?["msg"] as? String ?? critical.first?["message"] as? String ?? "", process.log)
    }

    @Test(
        "a contract that is not UTF-8, or an asyncapi.yaml that is there but cannot be read, stops the start: one critical line, exit 1",
        arguments: ["openapi.yaml not UTF-8", "asyncapi.yaml a directory", "asyncapi.yaml not UTF-8"])
    func unreadableContractsRefused(_ case: String) async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("contracts-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let notUTF8 = Data(Self.text.utf8) + Data([0x23, 0x20, 0xFF, 0xFE, 0x0A])  // "# " and two bytes no UTF-8 text has
        let openAPI = folder.appendingPathComponent("openapi.yaml")
        let asyncAPI = folder.appendingPathComponent("asyncapi.yaml")
        try (`case` == "openapi.yaml not UTF-8" ? notUTF8 : Data(Self.text.utf8)).write(to: openAPI)
        switch `case` {
        case "asyncapi.yaml a directory": try FileManager.default.createDirectory(at: asyncAPI, withIntermediateDirectories: false)
        case "asyncapi.yaml not UTF-8": try (Data("asyncapi: 3.0.0\n".utf8) + Data([0x23, 0x20, 0xC3, 0x28, 0x0A])).write(to: asyncAPI)
        default: break
        }
        let (message, _) = try await Self.refusedStart(openAPIPath: openAPI.path)
        let expected = `case` == "asyncapi.yaml a directory" ? "cannot read \(asyncAPI.path)" : "is not UTF-8 text"
        #expect(message.contains(expected), "\(message)")
    }

    @Test("every error code the gateway writes is in the Error schema's enum")
    func errorCodesAreDocumented() throws {
        let root = try #require(try Yams.load(yaml: Self.text) as? [String: Any])
        let components = try #require(root["components"] as? [String: Any])
        let schemas = try #require(components["schemas"] as? [String: Any])
        let error = try #require(schemas["Error"] as? [String: Any])
        let properties = try #require(error["properties"] as? [String: Any])
        let inner = try #require((properties["error"] as? [String: Any])?["properties"] as? [String: Any])
        let documented = Set(try #require((inner["code"] as? [String: Any])?["enum"] as? [String]))
        var written = Set(ServiceError.Code.allCases.map { GatewayError(ServiceError($0, "")).code })
        written.formUnion([
            GatewayHTTPHandler.gatewayError(.headerOverflow, onRequestLine: true).code,
            GatewayHTTPHandler.gatewayError(.headerOverflow, onRequestLine: false).code,
            GatewayHTTPHandler.gatewayError(.invalidMethod, onRequestLine: false).code,
            GatewayHTTPHandler.tooLarge(1).code,
            GatewayResponder.methodNotAllowed("PUT", path: "/", allowed: ["GET"]).code,
            GatewayError.unauthorized("").code, GatewayError.forbidden("").code, GatewayError.notFound("").code,
            GatewayError.badGateway("").code,
            // Written inline: HTTPEdgeGuard.timedOut, GatewayHTTPHandler.received, GatewayResponder.readBody and select.
            "request_timeout", "expectation_failed", "unsupported_media_type", "rate_limited",
        ])
        #expect(written.subtracting(documented).isEmpty, "undocumented codes: \(written.subtracting(documented).sorted())")
    }
}
