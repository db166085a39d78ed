import Warren

extension EchoService {
    static let httpPort = 8090

    /// `warren-echo --help`.
    static let commandLine = ServiceCommandLine(
        binary: "warren-echo",
        summary: "the example service: answers <name>.echo with what it got.",
        serves: [
            "queue echo.rpc: echo.echo, {\"text\",\"sleepMilliseconds\"?} → {\"text\"} (<name>.rpc and <name>.echo with ECHO_SERVICE_NAME)",
            ServiceCommandLine.httpLine(port: httpPort),
        ],
        variables: ServiceCommandLine.hostVariables(port: httpPort) + [
            .init("ECHO_SERVICE_NAME", "echo", "the service's name: its queue and operation")
        ])
}
