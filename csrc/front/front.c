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

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/personality.h>
#include <sys/un.h>

#define ISO_PROG "isolate-oci"
#define ISO_MAX_FDS 250 /* SCM_MAX_FD is 253: the cwd and ours besides */
#define ISO_MAX_MSG (4u << 20)

/* The Python code run without a planner: the verb in this process, as the
 * console script ran it.  sys.path[0] (the cwd, for -c) is dropped: a runtime
 * runs as root in directories others may write, and must not import from them. */
static const char PY_MAIN[] =
    "import sys;del sys.path[0];from isolate.cli.oci import main;sys.exit(main())";
static const char PY_PLANNER[] =
    "import sys;del sys.path[0];from isolate.oci.warm import main;sys.exit(main())";

static _Noreturn void
die(const char *what, int err)
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
        die("cannot start Python", errno);
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
 * capabilities, no_new_privs, seccomp, the LSM label, and which isolate and
 * Python run the verb (this program's path and file, the interpreter's path,
 * and the environment variables that change what Python imports). */
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
        if (strncmp(*e, "PYTHON", 6) == 0) {
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
    pid_t pid = fork();
    if (pid < 0) {
        return;
    }
    if (pid > 0) {
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
        }
        return;
    }
    if (setsid() < 0 || fork() != 0) {
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
                    "--dir",        (char *)dir, "--front",          self,       NULL};
    execv(python, args);
    _exit(1);
}

/* --- messages ------------------------------------------------------------------ */

static int
send_msg(int sock, uint32_t type, const void *body, size_t len, const int *fds, size_t n_fds)
{
    struct iso_msg head = {.type = type};
    struct iovec iov[2] = {{.iov_base = &head, .iov_len = sizeof head},
                           {.iov_base = (void *)body, .iov_len = len}};
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};
    char *ctl = NULL;
    if (n_fds) {
        size_t space = CMSG_SPACE(n_fds * sizeof(int));
        ctl = calloc(1, space);
        if (ctl == NULL) {
            return -errno;
        }
        msg.msg_control = ctl;
        msg.msg_controllen = space;
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(n_fds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, n_fds * sizeof(int));
    }
    ssize_t n;
    do {
        n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    int err = n < 0 ? errno : 0;
    free(ctl);
    return -err;
}

/* A received message: its type, body and fds (close-on-exec, ours). */
struct msg_in {
    uint32_t type;
    char *body;
    size_t len;
    int fds[ISO_MAX_FDS + 3];
    size_t n_fds;
};

/* 1: a message; 0: the peer is gone; -errno.  A message cut short is -EMSGSIZE. */
static int
recv_msg(int sock, char *buf, size_t size, struct msg_in *m)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * (ISO_MAX_FDS + 3))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {.iov_base = buf, .iov_len = size};
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
    ssize_t n;
    do {
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return -errno;
    }
    m->n_fds = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            memcpy(m->fds + m->n_fds, CMSG_DATA(c), k * sizeof(int));
            m->n_fds += k;
        }
    }
    if (n == 0 && m->n_fds == 0) {
        return 0;
    }
    if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || (size_t)n < sizeof(struct iso_msg)) {
        return -EMSGSIZE;
    }
    memcpy(&m->type, buf, sizeof m->type);
    m->body = buf + sizeof(struct iso_msg);
    m->len = (size_t)n - sizeof(struct iso_msg);
    return 1;
}

static void
close_fds(int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
            fds[i] = -1;
        }
    }
}

/* --- the request ------------------------------------------------------------------ */

/* REQUEST: argv, environ, umask, the cwd and every fd we have, by number.
 * 0 or -errno (nothing sent: the caller may still run the verb itself). */
