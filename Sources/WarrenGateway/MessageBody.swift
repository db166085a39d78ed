public import Foundation
import WarrenContract

/// Turns an HTTP request's parameters and JSON body into the body of the request message:
/// path and query parameters become fields, typed as the route declares; the token's subject
/// goes into `x-warren-subject`'s field. Those fields win over the client's body, so a caller
/// cannot name another user. Pure, so every rule is testable without a server.
public enum MessageBody {
    /// A field the gateway sets.
    enum Value: Equatable {
        case string(String)
        case integer(Int)
        case number(Double)
        case boolean(Bool)
    }

    /// - Parameters:
    ///   - query: the decoded query parameters, in order; a name given twice is refused (every
    ///     parameter is one value, and which of two a client meant is not the gateway's guess).
    ///   - body: the request body, already checked to be JSON by content type; nil or empty for none.
    public static func build(
        route: Route, pathParameters: [String: String], query: [(String, String)], body: Data?, subject: String?
    ) throws(GatewayError) -> Data {
        var fields: [(String, Value)] = []
        for parameter in route.pathParameters {
            guard let text = pathParameters[parameter.name] else { continue }
            fields.append((parameter.field, try value(text, parameter, in: "path parameter")))
        }
        for (index, (name, text)) in query.enumerated() {
            if query[..<index].contains(where: { $0.0 == name }) {
                throw .invalid("query parameter '\(name)' is given more than once; send it once")
            }
            guard let parameter = route.queryParameters.first(where: { $0.name == name }) else {
                let known = route.queryParameters.map(\.name)
                throw .invalid(
                    known.isEmpty
                        ? "\(route.method) \(route.path) takes no query parameters; remove '\(name)'"
                        : "unknown query parameter '\(name)'; this route takes \(known.joined(separator: ", "))")
            }
            fields.removeAll { $0.0 == parameter.field }
            fields.append((parameter.field, try value(text, parameter, in: "query parameter")))
        }
        if let field = route.subjectField, let subject {
            fields.removeAll { $0.0 == field }
            fields.append((field, .string(subject)))
        }

        guard let body, !body.isEmpty else { return object(fields) }
        // `JSONSerialization` also reads UTF-16 and UTF-32 (and forwarding the body as sent
        // would pass them on): the contract's JSON is UTF-8 (RFC 8259 §8.1).
        guard WireJSON.isUTF8Text(body) else { throw .invalid("the body must be JSON in UTF-8") }
        guard let parsed = try? JSONSerialization.jsonObject(with: body), var object = parsed as? [String: Any] else {
            throw .invalid("the body must be a JSON object")
        }
        if fields.isEmpty { return body }  // forwarded as sent: no re-encoding
        for (name, value) in fields {
            switch value {
            case .string(let text): object[name] = text
            case .integer(let number): object[name] = number
            case .number(let number): object[name] = number
            case .boolean(let flag): object[name] = flag
            }
        }
        do {
            return try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        } catch {
            throw .invalid("the body could not be read as JSON")
        }
    }

    private static func value(_ text: String, _ parameter: Route.Parameter, in place: String) throws(GatewayError) -> Value {
        switch parameter.kind {
        case .string:
            return .string(text)
        case .integer:
            guard let number = Int(text) else { throw .invalid("\(place) '\(parameter.name)' must be an integer, not '\(text)'") }
            return .integer(number)
        case .number:
            guard let number = Double(text), number.isFinite else { throw .invalid("\(place) '\(parameter.name)' must be a number, not '\(text)'") }
            return .number(number)
        case .boolean:
            guard let flag = Bool(text) else { throw .invalid("\(place) '\(parameter.name)' must be true or false, not '\(text)'") }
            return .boolean(flag)
        }
    }

    /// `{"id":"…"}` written directly: the common case (a GET by id) needs no JSON encoder.
    static func object(_ fields: [(String, Value)]) -> Data {
        var out = "{"
        for (index, (name, value)) in fields.enumerated() {
            if index > 0 { out += "," }
            appendString(name, to: &out)
            out += ":"
            switch value {
            case .string(let text): appendString(text, to: &out)
            case .integer(let number): out += String(number)
            case .number(let number): out += "\(number)"
            case .boolean(let flag): out += flag ? "true" : "false"
            }
        }
        out += "}"
        return Data(out.utf8)
    }

    static func appendString(_ text: String, to out: inout String) {
        out += "\""
        // Ids and most values need no escapes: appended whole, not scalar by scalar.
        if !text.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
            out += text
            out += "\""
            return
        }
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                out += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count) + String(scalar.value, radix: 16)
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }
}
