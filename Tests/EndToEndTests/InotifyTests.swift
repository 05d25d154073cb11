import Foundation
import Testing

/// inotify: watches, events read (blocking in one thread while another
/// makes them) and polled through epoll, compared with a native run.
@Suite(.serialized) struct InotifyTests {
    let dir = Harness.temporaryDirectory()

    @Test func eventsAreReadAndPolled() throws {
        let out = try Harness.matchesNative(EpollTests.prelude + #"""
            #include <sys/inotify.h>
            #include <sys/stat.h>
            static char where[256];
            static void *maker(void *a) {
              char path[300]; snprintf(path, sizeof path, "%s/made-by-thread", where);
              int fd = open(path, O_CREAT | O_RDONLY, 0600); close(fd);
              return a;
            }
            static void drain(int in, const char *what) {
              char buf[4096] __attribute__((aligned(8)));
              ssize_t n = read(in, buf, sizeof buf);
              printf("%s:", what);
              if (n < 0) { printf(" %s\n", strerror(errno)); return; }
              for (char *p = buf; p < buf + n;) {
                struct inotify_event *e = (struct inotify_event *)p;
                printf(" wd %d mask %x %s", e->wd, e->mask, e->len ? e->name : "-");
                p += sizeof *e + e->len;
              }
              printf("\n");
            }
            int main(void) {
              snprintf(where, sizeof where, "/tmp/detrec-inotify-%d", getpid());
              mkdir(where, 0700);
              int in = inotify_init1(IN_CLOEXEC);
              printf("bad flags %d\n", inotify_init1(1) < 0 ? -errno : 0);
              int wd = inotify_add_watch(in, where, IN_CREATE | IN_DELETE | IN_MODIFY | IN_CLOSE_WRITE);
              printf("wd %d, missing path %d\n", wd, inotify_add_watch(in, "/nonexistent/x", IN_CREATE) < 0 ? -errno : 0);
              pthread_t t; pthread_create(&t, 0, maker, 0);
              drain(in, "blocking read");
              pthread_join(t, 0);
              int ep = epoll_create1(0);
              add(ep, in, EPOLLIN, 1);
              show("nothing yet", ep, 0);
              char path[300]; snprintf(path, sizeof path, "%s/second", where);
              int fd = open(path, O_CREAT | O_WRONLY, 0600); write(fd, "x", 1); close(fd);
              show("after a write", ep, 0);
              drain(in, "events");
              unlink(path);
              snprintf(path, sizeof path, "%s/made-by-thread", where); unlink(path);
              drain(in, "deleted");
              printf("rm %d, rm again %d\n", inotify_rm_watch(in, wd), inotify_rm_watch(in, wd) < 0 ? -errno : 0);
              drain(in, "ignored");
              int nb = inotify_init1(IN_NONBLOCK);
              drain(nb, "non-blocking");
              rmdir(where);
              return 0;
            }
            """#, name: "inotify_events", in: dir)
        #expect(out.contains("blocking read: wd 1 mask 100 made-by-thread"))
        #expect(out.contains("after a write: 1 [1 1]\n"))
        #expect(out.contains("non-blocking: Resource temporarily unavailable\n"))
    }
}
