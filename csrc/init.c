/* main() of the child program: the process a spawn becomes right after clone.
 *
 * iso_spawn() (spawn.c) clones a child that shares the caller's memory only
 * long enough to execveat() this program from a sealed memfd.  Everything the
 * plan asks for happens here, in a process image of our own:
 *
 * - /proc/<pid>/exe of anything that runs in the sandbox before its program's
 *   execve is the sealed memfd, never the host's interpreter, and a
 *   "#!/proc/self/exe" program reaches this binary, which it cannot write
 *   (runc's CVE-2019-5736; runc re-executes itself from a memfd for the same
 *   reason), and /proc/<pid>/cmdline shows "isolate-child", not the caller's
 *   command line;
 * - credential changes, dumpability and cgroup moves are this process's own:
 *   the caller's memory is never marked non-dumpable, and an OOM kill in a
 *   tiny memory cgroup kills this process only, not every process sharing
 *   its memory (the clone was a vfork, which the OOM killer never picks).
 *
 * Usage (by iso_spawn only): isolate-child PLAN_FD REPORT_FD.  PLAN_FD is a
 * memfd holding a struct iso_wire; REPORT_FD the report pipe.  Run any other
 * way (a "#!/proc/self/exe" script), it only runs the plan it is given, with
 * the rights its caller already has.
 */
#include "isolate.h"

#define ISO_CHILD_NAME "isolate-child"

static int
parse_fd(const char *s)
{
    int v = 0;
    if (s == NULL || *s == 0) {
        return -1;
    }
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > 1 << 20) {
            return -1;
        }
        v = v * 10 + (*s - '0');
    }
    return v;
}

static void
say(const char *msg)
{
    (void)!write(2, msg, strlen(msg));
}

/* The blob is ours (the parent wrote it), but this program can be run by
 * anyone who reaches it: check it fits before following any offset. */
static int
wire_fits(const struct iso_wire *w, size_t size)
{
    if (size < sizeof *w || w->magic != ISO_WIRE_MAGIC || w->version != ISO_WIRE_VERSION ||
        w->size != size) {
        return 0;
    }
    uint64_t ends[] = {
        (uint64_t)w->ops_off + (uint64_t)w->n_ops * sizeof(struct iso_op),
        (uint64_t)w->arena_off + w->arena_len,
        (uint64_t)w->ptrs_off + ((uint64_t)w->argc + w->envc + 2) * sizeof(char *),
        (uint64_t)w->join_fds_off + (uint64_t)w->n_join_fds * 4,
        (uint64_t)w->keep_fds_off + (uint64_t)w->n_keep_fds * 4,
        w->times_off ? (uint64_t)w->times_off + ((uint64_t)w->n_ops + 1) * 8 : 0,
        (uint64_t)w->argv_off,
        (uint64_t)w->envp_off,
    };
    for (size_t i = 0; i < sizeof ends / sizeof ends[0]; i++) {
        if (ends[i] > size) {
            return 0;
        }
    }
    return w->ops_off % 8 == 0 && w->ptrs_off % 8 == 0 && w->times_off % 8 == 0 &&
           w->join_fds_off % 4 == 0 && w->keep_fds_off % 4 == 0 && w->arena_len > 0 &&
           ((const char *)w)[w->arena_off] == 0;
}

/* Point `slots` at n strings packed from `at`; NULL-terminated.  0 if they fit. */
static int
fill_strings(char **slots, uint32_t n, const char *at, const char *end)
{
    for (uint32_t i = 0; i < n; i++) {
        slots[i] = (char *)at;
        while (at < end && *at) {
            at++;
        }
        if (at >= end) {
            return -1;
        }
        at++;
    }
    slots[n] = NULL;
    return 0;
}

