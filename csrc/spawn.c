/* iso_spawn(): the parent's side.  The plan in a memfd, pipes, clone3, id
 * maps, and the wait for the child's report.
 *
 * The clone shares the caller's address space and stops it (CLONE_VM |
 * CLONE_VFORK, as glibc's posix_spawn does), so a spawn costs the same from
 * a 50 MiB caller as from a 2 GiB one: no page tables are copied.  That
 * child does one thing: it execveat()s the child program, a small static
 * binary kept in a sealed memfd (iso_helper_load), which reads the plan and
 * runs its ops (init.c, child.c).  Nothing that changes credentials,
 * dumpability or cgroups ever runs in memory the caller shares, and the
 * OOM killer never picks a task in vfork (oom_badness: in_vfork), so a
 * memory limit can only kill the child program's own image.
 *
 * The calling thread is stopped only until that execveat; it then writes the
 * id maps and v1 cgroup files while the child program waits for its go-ahead.
 * The clone is clone.c's, the plan's memfd wire.c's, the child program's
 * memfd helper.c's (spawn.h); this file is the protocol around them.
 */
#include "spawn.h"

#include <pthread.h>
#include <stdio.h>

static void
close_fd(int32_t *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

static int
write_proc_file(pid_t pid, const char *name, const char *data)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    /* uid_map and gid_map must be written with a single write(2). */
    ssize_t n = write(fd, data, strlen(data));
    int saved = errno;
    close(fd);
    if (n < 0) {
        errno = saved;
        return -1;
    }
    return 0;
}

/* --- waiting for the child ---------------------------------------------------- */

static void
reap(pid_t pid)
{
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
}

/* Kill and reap a child that will not reach execve. */
static void
kill_and_reap(struct iso_child *c)
{
    if (c->pid > 0) {
        if (c->pidfd < 0 || syscall(__NR_pidfd_send_signal, c->pidfd, SIGKILL, NULL, 0) < 0) {
            kill(c->pid, SIGKILL);
        }
        reap(c->pid);
        c->pid = -1;
    }
    close_fd(&c->pidfd);
    close_fd(&c->sync_fd);
    close_fd(&c->report_fd);
    close_fd(&c->netns_sock);
    close_fd(&c->plan_fd);
}

/* Read one report (or EOF: 0 bytes).  Signals stay blocked, so read(2) is
 * never interrupted half-way. */
static ssize_t
read_report(struct iso_child *c)
{
    char *buf = (char *)&c->report;
    size_t got = 0;
    for (;;) {
        ssize_t n = read(c->report_fd, buf + got, sizeof c->report - got);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        if (n == 0 || (got += (size_t)n) == sizeof c->report) {
            return (ssize_t)got;
        }
    }
}

/* A report the child program wrote before its first op (step -1): it could
 * not start.  The parent-side error of stage ISO_STAGE_CHILD. */
static int
child_start_failed(struct iso_child *c)
{
    int err = c->report.err > 0 ? c->report.err : EPROTO;
    reap(c->pid);
    c->pid = -1;
    c->report_len = 0;
    kill_and_reap(c);
    c->stage = ISO_STAGE_CHILD;
    return -err;
}

/* Waits for the child's report: EOF means execve succeeded.  Reaps a child
 * that reported a failure. */
static int
wait_report(const struct iso_plan *plan, struct iso_child *c)
{
    c->stage = ISO_STAGE_REPORT;
    ssize_t got = read_report(c);
    if (got < 0) {
        int saved = errno;
        kill_and_reap(c);
        return -saved;
    }
    c->report_len = (int32_t)got;
    if (plan->flags & ISO_PLAN_TIMING) {
        c->t_done = iso_now_ns();
    }
    close_fd(&c->report_fd);
    if (got == (ssize_t)sizeof c->report && c->report.step == -1) {
        return child_start_failed(c);
    }
    iso_wire_read_times(plan, c->plan_fd);
    close_fd(&c->plan_fd);
    if (got == (ssize_t)sizeof c->report && c->report.err == 0) {
        /* Ready at an exec gate: the child lives on, waiting for its go-ahead. */
        c->stage = ISO_STAGE_NONE;
        return 0;
    }
    if (got != 0) {
        /* The child exits right after its report. */
        reap(c->pid);
        c->pid = -1;
        close_fd(&c->pidfd);
    }
    c->stage = ISO_STAGE_NONE;
    return 0;
}

