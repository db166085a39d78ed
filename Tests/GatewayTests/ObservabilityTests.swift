import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

/// Tracing, metrics and flows of the real processes: the gateway and the user, order, payment
/// and event-store services, each exporting its spans over OTLP/HTTP to a receiver in the test.
@Suite("Observability across real processes: one trace, metrics families, flows", .serialized, .timeLimit(.minutes(5)))
struct ObservabilityTests {
    /// What the client sends: its own span in its own trace.
    static let clientTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
    static let clientSpan = "00f067aa0ba902b7"

    @Test("POST /orders: one trace through gateway, orders, users, payments and the event store, with the right parents; logs carry it; flows and metrics")
    func oneTrace() async throws {
        try await withVhost("observability") { vhost in
            let receiver = OTLPReceiver()
            try await receiver.start()
            defer { receiver.stop() }
            let data = try TemporaryDirectory()
            defer { data.remove() }
            var environment = ["AMQP_URL": vhost.url, "DATA_DIR": data.path, "BCRYPT_COST": "4", "WARREN_VERSION": "1.2.3-test"]
            for (key, value) in receiver.environment { environment[key] = value }
            let users = try ServiceProcess("user-service", environment: environment)
            let orders = try ServiceProcess("order-service", environment: environment)
            let payments = try ServiceProcess("payment-service", environment: environment)
            let events = try ServiceProcess("event-store", environment: environment)
            let gateway = try GatewayProcess(vhost: vhost, environment: environment)
            let services = [users, orders, payments, events]
            do {
                for service in services { try await service.waitUntilReady() }
                try await waitForLog(events, "recording every event")
                try await gateway.waitUntilReady()
                try await check(gateway, users: users, orders: orders, payments: payments, events: events, receiver: receiver, data: data.path)
            } catch {
                Issue.record("failed: \(error)\ngateway log:\n\(gateway.process.log.suffix(3000))")
            }
            await gateway.stop()
            for service in services { await service.stop() }
        }
    }

