import Foundation
public import GRDB
import GRDBSQLite
import Synchronization

/// Reads one row by one SQL statement straight through SQLite, on the calling thread: for the
/// lookups by key that serve most requests (`users.get`, `orders.get`).
///
/// GRDB's read path takes a reader from its pool, hops onto that reader's queue, checks the
/// schema version with a statement of its own and prepares the SQL anew; measured under load,
/// that was a third of the user service's CPU, several times the lookup itself. Here each
/// connection prepares a statement once and keeps it. A single statement is its own read
/// transaction in SQLite, so the row is consistent. The calling thread waits only while the
/// statement runs (microseconds for a unique key); anything that scans belongs in `read`.
/// The file must be in WAL mode (`ServiceDatabase.open`), so that reads never wait for writes.
///
/// The calling thread never waits for a lock: it may be a broker connection's I/O thread
/// (`HANDLER_EXECUTOR`), which must not block. In the rare case that SQLite answers busy (a WAL
/// recovery, or a connection that took the file exclusively), the same read goes through GRDB's
/// pool, awaited, with the database's busy timeout.
public final class PointReader: Sendable {
    private let database: DatabasePool
    /// Idle connections; one is opened whenever all are busy, so there are at most as many as
    /// threads reading at once.
    private let idle = Mutex<[Connection]>([])

    /// The reader of a service's database.
    public init(_ database: DatabasePool) {
        self.database = database
    }

    /// The first row `sql` selects with `arguments` bound in order, or nil.
    public func fetchOne(_ sql: String, arguments: [String]) async throws -> Row? {
        let connection = try idle.withLock { $0.popLast() } ?? Connection(path: database.path)
        let fetched: Row?
        do {
            defer { idle.withLock { $0.append(connection) } }
            fetched = try connection.fetchOne(sql, arguments: arguments)
        } catch let error as PointReadError where error.isBusy {
            // As values: GRDB's `Row` may not cross from its reader's thread.
            let values = try await database.read { db in
                try Row.fetchOne(db, sql: sql, arguments: StatementArguments(arguments)).map { row in
                    Dictionary(row.map { ($0, $1) }, uniquingKeysWith: { first, _ in first })
                }
            }
            return values.map { Row($0.mapValues { $0 as (any DatabaseValueConvertible)? }) }
        }
        return fetched
    }
}

/// One read-only connection and the statements it prepared. Used by one thread at a time.
private final class Connection: @unchecked Sendable {  // handed between threads through the reader's lock only
    private let handle: OpaquePointer
    private var statements: [String: OpaquePointer] = [:]

    init(path: String) throws {
        var handle: OpaquePointer?
        let status = sqlite3_open_v2(path, &handle, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nil)
        guard status == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close(handle)
            throw PointReadError(message: "cannot open \(path) to read: \(message)")
        }
        // No busy timeout: a locked file is read through GRDB's pool instead (`PointReader`).
        self.handle = handle
    }

    deinit {
        for statement in statements.values { sqlite3_finalize(statement) }
        sqlite3_close(handle)
    }

    func fetchOne(_ sql: String, arguments: [String]) throws -> Row? {
        let statement = try prepared(sql)
        defer {
            sqlite3_reset(statement)
            sqlite3_clear_bindings(statement)
        }
        for (index, argument) in arguments.enumerated() {
            // With its length, not -1 (read up to NUL): an argument with NUL must not match a row
            // that holds only its prefix. SQLITE_TRANSIENT: SQLite copies the text.
            var text = argument
            let position = Int32(index + 1)
            let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
            let status: Int32 = text.withUTF8 { bytes in
                guard let count = Int32(exactly: bytes.count) else { return SQLITE_TOOBIG }
                guard let base = bytes.baseAddress else { return sqlite3_bind_text(statement, position, "", 0, transient) }
                return base.withMemoryRebound(to: CChar.self, capacity: bytes.count) { sqlite3_bind_text(statement, position, $0, count, transient) }
            }
            guard status == SQLITE_OK else { throw error("binding argument \(index + 1)") }
        }
        switch sqlite3_step(statement) {
        case SQLITE_ROW: return row(statement)
        case SQLITE_DONE: return nil
        case let status where Self.isLocked(status):
            throw PointReadError.locked("reading")
        default: throw error("reading")
        }
    }

    private func prepared(_ sql: String) throws -> OpaquePointer {
        if let statement = statements[sql] { return statement }
        var statement: OpaquePointer?
        let status = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil)
        if Self.isLocked(status) { throw PointReadError.locked("preparing") }
        guard status == SQLITE_OK, let statement else { throw error("preparing \(sql)") }
        statements[sql] = statement
        return statement
    }

    /// The current row as GRDB's `Row`, so that the types that read rows work unchanged.
    private func row(_ statement: OpaquePointer) -> Row {
        var values: [String: (any DatabaseValueConvertible)?] = [:]
        for column in 0..<sqlite3_column_count(statement) {
            let name = String(cString: sqlite3_column_name(statement, column))
            switch sqlite3_column_type(statement, column) {
            case SQLITE_INTEGER: values[name] = sqlite3_column_int64(statement, column)
            case SQLITE_FLOAT: values[name] = sqlite3_column_double(statement, column)
            case SQLITE_TEXT:
                // By length: text stored with NUL comes back whole, not cut at the NUL.
                let count = Int(sqlite3_column_bytes(statement, column))
                values[name] = sqlite3_column_text(statement, column).map { String(decoding: UnsafeBufferPointer(start: $0, count: count), as: UTF8.self) } ?? ""
            case SQLITE_BLOB:
                let count = Int(sqlite3_column_bytes(statement, column))
                values[name] = sqlite3_column_blob(statement, column).map { Data(bytes: $0, count: count) } ?? Data()
            default: values[name] = .some(nil)
            }
        }
        return Row(values)
    }

    /// SQLite answered busy or locked (its primary result code, whatever the extended one).
    private static func isLocked(_ status: Int32) -> Bool {
        status & 0xff == SQLITE_BUSY || status & 0xff == SQLITE_LOCKED
    }

    private func error(_ doing: String) -> PointReadError {
        PointReadError(message: "\(doing): \(String(cString: sqlite3_errmsg(handle)))")
    }
}

/// A point read failed (the file is gone, the SQL is wrong): a fault of the service, not of its caller.
public struct PointReadError: Error, CustomStringConvertible {
    public let message: String
    /// SQLite answered busy: the file is locked (`PointReader.fetchOne` then reads through GRDB).
    public var isBusy = false
    public var description: String { "SQLite point read: \(message)" }

    static func locked(_ doing: String) -> PointReadError {
        PointReadError(message: "\(doing): the database file is locked", isBusy: true)
    }
}
