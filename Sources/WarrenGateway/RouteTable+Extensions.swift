import Foundation
import Yams

extension RouteTable {
    /// The `x-warren-*` fields the gateway reads, and what each must be.
    enum ExtensionForm {
        /// A name (`users.get`, `id`): text YAML would not read as a boolean, number or null.
        case name
        /// One of the listed words, exactly.
        case word([String])
        /// `true` or `false`, unquoted.
        case boolean
        /// A plain decimal integer in the range.
        case integer(ClosedRange<Int>)
        /// `{field: <name>, lookup: <name>?}`.
        case owner
    }

    /// Every `x-warren-*` field of an OpenAPI document; any other is a typo, refused.
    static let extensionForms: [String: ExtensionForm] = [
        "x-warren-operation": .name, "x-warren-builtin": .name, "x-warren-self": .name, "x-warren-subject": .name,
        "x-warren-field": .name, "x-warren-auth": .word(["public", "user", "admin"]), "x-warren-token": .boolean,
        "x-warren-timeout-ms": .integer(1...300_000), "x-warren-owner": .owner,
    ]

    /// The methods an OpenAPI path item may hold, whose `responses` keys are status codes.
    private static let operationKeys: Set<String> = ["get", "put", "post", "delete", "options", "head", "patch", "trace"]

    /// Checks the written form of every `x-warren-*` field and response key in the composed
    /// document, before OpenAPIKit decodes it: its decoding reads YAML 1.1 (`yes` is true, `0x10`
    /// is 16), a status key with Swift's `Int(_:)` (`+200` is 200), and forgets the text, so a
    /// value the author did not mean would pass. Each field must also be where it is read.
    static func checkWrittenForms(_ node: Node) throws(RouteTableError) {
        try walk(node, at: [])
    }

    /// `placed`: whether a field here is where it is read; false inside another vendor
    /// extension (`x-templates`), where YAML anchors for merge keys live, whose fields count
    /// where they are merged.
    private static func walk(_ node: Node, at path: [String], placed: Bool = true) throws(RouteTableError) {
        switch node {
        case .scalar, .alias: return
        case .sequence(let sequence):
            for (index, child) in sequence.enumerated() { try walk(child, at: path + ["\(index)"], placed: placed) }
        case .mapping(let mapping):
            let isResponses = path.count >= 2 && path.last == "responses" && operationKeys.contains(path[path.count - 2])
            for (key, value) in mapping {
                let keyText = key.scalar?.string ?? "?"
                if keyText == "<<", key.scalar?.style == .plain {
                    // A merge key: YAMLDecoder makes its mapping's pairs this mapping's.
                    let merged = value.sequence.map { Array($0) } ?? [value]
                    for part in merged { try walk(part, at: path, placed: placed) }
                    continue
                }
                if isResponses { try checkStatusKey(key, at: path) }
                if keyText.hasPrefix("x-warren-") {
                    try check(value, field: keyText, at: path, placed: placed)
                } else {
                    try walk(value, at: path + [keyText], placed: placed && !keyText.hasPrefix("x-"))
                }
            }
        }
    }

    /// Where a field is, as the route table's other messages say it: `GET /users` for an
    /// operation (and what inside it), else the keys from the document's root.
    static func place(_ path: [String]) -> String {
        if path.count >= 3, path[0] == "paths", operationKeys.contains(path[2]) {
            let operation = "\(path[2].uppercased()) \(path[1])"
            return path.count == 3 ? operation : "\(operation) (at \(path.dropFirst(3).joined(separator: ".")))"
        }
        return path.isEmpty ? "the document's root" : path.joined(separator: ".")
    }