static int
send_request(int sock, int argc, char **argv)
{
    extern char **environ;
    int fds[ISO_MAX_FDS + 1];
    size_t n_fds = 0;
    int cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (cwd < 0) {
        return -errno;
    }
    fds[n_fds++] = cwd;
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL) {
        int err = errno;
        close(cwd);
        return -err;
    }
    int err = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.') {
            continue;
        }
        int fd = atoi(e->d_name);
        if (fd == dirfd(d) || fd == sock || fd == cwd) {
            continue;
        }
        if (n_fds == ISO_MAX_FDS + 1) {
            err = EMFILE;
            break;
        }
        fds[n_fds++] = fd;
    }
    closedir(d);
    mode_t mask = umask(0);
    umask(mask);
    size_t strs = 0;
    int envc = 0;
    for (int i = 1; i < argc; i++) {
        strs += strlen(argv[i]) + 1;
    }
    for (; environ[envc] != NULL; envc++) {
        strs += strlen(environ[envc]) + 1;
    }
    size_t head = sizeof(struct iso_msg_request) + (n_fds - 1) * sizeof(int32_t);
    struct iso_msg_request *r = err ? NULL : calloc(1, head + strs);
    if (r == NULL) {
        close(cwd);
        return -(err ? err : errno);
    }
    r->version = ISO_FRONT_VERSION;
    r->umask = (uint32_t)mask;
    r->argc = (uint32_t)(argc - 1);
    r->envc = (uint32_t)envc;
    r->n_fds = (uint32_t)(n_fds - 1);
    memcpy(r->fds, fds + 1, (n_fds - 1) * sizeof(int32_t));
    char *at = (char *)r + head;
    for (int i = 1; i < argc; i++) {
        size_t l = strlen(argv[i]) + 1;
        memcpy(at, argv[i], l);
        at += l;
    }
    for (int i = 0; i < envc; i++) {
        size_t l = strlen(environ[i]) + 1;
        memcpy(at, environ[i], l);
        at += l;
    }
    err = send_msg(sock, ISO_MSG_REQUEST, r, head + strs, fds, n_fds);
    free(r);
    close(cwd);
    if (err == 0) {
        /* The worker has them all now.  What we keep open past 2 a child of
         * ours would inherit: the plans name every fd a child gets. */
        syscall(__NR_close_range, 3, ~0u, CLOSE_RANGE_CLOEXEC);
        for (size_t i = 1; i < n_fds; i++) {
            if (fds[i] > 2) {
                close(fds[i]);
            }
        }
    }
    return err;
}

/* --- spawns ------------------------------------------------------------------------ */

/* The spawn in progress (one at a time: the worker is single-threaded). */
static struct {
    int active;
    struct iso_plan plan;
    struct iso_child child;
    char *body; /* the ops and arena, fds written in */
    char **argv, **envp;
    char *uid_map, *gid_map;
    int32_t *join, *keep;
    int fds[ISO_MAX_FDS + 3];
    size_t n_fds;
} sp;

static void
spawn_clear(void)
{
    close_fds(sp.fds, sp.n_fds);
    free(sp.body);
    free(sp.argv);
    free(sp.envp);
    free(sp.uid_map);
    free(sp.gid_map);
    free(sp.join);
    free(sp.keep);
    if (sp.child.pidfd >= 0) {
        close(sp.child.pidfd);
    }
    memset(&sp, 0, sizeof sp);
    sp.child.pidfd = -1;
}

/* A section of n bytes at *pos of the wire plan (8-aligned after it), or NULL. */
static const char *
take(const char *w, size_t len, size_t *pos, size_t n)
{
    if (n > len || *pos > len - n) {
        return NULL;
    }
    const char *at = w + *pos;
    *pos += (n + 7) & ~(size_t)7;
    return at;
}

/* n NUL-terminated strings in len bytes at s, as a NULL-ended vector (pointing into s). */
static char **
strings(const char *s, size_t len, uint32_t n)
{
    char **v = calloc((size_t)n + 1, sizeof *v);
    if (v == NULL) {
        return NULL;
    }
    size_t off = 0;
    for (uint32_t i = 0; i < n; i++) {
        const char *end = off < len ? memchr(s + off, '\0', len - off) : NULL;
        if (end == NULL) {
            free(v);
            errno = EPROTO;
            return NULL;
        }
        v[i] = (char *)s + off;
        off = (size_t)(end - s) + 1;
    }
    if (off != len) {
        free(v);
        errno = EPROTO;
        return NULL;
    }
    return v;
}

