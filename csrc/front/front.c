/* isolate-oci: the program containerd's shim, conmon and people run.
 *
 * CPython's start-up and imports cost a runtime call more than the work
 * itself, so this small program does not start it on the hot path.  It
 * connects to a warm planner (src/isolate/oci/warm.py: the same Python code,
 * kept running per user and context), which forks a worker that runs the verb
 * with this process's argv, environment, cwd, umask and fds.  Every process
 * the worker would clone it sends back as a plan (PackedPlan.wire), and this
 * process clones it with the C core (iso_spawn), so that the container's init
 * is our child, reparented to the shim's or conmon's subreaper when we exit,
 * as runc's is.  With no planner (none listening, refused, or
 * ISOLATE_OCI_PLANNER=0) it starts one for the next call and execs Python for
 * this one: today's code, at today's speed.
 */
#include "front.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/un.h>

/* The Python code run without a planner: the verb in this process, as the
 * console script ran it.  sys.path[0] (the cwd, for -c) is dropped: a runtime
 * runs as root in directories others may write, and must not import from them. */
static const char PY_MAIN[] =
    "import sys;del sys.path[0];from isolate.cli.oci import main;sys.exit(main())";
static const char PY_PLANNER[] =
    "import sys;del sys.path[0];from isolate.oci.warm import main;sys.exit(main())";

_Noreturn void
iso_front_die(const char *what, int err)
{
    if (err) {
        fprintf(stderr, "%s: %s: %s\n", ISO_PROG, what, strerror(err));
    }
    else {
        fprintf(stderr, "%s: %s\n", ISO_PROG, what);
    }
    _exit(1);
}

/* --- the Python interpreter --------------------------------------------------- */

/* The interpreter of the `isolate` script next to this program: pip writes
 * its path on the #! line, or, for a path too long or with spaces, a
 * "#!/bin/sh" line and then "'''exec' <python> "$0" "$@"".  0 or -errno. */
static int
find_python(char *out, size_t size)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n < 0) {
        return -errno;
    }
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash == NULL || (size_t)(slash - self) + sizeof "/isolate" > sizeof self) {
        return -ENAMETOOLONG;
    }
    strcpy(slash, "/isolate");
    int fd = open(self, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    char head[2 * PATH_MAX + 64];
    n = read(fd, head, sizeof head - 1);
    int err = errno;
    close(fd);
    if (n < 0) {
        return -err;
    }
    head[n] = '\0';
    if (strncmp(head, "#!", 2) != 0) {
        return -ENOEXEC;
    }
    char *line = head + 2, *end = strchr(line, '\n');
    if (end == NULL) {
        return -ENOEXEC;
    }
    *end = '\0';
    const char *python = line;
    if (strcmp(line, "/bin/sh") == 0) {
        const char *q = strstr(end + 1, "'''exec' ");
        if (q == NULL) {
            return -ENOEXEC;
        }
        python = q + sizeof "'''exec' " - 1;
        char *e;
        if (*python == '"' || *python == '\'') {
            char quote = *python++;
            e = strchr(python, quote);
        }
        else {
            e = strchr(python, ' ');
        }
        if (e == NULL) {
            return -ENOEXEC;
        }
        *e = '\0';
    }
    else {
        /* "#!/path/python -flags": the flags are not ours to pass on. */
        char *space = strchr(line, ' ');
        if (space != NULL) {
            *space = '\0';
        }
    }
    if (*python != '/' || strlen(python) >= size) {
        return -ENOEXEC;
    }
    strcpy(out, python);
    return 0;
}

/* Run the verb in Python, in this process. */
static _Noreturn void
exec_python(const char *python, int argc, char **argv)
{
    char **args = calloc((size_t)argc + 3, sizeof *args);
    if (args == NULL) {
        iso_front_die("cannot start Python", errno);
    }
    args[0] = (char *)python;
    args[1] = "-c";
    args[2] = (char *)PY_MAIN;
    for (int i = 1; i < argc; i++) {
        args[i + 2] = argv[i];
    }
    execv(python, args);
    fprintf(stderr, "%s: cannot start Python (%s): %s\n", ISO_PROG, python, strerror(errno));
    _exit(1);
}

/* --- the planner's socket ------------------------------------------------------ */

static uint64_t
fnv1a(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h = (h ^ p[i]) * 0x100000001b3ull;
    }
    return h;
}

static uint64_t
hash_file(uint64_t h, const char *path)
{
    char buf[4096];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf);
    if (fd >= 0) {
        close(fd);
    }
    return n > 0 ? fnv1a(h, buf, (size_t)n) : fnv1a(h, "-", 1);
}

