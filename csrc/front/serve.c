/* The front end's side of the planner protocol (front.h): the REQUEST, then
 * the worker's SPAWN, RELEASE, ABANDON, WAIT, FORWARD and EXIT, served until
 * EXIT.  Each spawn is the C core's iso_spawn of the plan the worker sent
 * (PackedPlan.wire), the fds it sent written into the plan's holes.
 */
#include "front.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/personality.h>

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

/* REQUEST: argv, environ, umask, the cwd, a lifeline and every fd we have,
 * by number.  The lifeline is one end of a socket pair whose other end we
 * hold until we exit: the worker has the kernel SIGKILL it when that end
 * closes (O_ASYNC, F_SETSIG), so that it never goes on after we are killed.
 * 0 or -errno (nothing sent: the caller may still run the verb itself). */
int
iso_front_request(int sock, int argc, char **argv)
{
    extern char **environ;
    int fds[ISO_MAX_FDS + 2];
    size_t n_fds = 0;
    int life[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, life) < 0) {
        return -errno;
    }
    int cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (cwd < 0) {
        int err = errno;
        close(life[0]);
        close(life[1]);
        return -err;
    }
    fds[n_fds++] = cwd;
    fds[n_fds++] = life[1];
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL) {
        int err = errno;
        close(cwd);
        close(life[0]);
        close(life[1]);
        return -err;
    }
    int err = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.') {
            continue;
        }
        int fd = atoi(e->d_name);
        if (fd == dirfd(d) || fd == sock || fd == cwd || fd == life[0] || fd == life[1]) {
            continue;
        }
        if (n_fds == ISO_MAX_FDS + 2) {
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
    size_t head = sizeof(struct iso_msg_request) + (n_fds - 2) * sizeof(int32_t);
    struct iso_msg_request *r = err ? NULL : calloc(1, head + strs);
    if (r == NULL) {
        err = err ? err : errno;
        close(cwd);
        close(life[0]);
        close(life[1]);
        return -err;
    }
    r->version = ISO_FRONT_VERSION;
    r->umask = (uint32_t)mask;
    r->argc = (uint32_t)(argc - 1);
    r->envc = (uint32_t)envc;
    r->n_fds = (uint32_t)(n_fds - 2);
    memcpy(r->fds, fds + 2, (n_fds - 2) * sizeof(int32_t));
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
    close(life[1]);
    if (err < 0) {
        close(life[0]);
        return err;
    }
    /* The worker has them all now.  What we keep open past 2 a child of ours
     * would inherit: the plans name every fd a child gets.  life[0] stays
     * open (close-on-exec) until we exit. */
    syscall(__NR_close_range, 3, ~0u, CLOSE_RANGE_CLOEXEC);
    for (size_t i = 2; i < n_fds; i++) {
        if (fds[i] > 2) {
            close(fds[i]);
        }
    }
    return 0;
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
        iso_front_die("the planner sent a bad SPAWN", 0);
    }
    memcpy(&s, m->body, sizeof s);
    if ((size_t)s.helper_len + s.wire_len != m->len - sizeof s || s.helper_len == 0 ||
        s.helper_len >= PATH_MAX) {
        close_fds(m->fds, m->n_fds);
        iso_front_die("the planner sent a bad SPAWN", 0);
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
        iso_front_die("the planner sent a bad plan", 0);
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
        iso_front_die("the planner ended before the command did", 0);
    }
}

static void
on_release(int sock, int abandon)
{
    struct iso_msg_spawned r;
    if (!sp.active) {
        iso_front_die("the planner sent RELEASE for no spawn", 0);
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
        iso_front_die("the planner ended before the command did", 0);
    }
}

/* --- waiting ------------------------------------------------------------------------ */

static volatile sig_atomic_t waited_pid;
static volatile sig_atomic_t pending[65];

static void
forward(int sig)
{
    if (waited_pid > 0) {
        kill((pid_t)waited_pid, sig);
    }
    else {
        pending[sig] = 1;
    }
}

static const int FORWARDED[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};
#define N_FORWARDED (sizeof FORWARDED / sizeof FORWARDED[0])

/* FORWARD: catch what runc run and exec pass on (runc installs its handler
 * before it creates the container, too). */
static void
on_forward(void)
{
    struct sigaction sa = {.sa_handler = forward, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < N_FORWARDED; i++) {
        sigaction(FORWARDED[i], &sa, NULL);
    }
}

/* waitpid for our child; with FORWARD, the signals we get go to it, those
 * held since FORWARD first. */
static void
on_wait(int sock, struct msg_in *m)
{
    struct iso_msg_wait w;
    struct iso_msg_waited r = {0, 0};
    if (m->len != sizeof w) {
        iso_front_die("the planner sent a bad WAIT", 0);
    }
    memcpy(&w, m->body, sizeof w);
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    waited_pid = w.pid;
    for (size_t i = 0; i < N_FORWARDED; i++) {
        if (pending[FORWARDED[i]]) {
            pending[FORWARDED[i]] = 0;
            kill((pid_t)w.pid, FORWARDED[i]);
        }
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    int status = 0;
    while (waitpid(w.pid, &status, 0) < 0) {
        if (errno != EINTR) {
            r.err = errno;
            break;
        }
    }
    waited_pid = 0;
    r.status = status;
    if (send_msg(sock, ISO_MSG_WAITED, &r, sizeof r, NULL, 0) < 0) {
        iso_front_die("the planner ended before the command did", 0);
    }
}

/* Serve the worker until it says EXIT.  Returns only if the planner closed
 * the connection with our REQUEST unread (ECONNRESET before any answer: it
 * died before a worker took the call), so that the caller runs the verb. */
void
iso_front_serve(int sock)
{
    int answered = 0;
    size_t size = ISO_MAX_MSG;
    char *buf = malloc(size);
    if (buf == NULL) {
        iso_front_die("out of memory", ENOMEM);
    }
    for (;;) {
        struct msg_in m = {.type = 0, .n_fds = 0};
        int r = recv_msg(sock, buf, size, &m);
        if (r == 0) {
            iso_front_die("the planner ended before the command did", 0);
        }
        if (r == -ECONNRESET && !answered) {
            free(buf);
            return;
        }
        if (r < 0) {
            iso_front_die("reading from the planner", -r);
        }
        answered = 1;
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
        case ISO_MSG_FORWARD:
            on_forward();
            break;
        case ISO_MSG_EXIT: {
            struct iso_msg_exit e;
            if (m.len != sizeof e) {
                iso_front_die("the planner sent a bad EXIT", 0);
            }
            memcpy(&e, m.body, sizeof e);
            _exit(e.code & 0xff);
        }
        default:
            iso_front_die("the planner sent an unknown message", 0);
        }
    }
}
