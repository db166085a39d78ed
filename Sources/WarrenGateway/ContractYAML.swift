import Yams

/// Reads a contract's YAML into a node tree, refusing one that expands beyond any real
/// contract: YAML aliases can make a few hundred bytes stand for billions of nodes (an "alias
/// bomb"), which would hold the gateway's start-up forever without a word.
enum ContractYAML {
    /// 40 times the contracts Warren ships (about 2,500 nodes each), and small enough that a
    /// document just under it still starts in seconds: one of 1.87 million nodes made of aliases
    /// (a few hundred bytes) held the start for 131 s and made `/docs` 60 MB.
    static let maxNodes = 100_000

    /// What is wrong with a contract's YAML, in words that follow "the document …".
    struct Problem: Error, CustomStringConvertible {
        let description: String
    }

    /// The resolver `YAMLDecoder` parses with (merge keys only): every plain scalar stays a
    /// string, as the response keys of an OpenAPI document (`200`) need. A node composed with it
    /// decodes as the text would, so the text is parsed once.
    static let decoderResolver = Resolver.basic.appending(.merge)

    /// The document of `yaml`, its plain scalars typed by `resolver` (`.default`: numbers,
    /// booleans and nulls, as `Yams.load` reads them); throws when the YAML is not valid, is
    /// empty, or expands to more than `maxNodes` nodes.
    static func compose(_ yaml: String, resolver: Resolver = .default) throws(Problem) -> Node {
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml, resolver)
        } catch {
            throw Problem(description: "is not valid YAML: \(error)")
        }
        guard let root else { throw Problem(description: "is empty") }
        var budget = maxNodes
        guard fits(root, budget: &budget) else {
            throw Problem(description: "expands to more than \(maxNodes) YAML nodes (aliases repeating anchors?): refused rather than read")
        }
        return root
    }

    /// Whether `node` has at most `budget` nodes, counting each use of an alias again (an alias
    /// shares its anchor's node, so the walk stops as soon as the budget is spent).
    private static func fits(_ node: Node, budget: inout Int) -> Bool {
        budget -= 1
        guard budget >= 0 else { return false }
        switch node {
        case .scalar, .alias: return true
        case .sequence(let sequence):
            for child in sequence {
                if !fits(child, budget: &budget) { return false }
            }
            return true
        case .mapping(let mapping):
            for (key, value) in mapping {
                if !fits(key, budget: &budget) || !fits(value, budget: &budget) { return false }
            }
            return true
        }
    }
}
