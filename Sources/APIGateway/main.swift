import WarrenGateway

// Everything is in WarrenGateway, so that its pieces are testable; see Gateway.run for the
// environment it reads.
try await Gateway.run()
