/* Network helpers shared by the parent (the late network namespace's thread,
 * spawn.c; NetnsPool's thread, through iso_netns_new) and the child program
 * (child.c, ops_proc.c): one way to make a network namespace and bring its
 * lo up.  Async-signal-safe; return -1 with errno set, but iso_netns_new. */
#include "isolate.h"

/* A new network namespace has lo, down (SIOCSIFFLAGS, netdevice(7)). */
int
iso_loopback_up(void)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) {
        return -1;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, "lo", 3);
    int r = ioctl(s, SIOCGIFFLAGS, &ifr);
    if (r == 0) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        r = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    int saved = errno;
    close(s);
    errno = saved;
    return r;
}

/* A new network namespace for the calling thread (the child program: the
 * process), with lo up if asked. */
int
iso_netns_enter_new(int lo)
{
    if (unshare(CLONE_NEWNET) < 0) {
        return -1;
    }
    return lo ? iso_loopback_up() : 0;
}

/* A new network namespace, made by the calling thread (unshare moves only
 * it), with lo up if asked: an fd on it (O_CLOEXEC), or -errno.  home >= 0:
 * the thread goes back to that network namespace, which is always allowed;
 * else it stays in the new one (a thread about to end). */
int
iso_netns_new(int lo, int home)
{
    int fd = -1, err = 0;
    if (iso_netns_enter_new(lo) < 0 ||
        (fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)) < 0) {
        err = errno;
    }
    if (home >= 0 && setns(home, CLONE_NEWNET) < 0 && err == 0) {
        err = errno;
    }
    if (err != 0) {
        close_keep_errno(fd);
        return -err;
    }
    return fd;
}

/* Send `len` bytes of `data` and, if fd >= 0, the fd (SCM_RIGHTS) over the
 * unix socket `sock`.  Async-signal-safe; a closed peer gives EPIPE, no SIGPIPE. */
int
iso_send_fd(int sock, const void *data, size_t len, int fd)
{
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        msg.msg_control = ctl.buf;
        msg.msg_controllen = sizeof ctl.buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    ssize_t n;
    do {
        n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n < 0 ? -1 : 0;
}
