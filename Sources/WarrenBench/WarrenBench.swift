import ArgumentParser
import Logging

@main
struct WarrenBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "warren-bench",
        abstract: "Measures Warren against raw librabbitmq on this machine.",
        discussion: """
            Numbers vary two-fold between days on shared machines: compare the Swift and C results
            of one run (the ratio), not results of different runs.
            """,
        subcommands: [AMQPBench.self, GatewayBench.self]
    )

    /// Logs go to stderr so that stdout carries only results (`--json`).
    static func bootstrapLogging() {
        LoggingSystem.bootstrap(StreamLogHandler.standardError)
    }
}