    private func check(
        _ gateway: GatewayProcess, users: ServiceProcess, orders: ServiceProcess, payments: ServiceProcess, events: ServiceProcess,
        receiver: OTLPReceiver, data: String
    ) async throws {
        let password = "correct horse battery"
        let ada = try await gateway.request("POST", "/users", json: ["name": "Ada", "email": "ada@example.com", "password": password])
        #expect(ada.status == 201)
        _ = try await gateway.request("POST", "/users", json: ["name": "Root", "email": "root@example.com", "password": password])
        #expect(try grantAdmin("root@example.com", data: data) == 0)
        let token = try #require(
            try await gateway.request("POST", "/auth/token", json: ["email": "ada@example.com", "password": password]).json["access_token"] as? String)
        let rootToken = try #require(
            try await gateway.request("POST", "/auth/token", json: ["email": "root@example.com", "password": password]).json["access_token"] as? String)

        // The order, in the client's trace.
        let flow = "observability-order-1"
        let placed = try await gateway.request(
            "POST", "/orders", json: ["items": [["sku": "book", "quantity": 1, "unitPriceCents": 1200]]], token: token,
            headers: ["X-Request-ID": flow, "traceparent": "00-\(Self.clientTrace)-\(Self.clientSpan)-01"])
        #expect(placed.status == 201, "\(placed.text)")
        let orderID = try #require(placed.json["id"] as? String)

        // Every hop exported, in the client's trace.
        let wanted: Set<String> = [
            "api-gateway POST /orders", "api-gateway send orders.create", "orders process orders.create", "orders send users.get",
            "users process users.get", "orders create order.created", "orders publish order.created", "payments process order.created",
            "events append order.created", "payments publish payment.succeeded", "orders process payment.succeeded",
            "orders publish order.confirmed", "events append order.confirmed",
        ]
        try await waitUntil(within: .seconds(20)) {
            wanted.isSubset(of: Set(receiver.spans(inTrace: Self.clientTrace).map { "\($0.service) \($0.name)" }))
        }
        let trace = receiver.spans(inTrace: Self.clientTrace)
        let names = Set(trace.map { "\($0.service) \($0.name)" })
        #expect(wanted.subtracting(names).isEmpty, "missing: \(wanted.subtracting(names).sorted())\nreceived: \(receiver.spans.map(\.description))")

        func span(_ service: String, _ name: String) throws -> OTLPReceiver.ReceivedSpan {
            try #require(trace.first { $0.service == service && $0.name == name }, "no span \(service) \(name)")
        }
        let server = try span("api-gateway", "POST /orders")
        #expect(server.parentSpanID == Self.clientSpan, "the client's traceparent is honoured")
        #expect(server.kind == 2)
        #expect(server.attributes["http.request.method"] == "POST")
        #expect(server.attributes["http.route"] == "/orders")
        #expect(server.attributes["http.response.status_code"] == "201")
        let send = try span("api-gateway", "send orders.create")
        #expect(send.parentSpanID == server.spanID)
        #expect(send.kind == 3)
        #expect(send.attributes["messaging.system"] == "rabbitmq")
        #expect(send.attributes["messaging.destination.name"] == "orders.rpc")
        #expect(send.attributes["messaging.message.conversation_id"] == flow)
        let process = try span("orders", "process orders.create")
        #expect(process.parentSpanID == send.spanID, "the responder's span is the client span's child across the broker")
        #expect(process.kind == 2)
        let nestedSend = try span("orders", "send users.get")
        #expect(nestedSend.parentSpanID == process.spanID)
        #expect(try span("users", "process users.get").parentSpanID == nestedSend.spanID)
        let create = try span("orders", "create order.created")
        #expect(create.parentSpanID == process.spanID, "the outbox write is in the request's trace")
        let publish = try span("orders", "publish order.created")
        #expect(publish.parentSpanID == create.spanID, "the relay publishes in the trace stored with the outbox row")
        #expect(publish.kind == 4)
        let consume = try span("payments", "process order.created")
        #expect(consume.parentSpanID == publish.spanID)
        #expect(consume.kind == 5)
        #expect(try span("events", "append order.created").parentSpanID == publish.spanID)
        #expect(try span("orders", "process payment.succeeded").parentSpanID == span("payments", "publish payment.succeeded").spanID)

        // Log lines written inside a span carry its trace and span ids.
        let placedLine = try #require(orders.logLines.first { $0["msg"] as? String == "order placed" })
        #expect(placedLine["trace_id"] as? String == Self.clientTrace)
        #expect(placedLine["span_id"] as? String == process.spanID)
        #expect(placedLine["total_cents"] as? Int == 1200, "numbers are JSON numbers")
        #expect((placedLine["ts"] as? String)?.hasSuffix("Z") == true)

        // A hostile traceparent is ignored: a new trace, an answer as usual.
        for hostile in ["garbage", "ff-\(Self.clientTrace)-\(Self.clientSpan)-01", String(repeating: "0", count: 10_240)] {
            let reply = try await gateway.request("GET", "/orders/\(orderID)", token: token, headers: ["traceparent": hostile])
            #expect(reply.status == 200)
        }
        try await checkHostileOverAMQP(gateway: gateway, receiver: receiver)

        // The flow, for admins, from the event store.
        var flowReply = try await gateway.request("GET", "/events/flows/\(flow)", token: rootToken)
        let deadline = ContinuousClock.now + .seconds(10)
        while (flowReply.json["count"] as? Int ?? 0) < 3, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(200))
            flowReply = try await gateway.request("GET", "/events/flows/\(flow)", token: rootToken)
        }
        #expect(flowReply.status == 200, "\(flowReply.text)")
        #expect(flowReply.json["status"] as? String == "complete", "\(flowReply.text)")
        let root = try #require((flowReply.json["events"] as? [[String: Any]])?.first)
        #expect(root["type"] as? String == "order.created")
        #expect(root["source"] as? String == "orders")
        let paid = try #require((root["children"] as? [[String: Any]])?.first)
        #expect(paid["type"] as? String == "payment.succeeded")
        #expect(paid["source"] as? String == "payments")
        #expect(paid["gapMilliseconds"] is Int)
        #expect(((paid["children"] as? [[String: Any]])?.first)?["type"] as? String == "order.confirmed")
        #expect(try await gateway.request("GET", "/events/flows/\(flow)", token: token).status == 403)
        let payment = try await gateway.request("GET", "/payments/\(orderID)", token: token)
        #expect(payment.status == 200, "\(payment.text)")

        // Metrics: every family of the contract with the ops dashboard.
        try await checkMetrics(users: users, orders: orders, payments: payments, events: events, gateway: gateway)
    }

    /// Straight to users.rpc over AMQP: hostile trace headers are ignored, the request answered.
    private func checkHostileOverAMQP(gateway: GatewayProcess, receiver: OTLPReceiver) async throws {
        let connection = try await AMQPConnection.connect(url: gateway.process.environment["AMQP_URL"] ?? "", connectionName: "observability-tests")
        let rpc = try await RPCClient.start(connection: connection)
        // Keeps the calls' deadlines for this scope (cancelled at its end).
        async let _ = rpc.run()
        let hostile: [AMQPTable] = [
            ["traceparent": .string("00-\(String(repeating: "z", count: 32))-\(Self.clientSpan)-01")],
            ["traceparent": .string(String(repeating: "a", count: 10_240)), "tracestate": .string(String(repeating: "b", count: 100_000))],
            ["traceparent": .int(7)],
            ["traceparent": .table(["x": .string("y")])],
            ["traceparent": .string("01-\(Self.clientTrace)-\(Self.clientSpan)-01-extra")],
        ]
        for headers in hostile {
            let reply = try await rpc.call("users.get", body: Data(#"{"id":"\#(UUID().uuidString.lowercased())"}"#.utf8), envelope: Envelope(headers: headers))
            #expect(reply.isError, "an unknown user is not_found, traced or not")
            #expect(reply.serviceError(operation: "users.get").code == .notFound)
        }
        await rpc.close()
        await connection.close()
    }

    private func checkMetrics(
        users: ServiceProcess, orders: ServiceProcess, payments: ServiceProcess, events: ServiceProcess, gateway: GatewayProcess
    ) async throws {
        let common = [
            "warren_requests_total", "warren_request_duration_seconds_bucket", "warren_requests_in_flight", "warren_amqp_connection_up",
            "warren_amqp_reconnects_total", "process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
            "process_start_time_seconds", "warren_build_info",
        ]
        let expected: [(ServiceProcess, [String])] = [
            (users, common + ["warren_outbox_pending_events"]),
            (orders, common + ["warren_outbox_pending_events", "warren_rpc_calls_total", "warren_rpc_call_duration_seconds_bucket",
                               "warren_event_handler_duration_seconds_bucket", "warren_events_handled_total", "orders_settled_total"]),
            (payments, common + ["warren_outbox_pending_events", "warren_event_handler_duration_seconds_bucket", "warren_events_handled_total"]),
            (events, common),
        ]
        for (process, families) in expected {
            let text = try await metrics(port: process.port)
            for family in families {
                #expect(text.contains("\n\(family){") || text.contains("\n\(family) "), "\(process.executable) has no \(family)")
            }
            #expect(text.contains(#"warren_request_duration_seconds_bucket{"#) && text.contains(#"le="0.0001""#), "buckets start at 100 µs")
            #expect(text.contains(#"le="10.0""#) || text.contains(#"le="10""#), "buckets end at 10 s")
            #expect(text.contains("warren_amqp_connection_up 1"))
            #expect(text.contains(#"version="1.2.3-test""#))
        }
        let ordersText = try await metrics(port: orders.port)
        #expect(ordersText.contains(#"orders_settled_total{status="confirmed"} 1"#))
        let gatewayText = try await gateway.request("GET", "/metrics").text
        for family in ["gateway_http_requests_total", "gateway_http_request_duration_seconds_bucket", "process_resident_memory_bytes", "warren_build_info"] {
            #expect(gatewayText.contains("\n\(family){") || gatewayText.contains("\n\(family) "), "the gateway has no \(family)")
        }
    }

    private func metrics(port: Int) async throws -> String {
        let url = try #require(URL(string: "http://127.0.0.1:\(port)/metrics"))
        let (data, _) = try await URLSession.shared.data(from: url)
        return "\n" + String(decoding: data, as: UTF8.self)
    }
}
