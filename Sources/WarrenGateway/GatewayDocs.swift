import Foundation
import NIOCore
import NIOHTTP1
import OpenAPIKit
import Warren
import Yams

/// The documentation the gateway serves (`x-warren-builtin: docs`, `openapi`, `asyncapi`): the two
/// contract files as they are, and one HTML page generated from them when the gateway starts, so
/// the page never drifts from what the gateway runs. Everything taken from the files is escaped.
struct GatewayDocs: Sendable {
    let page: ByteBuffer
    let openAPI: ByteBuffer
    /// nil: no `asyncapi.yaml` beside the OpenAPI document (a gateway run with a contract of its own).
    let asyncAPI: ByteBuffer?

    /// `openAPIText` is served as it is; `document` is its decoded form. `asyncAPIText` must be
    /// YAML with a mapping at its root (the AsyncAPI 3 schema itself is checked by `make test`).
    init(openAPIText: String, document: OpenAPI.Document, asyncAPIText: String?) throws(GatewayConfigurationError) {
        var html = Self.head(title: document.info.title)
        html += "<h1>\(Self.escape(document.info.title)) \(Self.escape(document.info.version))</h1>\n"
        html += "<p>Raw documents: <a href=\"/docs/openapi.yaml\">openapi.yaml</a>"
        html += asyncAPIText == nil ? "" : ", <a href=\"/docs/asyncapi.yaml\">asyncapi.yaml</a>"
        html += "</p>\n<h2 id=\"http\">HTTP (OpenAPI \(Self.escape(document.openAPIVersion.rawValue)))</h2>\n"
        html += Self.paragraphs(document.info.description)
        html += Self.operations(document)
        html += Self.schemas(document)
        if let asyncAPIText {
            let root: Any
            do {
                // What `Yams.load` would give, from the node already composed and bounded.
                root = try ContractYAML.compose(asyncAPIText).any
            } catch {
                throw GatewayConfigurationError("the AsyncAPI document beside the OpenAPI document \(error)")
            }
            guard let root = root as? [String: Any] else {
                throw GatewayConfigurationError("the AsyncAPI document beside the OpenAPI document is not a YAML mapping")
            }
            html += Self.messaging(root)
        }
        html += "</body>\n</html>\n"
        page = ByteBuffer(string: html)
        openAPI = ByteBuffer(string: openAPIText)
        asyncAPI = asyncAPIText.map { ByteBuffer(string: $0) }
    }

    /// The answer for a documentation route.
    func response(for target: Route.Target) throws(GatewayError) -> GatewayResponse {
        var headers = HTTPHeaders()
        let body: ByteBuffer
        switch target {
        case .docs:
            headers.add(name: "Content-Type", value: "text/html; charset=utf-8")
            body = page
        case .openapi:
            headers.add(name: "Content-Type", value: "application/yaml")
            body = openAPI
        case .asyncapi:
            guard let asyncAPI else { throw .notFound("this gateway has no asyncapi.yaml beside its OpenAPI document") }
            headers.add(name: "Content-Type", value: "application/yaml")
            body = asyncAPI
        case .operation, .health, .metrics:
            throw GatewayError(.internal("not a documentation route"))
        }
        return GatewayResponse(status: 200, headers: headers, body: body)
    }

    // MARK: - HTTP