/* ISO_PLAN_FORK: the child program forked the spawned process into the pid
 * namespace (ISO_OP_FORK) and reported its pid (err 0), or failed at an
 * op before.  The spawned process is then that one: our child too
 * (CLONE_PARENT), opened as a pidfd.  1: forked; 0: a failure report is in
 * c->report; <0: -errno. */
static int
wait_forked(struct iso_child *c)
{
    c->stage = ISO_STAGE_FORK;
    ssize_t got = read_report(c);
    if (got < 0 || got == 0) {
        int err = got < 0 ? errno : ECHILD;
        kill_and_reap(c);
        return -err;
    }
    c->report_len = (int32_t)got;
    if (got == (ssize_t)sizeof c->report && c->report.step == -1) {
        return child_start_failed(c);
    }
    if (got != (ssize_t)sizeof c->report || c->report.err != 0 || c->report.kind != ISO_OP_FORK ||
        c->report.pid <= 0) {
        reap(c->pid); /* it failed: it exits after its report */
        c->pid = -1;
        close_fd(&c->pidfd);
        close_fd(&c->report_fd);
        close_fd(&c->plan_fd);
        c->stage = ISO_STAGE_NONE;
        return 0;
    }
    pid_t child = (pid_t)c->report.pid;
    c->report_len = 0;
    memset(&c->report, 0, sizeof c->report);
    reap(c->pid); /* the child program leaves once it has forked */
    c->helper_pid = c->pid;
    close_fd(&c->pidfd);
    c->pid = child;
    /* Our child: nobody else can reap it, so its pid cannot be reused meanwhile. */
    c->pidfd = (int32_t)syscall(__NR_pidfd_open, child, 0);
    if (c->pidfd < 0) {
        int err = errno;
        kill(child, SIGKILL);
        kill_and_reap(c);
        return -err;
    }
    c->stage = ISO_STAGE_NONE;
    return 1;
}

/* Whether the report pipe already holds something (or EOF): the clone could
 * not start the child program, or the child program is done already. */
static int
report_ready(const struct iso_child *c)
{
    struct pollfd pfd = {.fd = c->report_fd, .events = POLLIN};
    return poll(&pfd, 1, 0) == 1;
}

/* ISO_PLAN_NETNS_LATE.  A network namespace costs the kernel most of a
 * millisecond to set up (every pernet subsystem's init), more than a clone
 * with every other namespace.  Made at clone, the child waits for it before
 * its first op; made here, by a thread of its own while the child builds its
 * root on another CPU, it costs the spawn only what the child's ops before
 * ISO_OP_NETNS_JOIN do not cover.  A thread, not this one: unshare() changes
 * the caller's namespace, and setns() back may be refused (a process in a
 * user namespace that does not own its network namespace).  The thread ends
 * here, and the namespace lives on in the fd sent to the child. */
struct late_netns {
    int sock; /* the thread's own dup of our end of the socket */
    int lo;
    int started;
    pthread_t thread;
};

static void *
late_netns_main(void *arg)
{
    struct late_netns *l = arg;
    int fd = iso_netns_new(l->lo, -1);
    int32_t err = fd < 0 ? -fd : 0;
    /* A child that failed before its join has closed its end: nothing to tell. */
    (void)iso_send_fd(l->sock, &err, sizeof err, fd);
    if (fd >= 0) {
        close(fd);
    }
    close(l->sock);
    return NULL;
}

/* Starts the thread; a failure to start it goes to the child, which reports
 * it at its join.  The caller joins the thread before `l` goes away. */
static void
late_netns_start(const struct iso_plan *plan, struct late_netns *l, int sock)
{
    l->lo = !!(plan->flags & ISO_PLAN_NETNS_LO);
    l->started = 0;
    int32_t err = 0;
    l->sock = fcntl(sock, F_DUPFD_CLOEXEC, 0);
    if (l->sock < 0) {
        err = errno;
        (void)iso_send_fd(sock, &err, sizeof err, -1);
        return;
    }
    err = pthread_create(&l->thread, NULL, late_netns_main, l);
    if (err != 0) {
        (void)iso_send_fd(sock, &err, sizeof err, -1);
        close(l->sock);
        return;
    }
    l->started = 1;
}

static void
late_netns_join(struct late_netns *l)
{
    if (l->started) {
        pthread_join(l->thread, NULL);
        l->started = 0;
    }
}

