/* Reference for issue 3's target: the cgroup v1 create + limits + spawn-into +
 * remove cycle in plain C (the same syscalls isolate.Cgroup makes), against a
 * plain fork+exec of /bin/true, interleaved in blocks.  Prints the wall and
 * CPU each cycle adds.  As root on a v1/hybrid host:
 *   cc -O2 -o /tmp/cgroup_reference benchmarks/cgroup_reference.c && /tmp/cgroup_reference
 * It makes and removes isolate-test-cref<pid> under each hierarchy. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/resource.h>
#include <spawn.h>
extern char **environ;
static const char *H[] = {"memory", "pids", "cpu", "cpuacct"};
static const char *F[] = {"memory.limit_in_bytes", "pids.max", "cpu.cfs_quota_us", NULL};
static const char *V[] = {"268435456", "100", "50000", NULL};
static char parent[64];
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e6 + t.tv_nsec / 1e3; }
static double cpu(void) { struct rusage a, b; getrusage(RUSAGE_SELF, &a); getrusage(RUSAGE_CHILDREN, &b);
  return (a.ru_utime.tv_sec + a.ru_stime.tv_sec + b.ru_utime.tv_sec + b.ru_stime.tv_sec) * 1e6 + a.ru_utime.tv_usec + a.ru_stime.tv_usec + b.ru_utime.tv_usec + b.ru_stime.tv_usec; }
static void spawn(int *fds, int n) {
  int p[2]; pipe2(p, O_CLOEXEC);
  pid_t pid = fork();
  if (pid == 0) { char c; close(p[1]); read(p[0], &c, 1); char *argv[] = {"/bin/true", NULL}; execve("/bin/true", argv, environ); _exit(127); }
  close(p[0]);
  char buf[16]; int len = snprintf(buf, sizeof buf, "%d", pid);
  for (int i = 0; i < n; i++) if (pwrite(fds[i], buf, len, 0) != len) { perror("attach"); exit(1); }
  write(p[1], "g", 1); close(p[1]);
  int st; waitpid(pid, &st, 0);
}
static int seq;
static void cycle(int nh) {
  char d[4][256], f[1100]; int fds[4];
  int k = seq++;
  for (int i = 0; i < nh; i++) { snprintf(d[i], 256, "/sys/fs/cgroup/%s/%s/c%d", H[i], parent, k); if (mkdir(d[i], 0755)) { perror("mkdir"); exit(1); } }
  for (int i = 0; i < nh && F[i]; i++) { snprintf(f, sizeof f, "%s/%s", d[i], F[i]); int fd = open(f, O_WRONLY|O_CLOEXEC); write(fd, V[i], strlen(V[i])); close(fd); }
  for (int i = 0; i < nh; i++) { snprintf(f, sizeof f, "%s/tasks", d[i]); fds[i] = open(f, O_WRONLY|O_CLOEXEC); }
  spawn(fds, nh);
  for (int i = 0; i < nh; i++) close(fds[i]);
  for (int i = 0; i < nh; i++) if (rmdir(d[i])) { perror("rmdir"); exit(1); }
}
static int cmp(const void *a, const void *b) { double x = *(double*)a, y = *(double*)b; return x < y ? -1 : x > y; }
int main(int argc, char **argv) {
  int blocks = 8, per = 200;
  snprintf(parent, sizeof parent, "isolate-test-cref%d", getpid());
  for (int i = 0; i < 4; i++) { char p[256]; snprintf(p, 256, "/sys/fs/cgroup/%s/%s", H[i], parent); mkdir(p, 0755); }
  const char *names[] = {"plain", "3 hierarchies", "4 hierarchies"};
  int nhs[] = {0, 3, 4};
  double med[3][8], cpus[3][8], xs[200];
  for (int b = 0; b < blocks; b++)
    for (int c = 0; c < 3; c++) {
      double c0 = cpu();
      for (int i = 0; i < per; i++) { double t = now(); if (nhs[c]) cycle(nhs[c]); else spawn(NULL, 0); xs[i] = now() - t; }
      cpus[c][b] = (cpu() - c0) / per;
      qsort(xs, per, sizeof *xs, cmp); med[c][b] = xs[per / 2];
    }
  double m[3], cp[3];
  for (int c = 0; c < 3; c++) { qsort(med[c], blocks, sizeof(double), cmp); m[c] = med[c][blocks / 2]; double s = 0; for (int b = 0; b < blocks; b++) s += cpus[c][b]; cp[c] = s / blocks; }
  for (int c = 0; c < 3; c++) printf("%-14s wall %6.0f us  cpu %6.0f us  added wall %5.0f  added cpu %5.0f\n", names[c], m[c], cp[c], m[c] - m[0], cp[c] - cp[0]);
  for (int i = 0; i < 4; i++) { char p[256]; snprintf(p, 256, "/sys/fs/cgroup/%s/%s", H[i], parent); rmdir(p); }
  return 0;
}
