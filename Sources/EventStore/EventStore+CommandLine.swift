import Warren

extension EventStore {
    static let httpPort = 8094

    /// `event-store --help`.
    static let commandLine = ServiceCommandLine(
        binary: "event-store",
        summary: "the event store: every event on warren.events recorded once, in order; events.query pages through them.",
        serves: [
            "queue \(QueueName.rpc("events")): events.query (what `warren replay` reads)",
            "queue \(QueueName.events("events")): every event (binding #; unstorable ones parked in \(QueueName.eventsDeadLetter("events")))",
            ServiceCommandLine.httpLine(port: httpPort),
        ],
        variables: ServiceCommandLine.hostVariables(port: httpPort) + ServiceCommandLine.storageVariables(service: "events", outbox: false) + [
            .init("EVENTS_PREFETCH", "1000", "events taken ahead from events.events"),
            .init("EVENTS_BATCH_SIZE", "500", "events appended per transaction"),
        ])
}