static int
release(const struct iso_plan *plan, struct iso_child *c)
{
    if (c->sync_fd < 0 && c->report_fd < 0) {
        return 0; /* not held: its outcome was read already (it died before the hold) */
    }
    if (c->sync_fd >= 0) {
        c->stage = ISO_STAGE_RELEASE;
        /* A socket, not a pipe: a child that is gone gives EPIPE, never a
         * SIGPIPE pending on this thread once its mask is restored. */
        ssize_t n;
        do {
            n = send(c->sync_fd, "g", 1, MSG_NOSIGNAL);
        } while (n < 0 && errno == EINTR);
        if (n != 1 && errno != EPIPE && errno != ECONNRESET) {
            int saved = errno;
            kill_and_reap(c);
            return -saved;
        }
        close_fd(&c->sync_fd);
        if (n != 1) {
            /* The child died while held (a memory cgroup's OOM killer, a
             * SIGKILL): not our failure but its end, reported as for a
             * child that dies before execve unheld, by its wait status. */
            close_fd(&c->netns_sock);
            return wait_report(plan, c);
        }
    }
    if (plan->flags & ISO_PLAN_TIMING) {
        c->t_released = iso_now_ns();
    }
    /* iso_spawn starts the network namespace thread before the clone, unless
     * the child is held: then it starts here, after the release. */
    struct late_netns here = {.started = 0};
    if (c->netns_sock >= 0 && (plan->flags & ISO_PLAN_HOLD)) {
        late_netns_start(plan, &here, c->netns_sock);
    }
    int r = wait_report(plan, c);
    late_netns_join(&here);
    close_fd(&c->netns_sock);
    return r;
}

/* The id maps of the child (the spawned process itself with ISO_PLAN_FORK). */
static int
write_maps(const struct iso_plan *plan, struct iso_child *c)
{
    if (plan->flags & ISO_PLAN_SETGROUPS_DENY) {
        c->stage = ISO_STAGE_SETGROUPS;
        if (write_proc_file(c->pid, "setgroups", "deny") < 0) {
            return -1;
        }
    }
    if (plan->uid_map != NULL) {
        c->stage = ISO_STAGE_UID_MAP;
        if (write_proc_file(c->pid, "uid_map", plan->uid_map) < 0) {
            return -1;
        }
    }
    if (plan->gid_map != NULL) {
        c->stage = ISO_STAGE_GID_MAP;
        if (write_proc_file(c->pid, "gid_map", plan->gid_map) < 0) {
            return -1;
        }
    }
    return 0;
}

/* What iso_spawn() holds that is not the caller's to keep: the child's ends
 * of the pipes (closed once the clone has them) and the thread that makes a
 * late network namespace. */
struct spawn_ends {
    int report_wr, sync_rd, netns_child;
    struct late_netns late;
};

/* What spawn_blocked() leaves: the child ran to its end (exec'd, reported,
 * or waits at an exec gate), or it is held for iso_release(). */
enum { SPAWN_DONE = 0, SPAWN_HELD = 1 };

/* iso_spawn() with every signal blocked.  SPAWN_DONE, SPAWN_HELD or -errno;
 * on -errno the caller kills and reaps whatever child there is.  Cleans up
 * nothing itself: iso_spawn() does, in one place. */
