/* An attacker's helper for the --serialize tests: runs a command (the wrapper) with a
 * terminal the caller controls, and uses that terminal to freeze whatever writes to it or
 * belongs to its foreground process group. Run as the attacking user.
 *
 *   stall xoff CMD ARGS...          stderr is a pty slave whose output is suspended
 *                                   (tcflow TCOOFF): any write to it blocks
 *   stall tstp CMD ARGS...          CMD runs in the foreground of a new session on a pty;
 *                                   a line on our stdin makes us type ^Z (SIGTSTP from the
 *                                   terminal to the foreground process group)
 *   stall stop INODE TRIES CMD...   SIGSTOP (allowed: our real uid) a fresh CMD at a random
 *                                   moment, up to TRIES times, until it is caught holding a
 *                                   flock on INODE (/proc/locks) before it has forked
 * Prints "started PID" ("holding PID" for stop) and keeps everything as it is until killed. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static void fail(const char *what) { fprintf(stderr, "stall: %s: %s\n", what, strerror(errno)); exit(2); }

static int holds_flock(pid_t pid, unsigned long inode) {
    FILE *f = fopen("/proc/locks", "r");
    if (!f) fail("/proc/locks");
    char line[256];
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        int p;
        unsigned long ino;
        char kind[16];
        if (sscanf(line, "%*d: %15s %*s %*s %d %*x:%*x:%lu", kind, &p, &ino) == 3 && strcmp(kind, "FLOCK") == 0 && p == pid && ino == inode) found = 1;
    }
    fclose(f);
    return found;
}

static int has_child(pid_t pid) {
    DIR *d = opendir("/proc");
    if (!d) fail("/proc");
    struct dirent *e;
    int found = 0;
    while ((e = readdir(d))) {
        char path[300], buf[4096];
        snprintf(path, sizeof path, "/proc/%s/status", e->d_name);
        int fd = open(path, O_RDONLY);
        if (fd < 0) continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0) continue;
        buf[n] = 0;
        char *pp = strstr(buf, "\nPPid:");
        if (pp && atoi(pp + 7) == pid) found = 1;
    }
    closedir(d);
    return found;
}

static int stop_race(unsigned long inode, long tries, char **cmd) {
    srand((unsigned)getpid());
    long spin_ns = 500000; /* adapted: later when we stop it too early, earlier when too late */
    for (long i = 0; i < tries; i++) {
        pid_t pid = fork();
        if (pid < 0) fail("fork");
        if (pid == 0) {
            int null = open("/dev/null", O_RDWR);
            dup2(null, 1);
            dup2(null, 2);
            execv(cmd[0], cmd);
            _exit(127);
        }
        struct timespec start, now;
        clock_gettime(CLOCK_MONOTONIC, &start);
        long target = spin_ns + (long)(rand() % 20000) - 10000;
        do clock_gettime(CLOCK_MONOTONIC, &now);
        while ((now.tv_sec - start.tv_sec) * 1000000000L + (now.tv_nsec - start.tv_nsec) < target);
        kill(pid, SIGSTOP);
        int status;
        if (waitpid(pid, &status, WUNTRACED) == pid && WIFSTOPPED(status)) {
            int locked = holds_flock(pid, inode), forked = has_child(pid);
            if (locked && !forked) {
                printf("holding %d after %ld tries\n", (int)pid, i + 1);
                for (;;) pause();
            }
            spin_ns += forked ? -7000 : 5000;
            if (spin_ns < 0) spin_ns = 0;
        }
        kill(pid, SIGKILL);
        kill(pid, SIGCONT);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    }
    printf("no luck after %ld tries\n", tries);
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (strcmp(argv[1], "stop") == 0) return argc < 5 ? 2 : stop_race(strtoul(argv[2], NULL, 10), atol(argv[3]), argv + 4);
    int tstp = strcmp(argv[1], "tstp") == 0;
    if (!tstp && strcmp(argv[1], "xoff") != 0) return 2;
    char **cmd = argv + 2;
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) fail("pty");
    const char *name = ptsname(master);
    if (!name) fail("ptsname");
    pid_t pid = fork();
    if (pid < 0) fail("fork");
    if (pid == 0) {
        if (tstp && setsid() < 0) fail("setsid");
        int slave = open(name, O_RDWR | (tstp ? 0 : O_NOCTTY));
        if (slave < 0) fail("open slave");
        if (tstp) {
            if (ioctl(slave, TIOCSCTTY, 0) != 0) fail("TIOCSCTTY");
            if (dup2(slave, 0) < 0 || dup2(slave, 1) < 0) fail("dup2");
            /* As a shell runs a foreground job: its own process group, whose parent (this
               session leader) keeps it from being orphaned (stop signals to an orphaned
               group are discarded). */
            pid_t job = fork();
            if (job < 0) fail("fork");
            if (job > 0) {
                int status;
                while (waitpid(job, &status, WUNTRACED) >= 0 || errno == EINTR) {}
                _exit(0);
            }
            if (setpgid(0, 0) != 0) fail("setpgid");
            signal(SIGTTOU, SIG_IGN);
            if (tcsetpgrp(slave, getpgrp()) != 0) fail("tcsetpgrp");
            signal(SIGTTOU, SIG_DFL);
        } else if (tcflow(slave, TCOOFF) != 0) fail("tcflow");
        if (dup2(slave, 2) < 0) fail("dup2");
        close(slave);
        close(master);
        execv(cmd[0], cmd);
        fail("execv");
    }
    printf("started %d\n", (int)pid);
    if (tstp) {
        char go;
        if (read(0, &go, 1) != 1) fail("read stdin");
        char ctrl_z = 0x1a;
        if (write(master, &ctrl_z, 1) != 1) fail("write ^Z");
        printf("sent ^Z\n");
    }
    for (;;) pause(); /* keep the terminal (and the stopped or blocked processes) as they are */
}