int
main(int argc, char **argv)
{
    int plan_fd = argc == 3 ? parse_fd(argv[1]) : -1;
    int report_fd = argc == 3 ? parse_fd(argv[2]) : -1;
    if (plan_fd < 0 || report_fd < 0) {
        say(ISO_CHILD_NAME ": run by isolate's spawn only\n");
        return 2;
    }
    struct stat st;
    void *base = MAP_FAILED;
    if (fstat(plan_fd, &st) == 0 && st.st_size > 0) {
        base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, plan_fd, 0);
    }
    if (base == MAP_FAILED) {
        iso_child_fail(report_fd, -1, 0, errno ? errno : EINVAL, NULL);
    }
    close(plan_fd);
    struct iso_wire *w = base;
    if (!wire_fits(w, (size_t)st.st_size)) {
        iso_child_fail(report_fd, -1, 0, EBADMSG, NULL);
    }
    char *b = base;
    uint64_t *times = w->times_off ? (uint64_t *)(b + w->times_off) : NULL;
    if (times != NULL) {
        times[0] = iso_now_ns();
    }

    /* The fds the plan names came across without FD_CLOEXEC (spawn.c cleared
     * it so they survive this program's execve); they were the caller's
     * borrowed fds, close-on-exec, and are again, as are our pipes. */
    const int32_t *keep = (const int32_t *)(b + w->keep_fds_off);
    for (uint32_t i = 0; i < w->n_keep_fds; i++) {
        fcntl(keep[i], F_SETFD, FD_CLOEXEC);
    }
    int own[] = {report_fd, w->sync_fd, w->netns_sock};
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++) {
        if (own[i] >= 0 && fcntl(own[i], F_SETFD, FD_CLOEXEC) < 0) {
            iso_child_fail(report_fd, -1, 0, errno, NULL);
        }
    }

    if (w->caps_carried) {
        /* The clone raised them to get here (spawn.c, carry_caps): undo it. */
        struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
        struct __user_cap_data_struct d[2];
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 ||
            syscall(SYS_capget, &h, d) < 0) {
            iso_child_fail(report_fd, -1, 0, errno, NULL);
        }
        d[0].inheritable = (uint32_t)w->inheritable;
        d[1].inheritable = (uint32_t)(w->inheritable >> 32);
        if (syscall(SYS_capset, &h, d) < 0) {
            iso_child_fail(report_fd, -1, 0, errno, NULL);
        }
    }

    char **ptrs = (char **)(b + w->ptrs_off);
    struct iso_plan plan;
    memset(&plan, 0, sizeof plan);
    plan.flags = w->flags;
    plan.ops = (const struct iso_op *)(b + w->ops_off);
    plan.n_ops = w->n_ops;
    plan.arena = b + w->arena_off;
    plan.arena_len = w->arena_len;
    plan.argv = ptrs;
    plan.envp = ptrs + w->argc + 1;
    plan.join_fds = (const int32_t *)(b + w->join_fds_off);
    plan.n_join_fds = w->n_join_fds;
    plan.netns_fd = w->netns_fd;
    if (fill_strings(plan.argv, w->argc, b + w->argv_off, b + w->size) < 0 ||
        fill_strings(plan.envp, w->envc, b + w->envp_off, b + w->size) < 0 || w->argc == 0) {
        iso_child_fail(report_fd, -1, 0, EBADMSG, NULL);
    }

    /* execve kept what the caller ignored; a program expects SIGPIPE and
     * SIGXFSZ at their defaults (CPython ignores both, and subprocess's
     * restore_signals puts them back too).  Caught signals are already
     * default.  Then the spawning thread's mask, blocked until now. */
    struct iso_ksigaction dfl = {.handler = SIG_DFL};
    syscall(SYS_rt_sigaction, SIGPIPE, &dfl, NULL, sizeof(uint64_t));
    syscall(SYS_rt_sigaction, SIGXFSZ, &dfl, NULL, sizeof(uint64_t));
    uint64_t mask = w->sigmask;
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &mask, NULL, sizeof mask);

    struct iso_child_args a = {
        .plan = &plan,
        .report_fd = report_fd,
        .sync_fd = w->sync_fd,
        .netns_sock = w->netns_sock,
        .netns_joined = 0,
        .netns_fd = w->netns_fd,
        .cgroup_fd = w->cgroup_fd,
        .times = times,
    };
    /* Not dumpable (see iso_child_wait_go): at once, or once the parent has
     * written the id maps it waits for.  With ISO_PLAN_FORK, the forked
     * process does the waiting (run_op_fork). */
    int rc = 0;
    if (a.sync_fd < 0) {
        rc = prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    else if (!(w->flags & ISO_PLAN_FORK)) {
        rc = iso_child_wait_go(&a);
    }
    if (rc < 0) {
        iso_child_fail(report_fd, -1, 0, errno, NULL);
    }
    iso_child_run(&a);
}
