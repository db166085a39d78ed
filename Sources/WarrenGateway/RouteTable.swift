import Foundation
import Yams

/// The gateway's routes, read from the OpenAPI document: adding a route is editing the
/// contract, not writing a handler. Pure data, so its reading and matching are testable alone.
public struct RouteTable: Sendable {
    public let routes: [Route]
    /// Every method some route takes.
    public let methods: Set<String>

    /// What a request's method and path select.
    public enum Match: Sendable {
        case found(Route, pathParameters: [String: String])
        /// The path exists with other methods: 405 with `Allow`.
        case methodNotAllowed(allowed: [String])
        case notFound
    }

    public init(routes: [Route]) {
        self.routes = routes
        self.methods = Set(routes.map(\.method))
    }

    /// Reads every operation of an OpenAPI 3.1 document. Throws, naming the path and method,
    /// on an operation the gateway could not serve, so a mistake in the contract stops the
    /// start instead of surfacing as 500s.
    public init(openAPI yaml: String) throws(RouteTableError) {
        let document: Any?
        do {
            document = try Yams.load(yaml: yaml)
        } catch {
            throw RouteTableError("the document is not valid YAML: \(error)")
        }
        guard let root = document as? [String: Any], let paths = root["paths"] as? [String: Any] else {
            throw RouteTableError("the document has no 'paths' object")
        }
        var routes: [Route] = []
        for (path, item) in paths.sorted(by: { $0.key < $1.key }) {
            guard let item = item as? [String: Any] else { throw RouteTableError("\(path): not an object") }
            let shared = item["parameters"] as? [Any] ?? []
            for method in ["get", "put", "post", "patch", "delete"] {
                guard let operation = item[method] as? [String: Any] else { continue }
                routes.append(try Self.route(path: path, method: method.uppercased(), operation: operation, shared: shared))
            }
        }
        self.init(routes: routes)
    }