/* The lines of /proc/self/status that say what this process may do. */
static uint64_t
hash_status(uint64_t h)
{
    static const char *const keys[] = {"CapInh:", "CapPrm:",     "CapEff:",  "CapBnd:",
                                       "CapAmb:", "NoNewPrivs:", "Seccomp:", "Seccomp_filters:"};
    char buf[8192];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
    if (fd >= 0) {
        close(fd);
    }
    if (n <= 0) {
        return h;
    }
    buf[n] = '\0';
    for (char *line = buf; line != NULL && *line;) {
        char *next = strchr(line, '\n');
        size_t len = next ? (size_t)(next - line) : strlen(line);
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            if (strncmp(line, keys[k], strlen(keys[k])) == 0) {
                h = fnv1a(h, line, len);
            }
        }
        line = next ? next + 1 : NULL;
    }
    return h;
}

/* The context key: what a planner must share with its callers so that it
 * never does work with a privilege the caller lacks, nor sees another world
 * than the caller's.  Credentials, supplementary groups, namespaces,
 * capabilities, no_new_privs, seccomp, resource limits, the LSM label, and which isolate and
 * Python run the verb (this program's path and file, the interpreter's path,
 * and the environment variables that change what Python or the dynamic
 * linker loads: PYTHON*, LD_*). */
static uint64_t
context_key(const char *python)
{
    extern char **environ;
    static const char *const ns[] = {"user", "mnt", "pid", "net", "cgroup", "ipc", "uts", "time"};
    uint64_t h = 0xcbf29ce484222325ull;
    uid_t uid = geteuid();
    gid_t gid = getegid();
    h = fnv1a(h, &uid, sizeof uid);
    h = fnv1a(h, &gid, sizeof gid);
    gid_t groups[256];
    int ng = getgroups(256, groups);
    if (ng > 0) {
        h = fnv1a(h, groups, (size_t)ng * sizeof groups[0]);
    }
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        char path[32];
        struct stat st;
        snprintf(path, sizeof path, "/proc/self/ns/%s", ns[i]);
        uint64_t ino = stat(path, &st) == 0 ? (uint64_t)st.st_ino : 0;
        h = fnv1a(h, &ino, sizeof ino);
    }
    h = hash_status(h);
    /* Resource limits: a worker runs the verb with its planner's. */
    for (int r = 0; r < 16; r++) {
        struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};
        (void)getrlimit(r, &rl);
        uint64_t lim[2] = {(uint64_t)rl.rlim_cur, (uint64_t)rl.rlim_max};
        h = fnv1a(h, lim, sizeof lim);
    }
    h = hash_file(h, "/proc/self/attr/current");
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self);
    h = fnv1a(h, self, n > 0 ? (size_t)n : 0);
    /* This very file: a planner of an install since replaced is not ours. */
    struct stat exe;
    uint64_t id[3] = {0, 0, 0};
    if (stat("/proc/self/exe", &exe) == 0) {
        id[0] = (uint64_t)exe.st_dev;
        id[1] = (uint64_t)exe.st_ino;
        id[2] = (uint64_t)exe.st_mtim.tv_sec * 1000000000u + (uint64_t)exe.st_mtim.tv_nsec;
    }
    h = fnv1a(h, id, sizeof id);
    h = fnv1a(h, python, strlen(python));
    for (char **e = environ; *e != NULL; e++) {
        if (strncmp(*e, "PYTHON", 6) == 0 || strncmp(*e, "LD_", 3) == 0) {
            h = fnv1a(h, *e, strlen(*e) + 1);
        }
    }
    return h;
}

/* The planners' directory: ISOLATE_OCI_PLANNER_DIR, else /run/isolate/oci-planner
 * for root, else $XDG_RUNTIME_DIR/isolate/oci-planner.  0, or -1: none. */
static int
planner_dir(char *out, size_t size)
{
    const char *dir = getenv("ISOLATE_OCI_PLANNER_DIR");
    int n;
    if (dir != NULL && *dir == '/') {
        n = snprintf(out, size, "%s", dir);
    }
    else if (geteuid() == 0) {
        n = snprintf(out, size, "/run/isolate/oci-planner");
    }
    else {
        const char *run = getenv("XDG_RUNTIME_DIR");
        if (run == NULL || *run != '/') {
            return -1;
        }
        n = snprintf(out, size, "%s/isolate/oci-planner", run);
    }
    return n > 0 && (size_t)n < size ? 0 : -1;
}

