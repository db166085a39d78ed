import Foundation
import Glibc
import Testing
@testable import Warren

@Suite("Log lines written by a thread of their own", .timeLimit(.minutes(1)))
struct LogWriterTests {
    @Test("lines come out whole and in order")
    func inOrder() throws {
        let pipe = Pipe()
        let writer = LogWriter(descriptor: pipe.fileHandleForWriting, capacity: 1 << 20)
        for index in 0..<1000 { writer.write(Data("line \(index)\n".utf8)) }
        writer.flush(waiting: .seconds(5))
        try pipe.fileHandleForWriting.close()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(text == (0..<1000).map { "line \($0)\n" }.joined())
    }

    @Test("while nothing reads, logging does not block: lines past the buffer are dropped, and counted in a warning once writing resumes")
    func stalledReader() async throws {
        let pipe = Pipe()
        // The pipe full before the writer starts, so that it blocks on its first line: the
        // lines past the buffer are then all dropped while it waits, whatever the scheduler
        // does (a writer that ran late once noted some drops early and the rest never).
        let descriptor = pipe.fileHandleForWriting.fileDescriptor
        let flags = fcntl(descriptor, F_GETFL)
        _ = fcntl(descriptor, F_SETFL, flags | O_NONBLOCK)
        let filler = [UInt8]("prefill\n".utf8)
        while write(descriptor, filler, filler.count) == filler.count {}
        _ = fcntl(descriptor, F_SETFL, flags)
        let writer = LogWriter(descriptor: pipe.fileHandleForWriting, capacity: 16 * 1024)
        let line = Data((String(repeating: "x", count: 99) + "\n").utf8)
        let started = ContinuousClock.now
        // 1 MB: far more than the pipe (64 KiB on Linux) and the buffer hold.
        for _ in 0..<10_000 { writer.write(line) }
        #expect(started.duration(to: .now) < .seconds(2))
        // The reader comes back: what was kept, then the note.
        let reading = Task.detached { pipe.fileHandleForReading.readDataToEndOfFile() }
        writer.flush(waiting: .seconds(5))
        try pipe.fileHandleForWriting.close()
        let lines = String(decoding: await reading.value, as: UTF8.self).split(separator: "\n").filter { $0 != "prefill" }
        // Every line either came out or is counted in a note; the last line is a note.
        let notes = lines.filter { $0.contains("dropped_lines") }
        let counted = try notes.map { note in
            let object = try JSONSerialization.jsonObject(with: Data(note.utf8)) as? [String: Any]
            #expect(object?["level"] as? String == "warning")
            return try #require(object?["dropped_lines"] as? Int)
        }.reduce(0, +)
        #expect(lines.count - notes.count + counted == 10_000)
        #expect(counted > 5_000)
        #expect(lines.last?.contains("dropped_lines") == true)
    }
}
