public import OpenAPIKit
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

    /// Reads every operation of an OpenAPI 3.1 document, decoded and validated by OpenAPIKit.
    /// Throws, naming the problem (OpenAPIKit's words, or the path and method of an operation
    /// the gateway could not serve), so a mistake in the contract stops the start instead of
    /// surfacing as 500s.
    public init(openAPI yaml: String) throws(RouteTableError) {
        try self.init(document: Self.decode(yaml))
    }

    /// The typed document of `yaml`, or what is wrong with it.
    public static func decode(_ yaml: String) throws(RouteTableError) -> OpenAPI.Document {
        // Parsed once: composed with YAMLDecoder's own resolver (every scalar a string, which the
        // response keys `200` need), bounded in size, and decoded from that node.
        let node: Node
        do {
            node = try ContractYAML.compose(yaml, resolver: ContractYAML.decoderResolver)
        } catch {
            throw RouteTableError("the document is not valid OpenAPI: it \(error.description)")
        }
        try checkWrittenForms(node)
        do {
            return try YAMLDecoder().decode(OpenAPI.Document.self, from: node)
        } catch {
            throw RouteTableError("the document is not valid OpenAPI: \(OpenAPI.Error(from: error).localizedDescription)")
        }
    }

    /// The routes of a decoded document, after OpenAPIKit's validation (unique operation ids,
    /// every path parameter declared, every reference resolvable) and the gateway's own rules.
    /// References are looked up in `components` one by one rather than by dereferencing the
    /// whole document, which refuses the recursive schemas a tree (`EventFlow`) needs.
    public init(document: OpenAPI.Document) throws(RouteTableError) {
        do {
            _ = try document.validate()
        } catch {
            throw RouteTableError("the document is not valid OpenAPI: \(error)")
        }
        var routes: [Route] = []
        for (path, item) in document.paths {
            guard Self.isMatchable(path.rawValue) else {
                throw RouteTableError(
                    "\(path.rawValue.debugDescription): not a path the gateway can match (it starts with / and holds only URI path characters and {parameters})")
            }
            guard let item = document.components[item] else {
                throw RouteTableError("\(path.rawValue): its path item reference is not in components")
            }
            for endpoint in item.endpoints {
                routes.append(try Self.route(path: path.rawValue, item: item, endpoint: endpoint, components: document.components))
            }
        }
        guard !routes.isEmpty else { throw RouteTableError("the document declares no operations: the gateway would answer every request with 404") }
        self.init(routes: routes.sorted { ($0.path, $0.method) < ($1.path, $1.method) })
    }

    /// A path template a request's path can equal: `/` first, then only RFC 3986 path characters
    /// (no space, `?`, `#` or non-ASCII, which arrive percent-encoded and would never match) and
    /// the braces of `{parameters}`.
    static func isMatchable(_ path: String) -> Bool {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/{}%".utf8)
        return path.utf8.first == UInt8(ascii: "/") && path.utf8.allSatisfy(allowed.contains)
    }

    /// The route for a request; `path` is the request's path without its query. Literal
    /// segments win over parameters (`/users/me` before `/users/{id}`, were both declared).
    public func match(method: String, path: String) -> Match {
        let parts = path.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).dropFirst()
        // By index: a `Route` is large, and copying each one in the scan (retaining every field)
        // cost more than the comparisons, per request.
        var best: (index: Int, literals: Int)?
        var allowed: [String] = []
        for index in routes.indices where routes[index].segments.count == parts.count {
            var literals = 0
            var matches = true
            for (segment, part) in zip(routes[index].segments, parts) {
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
            if routes[index].method != method {
                allowed.append(routes[index].method)
            } else if literals > best?.literals ?? -1 {
                best = (index, literals)
            }
        }
        guard let best else { return allowed.isEmpty ? .notFound : .methodNotAllowed(allowed: Array(Set(allowed)).sorted()) }
        let route = routes[best.index]
        var parameters: [String: String] = [:]
        for (segment, part) in zip(route.segments, parts) {
            guard case .parameter(let name) = segment else { continue }
            let text = String(decoding: part, as: UTF8.self)
            guard let value = part.contains(UInt8(ascii: "%")) ? text.removingPercentEncoding : text else { return .notFound }
            parameters[name] = value
        }
        return .found(route, pathParameters: parameters)
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

    /// The methods a route may have: the ones the gateway routes (HEAD is GET's, OPTIONS CORS's).
    static let servedMethods: Set<String> = ["GET", "PUT", "POST", "PATCH", "DELETE"]

    private static func route(
        path: String, item: OpenAPI.PathItem, endpoint: OpenAPI.PathItem.Endpoint, components: OpenAPI.Components
    ) throws(RouteTableError) -> Route {
        let operation = endpoint.operation
        let method = endpoint.method.rawValue.uppercased()
        let name = "\(method) \(path)"
        guard servedMethods.contains(method) else {
            throw RouteTableError("\(name): the gateway serves GET, PUT, POST, PATCH and DELETE operations only")
        }
        guard let operationID = operation.operationId, !operationID.isEmpty else {
            throw RouteTableError("\(name): needs an operationId")
        }
        let extensions = operation.vendorExtensions.mapValues(\.value)
        let target: Route.Target
        let builtinError = RouteTableError(
            "\(name): x-warren-builtin must be one of \(Route.Target.builtins.keys.sorted().joined(separator: ", ")), and not beside x-warren-operation")
        switch (extensions["x-warren-operation"], extensions["x-warren-builtin"]) {
        case (let value as String, nil):
            guard Self.isOperationName(value) else {
                throw RouteTableError("\(name): x-warren-operation '\(value)' must be <service>.<operation>")
            }
            target = .operation(value)
        case (nil, nil): throw RouteTableError("\(name): needs x-warren-operation (or x-warren-builtin)")
        case (nil, let value as String):
            guard let builtin = Route.Target.builtins[value] else { throw builtinError }
            target = builtin
        default:
            throw builtinError
        }

        let accessValue = extensions["x-warren-auth"] ?? "user"
        guard let accessText = accessValue as? String, let access = Route.Access(rawValue: accessText) else {
            throw RouteTableError("\(name): x-warren-auth must be one of public, user, admin, not '\(accessValue)'")
        }

        var pathParameters: [Route.Parameter] = []
        var queryParameters: [Route.Parameter] = []
        // The operation's parameters, then the path item's it does not override (same name and place).
        var parameters: [OpenAPI.Parameter] = []
        for reference in operation.parameters + item.parameters {
            guard let parameter = components[reference] else {
                throw RouteTableError("\(name): a parameter reference is not in components")
            }
            if !parameters.contains(where: { $0.name == parameter.name && $0.location == parameter.location }) {
                parameters.append(parameter)
            }
        }
        for parameter in parameters {
            let parameterName = parameter.name
            let kind: Route.Parameter.Kind
            guard let schema = parameter.schemaOrContent.schemaValue else {
                throw RouteTableError("\(name): parameter '\(parameterName)' needs a schema (not content)")
            }
            switch (components[schema] ?? schema).jsonType {
            case .string, nil: kind = .string
            case .integer: kind = .integer
            case .number: kind = .number
            case .boolean: kind = .boolean
            case let other?:
                throw RouteTableError("\(name): parameter '\(parameterName)' has type '\(other)'; use string, integer, number or boolean")
            }
            let field = try Self.name(parameter.vendorExtensions["x-warren-field"]?.value, "x-warren-field", of: name) ?? parameterName
            let entry = Route.Parameter(name: parameterName, field: field, kind: kind)
            switch parameter.location {
            case .path: pathParameters.append(entry)
            case .query: queryParameters.append(entry)
            case .header, .cookie: continue
            case .querystring: throw RouteTableError("\(name): parameter '\(parameterName)' is in 'querystring'")
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

        let selfParameter = try Self.name(extensions["x-warren-self"], "x-warren-self", of: name)
        let subjectField = try Self.name(extensions["x-warren-subject"], "x-warren-subject", of: name)
        if let selfParameter, !pathParameters.contains(where: { $0.name == selfParameter }) {
            throw RouteTableError("\(name): x-warren-self names '\(selfParameter)', which is not a path parameter")
        }
        var ownership: Route.Ownership?
        if let owner = extensions["x-warren-owner"] {
            guard let owner = owner as? [String: Any], let field = owner["field"] as? String else {
                throw RouteTableError("\(name): x-warren-owner must be {field: <owner field>, lookup: <operation>?}")
            }
            let lookup = try Self.name(owner["lookup"], "x-warren-owner's lookup", of: name)
            if let lookup, !Self.isOperationName(lookup) {
                throw RouteTableError("\(name): x-warren-owner's lookup '\(lookup)' must be <service>.<operation>")
            }
            ownership = Route.Ownership(field: field, lookup: lookup)
        }
        let restricted = selfParameter != nil || subjectField != nil || ownership != nil
        if access == .public, restricted {
            throw RouteTableError("\(name): x-warren-self, x-warren-subject and x-warren-owner need a token; x-warren-auth is public")
        }

        var timeout = Duration.seconds(5)
        if let milliseconds = extensions["x-warren-timeout-ms"] {
            guard let milliseconds = milliseconds as? Int, (1...300_000).contains(milliseconds) else {
                throw RouteTableError("\(name): x-warren-timeout-ms must be a plain decimal integer from 1 to 300000, not '\(milliseconds)'")
            }
            timeout = .milliseconds(milliseconds)
        }

        let documented = operation.responses.keys.compactMap { status -> Int? in
            if case .status(let code) = status.value { return code }
            return nil
        }
        let successStatus = documented.filter { (200..<300).contains($0) }.min() ?? 200
        let issuesToken = extensions["x-warren-token"] ?? false
        guard let issuesToken = issuesToken as? Bool else {
            throw RouteTableError("\(name): x-warren-token must be true or false, not '\(issuesToken)'")
        }
        return Route(
            method: method, path: path, operationID: operationID, target: target, access: access, selfParameter: selfParameter,
            subjectField: subjectField, ownership: ownership, issuesToken: issuesToken, timeout: timeout, successStatus: successStatus,
            documentedStatuses: Set(documented), pathParameters: pathParameters, queryParameters: queryParameters,
            hasBody: operation.requestBody != nil, segments: segments)
    }

    /// `<service>.<operation>`: a dot, neither first nor last.
    private static func isOperationName(_ text: String) -> Bool {
        text.contains(".") && !text.hasPrefix(".") && !text.hasSuffix(".")
    }

    /// The text of a field that names something, nil when absent; refused when it is not text
    /// (a document built in code; one read from YAML was checked by `checkWrittenForms`).
    private static func name(_ value: Any?, _ field: String, of operation: String) throws(RouteTableError) -> String? {
        guard let value else { return nil }
        guard let text = value as? String, !text.isEmpty else {
            throw RouteTableError("\(operation): \(field) must be a name, not '\(value)'")
        }
        return text
    }
}

/// The OpenAPI document cannot be served as it is; the message names the operation and the fix.
public struct RouteTableError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}