    private static func operations(_ document: OpenAPI.Document) -> String {
        var html = ""
        for (path, item) in document.paths {
            guard let item = item.pathItemValue else { continue }
            for endpoint in item.endpoints {
                let operation = endpoint.operation
                let method = endpoint.method.rawValue.uppercased()
                let anchor = operation.operationId ?? "\(method) \(path.rawValue)"
                html += "<section id=\"\(escape(anchor))\">\n<h3><code>\(escape(method)) \(escape(path.rawValue))</code>"
                if let id = operation.operationId { html += " <small>\(escape(id))</small>" }
                html += "</h3>\n"
                html += paragraphs(operation.summary)
                html += paragraphs(operation.description)
                var facts: [(String, String)] = []
                for key in operation.vendorExtensions.keys.sorted() where key.hasPrefix("x-warren-") {
                    facts.append((key, json(operation.vendorExtensions[key])))
                }
                html += definitions(facts)
                let parameters = (item.parameters + operation.parameters).compactMap { document.components[$0] }
                if !parameters.isEmpty {
                    html += "<table>\n<tr><th>parameter</th><th>in</th><th>required</th><th>schema</th><th>description</th></tr>\n"
                    for parameter in parameters {
                        let schema = parameter.schemaOrContent.schemaValue.map { json($0) } ?? "(content)"
                        html += "<tr><td><code>\(escape(parameter.name))</code></td><td>\(escape(parameter.location.rawValue))</td>"
                        html += "<td>\(parameter.required ? "yes" : "no")</td><td><code>\(escape(schema))</code></td>"
                        html += "<td>\(escape(parameter.description ?? ""))</td></tr>\n"
                    }
                    html += "</table>\n"
                }
                if let body = operation.requestBody.flatMap({ document.components[$0] }) {
                    html += "<p>Request body\(body.required ? "" : " (optional)"):</p>\n" + content(body.content)
                }
                html += "<table>\n<tr><th>status</th><th>description</th><th>body</th></tr>\n"
                for (status, response) in operation.responses {
                    // A shared response (the JSON error) links to its one description below.
                    if let reference = response.reference, let name = reference.name {
                        html += "<tr><td>\(escape(status.rawValue))</td><td><a href=\"#response-\(escape(name))\">\(escape(name))</a></td><td></td></tr>\n"
                    } else if let response = document.components[response] {
                        html += "<tr><td>\(escape(status.rawValue))</td><td>\(escape(response.description ?? ""))</td><td>\(content(response.content))</td></tr>\n"
                    }
                }
                html += "</table>\n</section>\n"
            }
        }
        return html
    }

    private static func content(_ map: OpenAPI.Content.Map) -> String {
        var html = ""
        for (type, content) in map {
            html += "<code>\(escape(type.rawValue))</code>"
            // A media type may be a reference (to components.mediaTypes): shown as the reference.
            switch content {
            case .a(let reference): html += " <code>\(escape(reference.absoluteString))</code>"
            case .b(let content): if let schema = content.schema { html += " " + schemaLink(schema) }
            }
            html += "<br>\n"
        }
        return html
    }

    /// A schema that is a reference to a component, as a link to it; any other as its JSON.
    private static func schemaLink(_ schema: JSONSchema) -> String {
        if case .reference(let reference, _) = schema.value, case .internal = reference, let name = reference.name {
            return "<a href=\"#schema-\(escape(name))\"><code>\(escape(name))</code></a>"
        }
        return "<code>\(escape(json(schema)))</code>"
    }

    private static func schemas(_ document: OpenAPI.Document) -> String {
        var html = ""
        if !document.components.responses.isEmpty { html += "<h2 id=\"responses\">Shared responses</h2>\n" }
        for (name, response) in document.components.responses {
            guard let response = document.components[response] else { continue }
            html += "<h3 id=\"response-\(escape(name.rawValue))\">\(escape(name.rawValue))</h3>\n"
            html += paragraphs(response.description) + content(response.content)
        }
        guard !document.components.schemas.isEmpty else { return html }
        html += "<h2 id=\"schemas\">Schemas</h2>\n"
        for (name, schema) in document.components.schemas {
            html += "<h3 id=\"schema-\(escape(name.rawValue))\">\(escape(name.rawValue))</h3>\n<pre>\(escape(json(schema, pretty: true)))</pre>\n"
        }
        return html
    }

    // MARK: - AMQP

