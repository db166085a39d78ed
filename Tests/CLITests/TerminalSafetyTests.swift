// What the CLI prints from outside (bodies, headers, ids, types, queue names, binding keys,
// replies and error messages) reaches the terminal escaped; `--json` output stays as it came.
import Foundation
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

@testable import WarrenCLI

/// Clears the screen (ESC[2J and its C1 form CSI 2J), sets the window title, reverses the text
/// after it, rings the bell, and forges a line of the CLI's own.
let hostile = "\u{1B}[2J\u{9B}2J\u{1B}]0;owned\u{07}\u{202E}gnp.exe\u{2066}\r\nwarren: all good"

/// True when a terminal would act on nothing in `text` (its own line breaks aside).
func isTerminalSafe(_ text: String) -> Bool {
    !text.unicodeScalars.contains { Terminal.needsEscape($0, keepingLineBreaks: true) }
}

@Suite("terminal safety of text output", .timeLimit(.minutes(3)))
struct TerminalSafetyTests {
    @Test("dlq show prints an ESC[2J body, header, id and type escaped; --json carries them unchanged")
    func dlqShow() async throws {
        try await TestVhost.with { vhost, connection in
            let channel = try await connection.openChannel()
            try await channel.declareQueue("payments.events")
            try await channel.declareQueue("payments.events.dlq")
            let properties = AMQPProperties(
                contentType: "application/json",
                headers: [WireHeader.error: .string("boom " + hostile), WireHeader.originalRoutingKey: .string("order." + hostile)],
                messageID: "m-" + hostile, type: "order.created")
            try await channel.publish(Data(hostile.utf8), routingKey: "payments.events.dlq", properties: properties)
            var waited = 0
            while try await channel.inspectQueue("payments.events.dlq").messageCount < 1, waited < 500 {
                try await Task.sleep(for: .milliseconds(10))
                waited += 1
            }

            let text = try await WarrenCLI.run(["dlq", "show", "payments"], url: vhost.url)
            #expect(text.status == 0, "\(text)")
            #expect(isTerminalSafe(text.stdout), "\(text)")
            #expect(text.stdout.contains(#"body:  \u{1B}[2J\u{9B}2J\u{1B}]0;owned\u{07}\u{202E}gnp.exe\u{2066}\r\nwarren: all good"#), "\(text)")
            #expect(text.stdout.contains(#"error: boom \u{1B}[2J"#), "\(text)")
            #expect(text.stdout.contains(#"1. m-\u{1B}[2J"#), "\(text)")
            #expect(!text.stdout.contains("\nwarren: all good"), "a body must not forge a line: \(text)")

            let json = try await WarrenCLI.run(["dlq", "show", "payments", "--json"], url: vhost.url)
            #expect(json.status == 0, "\(json)")
            let shown = try #require(((json.json as? [[String: Any]])?.first?["shown"] as? [[String: Any]])?.first, "\(json)")
            #expect(shown["body"] as? String == hostile)
            #expect((shown["headers"] as? [String: Any])?["x-error"] as? String == "boom " + hostile)
            #expect((shown["properties"] as? [String: Any])?["message_id"] as? String == "m-" + hostile)
            #expect(try await depth("payments.events.dlq", on: connection) == 1)
            await channel.close()
        }
    }

