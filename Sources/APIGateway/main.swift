import Foundation
import Warren
import WarrenGateway

// Everything is in WarrenGateway, so that its pieces are testable; Gateway.run lists the
// environment it reads. A failure to start was logged with what to do; the exit status says it.
if case .exit(let status) = gatewayCommandLine.resolve() { exit(status) }
do {
    try await Gateway.run()
} catch {
    FileHandle.standardError.write(Data("api-gateway: \(error)\n".utf8))
    exit(1)
}
