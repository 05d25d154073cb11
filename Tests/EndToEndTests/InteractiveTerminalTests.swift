import Foundation
import Testing

/// Interactive programs in a pseudo-terminal, as a person uses them. python3: a
/// driver (Python's pty module) waits for the prompt, types a line, waits
/// for the answer and the next prompt, and types Ctrl-D. Under detrec the
/// terminal must show what it shows natively, and the replay must print
/// what the REPL wrote and exit the same.
@Suite(.serialized) struct InteractiveTerminalTests {
    let dir = Harness.temporaryDirectory()
    static let python = "/usr/bin/python3"

    static let driver = #"""
            # Drives a Python REPL in a pseudo-terminal as a person would: waits for
            # the prompt, types a line, waits for the answer and the next prompt,
            # types Ctrl-D, and prints what the terminal showed and the exit status.
            import os, pty, sys, select, time
            argv = sys.argv[1:]
            pid, fd = pty.fork()
            if pid == 0:
                os.environ["TERM"] = "dumb"
                os.execv(argv[0], argv)
            buf = b""
            def read_more(deadline):
                global buf
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([fd], [], [], left)[0]:
                    return False
                try:
                    d = os.read(fd, 4096)
                except OSError:
                    d = b""
                buf += d
                return bool(d)
            def wait_for(s, start=0, timeout=90):
                deadline = time.monotonic() + timeout
                while buf.find(s, start) < 0:
                    if not read_more(deadline):
                        print("did not see %r; got %r" % (s, buf))
                        sys.exit(1)
                return buf.find(s, start) + len(s)
            at = wait_for(b">>> ")
            os.write(fd, b"print(6*7)\n")
            at = wait_for(b"42", at)
            wait_for(b">>> ", at)
            os.write(fd, b"\x04")
            deadline = time.monotonic() + 90
            while read_more(deadline):
                pass
            _, status = os.waitpid(pid, 0)
            print(repr(buf))
            print("status", os.waitstatus_to_exitcode(status))
            """#

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: python)))
    func pythonREPLInAPseudoTerminal() throws {
        let script = dir.appendingPathComponent("drive.py")
        try Self.driver.write(to: script, atomically: true, encoding: .utf8)
        let native = try Harness.run([Self.python, script.path, Self.python, "-q"])
        #expect(native.stdout.contains(#"42\r\n>>> "#), "native: \(native.stdout)")
        let trace = dir.appendingPathComponent("python-pty")
        let recorded = try Harness.run([Self.python, script.path, Harness.detrec, "record", "-q", "-o", trace.path, "--", Self.python, "-q"])
        #expect(recorded.stdout == native.stdout, "recorded: \(recorded.stdout) \(recorded.stderr)")
        let replayed = try Harness.replay(trace)
        #expect(replayed.status == 0, "replay: \(replayed.stderr)")
        #expect(replayed.stdout.hasPrefix(">>> "))
        #expect(replayed.stdout.contains("print(6*7)\n42\n>>> "))
    }

    static let bashDriver = #"""
            import os, pty, sys, select, time
            pid, fd = pty.fork()
            if pid == 0:
                os.environ["TERM"] = "dumb"; os.environ["PS1"] = "$ "
                os.execv(sys.argv[1], sys.argv[1:])
            buf = b""
            def more(t=30):
                global buf
                if not select.select([fd], [], [], t)[0]: return False
                try: d = os.read(fd, 4096)
                except OSError: return False
                buf += d; return bool(d)
            while b"$ " not in buf and more(): pass
            os.write(fd, b"echo hi; /bin/echo piped | cat; exit\n")
            while more(): pass
            _, st = os.waitpid(pid, 0)
            print(repr(buf)); print("status", os.waitstatus_to_exitcode(st))
            """#

    /// An interactive bash in a pseudo-terminal runs a pipeline as a job:
    /// it gives the terminal to the job's process group (TIOCSPGRP, a group
    /// of the recording) and takes it back, and each of those succeeds.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/bash")))
    func bashJobControlInAPseudoTerminal() throws {
        let script = dir.appendingPathComponent("bashdrive.py")
        try Self.bashDriver.write(to: script, atomically: true, encoding: .utf8)
        let bash = ["/usr/bin/bash", "--norc", "-i"]
        let native = try Harness.run([Self.python, script.path] + bash)
        let trace = dir.appendingPathComponent("bash-pty")
        let recorded = try Harness.run([Self.python, script.path, Harness.detrec, "record", "-q", "-o", trace.path, "--"] + bash)
        #expect(recorded.stdout == native.stdout, "recorded: \(recorded.stdout) \(recorded.stderr)")
        #expect(native.stdout.contains(#"piped\r\nexit\r\n"#))
        let setForeground = try Harness.dumpJSON(trace).filter { e in
            e["name"] as? String == "ioctl" && (e["args"] as? [String])?[1] == "0x5410"
        }
        #expect(!setForeground.isEmpty)
        #expect(setForeground.allSatisfy { $0["result"] as? Int == 0 }, "\(setForeground.map { $0["result"] ?? "" })")
        let replayed = try Harness.replay(trace)
        #expect(replayed.status == 0, "replay: \(replayed.stderr)")
    }
}