    @Test("events tail prints an ESC[2J body and type escaped; --json carries them unchanged")
    func eventsTail() async throws {
        try await TestVhost.with { vhost, connection in
            let text = try WarrenCLI(["events", "tail"], url: vhost.url)
            let json = try WarrenCLI(["events", "tail", "--json"], url: vhost.url)
            try await text.waitFor("listening on warren.events")
            try await json.waitFor("listening on warren.events")
            let channel = try await connection.openChannel()
            let properties = AMQPProperties(
                contentType: "application/json", headers: [WireHeader.correlationID: .string("c-" + hostile)],
                messageID: "e-1", type: "order." + hostile)
            try await channel.publish(Data(hostile.utf8), exchange: EventPublisher.exchange, routingKey: "order.created", properties: properties)
            try await text.waitFor("e-1", inStdout: true)
            try await json.waitFor("e-1", inStdout: true)
            text.process.interrupt()
            json.process.interrupt()
            let textResult = try await text.finish()
            let jsonResult = try await json.finish()

            #expect(textResult.status == 0, "\(textResult)")
            #expect(isTerminalSafe(textResult.stdout), "\(textResult)")
            #expect(textResult.stdout.utf8.split(separator: 0x0A).count == 1, "one event, one line: \(textResult)")
            #expect(textResult.stdout.contains(#"order.\u{1B}[2J\u{9B}2J"#), "\(textResult)")
            #expect(textResult.stdout.contains(#"c-\u{1B}[2J"#), "\(textResult)")
            #expect(textResult.stdout.contains(#"\u{1B}]0;owned\u{07}\u{202E}gnp.exe\u{2066}\r"#), "\(textResult)")
            #expect(textResult.stdout.contains("warren: all good"), "\(textResult)")

            let document = try #require(
                jsonResult.stdout.split(separator: "\n").first.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] },
                "\(jsonResult)")
            #expect(document["body"] as? String == hostile)
            #expect((document["properties"] as? [String: Any])?["type"] as? String == "order." + hostile)
            await channel.close()
        }
    }

    @Test("topology and dlq list print hostile queue names and binding keys escaped")
    func names() async throws {
        try await TestVhost.with { vhost, connection in
            let channel = try await connection.openChannel()
            try await channel.declareExchange(EventPublisher.exchange, type: "topic", durable: true)
            try await channel.declareQueue("scratch\u{1B}[2J\u{202E}")
            try await channel.declareQueue("evil\u{1B}]0;x\u{07}.events.dlq")
            try await channel.declareQueue("payments.events")
            try await channel.bindQueue("payments.events", exchange: EventPublisher.exchange, routingKey: "\u{1B}[2J.#")

            let topology = try await WarrenCLI.run(["topology"], url: vhost.url)
            #expect(topology.status == 0, "\(topology)")
            #expect(isTerminalSafe(topology.stdout), "\(topology)")
            #expect(topology.stdout.contains(#"scratch\u{1B}[2J\u{202E}"#), "\(topology)")
            #expect(topology.stdout.contains(#"warren.events: \u{1B}[2J.#"#), "\(topology)")
            #expect(topology.stdout.contains(#"evil\u{1B}]0;x\u{07}"#), "\(topology)")

            let list = try await WarrenCLI.run(["dlq", "list"], url: vhost.url)
            #expect(list.status == 0, "\(list)")
            #expect(isTerminalSafe(list.stdout), "\(list)")
            #expect(list.stdout.contains(#"evil\u{1B}]0;x\u{07}.events.dlq  0"#), "\(list)")

            let json = try await WarrenCLI.run(["dlq", "list", "--json"], url: vhost.url)
            #expect((json.json as? [[String: Any]])?.first?["queue"] as? String == "evil\u{1B}]0;x\u{07}.events.dlq", "\(json)")
            await channel.close()
        }
    }

    @Test("warren call prints a reply, a non-JSON reply and an error message escaped; --json as it came")
    func call() async throws {
        try await TestVhost.with { vhost, connection in
            var handlers = RPCHandlers()
            struct Empty: Codable, Sendable {}
            handlers.on("probe.text", Empty.self) { _, _ in ["text": hostile] }
            handlers.onRaw("probe.raw", Empty.self) { _, _ in Data(hostile.utf8) }
            handlers.on("probe.fail", Empty.self) { _, _ -> [String: String] in throw ServiceError.conflict("gone " + hostile) }
            // A service's error message of 100 KB.
            handlers.on("probe.huge", Empty.self) { _, _ -> [String: String] in throw ServiceError.conflict(String(repeating: "x", count: 100_000)) }
            let service = try await InProcessService("probe", handlers: handlers, connection: connection)

            let pretty = try await WarrenCLI.run(["call", "probe.text"], url: vhost.url)
            #expect(pretty.status == 0, "\(pretty)")
            #expect(isTerminalSafe(pretty.stdout), "\(pretty)")
            #expect(pretty.stdout.contains(#"\u{9B}2J"#) && pretty.stdout.contains(#"\u{202E}gnp.exe\u{2066}"#), "\(pretty)")

            let raw = try await WarrenCLI.run(["call", "probe.raw"], url: vhost.url)
            #expect(raw.status == 0, "\(raw)")
            #expect(isTerminalSafe(raw.stdout), "\(raw)")
            #expect(raw.stdout.contains(#"\u{1B}[2J\u{9B}2J"#), "\(raw)")

            let asItCame = try await WarrenCLI.run(["call", "probe.raw", "--json"], url: vhost.url)
            #expect(asItCame.stdout == hostile + "\n", "\(asItCame)")

            let failed = try await WarrenCLI.run(["call", "probe.fail"], url: vhost.url)
            #expect(failed.status == 1, "\(failed)")
            #expect(isTerminalSafe(failed.stderr), "\(failed)")
            #expect(failed.stderr.contains(#"probe.fail replied conflict: gone \u{1B}[2J"#), "\(failed)")
            #expect(!failed.stderr.contains("\nwarren: all good"), "an error message must not forge a line: \(failed)")

            // --json bounds a service's error message as text mode does, with the same marker.
            for arguments in [["call", "probe.huge", "--timeout", "60s"], ["call", "probe.huge", "--json", "--timeout", "60s"]] {
                let huge = try await WarrenCLI.run(arguments, url: vhost.url)
                #expect(huge.status == 1, "\(arguments)")
                #expect(huge.stderr.contains("… (98000 more characters)"), "\(arguments)")
                #expect(huge.stderr.utf8.count < 3_000, "\(arguments)")
                #expect(huge.stdout.utf8.count < 3_000, "\(arguments)")
            }
            let hugeJSON = try await WarrenCLI.run(["call", "probe.huge", "--json", "--timeout", "60s"], url: vhost.url)
            let error = try #require((hugeJSON.json as? [String: Any])?["error"] as? [String: Any], "\(hugeJSON)")
            #expect(error["code"] as? String == "conflict")
            #expect((error["message"] as? String)?.hasSuffix("… (98000 more characters)") == true)
            await service.stop()
        }
    }
}