static int
spawn_blocked(const struct iso_plan *plan, struct iso_child *c, struct spawn_ends *e, int hfd,
              uint64_t mask)
{
    int rp[2] = {-1, -1}, sp[2] = {-1, -1}, np[2] = {-1, -1};
    int sync = (plan->flags & (ISO_PLAN_SYNC | ISO_PLAN_HOLD)) || plan->uid_map != NULL ||
               plan->gid_map != NULL;

    c->stage = ISO_STAGE_PIPE;
    int ok = pipe2(rp, O_CLOEXEC) == 0;
    c->report_fd = rp[0];
    e->report_wr = rp[1];
    ok = ok && (!sync || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0);
    c->sync_fd = sp[1];
    e->sync_rd = sp[0];
    ok = ok && (!(plan->flags & ISO_PLAN_NETNS_LATE) ||
                socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, np) == 0);
    c->netns_sock = np[0];
    e->netns_child = np[1];
    if (!ok) {
        return -errno;
    }

    c->stage = ISO_STAGE_STACK;
    void *stack = iso_clone_stack();
    if (stack == NULL) {
        return -errno;
    }

    c->stage = ISO_STAGE_PLAN;
    c->plan_fd = iso_wire_write(plan, e->sync_rd, e->netns_child, mask);
    if (c->plan_fd < 0) {
        return -errno;
    }

    /* A network namespace is inherited at clone like any other; entering it
     * here rather than in the child lets it be combined with a new user
     * namespace, which would own the child but not this namespace.  (With
     * ISO_PLAN_FORK the child program enters it before its fork.) */
    int back_net = -1;
    if (plan->netns_fd >= 0 && !(plan->flags & ISO_PLAN_FORK)) {
        c->stage = ISO_STAGE_NETNS;
        back_net = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        if (back_net < 0 || setns(plan->netns_fd, CLONE_NEWNET) < 0) {
            int err = errno;
            close_fd(&back_net);
            return -err;
        }
    }
    /* Unless the child is held (release() starts it then), the namespace is
     * made from here on, while the kernel clones. */
    if (c->netns_sock >= 0 && !(plan->flags & ISO_PLAN_HOLD)) {
        late_netns_start(plan, &e->late, c->netns_sock);
    }
    struct iso_start start = {
        .plan = plan,
        .helper_fd = hfd,
        .plan_fd = c->plan_fd,
        .report_fd = e->report_wr,
        .sync_rd = e->sync_rd,
        .netns_sock = e->netns_child,
        .carry_caps = iso_makes_user_ns(plan),
    };
    c->stage = ISO_STAGE_CLONE;
    pid_t pid = iso_clone(plan, c, &start, stack);
    int err = errno;
    if (back_net >= 0) {
        /* Returning to our own namespace is always allowed. */
        (void)setns(back_net, CLONE_NEWNET);
        close_fd(&back_net);
    }
    if (pid < 0) {
        return -err;
    }
    /* The clone has exec'd the child program, or failed and exited. */
    c->pid = pid;
    close_fd(&e->report_wr);
    close_fd(&e->sync_rd);
    close_fd(&e->netns_child);
    if (plan->flags & ISO_PLAN_TIMING) {
        c->t_cloned = iso_now_ns();
    }

    if (plan->flags & ISO_PLAN_FORK) {
        int r = wait_forked(c);
        if (r <= 0) {
            return r;
        }
    }
    else if (report_ready(c)) {
        /* Failed before any op waits for us (or already done): no maps, no go-ahead. */
        return wait_report(plan, c);
    }
    if (write_maps(plan, c) < 0) {
        return -errno;
    }
    if (plan->flags & ISO_PLAN_TIMING) {
        c->t_mapped = iso_now_ns();
    }
    if (plan->flags & ISO_PLAN_HOLD) {
        c->stage = ISO_STAGE_NONE;
        return SPAWN_HELD;
    }
    return release(plan, c);
}

int
iso_spawn(const struct iso_plan *plan, struct iso_child *c)
{
    memset(c, 0, sizeof *c);
    c->pid = c->helper_pid = -1;
    c->pidfd = c->report_fd = c->sync_fd = c->netns_sock = c->plan_fd = -1;
    if (plan->flags & ISO_PLAN_TIMING) {
        c->t_start = iso_now_ns();
    }
    int hfd = iso_helper_get();
    if (hfd < 0) {
        c->stage = ISO_STAGE_CHILD;
        return -ENOEXEC; /* iso_helper_load() first */
    }

    /* Block every signal until the child program restores this mask: the
     * clone must not run the caller's (Python's) handlers, which would write
     * to the caller's memory and wakeup fd. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    uint64_t mask = 0;
    for (int sig = 1; sig <= 64; sig++) {
        if (sigismember(&old, sig) == 1) {
            mask |= 1ULL << (sig - 1);
        }
    }

    struct spawn_ends e = {.report_wr = -1, .sync_rd = -1, .netns_child = -1};
    int r = spawn_blocked(plan, c, &e, hfd, mask);

    /* The one way out: the child's ends go, a failed child is killed and
     * reaped, the namespace thread is joined, and only a held child keeps
     * its go-ahead socket and network namespace socket for iso_release(). */
    close_fd(&e.report_wr);
    close_fd(&e.sync_rd);
    close_fd(&e.netns_child);
    if (r < 0) {
        kill_and_reap(c);
    }
    late_netns_join(&e.late);
    if (r != SPAWN_HELD) {
        close_fd(&c->sync_fd);
        close_fd(&c->netns_sock);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return r < 0 ? r : 0;
}

int
iso_release(const struct iso_plan *plan, struct iso_child *c)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int r = release(plan, c);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return r;
}

void
iso_abandon(struct iso_child *c)
{
    kill_and_reap(c);
}

int
iso_setns(int fd, int nstype)
{
    return setns(fd, nstype) < 0 ? -errno : 0;
}

int
iso_unshare(int flags)
{
    return unshare(flags) < 0 ? -errno : 0;
}
