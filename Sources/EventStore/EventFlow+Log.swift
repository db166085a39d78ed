import Foundation
import Warren
import WarrenContract

extension EventLog {
    /// The most events one flow shows; a flow with more is cut there and says so.
    static var maxFlowEvents: Int { 1000 }

    /// Every event with `correlationId`, in store order, as a causation tree (`events.flow`).
    func flow(correlationId: String) async throws -> EventFlow {
        var nodes: [EventFlow.Node] = []
        var after: Int64?
        repeat {
            let page = try await page(
                EventQuery(correlationID: correlationId, after: after, limit: min(EventsQuery.maxLimit, Self.maxFlowEvents - nodes.count)))
            var json = Data("[".utf8)
            json.append(page.eventsJSON)
            json.append(contentsOf: "]".utf8)
            let objects = (try? JSONSerialization.jsonObject(with: json) as? [[String: Any]]) ?? []
            for object in objects {
                guard let id = object["id"] as? String, let type = object["type"] as? String, let timestamp = object["timestamp"] as? String
                else { continue }
                nodes.append(
                    EventFlow.Node(
                        id: id, type: type, source: object["source"] as? String, aggregateId: object["aggregateId"] as? String,
                        causationId: object["causationId"] as? String, timestamp: timestamp, recordedAt: object["recordedAt"] as? String))
            }
            after = page.next
        } while after != nil && nodes.count < Self.maxFlowEvents
        var flow = EventFlow.build(correlationId: correlationId, events: nodes, settledElsewhere: try await settledElsewhere(nodes))
        if after != nil {
            flow.problems.append("the flow has more than \(Self.maxFlowEvents) events: only the first \(Self.maxFlowEvents) are shown")
        }
        return flow
    }

    /// The most events of one flow whose settling event is looked for in other flows.
    static var maxSettlementLookups: Int { 100 }

    /// The ids of the flow's unsettled events that an event of another flow settles: a
    /// customer's cancellation (`order.cancelled`), and the refund it causes, are on the flow
    /// of the `orders.cancel` request, not on the order's.
    private func settledElsewhere(_ nodes: [EventFlow.Node]) async throws -> Set<String> {
        var settled: Set<String> = []
        for (event, settling) in EventFlow.unsettled(nodes).prefix(Self.maxSettlementLookups) {
            guard let aggregateID = event.aggregateId else { continue }
            for type in settling {
                // Exact types (no `*`), so the pattern matches only that type.
                if try await page(EventQuery(typePattern: type, aggregateID: aggregateID, limit: 1)).count > 0 {
                    settled.insert(event.id)
                    break
                }
            }
        }
        return settled
    }
}
