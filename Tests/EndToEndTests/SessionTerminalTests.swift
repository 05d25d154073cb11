import Foundation
import Testing

/// A session the recording makes takes a pseudo-terminal as its
/// controlling terminal (setsid + TIOCSCTTY, as forkpty, tmux and screen
/// do) and its job-control ioctls answer as Linux's, through the slave and,
/// for anyone, through the master.
@Suite(.serialized) struct SessionTerminalTests {
    let dir = Harness.temporaryDirectory()

    @Test func aNewSessionTakesAPseudoTerminal() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <errno.h>
            #include <fcntl.h>
            #include <signal.h>
            #include <stdio.h>
            #include <stdlib.h>
            #include <sys/ioctl.h>
            #include <sys/wait.h>
            #include <termios.h>
            #include <unistd.h>
            int main(void) {
              int m = posix_openpt(O_RDWR | O_NOCTTY);
              if (m < 0 || grantpt(m) || unlockpt(m)) { perror("pty"); return 1; }
              char *name = ptsname(m);
              int up[2], down[2]; pipe(up); pipe(down);
              pid_t c = fork();
              if (c == 0) {
                int s = open(name, O_RDWR | O_NOCTTY);
                // Not a session leader yet: EPERM.
                int e1 = ioctl(s, TIOCSCTTY, 0) < 0 ? errno : 0;
                // Not its terminal: ENOTTY.
                int e2 = tcgetpgrp(s) < 0 ? errno : 0;
                setsid();
                int r = ioctl(s, TIOCSCTTY, 0);
                int again = ioctl(s, TIOCSCTTY, 0);
                pid_t fg = tcgetpgrp(s), sid = tcgetsid(s);
                // A new group of the same session takes the foreground.
                pid_t g = fork();
                if (g == 0) { setpgid(0, 0); pause(); _exit(0); }
                setpgid(g, g);
                int bad = tcsetpgrp(s, 999999) < 0 ? errno : 0;
                int set = tcsetpgrp(s, g);
                printf("child e1=%d e2=%d sctty=%d again=%d fg=leader:%d sid=leader:%d set=%d fg=g:%d bad=%d\n",
                       e1, e2, r, again, fg == getpid(), sid == getpid(), set, tcgetpgrp(s) == g, bad);
                fflush(stdout);
                write(up[1], "x", 1);
                char x; read(down[0], &x, 1);   // until the parent looked through the master
                kill(g, SIGKILL); waitpid(g, 0, 0);
                // Giving it up as leader: it is nobody's then.
                int nott = ioctl(s, TIOCNOTTY);
                int e3 = tcgetpgrp(s) < 0 ? errno : 0;
                printf("child notty=%d after=%d\n", nott, e3);
                fflush(stdout);
                _exit(0);
              }
              char x; read(up[0], &x, 1);
              // The master shows the slave's foreground group and session to anyone.
              pid_t fg = tcgetpgrp(m); pid_t sid = tcgetsid(m);
              printf("parent fg-not-child=%d sid=child:%d\n", fg != c && fg > 0, sid == c);
              fflush(stdout);
              write(down[1], "x", 1);
              int st; waitpid(c, &st, 0);
              printf("status %d\n", WEXITSTATUS(st));
              return 0;
            }
            """#, name: "ctty", in: dir)
        #expect(out == """
            child e1=1 e2=25 sctty=0 again=0 fg=leader:1 sid=leader:1 set=0 fg=g:1 bad=3
            parent fg-not-child=1 sid=child:1
            child notty=0 after=25
            status 0

            """)
    }

    /// ^C and ^\\ written into the master of a pty that a recorded session
    /// controls (forkpty) raise SIGINT and SIGQUIT in its foreground group,
    /// as the line discipline does; ^V^C (VLNEXT) is input, no signal.
    @Test func controlCharactersWrittenToTheMasterSignalTheForegroundGroup() throws {
        let out = try Harness.matchesNative(#"""
            #define _GNU_SOURCE
            #include <pty.h>
            #include <signal.h>
            #include <stdio.h>
            #include <string.h>
            #include <unistd.h>
            #include <sys/wait.h>
            static volatile sig_atomic_t got[32];
            static void on(int s) { got[s]++; }
            static int waitfor(int m, const char *word) {
              static char seen[4096]; static int n;
              while (!strstr(seen, word)) {
                if (n >= (int)sizeof seen - 1) return -1;
                ssize_t r = read(m, seen + n, sizeof seen - 1 - n);
                if (r <= 0) return -1;
                n += r; seen[n] = 0;
              }
              return 0;
            }
            int main(void) {
              int m;
              pid_t c = forkpty(&m, NULL, NULL, NULL);
              if (c == 0) {
                signal(SIGINT, on); signal(SIGQUIT, on);
                printf("ready\n"); fflush(stdout);
                while (got[SIGINT] == 0) pause();
                printf("int %d\n", (int)got[SIGINT]); fflush(stdout);
                while (got[SIGQUIT] == 0) pause();
                printf("quit %d\n", (int)got[SIGQUIT]); fflush(stdout);
                char line[64] = {0};
                ssize_t r = read(0, line, sizeof line - 1);
                printf("int %d line %zd %d.\n", (int)got[SIGINT], r, line[0]); fflush(stdout);
                return 0;
              }
              if (waitfor(m, "ready") < 0) return 2;
              write(m, "\x03", 1);
              if (waitfor(m, "int 1") < 0) return 3;
              write(m, "\x1c", 1);
              if (waitfor(m, "quit 1") < 0) return 4;
              write(m, "\x16\x03\n", 3);
              if (waitfor(m, "line 2 3.") < 0) return 5;
              int st; waitpid(c, &st, 0);
              printf("child exit %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
              return 0;
            }
            """#, name: "ptysignals", in: dir)
        #expect(out == "child exit 0\n")
    }
}
