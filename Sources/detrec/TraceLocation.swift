import Glibc

/// Where traces go when `-o` is not given, as rr does: a directory per
/// recording named after the program, and a `latest-trace` link.
enum TraceLocation {
    static var root: String {
        if let dir = getenv("DETREC_TRACE_DIR") { return String(cString: dir) }
        let home = getenv("HOME").map { String(cString: $0) } ?? "/tmp"
        return home + "/.local/share/detrec"
    }

    static var latest: String { root + "/latest-trace" }

    /// A new directory name `prog-N` under the root (not yet created).
    static func next(for program: String) throws -> String {
        try makeDirectories(root)
        let base = String(program.split(separator: "/").last ?? "trace")
        var n = 0
        while access("\(root)/\(base)-\(n)", F_OK) == 0 { n += 1 }
        return "\(root)/\(base)-\(n)"
    }

    static func pointLatest(at dir: String) {
        unlink(latest)
        let name = String(dir.split(separator: "/").last ?? "")
        symlink(name, latest)
    }

    static func makeDirectories(_ path: String) throws {
        var at = ""
        for part in path.split(separator: "/") {
            at += "/" + part
            if mkdir(at, 0o755) != 0 && errno != EEXIST {
                throw LocationError(message: "cannot create \(at): \(String(cString: strerror(errno)))")
            }
        }
    }

    static func absolute(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        var buf = [CChar](repeating: 0, count: 4096)
        guard getcwd(&buf, buf.count) != nil else { return path }
        return String(cString: buf) + "/" + path
    }

    struct LocationError: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }
}
