/* iso_spawn(): the parent's side.  Pipes, clone3, id maps, and the wait for
 * the child's report.  (The child joins a v1 cgroup itself: ISO_OP_CGROUP_JOIN.)
 *
 * The child shares the parent's address space (CLONE_VM, as glibc's
 * posix_spawn and CPython's vfork path do), so a spawn costs the same from a
 * 50 MiB parent as from a 2 GiB one: no page tables are copied.  Unlike
 * vfork, the calling thread keeps running while the child waits for its id
 * maps; it only reads its own stack and the plan, which the caller keeps
 * alive and unchanged until the child has exec'd or exited.
 */
#include "isolate.h"

#include <pthread.h>
#include <stdio.h>
#include <sys/uio.h>

#define ISO_STACK_SIZE (256 * 1024)
#define ISO_GUARD_SIZE 4096

/* long iso_clone3_vm(struct iso_clone_args *args, size_t size,
 *                    int (*fn)(void *), void *arg);
 * clone3() with CLONE_VM must switch the child onto its own stack before any
 * C code runs there, so the child half is written in assembly (glibc's
 * clone3.S does the same).  Returns the raw syscall result in the parent. */
#if defined(__x86_64__)
#define ISO_HAVE_CLONE3_VM 1
__asm__(
    ".text\n"
    ".p2align 4\n"
    ".hidden iso_clone3_vm\n"
    ".type iso_clone3_vm,@function\n"
    "iso_clone3_vm:\n"
    "    mov %rdx, %r8\n"
    "    mov %rcx, %r9\n"
    "    mov $435, %eax\n"
    "    syscall\n"
    "    test %rax, %rax\n"
    "    jnz 1f\n"
    "    xor %ebp, %ebp\n"
    "    mov %r9, %rdi\n"
    "    call *%r8\n"
    "    mov %eax, %edi\n"
    "    mov $231, %eax\n"
    "    syscall\n"
    "    hlt\n"
    "1:  ret\n"
    ".size iso_clone3_vm, .-iso_clone3_vm\n");
#elif defined(__aarch64__)
#define ISO_HAVE_CLONE3_VM 1
__asm__(
    ".text\n"
    ".p2align 4\n"
    ".hidden iso_clone3_vm\n"
    ".type iso_clone3_vm,%function\n"
    "iso_clone3_vm:\n"
    "    mov x10, x2\n"
    "    mov x11, x3\n"
    "    mov x8, #435\n"
    "    svc #0\n"
    "    cbnz x0, 1f\n"
    "    mov x29, xzr\n"
    "    mov x30, xzr\n"
    "    mov x0, x11\n"
    "    blr x10\n"
    "    mov x8, #94\n"
    "    svc #0\n"
    "1:  ret\n"
    ".size iso_clone3_vm, .-iso_clone3_vm\n");
#else
#define ISO_HAVE_CLONE3_VM 0
#endif

#if ISO_HAVE_CLONE3_VM
long iso_clone3_vm(struct iso_clone_args *args, size_t size, int (*fn)(void *), void *arg);
#endif

/* 1: clone3 works, 0: ENOSYS seen once, -1: not yet known.  Racy reads are
 * harmless: at worst two threads both try clone3 once. */
static volatile int clone3_state = -1;

