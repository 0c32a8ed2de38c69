/* An attacker's probe for the wrapper tests: run as the calling user against a pid, it tries
 * every way to reach into that process and prints one "name=ok:..." or "name=err:ERRNO"
 * line per attempt. Never prints secrets itself: the test compares the output. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static void read_file(const char *name, int pid) {
    char path[64], buf[8192];
    snprintf(path, sizeof path, "/proc/%d/%s", pid, name);
    int fd = open(path, O_RDONLY);
    if (fd < 0) { printf("%s=err:%s\n", name, strerrorname_np(errno)); return; }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n < 0) { printf("%s=err:%s\n", name, strerrorname_np(errno)); close(fd); return; }
    for (ssize_t i = 0; i < n; i++) if (buf[i] == '\0' || buf[i] == '\n') buf[i] = ' ';
    buf[n] = '\0';
    printf("%s=ok:%s\n", name, buf);
    close(fd);
}

int main(int argc, char **argv) {
    if (argc != 2 && argc != 3) return 2;
    int try_ptrace = argc == 2; /* "probe PID noptrace" for controls: leave our own process alone */
    int pid = atoi(argv[1]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    read_file("environ", pid);
    read_file("cmdline", pid);
    read_file("mem", pid);
    read_file("maps", pid);
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", pid);
    DIR *d = opendir(path);
    if (d) { printf("fd=ok\n"); closedir(d); } else printf("fd=err:%s\n", strerrorname_np(errno));
    if (kill(pid, 0) == 0) printf("kill=ok\n"); else printf("kill=err:%s\n", strerrorname_np(errno));
    char byte;
    struct iovec local = {&byte, 1}, remote = {(void *)0x10000, 1};
    if (process_vm_readv(pid, &local, 1, &remote, 1, 0) >= 0) printf("vmread=ok\n");
    else printf("vmread=err:%s\n", strerrorname_np(errno));
    if (!try_ptrace) return 0;
    if (ptrace(PTRACE_SEIZE, pid, NULL, NULL) == 0) {
        printf("ptrace=ok\n");
        ptrace(PTRACE_DETACH, pid, NULL, NULL);
    } else printf("ptrace=err:%s\n", strerrorname_np(errno));
    return 0;
}
