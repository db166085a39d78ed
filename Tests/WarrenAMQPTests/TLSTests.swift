import Foundation
import Testing
import WarrenTestSupport
import WarrenAMQP

/// `amqps://` against a real TLS endpoint: socat terminates TLS with a certificate made for the
/// test and forwards to the broker, so the client's handshake and verification run for real.
@Suite("TLS", .timeLimit(.minutes(1)))
struct TLSTests {
    @Test("amqps with the right CA connects and works; without it verification fails clearly")
    func amqps() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("warren-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let cert = directory.appendingPathComponent("cert.pem").path
        let key = directory.appendingPathComponent("key.pem").path
        try run("/usr/bin/openssl", [
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])
        var port = Int.random(in: 20_000..<40_000)
        let trusted = try startTerminator(port: port, cert: cert, key: key)
        defer { trusted.terminate() }
        try await Task.sleep(for: .milliseconds(300))

        let url = "amqps://guest:guest@localhost:\(port)/?cacertfile=\(cert)"
        let connection = try await AMQPConnection.connect(url: url, connectionName: "test-tls")
        let channel = try await connection.openChannel()
        let queue = Broker.unique("tls")
        try await channel.declareQueue(queue, durable: false, autoDelete: true)
        try await channel.enableConfirms()
        try await channel.publish(Data("secret".utf8), routingKey: queue)
        #expect(try await channel.get(queue: queue, noAck: true)?.body == Data("secret".utf8))
        try await channel.deleteQueue(queue)
        await connection.close()

        // The system's CAs do not know this certificate.
        port += 1
        let untrusted = try startTerminator(port: port, cert: cert, key: key)
        defer { untrusted.terminate() }
        try await Task.sleep(for: .milliseconds(300))
        await #expect {
            _ = try await AMQPConnection.connect(url: "amqps://guest:guest@localhost:\(port)/", connectionName: "test-tls-untrusted")
        } throws: { error in
            guard case .connectionRefused(_, let refusedPort, _) = error as? AMQPError else { return false }
            return refusedPort == port
        }
    }

    /// socat serving one TLS connection (no fork: nothing outlives the test) in front of the broker.
    private func startTerminator(port: Int, cert: String, key: String) throws -> Process {
        let socat = Process()
        socat.executableURL = URL(fileURLWithPath: "/usr/bin/socat")
        socat.arguments = ["OPENSSL-LISTEN:\(port),bind=127.0.0.1,reuseaddr,cert=\(cert),key=\(key),verify=0", "TCP:127.0.0.1:5672"]
        // Not our stdout: a child holding the test runner's pipe keeps `swift test` waiting.
        socat.standardOutput = FileHandle.nullDevice
        socat.standardError = FileHandle.nullDevice
        try socat.run()
        return socat
    }

    private func run(_ executable: String, _ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "\(executable) failed")
    }
}