/* Our planner's socket, connected: its directory is ours, 0700 and no
 * symlink, the socket ours and 0600, its peer of our uid.  -1: none. */
static int
connect_planner(const char *dir, const char *name)
{
    int dfd = open(dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0) {
        return -1;
    }
    struct stat st;
    int ok = fstat(dfd, &st) == 0 && st.st_uid == geteuid() && (st.st_mode & 07777) == 0700;
    ok = ok && fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISSOCK(st.st_mode) &&
         st.st_uid == geteuid() && (st.st_mode & 07777) == 0600;
    int s = -1;
    if (ok) {
        /* Through the directory we checked, never the name again. */
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof sa.sun_path, "/proc/self/fd/%d/%s", dfd, name);
        s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (s >= 0 && connect(s, (struct sockaddr *)&sa, sizeof sa) < 0) {
            close(s);
            s = -1;
        }
    }
    close(dfd);
    if (s >= 0) {
        struct ucred cred;
        socklen_t len = sizeof cred;
        if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || cred.uid != geteuid()) {
            close(s);
            return -1;
        }
    }
    return s;
}

/* Whether subreaper `pid`, our caller's parent, may keep a planner as its child.
 * containerd's shims reap whatever exits and end when their containers are
 * gone, whatever else they have adopted: yes (the planner then moves on to
 * init).  conmon ends only once it has no child left: no, and no other either,
 * not knowing how it waits; the calls of such callers run the verb themselves
 * unless a planner started elsewhere serves them (podman's own calls start one). */
static int
adopter_lets_go(pid_t pid)
{
    char path[64], comm[32] = {0};
    snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return 0;
    }
    ssize_t n = read(fd, comm, sizeof comm - 1);
    close(fd);
    /* comm is the first 15 bytes of the name: containerd-shim-runc-v2 and the others. */
    return n >= 15 && strncmp(comm, "containerd-shim", 15) == 0;
}

/* A planner for the next call, in the background: a grandchild of ours in a
 * session of its own, holding none of our fds.  Best effort. */
static void
start_planner(const char *python, const char *dir, const char *path)
{
    char self[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len < 0) {
        return;
    }
    self[len] = '\0';
    char parent[16];
    snprintf(parent, sizeof parent, "%d", (int)getppid());
    pid_t pid = fork();
    if (pid < 0) {
        return;
    }
    if (pid > 0) {
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
        }
        return;
    }
    pid_t middle = getpid();
    if (setsid() < 0 || fork() != 0) {
        _exit(0);
    }
    /* Once the middle process is gone we are an orphan, adopted by the nearest
     * subreaper or init.  Adopted by our caller's own parent, a subreaper, the
     * planner stays its child (and in its cgroup) while it lives: */
    while (getppid() == middle) {
        usleep(100);
    }
    if (getppid() != 1 && getppid() == (pid_t)atoi(parent) && !adopter_lets_go(getppid())) {
        _exit(0);
    }
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0) {
        _exit(1);
    }
    dup2(null, 0);
    dup2(null, 1);
    dup2(null, 2);
    syscall(__NR_close_range, 3, ~0u, 0);
    umask(077);
    char *args[] = {(char *)python, "-c",        (char *)PY_PLANNER, "--socket", (char *)path,
                    "--dir",        (char *)dir, "--front",          self,       "--caller-parent",
                    parent,         NULL};
    execv(python, args);
    _exit(1);
}

int
main(int argc, char **argv)
{
    char python[PATH_MAX];
    int rc = find_python(python, sizeof python);
    if (rc < 0) {
        fprintf(stderr,
                "%s: cannot find the Python of the isolate script next to this program: %s\n",
                ISO_PROG, strerror(-rc));
        return 1;
    }
    const char *use = getenv("ISOLATE_OCI_PLANNER");
    char dir[PATH_MAX - 64], name[64], path[PATH_MAX];
    if ((use != NULL && strcmp(use, "0") == 0) || planner_dir(dir, sizeof dir) < 0) {
        exec_python(python, argc, argv);
    }
    snprintf(name, sizeof name, "planner-%016llx.sock", (unsigned long long)context_key(python));
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int sock = connect_planner(dir, name);
    if (sock < 0) {
        start_planner(python, dir, path);
        exec_python(python, argc, argv);
    }
    if (iso_front_request(sock, argc, argv) < 0) {
        close(sock);
        exec_python(python, argc, argv);
    }
    iso_front_serve(sock);
    close(sock);
    exec_python(python, argc, argv);
}
