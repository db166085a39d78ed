import Foundation
import Logging
import Warren
import WarrenGateway

// Everything is in WarrenGateway, so that its pieces are testable; Gateway.run lists the
// environment it reads. A configuration or contract it refuses (an invalid openapi.yaml names
// the problem) is logged here, as one critical line; other failures to start were logged with
// what to do. Either way the exit status says it.
if case .exit(let status) = gatewayCommandLine.resolve() { exit(status) }
do {
    try await Gateway.run()
} catch let error as GatewayConfigurationError {
    refuseToStart(error)
} catch let error as RouteTableError {
    refuseToStart(error)
} catch {
    FileHandle.standardError.write(Data("api-gateway: \(error)\n".utf8))
    exit(1)
}

func refuseToStart(_ error: any Error) -> Never {
    var logger = Logger(label: "api-gateway")
    logger[metadataKey: "service"] = "api-gateway"
    logger.critical("cannot start: \(error)")
    exit(1)
}