static char *
dup_text(const char *s, int32_t len)
{
    char *t = malloc((size_t)len + 1);
    if (t != NULL) {
        memcpy(t, s, (size_t)len);
        t[len] = '\0';
    }
    return t;
}

static int
fd_at(int32_t index, int32_t *out)
{
    if (index < -1 || index >= (int32_t)sp.n_fds) {
        return -1;
    }
    *out = index < 0 ? -1 : sp.fds[index];
    return 0;
}

static int
cmp_int32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* struct iso_plan from PackedPlan.wire's bytes, the fds received (sp.fds) in
 * its holes.  The wire is kept (sp.body and strings point into copies). 0 or
 * -errno. */
static int
wire_read(const char *w, size_t len)
{
    struct iso_wire_plan h;
    if (len < sizeof h) {
        return -EPROTO;
    }
    memcpy(&h, w, sizeof h);
    if (memcmp(h.magic, "ISOW", 4) != 0 || h.version != ISO_WIRE_PLAN_VERSION || h.total != len ||
        h.n_fds != sp.n_fds || h.n_ops > (1u << 20)) {
        return -EPROTO;
    }
    size_t pos = sizeof h;
    size_t body_len = (size_t)h.n_ops * sizeof(struct iso_op) + h.arena_len;
    const char *body = take(w, len, &pos, body_len);
    const char *argv = take(w, len, &pos, h.argv_len);
    const char *envp = take(w, len, &pos, h.envp_len);
    const char *uid = take(w, len, &pos, h.uid_len < 0 ? 0 : (size_t)h.uid_len);
    const char *gid = take(w, len, &pos, h.gid_len < 0 ? 0 : (size_t)h.gid_len);
    const char *join = take(w, len, &pos, (size_t)h.n_join * 4);
    const char *holes = take(w, len, &pos, (size_t)h.n_holes * sizeof(struct iso_wire_hole));
    if (holes == NULL || h.argc == 0 || h.arena_len == 0) {
        return -EPROTO;
    }
    /* Copies, 8-aligned (malloc's): the child program reads the arena's arrays in place. */
    sp.body = malloc(body_len);
    sp.argv = strings(argv, h.argv_len, h.argc);
    sp.envp = h.envc < 0 ? NULL : strings(envp, h.envp_len, (uint32_t)h.envc);
    if (sp.body == NULL || sp.argv == NULL || (h.envc >= 0 && sp.envp == NULL)) {
        return errno == EPROTO ? -EPROTO : -ENOMEM;
    }
    memcpy(sp.body, body, body_len);
    for (uint32_t i = 0; i < h.n_holes; i++) {
        struct iso_wire_hole hole;
        memcpy(&hole, holes + i * sizeof hole, sizeof hole);
        int32_t fd;
        if ((size_t)hole.offset + 4 > body_len || fd_at(hole.index, &fd) < 0) {
            return -EPROTO;
        }
        memcpy(sp.body + hole.offset, &fd, sizeof fd);
    }
    struct iso_plan *p = &sp.plan;
    p->clone_flags = h.clone_flags;
    /* Our copies are close-on-exec: the child program inherits only the plan's. */
    p->flags = (h.flags & ~(uint32_t)ISO_PLAN_TIMING) | ISO_PLAN_CLOSE_FDS;
    p->ops = (const struct iso_op *)sp.body;
    p->n_ops = h.n_ops;
    p->arena = sp.body + (size_t)h.n_ops * sizeof(struct iso_op);
    p->arena_len = h.arena_len;
    p->argv = sp.argv;
    p->envp = sp.envp;
    if (h.uid_len >= 0 && (sp.uid_map = dup_text(uid, h.uid_len)) == NULL) {
        return -ENOMEM;
    }
    if (h.gid_len >= 0 && (sp.gid_map = dup_text(gid, h.gid_len)) == NULL) {
        return -ENOMEM;
    }
    p->uid_map = sp.uid_map;
    p->gid_map = sp.gid_map;
    sp.join = calloc((size_t)h.n_join + 1, sizeof *sp.join);
    sp.keep = calloc(sp.n_fds + 1, sizeof *sp.keep);
    if (sp.join == NULL || sp.keep == NULL) {
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < h.n_join; i++) {
        int32_t index;
        memcpy(&index, join + 4 * i, 4);
        if (fd_at(index, &sp.join[i]) < 0) {
            return -EPROTO;
        }
    }
    p->join_fds = sp.join;
    p->n_join_fds = h.n_join;
    if (fd_at(h.netns, &p->netns_fd) < 0 || fd_at(h.cgroup, &p->cgroup_fd) < 0) {
        return -EPROTO;
    }
    for (size_t i = 0; i < sp.n_fds; i++) {
        sp.keep[i] = sp.fds[i];
    }
    qsort(sp.keep, sp.n_fds, sizeof *sp.keep, cmp_int32);
    p->keep_fds = sp.keep;
    p->n_keep_fds = (uint32_t)sp.n_fds;
    p->op_times = NULL;
    return 0;
}