    /// The route for a request; `path` is the request's path without its query. Literal
    /// segments win over parameters (`/users/me` before `/users/{id}`, were both declared).
    public func match(method: String, path: String) -> Match {
        let parts = path.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).dropFirst()
        var best: (route: Route, literals: Int)?
        var allowed: [String] = []
        for route in routes where route.segments.count == parts.count {
            var literals = 0
            var matches = true
            for (segment, part) in zip(route.segments, parts) {
                switch segment {
                case .literal(let literal):
                    matches = part.elementsEqual(literal.utf8)
                    literals += 1
                case .parameter:
                    matches = !part.isEmpty
                }
                if !matches { break }
            }
            guard matches else { continue }
            if route.method != method {
                allowed.append(route.method)
            } else if literals > best?.literals ?? -1 {
                best = (route, literals)
            }
        }
        guard let best else { return allowed.isEmpty ? .notFound : .methodNotAllowed(allowed: Array(Set(allowed)).sorted()) }
        var parameters: [String: String] = [:]
        for (segment, part) in zip(best.route.segments, parts) {
            guard case .parameter(let name) = segment else { continue }
            let text = String(decoding: part, as: UTF8.self)
            guard let value = part.contains(UInt8(ascii: "%")) ? text.removingPercentEncoding : text else { return .notFound }
            parameters[name] = value
        }
        return .found(best.route, pathParameters: parameters)
    }

    /// The services the routes call (`users` for `users.get`): what `/health` checks.
    public var services: [String] {
        var names = Set<String>()
        for route in routes {
            if case .operation(let operation) = route.target { names.insert(Self.service(of: operation)) }
            if let lookup = route.ownership?.lookup { names.insert(Self.service(of: lookup)) }
        }
        return names.sorted()
    }

    static func service(of operation: String) -> String {
        operation.split(separator: ".", maxSplits: 1).first.map(String.init) ?? operation
    }

    // MARK: - Reading one operation

    private static func route(path: String, method: String, operation: [String: Any], shared: [Any]) throws(RouteTableError) -> Route {
        let name = "\(method) \(path)"
        let target: Route.Target
        switch (operation["x-warren-operation"], operation["x-warren-builtin"]) {
        case (let value as String, nil):
            guard value.contains("."), !value.hasPrefix("."), !value.hasSuffix(".") else {
                throw RouteTableError("\(name): x-warren-operation '\(value)' must be <service>.<operation>")
            }
            target = .operation(value)
        case (nil, "health" as String): target = .health
        case (nil, "metrics" as String): target = .metrics
        case (nil, "openapi" as String): target = .openapi
        case (nil, nil): throw RouteTableError("\(name): needs x-warren-operation (or x-warren-builtin)")
        default: throw RouteTableError("\(name): x-warren-builtin must be health, metrics or openapi, and not beside x-warren-operation")
        }

        let accessText = operation["x-warren-auth"] as? String ?? "user"
        guard let access = Route.Access(rawValue: accessText) else {
            throw RouteTableError("\(name): x-warren-auth must be public, user or admin, not '\(accessText)'")
        }

        var pathParameters: [Route.Parameter] = []
        var queryParameters: [Route.Parameter] = []
        for case let parameter as [String: Any] in shared + (operation["parameters"] as? [Any] ?? []) {
            guard let parameterName = parameter["name"] as? String, let location = parameter["in"] as? String else {
                throw RouteTableError("\(name): every parameter needs 'name' and 'in'")
            }
            let schema = parameter["schema"] as? [String: Any] ?? [:]
            let kind: Route.Parameter.Kind
            switch schema["type"] as? String ?? "string" {
            case "string": kind = .string
            case "integer": kind = .integer
            case "number": kind = .number
            case "boolean": kind = .boolean
            case let other: throw RouteTableError("\(name): parameter '\(parameterName)' has type '\(other)'; use string, integer, number or boolean")
            }
            let entry = Route.Parameter(name: parameterName, field: parameter["x-warren-field"] as? String ?? parameterName, kind: kind)
            switch location {
            case "path": pathParameters.append(entry)
            case "query": queryParameters.append(entry)
            case "header", "cookie": continue
            default: throw RouteTableError("\(name): parameter '\(parameterName)' is in '\(location)'")
            }
        }

        var segments: [Route.Segment] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: false).dropFirst() {
            if part.hasPrefix("{"), part.hasSuffix("}") {
                let parameter = String(part.dropFirst().dropLast())
                guard pathParameters.contains(where: { $0.name == parameter }) else {
                    throw RouteTableError("\(name): path parameter '{\(parameter)}' is not declared in 'parameters'")
                }
                segments.append(.parameter(parameter))
            } else {
                segments.append(.literal(String(part)))
            }
        }
        guard path.hasPrefix("/") else { throw RouteTableError("\(name): the path must start with /") }

        let selfParameter = operation["x-warren-self"] as? String
        if let selfParameter, !pathParameters.contains(where: { $0.name == selfParameter }) {
            throw RouteTableError("\(name): x-warren-self names '\(selfParameter)', which is not a path parameter")
        }
        var ownership: Route.Ownership?
        if let owner = operation["x-warren-owner"] {
            guard let owner = owner as? [String: Any], let field = owner["field"] as? String else {
                throw RouteTableError("\(name): x-warren-owner must be {field: <owner field>, lookup: <operation>?}")
            }
            ownership = Route.Ownership(field: field, lookup: owner["lookup"] as? String)
        }
        let restricted = selfParameter != nil || operation["x-warren-subject"] != nil || ownership != nil
        if access == .public, restricted {
            throw RouteTableError("\(name): x-warren-self, x-warren-subject and x-warren-owner need a token; x-warren-auth is public")
        }

        var timeout = Duration.seconds(5)
        if let milliseconds = operation["x-warren-timeout-ms"] {
            guard let milliseconds = milliseconds as? Int, (1...300_000).contains(milliseconds) else {
                throw RouteTableError("\(name): x-warren-timeout-ms must be an integer from 1 to 300000")
            }
            timeout = .milliseconds(milliseconds)
        }

        let responses = operation["responses"] as? [AnyHashable: Any] ?? [:]
        let successStatus = responses.keys.compactMap { Int("\($0)") }.filter { (200..<300).contains($0) }.min() ?? 200
        let hasBody = operation["requestBody"] != nil
        return Route(
            method: method, path: path, target: target, access: access, selfParameter: selfParameter,
            subjectField: operation["x-warren-subject"] as? String, ownership: ownership,
            issuesToken: operation["x-warren-token"] as? Bool ?? false, timeout: timeout, successStatus: successStatus,
            pathParameters: pathParameters, queryParameters: queryParameters, hasBody: hasBody, segments: segments)
    }
}

/// The OpenAPI document cannot be served as it is; the message names the operation and the fix.
public struct RouteTableError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}
