import Foundation
import Warren
import WarrenSQLite

/// A user as every caller sees it. The password hash never leaves the store.
struct User: Codable, Sendable, Equatable {
    enum Role: String, WireEnum { case user, admin }

    var id: String
    var name: String
    var email: String
    var role: Role
    var createdAt: Date
}

struct CreateUser: Decodable, Sendable, Validatable {
    var name: String
    var email: String
    var password: String

    func validate() throws(ServiceError) {
        try Check.name(name)
        try Check.email(email, "email")
        try Check.password(password)
    }
}

struct UserID: Codable, Sendable, Validatable {
    var id: String
    func validate() throws(ServiceError) { try Check.uuid(id, "id") }
    /// The id as stored (lower case).
    var canonicalID: String { Check.canonicalID(id) }
}

struct ListUsers: Decodable, Sendable, Validatable {
    var limit: Int?
    var cursor: String?
    func validate() throws(ServiceError) {
        if let limit { try Check.range(limit, "limit", FieldLimits.pageLimit.range) }
        if let cursor { _ = try PageCursor.position(cursor) }
    }
}

struct UpdateUser: Decodable, Sendable, Validatable {
    var id: String
    var name: String?
    var email: String?

    func validate() throws(ServiceError) {
        try Check.uuid(id, "id")
        if let name { try Check.name(name) }
        if let email { try Check.email(email, "email") }
        if name == nil, email == nil { throw .invalid("nothing to update: give 'name', 'email' or both") }
    }
}

struct Deleted: Encodable, Sendable {
    var id: String
    var deleted = true
}

struct Credentials: Decodable, Sendable, Validatable {
    var email: String
    var password: String
    /// The same limits bcrypt imposes at registration: a longer password, or one with NUL,
    /// would be compared as its first 72 bytes or its part before NUL, and so match an account
    /// whose password is only that part. (A shorter one cannot match any account, but is
    /// refused no differently from a wrong one.)
    func validate() throws(ServiceError) {
        try Check.length(email, "email", FieldLimits.email.range)
        try Check.length(password, "password", FieldLimits.credentialsPassword.range)
        try Check.bcryptBytes(password)
    }
}

extension Check {
    static func name(_ value: String) throws(ServiceError) {
        try length(value, "name", FieldLimits.userName.range)
        try singleLine(value, "name")
        guard !value.allSatisfy(\.isWhitespace) else { throw .invalid("field 'name' must not be blank") }
    }

    /// What bcrypt can keep exactly: its C code reads at most 72 bytes and stops at NUL, so a
    /// longer password, or one with NUL (`"\u0000secret-one"` would be the empty password),
    /// would be silently cut. Both are refused.
    static func password(_ value: String) throws(ServiceError) {
        try length(value, "password", FieldLimits.password.range)
        try bcryptBytes(value)
    }

    /// The schema counts code points, as `length` does; bcrypt counts bytes: a password of 72
    /// code points may take up to 288, so the UTF-8 form is held to bcrypt's 72 as well.
    static func bcryptBytes(_ value: String) throws(ServiceError) {
        guard value.utf8.count <= FieldLimits.bcryptBytes else {
            throw .invalid("field 'password' must take at most \(FieldLimits.bcryptBytes) bytes in UTF-8 (bcrypt reads no more)")
        }
    }
}
