import Foundation
import Testing
import WarrenTestSupport

/// `--since` / `--until` are read by the wire-time parser every part of Warren shares: a time
/// that does not exist is a usage error naming the option, never rolled over to another day.
@Suite("warren replay: times that do not exist")
struct TimeOptionTests {
    @Test("an impossible --since or --until is a usage error naming the option", arguments: [
        "2026-02-30", "2026-13-01", "2026-01-01T24:00:00Z", "2016-12-31T23:59:60Z", "2026-01-01T12:00:00+24:00",
        "2026-01-01T12:00:00", "2026-02-29",
    ])
    func impossible(time: String) async throws {
        for option in ["--since", "--until"] {
            let result = try await WarrenCLI.run(["replay", "--dry-run", option, time], url: Broker.url)
            #expect(result.status == 2, "\(option) \(time): \(result)")
            #expect(result.stderr.contains(option), "\(option) \(time): \(result)")
        }
    }
}
