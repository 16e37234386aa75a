/* Reference for issue 4's target: a hand-written C spawn of the Container's
 * shape, the floor a library can hope to reach on this machine.  New pid, mount,
 * uts, ipc, net and cgroup namespaces (made at clone, as bwrap and crun make
 * them), lo up, a tmpfs root with the host's /usr read-only and its merged-/usr
 * links, a fresh /proc, a /dev of its own (tmpfs, the six usual nodes made with
 * mknod, devpts, shm), a tmpfs /tmp, pivot_root with the old root detached, then
 * execve /bin/true; the parent waits.  No seccomp, capability drop or masked
 * paths (bwrap's row has none either).
 *
 *   cc -O2 -o /tmp/container_reference benchmarks/container_reference.c
 *   /tmp/container_reference 300       # median of 300 spawns, in ms
 *   /tmp/container_reference serve     # one spawn per byte on stdin, a byte back
 *
 * `serve` is how benchmarks/cases.py times it beside the other rows: the pipe
 * round trip (tens of microseconds) is counted against it.  Run as root. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char root[] = "/tmp/isolate-cref-XXXXXX";
static char stack[256 * 1024] __attribute__((aligned(16)));

#define CHECK(x) do { if ((x) < 0) { perror(#x); _exit(126); } } while (0)

static void
path(char *buf, const char *rel)
{
    snprintf(buf, 4096, "%.100s/%.200s", root, rel);
}

static void
mkdir_in(const char *rel)
{
    char p[4096];
    path(p, rel);
    CHECK(mkdir(p, 0755));
}

static int
child(void *arg)
{
    (void)arg;
    char p[4096], q[4096];
    CHECK(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL));
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    CHECK(ioctl(s, SIOCGIFFLAGS, &ifr));
    ifr.ifr_flags |= IFF_UP;
    CHECK(ioctl(s, SIOCSIFFLAGS, &ifr));
    close(s);

    CHECK(mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"));
    mkdir_in("usr");
    path(p, "usr");
    CHECK(mount("/usr", p, NULL, MS_BIND | MS_REC, NULL));
    CHECK(mount(NULL, p, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL));
    static const char *links[] = {"bin", "lib", "lib64", "sbin"};
    for (int i = 0; i < 4; i++) {
        char target[256], src[64];
        snprintf(src, sizeof src, "/%s", links[i]);
        ssize_t n = readlink(src, target, sizeof target - 1);
        if (n > 0) {
            target[n] = 0;
            path(p, links[i]);
            CHECK(symlink(target, p));
        }
    }
    mkdir_in("proc");
    path(p, "proc");
    CHECK(mount("proc", p, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL));
    mkdir_in("dev");
    path(p, "dev");
    CHECK(mount("tmpfs", p, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755"));
    static const struct { const char *name; int major, minor; } nodes[] = {
        {"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9},
        {"tty", 5, 0}};
    for (int i = 0; i < 6; i++) {
        snprintf(q, sizeof q, "dev/%s", nodes[i].name);
        path(p, q);
        CHECK(mknod(p, S_IFCHR | 0666, makedev(nodes[i].major, nodes[i].minor)));
    }
    mkdir_in("dev/pts");
    path(p, "dev/pts");
    CHECK(mount("devpts", p, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620"));
    path(p, "dev/ptmx");
    CHECK(symlink("pts/ptmx", p));
    mkdir_in("dev/shm");
    path(p, "dev/shm");
    CHECK(mount("shm", p, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"));
    mkdir_in("tmp");
    path(p, "tmp");
    CHECK(mount("tmpfs", p, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"));

    mkdir_in("oldroot");
    path(p, "oldroot");
    CHECK(syscall(SYS_pivot_root, root, p));
    CHECK(chdir("/"));
    CHECK(umount2("/oldroot", MNT_DETACH));
    CHECK(rmdir("/oldroot"));
    char *argv[] = {"/bin/true", NULL};
    char *envp[] = {"PATH=/usr/bin:/bin", NULL};
    execve("/bin/true", argv, envp);
    _exit(127);
}

static int
spawn_once(void)
{
    int flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET |
                CLONE_NEWCGROUP | SIGCHLD;
    pid_t pid = clone(child, stack + sizeof stack, flags, NULL);
    if (pid < 0) {
        perror("clone");
        return -1;
    }
    int st;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR) {
            perror("waitpid");
            return -1;
        }
    }
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static int
cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s N | serve\n", argv[0]);
        return 2;
    }
    if (mkdtemp(root) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    int rc = 0;
    if (strcmp(argv[1], "serve") == 0) {
        char c;
        while (read(0, &c, 1) == 1) {
            c = spawn_once() == 0 ? 'k' : 'x';
            if (write(1, &c, 1) != 1) {
                break;
            }
        }
    }
    else {
        int n = atoi(argv[1]);
        double *xs = calloc(n > 0 ? n : 1, sizeof *xs);
        for (int i = 0; i < n && rc == 0; i++) {
            struct timespec a, b;
            clock_gettime(CLOCK_MONOTONIC, &a);
            rc = spawn_once();
            clock_gettime(CLOCK_MONOTONIC, &b);
            xs[i] = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6;
        }
        if (rc == 0 && n > 0) {
            qsort(xs, n, sizeof *xs, cmp);
            printf("median %.3f ms over %d spawns\n", xs[n / 2], n);
        }
        free(xs);
    }
    rmdir(root);
    return rc == 0 ? 0 : 1;
}
