import ArgumentParser
import Logging
import Warren

@main
struct WarrenBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "warren-bench",
        abstract: "Measures Warren against raw librabbitmq on this machine.",
        discussion: """
            Numbers vary two-fold between days on shared machines: compare the Swift and C results
            of one run (the ratio), not results of different runs.

            Environment: AMQP_URL (default amqp://guest:guest@localhost:5672/), the broker.
            """,
        version: WarrenVersion.string,
        subcommands: [AMQPBench.self, GatewayBench.self]
    )

    /// Logs go to stderr so that stdout carries only results (`--json`).
    static func bootstrapLogging() {
        LoggingSystem.bootstrap(StreamLogHandler.standardError)
    }
}