static uint64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void
close_fd(int32_t *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

static int
write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
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

/* One child stack cached per thread: a spawn then costs no mmap, mprotect
 * or munmap, and its pages are already faulted in.  A thread has at most one
 * spawn between clone and exec, except while a child is held (ISO_PLAN_HOLD),
 * when the cache is simply empty.  The destructor unmaps it at thread exit. */
static pthread_key_t stack_key;
static pthread_once_t stack_once = PTHREAD_ONCE_INIT;

static void
unmap_cached_stack(void *st)
{
    munmap(st, ISO_STACK_SIZE);
}

static void
make_stack_key(void)
{
    (void)pthread_key_create(&stack_key, unmap_cached_stack);
}

static void *
get_stack(void)
{
    pthread_once(&stack_once, make_stack_key);
    void *st = pthread_getspecific(stack_key);
    if (st != NULL) {
        pthread_setspecific(stack_key, NULL);
        return st;
    }
    st = mmap(NULL, ISO_STACK_SIZE, PROT_READ | PROT_WRITE,
              MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
    if (st == MAP_FAILED) {
        return NULL;
    }
    /* A guard page: an overflowing child must fault, not write into the parent. */
    if (mprotect(st, ISO_GUARD_SIZE, PROT_NONE) < 0) {
        int saved = errno;
        munmap(st, ISO_STACK_SIZE);
        errno = saved;
        return NULL;
    }
    return st;
}

static void
free_stack(struct iso_child *c)
{
    if (c->stack != NULL) {
        if (pthread_getspecific(stack_key) == NULL &&
            pthread_setspecific(stack_key, c->stack) == 0) {
            c->stack = NULL;
            return;
        }
        munmap(c->stack, c->stack_size);
        c->stack = NULL;
    }
}

/* Kill and reap a child that will not reach execve.  The stack may only be
 * unmapped once the child is gone: it may still be running on it. */
static void
kill_and_reap(struct iso_child *c)
{
    if (c->pid > 0) {
        if (c->pidfd < 0 || syscall(__NR_pidfd_send_signal, c->pidfd, SIGKILL, NULL, 0) < 0) {
            kill(c->pid, SIGKILL);
        }
        while (waitpid(c->pid, NULL, 0) < 0 && errno == EINTR) {
        }
        c->pid = -1;
    }
    close_fd(&c->pidfd);
    close_fd(&c->sync_fd);
    close_fd(&c->report_fd);
    close_fd(&c->netns_sock);
    free_stack(c);
}

static int
enter_for_children(int fd, int nstype, const char *name, int *back)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/thread-self/ns/%s", name);
    *back = open(path, O_RDONLY | O_CLOEXEC);
    if (*back < 0) {
        return -1;
    }
    if (setns(fd, nstype) < 0) {
        int saved = errno;
        close(*back);
        *back = -1;
        errno = saved;
        return -1;
    }
    return 0;
}

static void
leave_for_children(int *back, int nstype)
{
    if (*back >= 0) {
        /* Returning to our own namespace is always allowed. */
        (void)setns(*back, nstype);
        close(*back);
        *back = -1;
    }
}

static pid_t
do_clone(const struct iso_plan *plan, struct iso_child *c, struct iso_child_args *a, int vm)
{
    uint64_t flags = plan->clone_flags | CLONE_PIDFD;
    int pidfd = -1;
    char *stack_top = NULL;
    if (vm) {
        flags |= CLONE_VM;
        stack_top = (char *)c->stack + c->stack_size - 256;   /* 16-byte aligned */
    }

    if (clone3_state != 0 && !(plan->flags & ISO_PLAN_LEGACY_CLONE)) {
        struct iso_clone_args ca;
        memset(&ca, 0, sizeof ca);
        ca.flags = flags;
        ca.pidfd = (uint64_t)(uintptr_t)&pidfd;
        ca.exit_signal = SIGCHLD;
        if (plan->cgroup_fd >= 0) {
            ca.flags |= CLONE_INTO_CGROUP;
            ca.cgroup = (uint64_t)plan->cgroup_fd;
        }
        long r;
        if (vm) {
#if ISO_HAVE_CLONE3_VM
            ca.stack = (uint64_t)(uintptr_t)c->stack + ISO_GUARD_SIZE;
            ca.stack_size = (uint64_t)(stack_top - ((char *)c->stack + ISO_GUARD_SIZE));
            r = iso_clone3_vm(&ca, sizeof ca, iso_child_main, a);
            if (r < 0) {
                errno = (int)-r;
                r = -1;
            }
#else
            r = -1;
            errno = ENOSYS;
#endif
        }
        else {
            r = syscall(__NR_clone3, &ca, sizeof ca);
            if (r == 0) {
                _exit(iso_child_main(a));
            }
        }
        if (r > 0) {
            clone3_state = 1;
            c->clone3_used = 1;
            c->pidfd = pidfd;
            return (pid_t)r;
        }
        if (errno != ENOSYS || plan->cgroup_fd >= 0) {
            return -1;
        }
#if ISO_HAVE_CLONE3_VM
        clone3_state = 0;
#else
        if (!vm) {
            clone3_state = 0;
        }
#endif
    }

    /* clone(2): the time namespace bit overlaps CSIGNAL there, so time
     * namespaces need clone3. */
    if (flags & CLONE_NEWTIME) {
        errno = ENOSYS;
        return -1;
    }
    pid_t pid;
    if (vm) {
        pid = clone(iso_child_main, stack_top, (int)flags | SIGCHLD, a, &pidfd);
    }
    else {
        pid = (pid_t)syscall(SYS_clone, (unsigned long)(flags | SIGCHLD), NULL, &pidfd, NULL, NULL);
        if (pid == 0) {
            _exit(iso_child_main(a));
        }
    }
    if (pid > 0) {
        c->clone3_used = 0;
        c->pidfd = pidfd;
    }
    return pid;
}

/* Waits for the child's report: EOF means execve succeeded.  Reaps a child
 * that reported a failure.  Signals stay blocked, so read(2) is never
 * interrupted while the child may be using errno. */
static int
wait_report(const struct iso_plan *plan, struct iso_child *c)
{
    c->stage = ISO_STAGE_REPORT;
    char *buf = (char *)&c->report;
    size_t got = 0;
    for (;;) {
        ssize_t n = read(c->report_fd, buf + got, sizeof c->report - got);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            int saved = errno;
            kill_and_reap(c);
            return -saved;
        }
        if (n == 0 || (got += (size_t)n) == sizeof c->report) {
            break;
        }
    }
    c->report_len = (int32_t)got;
    if (plan->flags & ISO_PLAN_TIMING) {
        c->t_done = now_ns();
    }
    close_fd(&c->report_fd);
    if (got == sizeof c->report && c->report.err == 0) {
        /* Ready at an exec gate: the child lives on, waiting for its go-ahead.
         * (Gated plans use no shared stack: ISO_PLAN_NO_VM.) */
        c->stage = ISO_STAGE_NONE;
        return 0;
    }
    if (got != 0) {
        /* The child exits right after its report; reap it before freeing its stack. */
        while (waitpid(c->pid, NULL, 0) < 0 && errno == EINTR) {
        }
        c->pid = -1;
        close_fd(&c->pidfd);
    }
    free_stack(c);
    c->stage = ISO_STAGE_NONE;
    return 0;
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
    int sock;       /* the thread's own dup of our end of the socket */
    int lo;
    int started;
    pthread_t thread;
};