    /// A status code key: `default`, three decimal digits from 100 to 599, or `1XX`…`5XX`, written
    /// without a YAML tag (OpenAPIKit reads the key with Swift's `Int(_:)`, which takes `+200`).
    private static func checkStatusKey(_ key: Node, at path: [String]) throws(RouteTableError) {
        let responses = "\(place(Array(path.dropLast()))): the responses key"
        guard let scalar = key.scalar else {
            throw RouteTableError("\(responses) is not a scalar; write each status code as a plain key like \"200\"")
        }
        let tag = scalar.tag.rawValue
        guard tag.isEmpty || tag == "!" || tag == Tag.Name.str.rawValue else {
            throw RouteTableError(
                "\(responses) \(tag.replacingOccurrences(of: "tag:yaml.org,2002:", with: "!!")) \(scalar.string) has a YAML tag; write the status code as a plain string key like \"200\" (or default, or 2XX)")
        }
        let text = scalar.string
        let bytes = Array(text.utf8)
        let isCode = bytes.count == 3 && (UInt8(ascii: "1")...UInt8(ascii: "5")).contains(bytes[0])
            && (bytes[1...].allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) } || text.dropFirst() == "XX")
        guard text == "default" || isCode else {
            throw RouteTableError(
                "\(responses) '\(text)' is not a status code; write a decimal code from 100 to 599 as a plain key like \"200\", or 1XX to 5XX, or default")
        }
    }

    private static func check(_ value: Node, field: String, at path: [String], placed: Bool) throws(RouteTableError) {
        let place = place(path)
        guard let form = extensionForms[field] else {
            throw RouteTableError(
                "\(place): \(field) is not a field the gateway reads (it reads \(extensionForms.keys.sorted().joined(separator: ", ")))")
        }
        // Where the gateway reads a field; anywhere else it would be ignored without a word
        // (`x-warren-auth: admin` on a path item left its operations open to any user).
        if !placed {
            // Checked for its form below, and for its place where it is merged.
        } else if field == "x-warren-field" {
            let inList = path.count >= 2 && path[path.count - 2] == "parameters" && Int(path[path.count - 1]) != nil
            let inComponents = path.count == 3 && path[0] == "components" && path[1] == "parameters"
            guard inList || inComponents else {
                throw RouteTableError("\(place): x-warren-field is read on a parameter only; here it would be ignored")
            }
        } else {
            let inPaths = path.count == 3 && path[0] == "paths" && operationKeys.contains(path[2])
            let inComponents = path.count == 4 && path[0] == "components" && path[1] == "pathItems" && operationKeys.contains(path[3])
            guard inPaths || inComponents else {
                throw RouteTableError("\(place): \(field) is read on an operation only (paths: /path: get: …); here it would be ignored")
            }
        }
        switch form {
        case .owner:
            guard case .mapping(let mapping) = value else {
                throw RouteTableError("\(place): x-warren-owner must be {field: <owner field>, lookup: <operation>?}, not \(shown(value))")
            }
            for (key, entry) in mapping {
                let keyText = key.scalar?.string
                guard let key = keyText, key == "field" || key == "lookup" else {
                    // Not `shown(key)`: composing resolved the tags of mapping keys.
                    throw RouteTableError("\(place): x-warren-owner takes field and lookup only, not '\(keyText ?? "a collection")'")
                }
                try checkName(entry, field: "x-warren-owner's \(key)", place: place)
            }
        case .name:
            try checkName(value, field: field, place: place)
        case .word(let words):
            guard let text = plainText(value), words.contains(text) else {
                throw RouteTableError("\(place): \(field) must be one of \(words.joined(separator: ", ")), not \(shown(value))")
            }
        case .boolean:
            guard let text = plainText(value), text == "true" || text == "false" else {
                throw RouteTableError("\(place): \(field) must be true or false (unquoted), not \(shown(value))")
            }
        case .integer(let range):
            let limit = String(range.upperBound).utf8.count
            guard let text = plainText(value), text.utf8.count <= limit, text.utf8.first != UInt8(ascii: "0"),
                text.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
                let number = Int(text), range.contains(number)
            else {
                throw RouteTableError(
                    "\(place): \(field) must be a plain decimal integer from \(range.lowerBound) to \(range.upperBound), not \(shown(value))")
            }
        }
    }

    /// A name must stay text when decoded: YAML reads `yes`, `12`, `0x1f`, `.inf` and `~` as
    /// other things, which would silently drop the field.
    private static func checkName(_ value: Node, field: String, place: String) throws(RouteTableError) {
        guard let scalar = value.scalar, !scalar.string.isEmpty else {
            throw RouteTableError("\(place): \(field) must be a name, not \(shown(value))")
        }
        let readAs: String? =
            if Bool.construct(from: scalar) != nil { "a boolean" }
            else if Int.construct(from: scalar) != nil || UInt.construct(from: scalar) != nil || Double.construct(from: scalar) != nil { "a number" }
            else if value.null != nil { "null" }
            else { nil }
        if let readAs {
            throw RouteTableError("\(place): \(field) must be a name, not \(shown(value)), which YAML reads as \(readAs)")
        }
    }

    /// The text of an untagged, unquoted scalar.
    private static func plainText(_ value: Node) -> String? {
        guard let scalar = value.scalar, scalar.style == .plain || scalar.style == .any, scalar.tag.rawValue.isEmpty else { return nil }
        return scalar.string
    }

    /// A value as the author wrote it, for a message.
    private static func shown(_ value: Node) -> String {
        switch value {
        case .scalar(let scalar):
            let isQuoted = scalar.style == .singleQuoted || scalar.style == .doubleQuoted
            let quoted = isQuoted ? " (quoted)" : ""
            // A quoted scalar is tagged !!str by the parser; only a tag the author wrote is shown.
            let tag = scalar.tag.rawValue
            let written = !(tag.isEmpty || tag == "!" || (isQuoted && tag == Tag.Name.str.rawValue))
            let tagged = written ? tag.replacingOccurrences(of: "tag:yaml.org,2002:", with: "!!") + " " : ""
            return "\(tagged)'\(String(scalar.string.prefix(80)).debugDescription.dropFirst().dropLast())'\(quoted)"
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }
}
