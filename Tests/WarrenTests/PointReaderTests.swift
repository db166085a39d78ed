import Foundation
import GRDB
import Testing
import Warren
import WarrenSQLite

@Suite("Point reads straight through SQLite")
struct PointReaderTests {
    /// A service database (WAL) in a temporary folder, with one table of every column type.
    private func withDatabase(_ body: (DatabasePool, PointReader) async throws -> Void) async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("warren-point-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let database = try ServiceDatabase.open(service: "points", environment: ["DATA_DIR": folder.path]) { migrator in
            migrator.registerMigration("things") { db in
                try db.create(table: "things") { table in
                    table.primaryKey("id", .text)
                    table.column("count", .integer)
                    table.column("ratio", .double)
                    table.column("bytes", .blob)
                    table.column("note", .text)
                    table.column("at", .datetime)
                }
            }
        }
        try await body(database, PointReader(database))
    }

    @Test("a row reads as GRDB wrote it: text, integer, real, blob, null and a date; no row is nil")
    func types() async throws {
        try await withDatabase { database, reader in
            let at = Date(timeIntervalSince1970: 1_795_000_000.25)
            try await database.write { db in
                try db.execute(
                    sql: "INSERT INTO things (id, count, ratio, bytes, note, at) VALUES (?, ?, ?, ?, ?, ?)",
                    arguments: ["a", 42, 2.5, Data([0, 1, 255]), nil, at])
            }
            let row = try #require(try await reader.fetchOne("SELECT * FROM things WHERE id = ?", arguments: ["a"]))
            #expect(row["id"] as String == "a")
            #expect(row["count"] as Int == 42)
            #expect(row["ratio"] as Double == 2.5)
            #expect(row["bytes"] as Data == Data([0, 1, 255]))
            #expect(row["note"] as String? == nil)
            #expect(row["at"] as Date == at)
            #expect(try await reader.fetchOne("SELECT * FROM things WHERE id = ?", arguments: ["b"]) == nil)
        }
    }

    @Test("text with NUL is bound and read by its length: no prefix matches, nothing comes back cut", arguments: [
        "a\u{0}b", "\u{0}", "\u{0}lead", "trail\u{0}", "",
    ])
    func nul(text: String) async throws {
        try await withDatabase { database, reader in
            // Written by SQL, not GRDB, whose text binding stops at NUL.
            try await database.write { db in
                try db.execute(sql: "INSERT INTO things (id, note) VALUES ('x' || char(0) || 'y', 'n' || char(0) || 'o')")
                try db.execute(sql: "INSERT INTO things (id, note) VALUES ('x', 'plain')")
            }
            let row = try #require(try await reader.fetchOne("SELECT * FROM things WHERE id = ?", arguments: ["x\u{0}y"]))
            #expect(row["note"] as String == "n\u{0}o")
            #expect(try await reader.fetchOne("SELECT * FROM things WHERE id = ?", arguments: ["x\u{0}"]) == nil)
            #expect(try await reader.fetchOne("SELECT note FROM things WHERE id = ?", arguments: ["x"])?["note"] as String? == "plain")
            #expect(try await reader.fetchOne("SELECT * FROM things WHERE id = ?", arguments: [text]) == nil, "\(text.debugDescription)")
        }
    }

    @Test("a reused statement sees rows committed after it was prepared, and bad SQL is an error")
    func freshness() async throws {
        try await withDatabase { database, reader in
            for index in 0..<3 {
                try await database.write { db in try db.execute(sql: "INSERT INTO things (id, count) VALUES (?, ?)", arguments: ["\(index)", index]) }
                let row = try #require(try await reader.fetchOne("SELECT count FROM things WHERE id = ?", arguments: ["\(index)"]))
                #expect(row["count"] as Int == index)
            }
            await #expect(throws: PointReadError.self) { try await reader.fetchOne("SELECT nothing FROM nowhere", arguments: []) }
        }
    }
}
