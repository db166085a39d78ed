/// Warren's version, the one place every binary's `--version` (and `warren_build_info`) reads it
/// from. Bumped by hand with each release; no build plugin, so a plain `swift build` has it.
public enum WarrenVersion {
    /// Semantic version: `MAJOR.MINOR.PATCH`.
    public static let string = "0.15.0"
}
