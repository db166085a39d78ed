/// AMQP topic matching, as the broker matches a binding key to a routing key: words are
/// separated by dots, `*` is exactly one word, `#` zero or more words; anything else matches
/// itself. A subscriber checks each event's type with it, since an event may also arrive
/// straight in its queue, past the bindings.
public enum TopicPattern {
    /// Whether `key` matches `pattern` (`order.*` matches `order.created`, not `order.a.b`;
    /// `order.#` matches `order`, `order.created` and `order.a.b`).
    public static func matches(_ pattern: String, _ key: String) -> Bool {
        // As RabbitMQ splits them: the empty key (or pattern) is no words at all.
        let patternWords = pattern.isEmpty ? [] : pattern.split(separator: ".", omittingEmptySubsequences: false)
        let keyWords = key.isEmpty ? [] : key.split(separator: ".", omittingEmptySubsequences: false)
        // matched[i][j]: the first i pattern words match the first j key words. Iterative, so
        // a pattern full of `#` costs words × words, never exponential time.
        var previous = [Bool](repeating: false, count: keyWords.count + 1)
        previous[0] = true
        for word in patternWords {
            var current = [Bool](repeating: false, count: keyWords.count + 1)
            if word == "#" {
                current[0] = previous[0]
                for j in 1...max(1, keyWords.count) where j <= keyWords.count {
                    current[j] = previous[j] || current[j - 1]
                }
            } else {
                for j in 0..<keyWords.count where previous[j] {
                    current[j + 1] = word == "*" || word == keyWords[j]
                }
            }
            previous = current
        }
        return previous[keyWords.count]
    }

    /// Whether `key` matches any of `patterns`.
    public static func matches(any patterns: [String], _ key: String) -> Bool {
        patterns.contains { matches($0, key) }
    }
}
