/* Thin wrappers the parent calls on its own behalf (never the child):
 * mount(2) for binding namespace files, and a syscall prober for
 * isolate.probe().  Each returns 0 or -errno, kernel style. */
#include "isolate.h"

#include <linux/openat2.h>
#include <net/route.h>
#include <netinet/in.h>
#include <pthread.h>

int
iso_mount(const char *source, const char *target, const char *fstype, uint64_t flags,
          const char *data)
{
    return mount(source, target, fstype, (unsigned long)flags, data) < 0 ? -errno : 0;
}

int
iso_umount2(const char *target, int flags)
{
    return umount2(target, flags) < 0 ? -errno : 0;
}

/* Calls one syscall with the caller's (normally invalid) arguments, to learn
 * whether the kernel has it: -ENOSYS means it does not.  Numbers come from the
 * kernel headers this was built with, so every architecture is covered. */
int
iso_syscall_errno(int which, int64_t a, int64_t b, int64_t c, int64_t d, int64_t e)
{
    long nr;
    switch (which) {
    case ISO_SYS_OPEN_TREE:
        nr = __NR_open_tree;
        break;
    case ISO_SYS_MOVE_MOUNT:
        nr = __NR_move_mount;
        break;
    case ISO_SYS_FSOPEN:
        nr = __NR_fsopen;
        break;
    case ISO_SYS_MOUNT_SETATTR:
        nr = __NR_mount_setattr;
        break;
    case ISO_SYS_CLOSE_RANGE:
        nr = __NR_close_range;
        break;
    case ISO_SYS_PIDFD_OPEN:
        nr = __NR_pidfd_open;
        break;
    case ISO_SYS_CLONE3:
        nr = __NR_clone3;
        break;
    case ISO_SYS_FSCONFIG:
        nr = __NR_fsconfig;
        break;
    case ISO_SYS_FSMOUNT:
        nr = __NR_fsmount;
        break;
    default:
        return -EINVAL;
    }
    long r = syscall(nr, a, b, c, d, e);
    if (r < 0) {
        return -errno;
    }
    if (which == ISO_SYS_OPEN_TREE || which == ISO_SYS_FSOPEN || which == ISO_SYS_PIDFD_OPEN ||
        which == ISO_SYS_FSMOUNT) {
        close((int)r); /* a valid call made an fd: do not leak it */
    }
    return 0;
}

/* PR_SET_DUMPABLE for the calling process (its memory: a CLONE_VM child shares it). */
int
iso_set_dumpable(int on)
{
    return prctl(PR_SET_DUMPABLE, on ? 1 : 0, 0, 0, 0) < 0 ? -errno : 0;
}

/* A detached tmpfs (fsopen/fsmount, Linux 5.2) with its root directory at
 * mode (octal text, as tmpfs takes it), of size (NULL: tmpfs's default) and
 * source (NULL: "tmpfs"), mounted with the MOUNT_ATTR_* attrs (atime
 * included), for the parent to fill through the returned fd (O_CLOEXEC). */
int
iso_detached_tmpfs(const char *mode, const char *size, const char *source, uint64_t attrs)
{
    int fs = (int)syscall(__NR_fsopen, "tmpfs", FSOPEN_CLOEXEC);
    if (fs < 0) {
        return -errno;
    }
    int mfd = -1;
    const char *src = source ? source : "tmpfs";
    if (syscall(__NR_fsconfig, fs, FSCONFIG_SET_STRING, "mode", mode, 0) == 0 &&
        (size == NULL || syscall(__NR_fsconfig, fs, FSCONFIG_SET_STRING, "size", size, 0) == 0) &&
        syscall(__NR_fsconfig, fs, FSCONFIG_SET_STRING, "source", src, 0) == 0 &&
        syscall(__NR_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0) {
        mfd = (int)syscall(__NR_fsmount, fs, FSMOUNT_CLOEXEC, (unsigned)attrs);
    }
    int err = errno;
    close(fs);
    return mfd >= 0 ? mfd : -err;
}

/* mount_setattr(fd, "", AT_EMPTY_PATH, {attr_set}) on a mount fd (Linux 5.12). */
int
iso_mount_fd_setattr(int fd, uint64_t attr_set)
{
    struct iso_mount_attr attr = {.attr_set = attr_set};
    if (syscall(__NR_mount_setattr, fd, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0) {
        return -errno;
    }
    return 0;
}

/* A detached clone of the mount tree at path (open_tree OPEN_TREE_CLONE,
 * the mounts below too when recursive), with attr_set/attr_clr applied to
 * every mount of it: the fd (O_CLOEXEC) or -errno.  A failed setattr
 * closes the clone: nothing is left. */
int
iso_clone_tree(const char *path, int recursive, uint64_t attr_set, uint64_t attr_clr)
{
    unsigned rec = recursive ? AT_RECURSIVE : 0;
    int mfd =
        (int)syscall(__NR_open_tree, AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | rec);
    if (mfd < 0) {
        return -errno;
    }
    struct iso_mount_attr attr = {.attr_set = attr_set, .attr_clr = attr_clr};
    if ((attr_set || attr_clr) &&
        syscall(__NR_mount_setattr, mfd, "", AT_EMPTY_PATH | rec, &attr, sizeof attr) < 0) {
        int err = errno;
        close(mfd);
        return -err;
    }
    return mfd;
}

/* Idmap the detached mount fd (and the mounts below it when recursive) with
 * the maps of the user namespace userns_fd: 0 or -errno.  The kernel
 * applies it to all of them or to none (EINVAL where a filesystem does not
 * support idmapped mounts; tmpfs does from Linux 6.3). */
int
iso_mount_fd_idmap(int fd, int userns_fd, int recursive)
{
    struct iso_mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (uint64_t)userns_fd};
    if (syscall(__NR_mount_setattr, fd, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &attr,
                sizeof attr) < 0) {
        return -errno;
    }
    return 0;
}

/* path inside the tree whose directory fd is dirfd, resolved as the kernel
 * does for the child's ops: every symlink, absolute or "..", stays inside
 * (RESOLVE_IN_ROOT), no magic link.  The fd (O_CLOEXEC), or -errno. */
int
iso_open_in_root(int dirfd, const char *path, int flags)
{
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)flags | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    int fd = (int)syscall(__NR_openat2, dirfd, path, &how, sizeof how);
    return fd < 0 ? -errno : fd;
}

