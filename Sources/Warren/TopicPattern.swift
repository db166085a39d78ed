/// AMQP topic matching, as a topic exchange routes: a binding key and a routing key are words
/// separated by dots; `*` in the key stands for exactly one word, `#` for zero or more words;
/// any other word must be equal. An empty key has no words (RabbitMQ's rule: `#` matches the
/// empty routing key, `*` does not); `a..b` has an empty word in the middle. A subscriber checks
/// each event's type with it, since an event may also arrive straight in its queue, past the
/// bindings; the CLI sends a queue only what its bindings would route to it.
public enum TopicPattern {
    /// Whether a topic exchange routes a message with `routingKey` through a binding with
    /// `bindingKey`. Runs in (words of the key) × (words of the routing key) steps whatever the
    /// key: a binding from the management API may be any string, `#.#.#.#…` included.
    public static func matches(_ bindingKey: String, _ routingKey: String) -> Bool {
        let pattern = words(bindingKey)
        let key = words(routingKey)
        // matched[j]: the pattern's first i words match the routing key's first j words.
        var matched = [Bool](repeating: false, count: key.count + 1)
        matched[0] = true
        for word in pattern {
            var next = [Bool](repeating: false, count: key.count + 1)
            switch word.utf8.count == 1 ? word.utf8.first : nil {
            case UInt8(ascii: "#"):
                // Zero words (matched[j]) or one more word after a match (next[j - 1]).
                next[0] = matched[0]
                for j in key.indices { next[j + 1] = matched[j + 1] || next[j] }
            case UInt8(ascii: "*"):
                for j in key.indices { next[j + 1] = matched[j] }
            default:
                // Bytes, as the broker compares: Swift's `==` would equate canonically equivalent text.
                for j in key.indices { next[j + 1] = matched[j] && key[j].utf8.elementsEqual(word.utf8) }
            }
            matched = next
        }
        return matched[key.count]
    }

    /// Whether `routingKey` matches any of `bindingKeys`.
    public static func matches(any bindingKeys: [String], _ routingKey: String) -> Bool {
        bindingKeys.contains { matches($0, routingKey) }
    }

    private static func words(_ key: String) -> [Substring] {
        key.isEmpty ? [] : key.split(separator: ".", omittingEmptySubsequences: false)
    }
}
