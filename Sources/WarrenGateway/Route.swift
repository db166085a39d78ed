/// One HTTP route as `schemas/openapi.yaml` declares it: which message it becomes and who may
/// send it. Built once at start-up; the gateway has no handler code per route.
public struct Route: Sendable {
    /// Who may call a route (`x-warren-auth`).
    public enum Access: String, Sendable {
        case `public`, user, admin
    }

    /// What answers a route: a service operation, or the gateway itself (`x-warren-builtin`).
    public enum Target: Sendable, Equatable {
        case operation(String)
        case health, metrics, openapi
        /// `/docs`: both contracts as a readable page; `asyncapi`: the AsyncAPI document as it is.
        case docs, asyncapi

        /// The `x-warren-builtin` names of what the gateway answers itself.
        public static let builtins: [String: Target] = [
            "health": .health, "metrics": .metrics, "openapi": .openapi, "docs": .docs, "asyncapi": .asyncapi,
        ]
    }

    /// "The resource must belong to the caller unless admin" (`x-warren-owner`).
    public struct Ownership: Sendable, Equatable {
        /// The field of the resource that holds its owner's user id.
        public var field: String
        /// An operation that reads the resource before `operation` changes it; nil: check the reply.
        public var lookup: String?
    }

    /// A path or query parameter and the body field it fills.
    public struct Parameter: Sendable, Equatable {
        public enum Kind: Sendable, Equatable { case string, integer, number, boolean }
        public var name: String
        public var field: String
        public var kind: Kind
    }

    public var method: String
    /// The OpenAPI path template, `/users/{id}`; also the `route` label of metrics.
    public var path: String
    /// The operation's `operationId`, unique in the document (required).
    public var operationID: String
    public var target: Target
    public var access: Access
    /// `x-warren-self`: a path parameter that must equal the token's subject unless admin.
    public var selfParameter: String?
    /// `x-warren-subject`: a body field overwritten with the token's subject.
    public var subjectField: String?
    public var ownership: Ownership?
    public var issuesToken: Bool
    public var timeout: Duration
    /// The first 2xx status the document lists (201 for a creation).
    public var successStatus: Int
    /// Every status the document lists for the operation (what a client is told to expect).
    public var documentedStatuses: Set<Int>
    public var pathParameters: [Parameter]
    public var queryParameters: [Parameter]
    /// A JSON request body is expected (POST/PATCH with `requestBody`).
    public var hasBody: Bool

    /// The template split at `/`: a literal segment, or a parameter's name for `{name}`.
    var segments: [Segment]

    enum Segment: Sendable, Equatable {
        case literal(String)
        case parameter(String)
    }
}
