public import Foundation

/// Validates JSON against the contract in `schemas/` with an outside validator
/// (check-jsonschema, from PyPI), the way an outside client would read the contract.
public enum Schemas {
    public static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../schemas").standardized

    /// nil when every instance validates against `schema` (a path under `schemas/`), else what
    /// the validator said.
    public static func problems(_ instances: [Any], against schema: String) throws -> String? {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("warren-contract-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        var files: [String] = []
        for (index, instance) in instances.enumerated() {
            let file = folder.appendingPathComponent("\(index).json")
            try JSONSerialization.data(withJSONObject: instance, options: [.fragmentsAllowed]).write(to: file)
            files.append(file.path)
        }
        let output = folder.appendingPathComponent("output.txt")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["check-jsonschema", "--schemafile", directory.appendingPathComponent(schema).path] + files
        process.standardOutput = try FileHandle(forWritingTo: output)
        process.standardError = process.standardOutput
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus != 0 else { return nil }
        return (try? String(contentsOf: output, encoding: .utf8)) ?? "check-jsonschema failed"
    }
}