static void *
late_netns_main(void *arg)
{
    struct late_netns *l = arg;
    int32_t err = 0;
    int fd = -1;
    if (unshare(CLONE_NEWNET) < 0 || (l->lo && run_op_loopback_up() < 0) ||
        (fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)) < 0) {
        err = errno;
    }
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
    if (c->sync_fd >= 0) {
        c->stage = ISO_STAGE_RELEASE;
        if (write_all(c->sync_fd, "g", 1) < 0) {
            int saved = errno;
            kill_and_reap(c);
            return -saved;
        }
        close_fd(&c->sync_fd);
    }
    if (plan->flags & ISO_PLAN_TIMING) {
        c->t_released = now_ns();
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

int
iso_spawn(const struct iso_plan *plan, struct iso_child *c)
{
    int rp[2] = {-1, -1}, sp[2] = {-1, -1}, np[2] = {-1, -1};
    struct late_netns late = {.started = 0};
    int late_now = 0;
    int vm = !(plan->flags & ISO_PLAN_NO_VM);
    int sync = (plan->flags & (ISO_PLAN_SYNC | ISO_PLAN_HOLD)) || plan->uid_map != NULL ||
               plan->gid_map != NULL;
    int err = 0;

    memset(c, 0, sizeof *c);
    c->pid = -1;
    c->pidfd = c->report_fd = c->sync_fd = c->netns_sock = -1;
    if (plan->flags & ISO_PLAN_TIMING) {
        c->t_start = now_ns();
    }

    c->stage = ISO_STAGE_PIPE;
    if (pipe2(rp, O_CLOEXEC) < 0) {
        err = errno;
        goto fail_pipes;
    }
    c->report_fd = rp[0];
    if (sync && pipe2(sp, O_CLOEXEC) < 0) {
        err = errno;
        goto fail_pipes;
    }
    c->sync_fd = sp[1];
    if ((plan->flags & ISO_PLAN_NETNS_LATE) &&
        socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, np) < 0) {
        err = errno;
        goto fail_pipes;
    }
    c->netns_sock = np[0];
    /* Unless the child is held (release() starts it then), the namespace is
     * made from here on, while the kernel clones. */
    late_now = np[0] >= 0 && !(plan->flags & ISO_PLAN_HOLD);

    /* The child's arguments live at the top of its own stack mapping: with
     * ISO_PLAN_HOLD this function returns while the child still reads them. */
    struct iso_child_args local_args, *a = &local_args;
    if (vm) {
        c->stage = ISO_STAGE_STACK;
        c->stack_size = ISO_STACK_SIZE;
        void *st = get_stack();
        if (st == NULL) {
            err = errno;
            goto fail_pipes;
        }
        c->stack = st;
        a = (struct iso_child_args *)((char *)st + ISO_STACK_SIZE - 256 + 16);
        _Static_assert(sizeof(struct iso_child_args) <= 256 - 16, "child args fit above the stack top");
    }
    a->plan = plan;
    a->report_fd = rp[1];
    a->report_rd = rp[0];
    a->sync_fd = sp[0];
    a->sync_wr = sp[1];
    a->netns_sock = np[1];
    a->netns_peer = np[0];
    a->netns_joined = 0;

    /* Block every signal until the child has reset its handlers: a CLONE_VM
     * child running the parent's (Python's) handler would write to the
     * parent's memory and wakeup fd. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    a->sigmask = old;

    /* Joining a pid namespace applies to children only (pid_for_children),
     * and only for this thread: enter it for the clone, then return.  Other
     * threads are not affected; this one runs no Python meanwhile (the GIL
     * is released). */
    int back_pid = -1;
    if (plan->pidns_fd >= 0 &&
        enter_for_children(plan->pidns_fd, CLONE_NEWPID, "pid_for_children", &back_pid) < 0) {
        c->stage = ISO_STAGE_PIDNS;
        err = errno;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        goto fail_pipes;
    }
    /* A network namespace is inherited at clone like any other; entering it
     * here rather than in the child lets it be combined with a new user
     * namespace, which would own the child but not this namespace. */
    int back_net = -1;
    if (plan->netns_fd >= 0 &&
        enter_for_children(plan->netns_fd, CLONE_NEWNET, "net", &back_net) < 0) {
        c->stage = ISO_STAGE_NETNS;
        err = errno;
        leave_for_children(&back_pid, CLONE_NEWPID);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        goto fail_pipes;
    }

    if (late_now) {
        late_netns_start(plan, &late, np[0]);
    }
    c->stage = ISO_STAGE_CLONE;
    pid_t pid = do_clone(plan, c, a, vm);
    err = errno;
    leave_for_children(&back_net, CLONE_NEWNET);
    leave_for_children(&back_pid, CLONE_NEWPID);
    if (pid < 0) {
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        goto fail_pipes;
    }
    c->pid = pid;
    close(rp[1]);
    if (sp[0] >= 0) {
        close(sp[0]);
    }
    if (np[1] >= 0) {
        close(np[1]);
    }
    if (plan->flags & ISO_PLAN_TIMING) {
        c->t_cloned = now_ns();
    }

    if (plan->flags & ISO_PLAN_SETGROUPS_DENY) {
        c->stage = ISO_STAGE_SETGROUPS;
        if (write_proc_file(pid, "setgroups", "deny") < 0) {
            goto fail_child;
        }
    }
    if (plan->uid_map != NULL) {
        c->stage = ISO_STAGE_UID_MAP;
        if (write_proc_file(pid, "uid_map", plan->uid_map) < 0) {
            goto fail_child;
        }
    }
    if (plan->gid_map != NULL) {
        c->stage = ISO_STAGE_GID_MAP;
        if (write_proc_file(pid, "gid_map", plan->gid_map) < 0) {
            goto fail_child;
        }
    }
    if (plan->flags & ISO_PLAN_TIMING) {
        c->t_mapped = now_ns();
    }
    if (plan->flags & ISO_PLAN_HOLD) {
        c->stage = ISO_STAGE_NONE;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        return 0;
    }
    int r = release(plan, c);
    late_netns_join(&late);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return r;

fail_child:
    err = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    kill_and_reap(c);
    late_netns_join(&late);
    return -err;

fail_pipes:
    if (rp[1] >= 0 && c->pid < 0) {
        close(rp[1]);
    }
    if (sp[0] >= 0 && c->pid < 0) {
        close(sp[0]);
    }
    if (np[1] >= 0 && c->pid < 0) {
        close(np[1]);
    }
    kill_and_reap(c);
    late_netns_join(&late);
    return -err;
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