/* iso_net_config's work, in its own thread. */
struct net_config {
    int netns_fd;
    const char *name;
    uint32_t address, prefix, gateway, what;
    int err;
};

static void
set_in(struct sockaddr *sa, uint32_t host_order)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)(void *)sa;
    memset(sin, 0, sizeof *sin);
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(host_order);
}

/* netdevice(7)'s IPv4 ioctls: address, netmask (the kernel's prefix route follows),
 * IFF_UP, then the default route (route(4)'s SIOCADDRT). */
static int
configure(const struct net_config *c)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) {
        return -errno;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, c->name, strlen(c->name));
    int r = 0;
    if (c->what & ISO_NET_ADDRESS) {
        set_in(&ifr.ifr_addr, c->address);
        r = ioctl(s, SIOCSIFADDR, &ifr);
        if (r == 0) {
            set_in(&ifr.ifr_netmask, c->prefix ? 0xffffffffu << (32 - c->prefix) : 0);
            r = ioctl(s, SIOCSIFNETMASK, &ifr);
        }
    }
    if (r == 0 && (c->what & ISO_NET_UP)) {
        r = ioctl(s, SIOCGIFFLAGS, &ifr);
        if (r == 0) {
            ifr.ifr_flags |= IFF_UP;
            r = ioctl(s, SIOCSIFFLAGS, &ifr);
        }
    }
    if (r == 0 && (c->what & ISO_NET_ADDRESS) && c->gateway != 0) {
        struct rtentry rt;
        memset(&rt, 0, sizeof rt);
        set_in(&rt.rt_dst, 0);
        set_in(&rt.rt_genmask, 0);
        set_in(&rt.rt_gateway, c->gateway);
        rt.rt_flags = RTF_UP | RTF_GATEWAY;
        r = ioctl(s, SIOCADDRT, &rt);
    }
    int err = r < 0 ? -errno : 0;
    close(s);
    return err;
}

/* Write `value` to the sysctl file `path` of this thread's network namespace. */
static int
write_sysctl(const char *path, const char *value)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    size_t len = strlen(value);
    ssize_t n = write(fd, value, len);
    int err = n < 0 ? -errno : (size_t)n != len ? -EIO : 0;
    close(fd);
    return err;
}

static void *
net_config_main(void *arg)
{
    struct net_config *c = arg;
    /* This thread ends here: it never has to go back. */
    if (setns(c->netns_fd, CLONE_NEWNET) < 0) {
        c->err = -errno;
        return NULL;
    }
    c->err = configure(c);
    /* As Docker sets them in a container's namespace: any port may be bound and any
     * group may ping (root of a container in a user namespace of its own holds no
     * capability over a namespace the host made). */
    if (c->err == 0 && (c->what & ISO_NET_UP)) {
        c->err = write_sysctl("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0");
    }
    if (c->err == 0 && (c->what & ISO_NET_UP)) {
        c->err = write_sysctl("/proc/sys/net/ipv4/ping_group_range", "0 2147483647");
    }
    return NULL;
}

int
iso_net_config(int netns_fd, const char *name, uint32_t address, uint32_t prefix, uint32_t gateway,
               uint32_t what)
{
    size_t len = name != NULL ? strlen(name) : 0;
    if (len == 0 || len >= IFNAMSIZ || prefix > 32) {
        return -EINVAL;
    }
    struct net_config c = {.netns_fd = netns_fd,
                           .name = name,
                           .address = address,
                           .prefix = prefix,
                           .gateway = gateway,
                           .what = what,
                           .err = 0};
    pthread_t t;
    int err = pthread_create(&t, NULL, net_config_main, &c);
    if (err != 0) {
        return -err;
    }
    pthread_join(t, NULL);
    return c.err;
}
