extension GatewayResponder {
    /// The client's `Idempotency-Key`: 1 to 128 visible ASCII characters (a UUID is typical);
    /// anything else, including the header sent twice (joined with ", "), is `invalid` rather
    /// than silently ignored. With a key, the command's `message_id` is derived from it (see
    /// `Command.derivedMessageID`), which makes a client's retry a redelivery to the service.
    static func idempotencyKey(_ header: String?) throws(GatewayError) -> String? {
        guard let header else { return nil }
        guard (1...128).contains(header.utf8.count), header.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw .invalid("header Idempotency-Key must be 1 to 128 visible ASCII characters (no spaces; sent once), e.g. a UUID")
        }
        return header
    }
}