/* The attributes a spawned process inherits that the worker set on itself
 * for it (oci/apply.py: oom_score_adj, personality). */
static void
inherit(const struct iso_msg_spawn *s)
{
    if (s->personality != 0xffffffffu) {
        (void)personality(s->personality);
    }
    if (s->oom_score_adj != INT32_MIN) {
        char now[16] = "", want[16];
        int fd = open("/proc/self/oom_score_adj", O_RDWR | O_CLOEXEC);
        if (fd < 0) {
            return;
        }
        ssize_t n = read(fd, now, sizeof now - 1);
        int len = snprintf(want, sizeof want, "%d\n", (int)s->oom_score_adj);
        if (n != len || memcmp(now, want, (size_t)len) != 0) {
            (void)pwrite(fd, want, (size_t)len, 0);
        }
        close(fd);
    }
}

static void
spawned_reply(struct iso_msg_spawned *r, int rc)
{
    memset(r, 0, sizeof *r);
    r->rc = rc;
    r->stage = sp.child.stage;
    r->pid = sp.child.pid;
    r->clone3_used = sp.child.clone3_used;
    r->held = sp.child.sync_fd >= 0;
    r->report_len = sp.child.report_len;
    r->report = sp.child.report;
}

static void
on_spawn(int sock, struct msg_in *m)
{
    struct iso_msg_spawn s;
    struct iso_msg_spawned r;
    if (sp.active || m->len < sizeof s) {
        close_fds(m->fds, m->n_fds);
        die("the planner sent a bad SPAWN", 0);
    }
    memcpy(&s, m->body, sizeof s);
    if ((size_t)s.helper_len + s.wire_len != m->len - sizeof s || s.helper_len == 0 ||
        s.helper_len >= PATH_MAX) {
        close_fds(m->fds, m->n_fds);
        die("the planner sent a bad SPAWN", 0);
    }
    memset(&sp, 0, sizeof sp);
    sp.child.pidfd = -1;
    sp.active = 1;
    memcpy(sp.fds, m->fds, m->n_fds * sizeof(int));
    sp.n_fds = m->n_fds;
    char helper[PATH_MAX];
    memcpy(helper, m->body + sizeof s, s.helper_len);
    helper[s.helper_len] = '\0';
    int rc = wire_read(m->body + sizeof s + s.helper_len, s.wire_len);
    if (rc == -EPROTO) {
        die("the planner sent a bad plan", 0);
    }
    /* Not dumpable: nothing the container runs may ptrace us or open our
     * /proc/<pid>/exe (CVE-2019-5736), as the runtime process never is. */
    (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    if (rc == 0) {
        inherit(&s);
        rc = iso_helper_load(helper);
        if (rc < 0) {
            sp.child.stage = ISO_STAGE_CHILD;
        }
    }
    if (rc == 0) {
        rc = iso_spawn(&sp.plan, &sp.child);
    }
    spawned_reply(&r, rc);
    int pidfd = sp.child.pidfd;
    int err = send_msg(sock, ISO_MSG_SPAWNED, &r, sizeof r, &pidfd, rc == 0 && pidfd >= 0);
    if (!r.held) {
        spawn_clear();
    }
    if (err < 0) {
        die("the planner ended before the command did", 0);
    }
}

static void
on_release(int sock, int abandon)
{
    struct iso_msg_spawned r;
    if (!sp.active) {
        die("the planner sent RELEASE for no spawn", 0);
    }
    int err;
    if (abandon) {
        iso_abandon(&sp.child);
        err = send_msg(sock, ISO_MSG_ABANDONED, NULL, 0, NULL, 0);
    }
    else {
        int rc = iso_release(&sp.plan, &sp.child);
        spawned_reply(&r, rc);
        err = send_msg(sock, ISO_MSG_RELEASED, &r, sizeof r, NULL, 0);
    }
    spawn_clear();
    if (err < 0) {
        die("the planner ended before the command did", 0);
    }
}

/* --- waiting ------------------------------------------------------------------------ */

static volatile sig_atomic_t waited_pid;

static void
forward(int sig)
{
    if (waited_pid > 0) {
        kill((pid_t)waited_pid, sig);
    }
}

static const int FORWARDED[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};
#define N_FORWARDED (sizeof FORWARDED / sizeof FORWARDED[0])

/* waitpid for our child, passing on the signals we get, as runc run does. */
static void
on_wait(int sock, struct msg_in *m)
{
    struct iso_msg_wait w;
    struct iso_msg_waited r = {0, 0};
    if (m->len != sizeof w) {
        die("the planner sent a bad WAIT", 0);
    }
    memcpy(&w, m->body, sizeof w);
    struct sigaction sa = {.sa_handler = forward}, old[N_FORWARDED];
    sigemptyset(&sa.sa_mask);
    waited_pid = w.pid;
    for (size_t i = 0; i < N_FORWARDED; i++) {
        sigaction(FORWARDED[i], &sa, &old[i]);
    }
    int status = 0;
    while (waitpid(w.pid, &status, 0) < 0) {
        if (errno != EINTR) {
            r.err = errno;
            break;
        }
    }
    waited_pid = 0;
    for (size_t i = 0; i < N_FORWARDED; i++) {
        sigaction(FORWARDED[i], &old[i], NULL);
    }
    r.status = status;
    if (send_msg(sock, ISO_MSG_WAITED, &r, sizeof r, NULL, 0) < 0) {
        die("the planner ended before the command did", 0);
    }
}

/* Serve the worker until it says EXIT. */
static _Noreturn void
serve(int sock)
{
    size_t size = ISO_MAX_MSG;
    char *buf = malloc(size);
    if (buf == NULL) {
        die("out of memory", ENOMEM);
    }
    for (;;) {
        struct msg_in m;
        int r = recv_msg(sock, buf, size, &m);
        if (r == 0) {
            die("the planner ended before the command did", 0);
        }
        if (r < 0) {
            die("reading from the planner", -r);
        }
        if (m.type != ISO_MSG_SPAWN) {
            close_fds(m.fds, m.n_fds);
        }
        switch (m.type) {
        case ISO_MSG_SPAWN:
            on_spawn(sock, &m);
            break;
        case ISO_MSG_RELEASE:
        case ISO_MSG_ABANDON:
            on_release(sock, m.type == ISO_MSG_ABANDON);
            break;
        case ISO_MSG_WAIT:
            on_wait(sock, &m);
            break;
        case ISO_MSG_EXIT: {
            struct iso_msg_exit e;
            if (m.len != sizeof e) {
                die("the planner sent a bad EXIT", 0);
            }
            memcpy(&e, m.body, sizeof e);
            _exit(e.code & 0xff);
        }
        default:
            die("the planner sent an unknown message", 0);
        }
    }
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
    if (send_request(sock, argc, argv) < 0) {
        close(sock);
        exec_python(python, argc, argv);
    }
    serve(sock);
}
