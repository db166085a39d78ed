import Foundation
import Logging
import Warren
import WarrenHost

/// The smallest Warren service: one operation, `<name>.echo`, that answers with what it got
/// (after `sleepMilliseconds`, to show draining). An example to copy, and what the tests run as
/// a real process. `ECHO_SERVICE_NAME` renames it (default `echo`); everything else is the
/// service host's environment (README, Configuration).
@main
struct EchoService {
    struct Echo: Codable, Sendable, Validatable {
        var text: String
        var sleepMilliseconds: Int?

        func validate() throws(ServiceError) {
            try Check.length(text, "text", 1...10_000)
            if let sleepMilliseconds { try Check.range(sleepMilliseconds, "sleepMilliseconds", 0...60_000) }
        }
    }

    static func main() async throws {
        if case .exit(let status) = commandLine.resolve() { exit(status) }
        let name = ProcessInfo.processInfo.environment["ECHO_SERVICE_NAME"] ?? "echo"
        exit(await ServiceProcess.run(name: name, defaultHTTPPort: httpPort) { _ in
            var handlers = RPCHandlers()
            handlers.on("\(name).echo", Echo.self) { request, context in
                context.logger.info("echoing", metadata: ["length": "\(request.text.count)"])
                if let sleep = request.sleepMilliseconds { try await Task.sleep(for: .milliseconds(sleep)) }
                return Echo(text: request.text)
            }
            return ServiceDefinition(handlers: handlers)
        })
    }
}