    /// Channels, operations and messages of the AsyncAPI document, read as plain YAML (no Swift
    /// library models AsyncAPI 3): each as its name and its fields as JSON.
    private static func messaging(_ root: [String: Any]) -> String {
        let info = root["info"] as? [String: Any] ?? [:]
        var html = "<h2 id=\"amqp\">AMQP (AsyncAPI \(escape("\(root["asyncapi"] ?? "?")"))</h2>\n"
        html += paragraphs(info["description"] as? String)
        let components = root["components"] as? [String: Any] ?? [:]
        for (title, section) in [("Channels", root["channels"]), ("Operations", root["operations"]), ("Messages", components["messages"])] {
            guard let entries = section as? [String: Any], !entries.isEmpty else { continue }
            html += "<h3>\(title)</h3>\n"
            for name in entries.keys.sorted() {
                html += "<section id=\"\(escape(title.lowercased()))-\(escape(name))\">\n<h4>\(escape(name))</h4>\n"
                guard let fields = entries[name] as? [String: Any] else {
                    html += "<pre>\(escape(json(entries[name])))</pre>\n</section>\n"
                    continue
                }
                html += paragraphs(fields["description"] as? String)
                let facts = fields.keys.sorted().filter { $0 != "description" }.map { ($0, json(fields[$0])) }
                html += definitions(facts) + "</section>\n"
            }
        }
        return html
    }

    // MARK: - HTML

    private static func head(title: String) -> String {
        """
        <!DOCTYPE html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <title>\(escape(title))</title>
        <style>
        body { font-family: sans-serif; max-width: 70em; margin: 1em auto; padding: 0 1em; }
        table { border-collapse: collapse; margin: 0.5em 0; }
        td, th { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
        pre, code { font-size: 0.9em; white-space: pre-wrap; word-break: break-word; }
        section { border-top: 1px solid #ddd; }
        </style>
        </head>
        <body>

        """
    }

    private static func definitions(_ facts: [(String, String)]) -> String {
        guard !facts.isEmpty else { return "" }
        return "<dl>\n" + facts.map { "<dt>\(escape($0.0))</dt><dd><code>\(escape($0.1))</code></dd>\n" }.joined() + "</dl>\n"
    }

    private static func paragraphs(_ text: String?) -> String {
        guard let text, !text.isEmpty else { return "" }
        return "<p>\(escape(text).replacingOccurrences(of: "\n\n", with: "</p>\n<p>"))</p>\n"
    }

    /// Text for HTML content and attribute values: the five characters HTML gives meaning to.
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for character in text.unicodeScalars {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(character)
            }
        }
        return out
    }

    /// A value as JSON: an OpenAPIKit type through its `Encodable`, a YAML value (Yams gives
    /// mappings with `AnyHashable` keys) through `JSONSerialization`; anything else as Swift prints it.
    private static func json(_ value: Any?, pretty: Bool = false) -> String {
        var formatting: JSONEncoder.OutputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        if pretty { formatting.insert(.prettyPrinted) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = formatting
        if let encodable = value as? any Encodable, let data = try? encoder.encode(encodable) {
            return String(decoding: data, as: UTF8.self)
        }
        var options: JSONSerialization.WritingOptions = [.sortedKeys, .withoutEscapingSlashes, .fragmentsAllowed]
        if pretty { options.insert(.prettyPrinted) }
        let plain = Self.plain(value)
        if JSONSerialization.isValidJSONObject([plain]), let data = try? JSONSerialization.data(withJSONObject: plain, options: options) {
            return String(decoding: data, as: UTF8.self)
        }
        return "\(plain)"
    }

    /// A YAML value with string keys only, as `JSONSerialization` takes it.
    private static func plain(_ value: Any?) -> Any {
        switch value {
        case let mapping as [AnyHashable: Any]:
            var out: [String: Any] = [:]
            for (key, item) in mapping { out["\(key.base)"] = plain(item) }
            return out
        case let sequence as [Any]:
            return sequence.map { plain($0) }
        case let value?:
            return value
        case nil:
            return NSNull()
        }
    }
}
