/*
 * homelab-secrets-user — privilege wrapper for per-user mapfile secrets.
 *
 * Installed SUID+SGID to an unprivileged service account (the "svc" account, e.g.
 * homelab-secrets:homelab-secrets). Any user runs it; it lets them fetch exactly the
 * entries the root-owned mapfile assigns to them, without ever being able to read the
 * shared token. Style: NixOS security.wrappers — tiny, every syscall checked, nothing
 * clever. Any failure prints "homelab-secrets-user: ..." and exits non-zero before
 * anything is written.
 *
 * Build-time settings (never taken from the environment or PATH):
 *   -DHS_NODE="/abs/node"      the node binary
 *   -DHS_CLI="/abs/cli.js"     the homelab-secrets CLI entry point
 *   -DHS_CONFIG_DIR="/etc/homelab-secrets"
 *   -DHS_SERVICE_USER="name"   only for a SUID-root install (see below); optional
 *   -DHS_LOCK_TIMEOUT_S=300    how long --serialize waits (tests use a short one)
 *   -DHS_FETCHER_LIMIT_S=290   the fetcher's alarm(), below the lock wait
 *   -DHS_STATE_DIR="/var/lib/homelab-secrets-user"  the service account's 0700 state
 *
 * Flow
 *   1. Sanitise: fds 0-2 open in their direction (else /dev/null), every other fd closed,
 *      environment cleared (JOURNAL_STREAM is kept only if it matches [0-9]+:[0-9]+), umask
 *      077, cwd "/", RLIMIT_CORE 0, signal mask empty, dispositions default; hard resource
 *      limits at least what node needs (else 78), soft ones raised to them. Then (except
 *      for --build-info) node and the CLI tree must be root's (check_tree, else 78), and the
 *      set-id switch must have happened (no_new_privs, nosuid: 78).
 *   2. Parse argv against an allowlist (both -flag and --flag, --flag=value):
 *        -v --verbose --cleanup --serialize --untagged --tags T --deadline S
 *        --version --help (these two just run the CLI as the caller, unprivileged)
 *        --build-info (prints the built-in paths, for doctor; runs nothing)
 *        --api-key-path P --map-file-path P, env OP_API_KEY_PATH / OP_MAP_FILE_PATH:
 *          refused (exit 77) unless the caller is root; for root the named files are
 *          opened with root's rights instead of the defaults.
 *      Anything else: exit 64.
 *   3. Open HS_CONFIG_DIR/mapfile (required), token and config.json (each optional: only
 *      ENOENT means "absent") with the service account's rights, and check them with
 *      fstat: regular files; mapfile and config.json owned by root and not group/other
 *      writable (this is also op-secret-manager's "root rule"); token owned by the service
 *      account (or root) and not accessible to group/others. Failure: exit 78.
 *   4. Two pipes (values, log), fork.
 *      child  = FETCHER: its stderr becomes the log pipe (the writer relays it to the
 *               caller's stderr); becomes the service account completely (see "Groups"),
 *               verified with getresuid/getresgid; setsid(); with --serialize takes the
 *               lock (below); execs node with the fds below (it stops by itself when its
 *               parent, the writer, goes away).
 *      parent = WRITER: closes mapfile/token/config fds, becomes the caller completely
 *               (setresgid, setresuid, verified), execs node reading the pipes.
 *   5. --serialize, in the fetcher: flock(LOCK_EX|LOCK_NB) on the mapfile, polled every
 *      second, a line every 5 s, give up after 300 s (exit 75); the writer going away
 *      (SIGINT/SIGTERM to it) ends the wait. The fetcher releases the lock (closes fd 3)
 *      once the values are resolved.
 *      The lock is held only by a process the caller can neither signal nor block: taken
 *      after the drop to the service account (before it, our real uid is the caller's, who
 *      may SIGSTOP us), in a session of its own (no ^Z, SIGTTOU or hangup from the caller's
 *      terminal), writing only to the log pipe, non-blocking (never to a caller's fd that
 *      could block: a terminal with output suspended, a full pipe, a FUSE file).
 *
 * Groups. A process that is SUID to a NON-root account has no CAP_SETGID, so setgroups()
 * fails with EPERM. If we can get root's rights (SUID-root install, or the caller is root
 * so the real uid is 0), the fetcher drops all supplementary groups with setgroups(0,NULL).
 * Otherwise the fetcher keeps the caller's supplementary groups: it cannot shed them
 * without privilege. That does not let the caller reach it: ptrace, /proc/PID/mem,
 * environ, fd/ need the caller's uid to equal the target's real, effective AND saved uid
 * and its gid to equal the target's real, effective and saved gid (supplementary groups
 * are not consulted), and signals need the caller's uid to match the target's real or
 * saved uid. After the drop all three uids and gids are the service account's. The
 * extra groups only grant the fetcher (our own code) file access the caller has anyway.
 *
 * Wrapper <-> node protocol (version 1): described in docs/ARCHITECTURE.md ("Wrapper
 *   protocol"); the names and descriptor numbers are in helper/src/user/protocol.ts, and
 *   tests/unit/protocol.test.ts checks that this file agrees.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#ifndef HS_NODE
#error "build with -DHS_NODE=\"/absolute/path/to/node\""
#endif
#ifndef HS_CLI
#error "build with -DHS_CLI=\"/absolute/path/to/cli.js\""
#endif
#ifndef HS_CONFIG_DIR
#define HS_CONFIG_DIR "/etc/homelab-secrets"
#endif

#define EX_USAGE 64
#define EX_SOFTWARE 70
#define EX_OSERR 71
#define EX_TEMPFAIL 75
#define EX_NOPERM 77
#define EX_CONFIG 78

#define FD_MAPFILE 3
#define FD_TOKEN 4
#define FD_CONFIG 5
#define FD_OUT 6
#define FD_IN 3
#define FD_LOG 4
#ifndef HS_LOCK_TIMEOUT_S
#define HS_LOCK_TIMEOUT_S 300 /* tests build with a shorter one */
#endif
/*
 * The fetcher's hard time limit, from the moment it has the --serialize lock (or from the
 * fork without it): alarm(), which survives execve, and whose default action kills node
 * even before any JavaScript runs, even inside a frozen cgroup (v2). The caller can neither
 * cancel it nor signal the service account. Below the lock wait, so a waiter always
 * outlasts one stuck holder; node caps --deadline to fit (HS_FETCHER_LIMIT_S in its env).
 */
#ifndef HS_FETCHER_LIMIT_S
#define HS_FETCHER_LIMIT_S (HS_LOCK_TIMEOUT_S - 10)
#endif
_Static_assert(HS_FETCHER_LIMIT_S >= 1 && HS_FETCHER_LIMIT_S < HS_LOCK_TIMEOUT_S, "HS_FETCHER_LIMIT_S must be at least 1 and below HS_LOCK_TIMEOUT_S");
#ifndef HS_STATE_DIR
#define HS_STATE_DIR "/var/lib/homelab-secrets-user" /* the service account's, 0700 */
#endif

#define MAX_FORWARDED 16

static const char *prog = "homelab-secrets-user";

static void die(int code, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
static void die(int code, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    _exit(code);
}

#define DIE_ERRNO(code, what) die(code, "%s: %s", what, strerror(errno))

/* ---------- step 1: sanitise the inherited process state ---------- */

/*
 * fds 0-2 open and usable in their direction, else /dev/null. For a set-id program glibc
 * opens a closed 0-2 itself, on /dev/full in the wrong direction (stderr read-only), so a
 * caller who closed fd 2 would make every log line fail and a successful run exit 1.
 */
static void ensure_std_fds(void) {
    for (int fd = 0; fd <= 2; fd++) {
        int fl = fcntl(fd, F_GETFL);
        if (fl == -1 && errno != EBADF) _exit(EX_OSERR);
        int mode = fl & O_ACCMODE;
        if (fl != -1 && (mode == O_RDWR || mode == (fd == 0 ? O_RDONLY : O_WRONLY))) continue;
        int n = open("/dev/null", O_RDWR | O_NOCTTY);
        if (n == -1) _exit(EX_OSERR);
        if (n == fd) continue; /* it was closed: the lowest free fd is the one we checked */
        if (dup2(n, fd) != fd || close(n) != 0) _exit(EX_OSERR);
    }
}

static void close_other_fds(void) {
    if (syscall(SYS_close_range, 3U, ~0U, 0U) == 0) return;
    if (errno != ENOSYS && errno != EINVAL) DIE_ERRNO(EX_OSERR, "close_range");
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) DIE_ERRNO(EX_OSERR, "getrlimit");
    rlim_t max = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 65536 ? 65536 : rl.rlim_cur;
    for (rlim_t fd = 3; fd < max; fd++)
        if (close((int)fd) != 0 && errno != EBADF) DIE_ERRNO(EX_OSERR, "close");
}

static void reset_signals(void) {
    sigset_t empty;
    if (sigemptyset(&empty) != 0) DIE_ERRNO(EX_OSERR, "sigemptyset");
    if (sigprocmask(SIG_SETMASK, &empty, NULL) != 0) DIE_ERRNO(EX_OSERR, "sigprocmask");
    for (int sig = 1; sig < SIGRTMIN; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        if (signal(sig, SIG_DFL) == SIG_ERR && errno != EINVAL) DIE_ERRNO(EX_OSERR, "signal");
    }
}

/* Keep JOURNAL_STREAM only in its documented "dev:inode" form. */
static char journal_stream[64];
static void save_journal_stream(void) {
    const char *v = getenv("JOURNAL_STREAM");
    if (!v) return;
    size_t len = strlen(v), colons = 0;
    if (len == 0 || len > 40) return;
    for (size_t i = 0; i < len; i++) {
        if (v[i] == ':') colons++;
        else if (v[i] < '0' || v[i] > '9') return;
    }
    if (colons != 1 || v[0] == ':' || v[len - 1] == ':') return;
    int n = snprintf(journal_stream, sizeof journal_stream, "JOURNAL_STREAM=%s", v);
    if (n < 0 || (size_t)n >= sizeof journal_stream) journal_stream[0] = '\0';
}

/*
 * Resource limits are inherited from the caller, and the fetcher cannot raise a hard one
 * (no CAP_SYS_RESOURCE). A low RLIMIT_NPROC (it counts the service account's processes and
 * threads) makes node wait forever for threads it cannot create, before any JavaScript
 * runs. So: refuse hard limits below what node needs, and raise each soft limit to the
 * hard one (RLIMIT_STACK only up to 8 MiB: an unlimited stack changes the memory layout).
 * 78: the caller's session is misconfigured; retrying with the same limits cannot help.
 */
static const struct limit_floor {
    int resource;
    const char *name;
    rlim_t floor;
} limit_floors[] = {
    {RLIMIT_NPROC, "RLIMIT_NPROC", 128},
    {RLIMIT_NOFILE, "RLIMIT_NOFILE", 256},
    {RLIMIT_AS, "RLIMIT_AS", (rlim_t)2 << 30}, /* fits a 32-bit rlim_t too */
    {RLIMIT_DATA, "RLIMIT_DATA", (rlim_t)1 << 30},
    {RLIMIT_STACK, "RLIMIT_STACK", (rlim_t)2 << 20},
    {RLIMIT_CPU, "RLIMIT_CPU", 60},
    {RLIMIT_FSIZE, "RLIMIT_FSIZE", (rlim_t)64 << 20},
};

static void check_limits(void) {
    for (size_t i = 0; i < sizeof limit_floors / sizeof limit_floors[0]; i++) {
        const struct limit_floor *l = &limit_floors[i];
        struct rlimit rl;
        if (getrlimit(l->resource, &rl) != 0) DIE_ERRNO(EX_OSERR, "getrlimit");
        if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < l->floor)
            die(EX_CONFIG, "your %s hard limit %llu is below the %llu node needs; raise it (prlimit, ulimit -H, limits.conf) and retry",
                l->name, (unsigned long long)rl.rlim_max, (unsigned long long)l->floor);
        rlim_t want = rl.rlim_max;
        if (l->resource == RLIMIT_STACK && (want == RLIM_INFINITY || want > ((rlim_t)8 << 20))) want = (rlim_t)8 << 20;
        if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
            rl.rlim_cur = want;
            if (setrlimit(l->resource, &rl) != 0) DIE_ERRNO(EX_OSERR, "setrlimit");
        }
    }
}

/*
 * Under no_new_privs (systemd's NoNewPrivileges=yes, and every sandboxing option that
 * implies it) execve ignores the set-id bits: we would run as the caller and fail later on
 * "cannot open mapfile: Permission denied". Say what happened instead.
 */
static void check_set_id_took_effect(void) {
    int nnp = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
    if (nnp == -1) DIE_ERRNO(EX_OSERR, "prctl(PR_GET_NO_NEW_PRIVS)");
    int failed;
    int fd = open("/proc/self/exe", O_PATH | O_CLOEXEC);
    struct stat st;
    if (fd != -1) {
        if (fstat(fd, &st) != 0) DIE_ERRNO(EX_OSERR, "fstat /proc/self/exe");
        if (close(fd) != 0) DIE_ERRNO(EX_OSERR, "close");
        failed = ((st.st_mode & S_ISUID) && geteuid() != st.st_uid) || ((st.st_mode & S_ISGID) && getegid() != st.st_gid);
    } else {
        /* No /proc: all we can tell is that no_new_privs is on and nothing changed. */
        failed = nnp == 1 && geteuid() == getuid() && getegid() == getgid();
    }
    if (!failed) return;
    if (nnp == 1)
        die(EX_CONFIG, "no_new_privs is set (NoNewPrivileges=yes, or a unit option implying it), so the set-user-ID/set-group-ID "
                       "switch to the service account did not happen; run homelab-secrets-user from a unit without it");
    die(EX_CONFIG, "the set-user-ID/set-group-ID switch to the service account did not happen (is the file system mounted nosuid?)");
}

/*
 * ---------- the tree node runs from ----------
 * Node and the CLI run with the service account's rights and the token: whoever can change
 * a file node loads, or a directory on the way to one, owns every caller's run. So before
 * anything is opened: the node binary, the CLI entry, every ancestor directory of both (as
 * written and as resolved), and every file and directory under the CLI's directory and
 * under the package root's node_modules (the package root: the nearest ancestor with a
 * package.json, which is checked too) must be owned by root and not writable by group or
 * others. A root-owned sticky ancestor (/tmp, /nix/store) is allowed: nobody but root can
 * replace the root-owned entry below it. Symlinks inside the walked trees must point
 * inside the package root. 78, one line, naming the path.
 */
#define MAX_TREE_DEPTH 64

static void check_entry(const char *path, const struct stat *st, int ancestor) {
    if (st->st_uid != 0) die(EX_CONFIG, "unsafe %s: owned by uid %u, not root (node and the CLI must be root's)", path, (unsigned)st->st_uid);
    if (S_ISLNK(st->st_mode) || !(st->st_mode & 022)) return;
    if (ancestor && S_ISDIR(st->st_mode) && (st->st_mode & S_ISVTX)) return;
    die(EX_CONFIG, "unsafe %s: mode %04o, writable by group or others (node and the CLI must be root's)", path, (unsigned)(st->st_mode & 07777));
}

/* "/", "/a", "/a/b" ... then the path itself; symlinks along the way must be root's. */
static void check_ancestors(const char *path) {
    char buf[PATH_MAX];
    if (path[0] != '/' || strlen(path) >= sizeof buf) die(EX_CONFIG, "bad built-in path %s", path);
    strcpy(buf, path);
    struct stat st;
    if (lstat("/", &st) != 0) DIE_ERRNO(EX_OSERR, "lstat /");
    check_entry("/", &st, 1);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char saved = *p;
        *p = '\0';
        if (lstat(buf, &st) != 0) die(EX_CONFIG, "cannot check %s: %s", buf, strerror(errno));
        check_entry(buf, &st, saved == '/');
        *p = saved;
        if (saved == '\0') return;
    }
}

/* A built-in path as written, then as resolved (realpath into out). */
static void check_built_in(const char *path, char out[PATH_MAX]) {
    check_ancestors(path);
    if (!realpath(path, out)) die(EX_CONFIG, "cannot resolve %s: %s", path, strerror(errno));
    check_ancestors(out);
}

static void walk_tree(char path[PATH_MAX], const char *root, int depth) {
    if (depth > MAX_TREE_DEPTH) die(EX_CONFIG, "unsafe %s: nested more than %d levels", path, MAX_TREE_DEPTH);
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd == -1) die(EX_CONFIG, "cannot check %s: %s", path, strerror(errno));
    DIR *d = fdopendir(fd);
    if (!d) DIE_ERRNO(EX_OSERR, "fdopendir");
    size_t len = strlen(path);
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (!e) {
            if (errno != 0) die(EX_CONFIG, "cannot read %s: %s", path, strerror(errno));
            break;
        }
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (len + 1 + strlen(e->d_name) >= PATH_MAX) die(EX_CONFIG, "unsafe %s: path too long", path);
        path[len] = '/';
        strcpy(path + len + 1, e->d_name);
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) die(EX_CONFIG, "cannot check %s: %s", path, strerror(errno));
        check_entry(path, &st, 0);
        if (S_ISDIR(st.st_mode)) walk_tree(path, root, depth + 1);
        if (S_ISLNK(st.st_mode)) {
            char target[PATH_MAX];
            size_t rl = strlen(root);
            if (!realpath(path, target) || strncmp(target, root, rl) != 0 || target[rl] != '/')
                die(EX_CONFIG, "unsafe %s: a symlink that does not stay inside %s", path, root);
        }
        path[len] = '\0';
    }
    if (closedir(d) != 0) DIE_ERRNO(EX_OSERR, "closedir");
}

static void check_tree(void) {
    char node[PATH_MAX], cli[PATH_MAX], dir[PATH_MAX], root[PATH_MAX];
    check_built_in(HS_NODE, node);
    check_built_in(HS_CLI, cli);
    struct stat st;
    if (stat(node, &st) != 0 || !S_ISREG(st.st_mode)) die(EX_CONFIG, "node %s is not a regular file", node);
    if (stat(cli, &st) != 0 || !S_ISREG(st.st_mode)) die(EX_CONFIG, "the CLI %s is not a regular file", cli);
    strcpy(dir, cli);
    *strrchr(dir, '/') = '\0'; /* cli is absolute and resolved: it has a slash, and a dir before it */
    strcpy(root, dir);
    for (;;) {
        char probe[PATH_MAX];
        if (snprintf(probe, sizeof probe, "%s/package.json", root) >= (int)sizeof probe) die(EX_CONFIG, "path too long");
        if (lstat(probe, &st) == 0) {
            check_entry(probe, &st, 0);
            break;
        }
        if (errno != ENOENT) die(EX_CONFIG, "cannot check %s: %s", probe, strerror(errno));
        char *slash = strrchr(root, '/');
        if (slash == root) { /* none up to /: only the CLI's directory is node's */
            strcpy(root, dir);
            break;
        }
        *slash = '\0';
    }
    if (lstat(dir, &st) != 0) die(EX_CONFIG, "cannot check %s: %s", dir, strerror(errno));
    check_entry(dir, &st, 0); /* not even sticky: nobody may add a module beside the CLI */
    char walk[PATH_MAX];
    strcpy(walk, dir);
    walk_tree(walk, root, 0);
    if (snprintf(walk, sizeof walk, "%s/node_modules", root) >= (int)sizeof walk) die(EX_CONFIG, "path too long");
    if (lstat(walk, &st) == 0) {
        check_entry(walk, &st, 0);
        if (S_ISDIR(st.st_mode)) walk_tree(walk, root, 0);
    } else if (errno != ENOENT) {
        die(EX_CONFIG, "cannot check %s: %s", walk, strerror(errno));
    }
}

/* ---------- step 2: argv allowlist ---------- */

struct options {
    int verbose, cleanup, serialize, untagged, info; /* info: 1 --help, 2 --version, 3 --build-info */
    const char *tags, *deadline, *api_key_path, *map_file_path;
};

static int bool_value(const char *flag, const char *inline_value) {
    if (!inline_value) return 1;
    if (strcmp(inline_value, "true") == 0 || strcmp(inline_value, "1") == 0) return 1;
    if (strcmp(inline_value, "false") == 0 || strcmp(inline_value, "0") == 0) return 0;
    die(EX_USAGE, "--%s takes no value (got \"%s\")", flag, inline_value);
}

static void parse_args(int argc, char **argv, struct options *o) {
    memset(o, 0, sizeof *o);
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (arg[0] != '-' || arg[1] == '\0') die(EX_USAGE, "unexpected argument \"%s\" (see --help)", arg);
        const char *name = arg + 1;
        if (*name == '-') name++;
        char key[32];
        const char *eq = strchr(name, '=');
        size_t klen = eq ? (size_t)(eq - name) : strlen(name);
        if (klen == 0 || klen >= sizeof key) die(EX_USAGE, "unknown option \"%s\" (see --help)", arg);
        memcpy(key, name, klen);
        key[klen] = '\0';
        const char *inline_value = eq ? eq + 1 : NULL;
        const char **slot = NULL;
        if (strcmp(key, "v") == 0 || strcmp(key, "verbose") == 0) o->verbose = bool_value("verbose", inline_value);
        else if (strcmp(key, "cleanup") == 0) o->cleanup = bool_value(key, inline_value);
        else if (strcmp(key, "serialize") == 0) o->serialize = bool_value(key, inline_value);
        else if (strcmp(key, "untagged") == 0) o->untagged = bool_value(key, inline_value);
        else if (strcmp(key, "version") == 0) o->info = 2;
        else if (strcmp(key, "help") == 0 || strcmp(key, "h") == 0) o->info = 1;
        else if (strcmp(key, "build-info") == 0) o->info = 3;
        else if (strcmp(key, "tags") == 0) slot = &o->tags;
        else if (strcmp(key, "deadline") == 0) slot = &o->deadline;
        else if (strcmp(key, "api-key-path") == 0) slot = &o->api_key_path;
        else if (strcmp(key, "map-file-path") == 0) slot = &o->map_file_path;
        else die(EX_USAGE, "unknown option \"%s\" (see --help)", arg);
        if (slot) {
            if (inline_value) *slot = inline_value;
            else if (i + 1 < argc) *slot = argv[++i];
            else die(EX_USAGE, "--%s needs a value", key);
        }
    }
}

/* ---------- privilege changes ---------- */

static void verify_ids(uid_t uid, gid_t gid) {
    uid_t r, e, s;
    gid_t rg, eg, sg;
    if (getresuid(&r, &e, &s) != 0) DIE_ERRNO(EX_OSERR, "getresuid");
    if (getresgid(&rg, &eg, &sg) != 0) DIE_ERRNO(EX_OSERR, "getresgid");
    if (r != uid || e != uid || s != uid || rg != gid || eg != gid || sg != gid)
        die(EX_NOPERM, "privilege drop did not take effect (uid %u/%u/%u gid %u/%u/%u, wanted %u/%u)",
            (unsigned)r, (unsigned)e, (unsigned)s, (unsigned)rg, (unsigned)eg, (unsigned)sg, (unsigned)uid, (unsigned)gid);
}

/*
 * Become uid:gid in real, effective and saved ids. drop_groups: also clear supplementary
 * groups, which needs root's rights: taken back first when the real uid is 0.
 */
static void become(uid_t uid, gid_t gid, int drop_groups) {
    if (drop_groups) {
        if (geteuid() != 0 && setresuid((uid_t)-1, 0, (uid_t)-1) != 0) DIE_ERRNO(EX_NOPERM, "setresuid(-1, 0, -1)");
        if (setgroups(0, NULL) != 0) DIE_ERRNO(EX_NOPERM, "setgroups(0, NULL)");
        int n = getgroups(0, NULL);
        if (n != 0) die(EX_NOPERM, "supplementary groups still present after setgroups (%d)", n);
    }
    if (setresgid(gid, gid, gid) != 0) DIE_ERRNO(EX_NOPERM, "setresgid");
    if (setresuid(uid, uid, uid) != 0) DIE_ERRNO(EX_NOPERM, "setresuid");
    verify_ids(uid, gid);
    if (uid != 0) {
        /* Paranoia as in security.wrappers: getting root back must be impossible now. */
        if (setresuid((uid_t)-1, 0, (uid_t)-1) == 0) die(EX_NOPERM, "could regain uid 0 after dropping privileges");
        if (gid != 0 && setresgid((gid_t)-1, 0, (gid_t)-1) == 0) die(EX_NOPERM, "could regain gid 0 after dropping privileges");
    }
}

/* Temporarily act with the real (root) ids to open a root caller's override path. */
static int open_as_root(const char *path) {
    uid_t euid = geteuid();
    gid_t egid = getegid();
    if (setresgid((gid_t)-1, 0, (gid_t)-1) != 0) DIE_ERRNO(EX_NOPERM, "setresgid(-1, 0, -1)");
    if (setresuid((uid_t)-1, 0, (uid_t)-1) != 0) DIE_ERRNO(EX_NOPERM, "setresuid(-1, 0, -1)");
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    int saved = errno;
    if (setresuid((uid_t)-1, euid, (uid_t)-1) != 0) DIE_ERRNO(EX_NOPERM, "setresuid(-1, euid, -1)");
    if (setresgid((gid_t)-1, egid, (gid_t)-1) != 0) DIE_ERRNO(EX_NOPERM, "setresgid(-1, egid, -1)");
    errno = saved;
    return fd;
}

/* ---------- step 3: host configuration files ---------- */

enum kind { MAPFILE, TOKEN, CONFIG };

static int open_config(const char *path, enum kind kind, int optional, int as_root, uid_t svc_uid) {
    int fd = as_root ? open_as_root(path) : open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd == -1) {
        if (optional && errno == ENOENT) return -1;
        die(EX_CONFIG, "cannot open %s: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) DIE_ERRNO(EX_OSERR, "fstat");
    if (!S_ISREG(st.st_mode)) die(EX_CONFIG, "%s is not a regular file", path);
    if (kind == TOKEN) {
        if (st.st_uid != svc_uid && st.st_uid != 0)
            die(EX_CONFIG, "unsafe token %s: owned by uid %u, not the service account", path, (unsigned)st.st_uid);
        if (st.st_mode & 077) die(EX_CONFIG, "unsafe token %s: mode %03o, must not be accessible to group or others", path, (unsigned)(st.st_mode & 0777));
    } else {
        if (st.st_uid != 0) die(EX_CONFIG, "unsafe %s: owned by uid %u, must be owned by root", path, (unsigned)st.st_uid);
        if (st.st_mode & 022) die(EX_CONFIG, "unsafe %s: mode %03o, must not be writable by group or others", path, (unsigned)(st.st_mode & 0777));
    }
    return fd;
}

/* ---------- step 5: --serialize (in the fetcher, as the service account) ---------- */

static void wait_for_lock(int fd, pid_t writer_pid) {
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) return;
    if (errno != EWOULDBLOCK) DIE_ERRNO(EX_OSERR, "flock");
    fprintf(stderr, "%s: waiting for another run to finish (--serialize)\n", prog);
    for (int waited = 1;; waited++) {
        struct timespec second = {1, 0};
        if (nanosleep(&second, NULL) != 0 && errno != EINTR) DIE_ERRNO(EX_OSERR, "nanosleep");
        /* The caller may not signal us: stopping the writer is how a wait is cancelled. */
        if (getppid() != writer_pid) die(EX_TEMPFAIL, "the writer went away while waiting for the lock; nothing written");
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) return;
        if (errno != EWOULDBLOCK) DIE_ERRNO(EX_OSERR, "flock");
        if (waited >= HS_LOCK_TIMEOUT_S) die(EX_TEMPFAIL, "gave up after %d s waiting for another run to finish; nothing written", waited);
        if (waited % 5 == 0) fprintf(stderr, "%s: still waiting for another run (%d s)\n", prog, waited);
    }
}

/* ---------- exec ---------- */

static void move_fd(int from, int to) {
    if (from == to) {
        int flags = fcntl(to, F_GETFD);
        if (flags == -1 || fcntl(to, F_SETFD, flags & ~FD_CLOEXEC) == -1) DIE_ERRNO(EX_OSERR, "fcntl");
        return;
    }
    if (dup2(from, to) != to) DIE_ERRNO(EX_OSERR, "dup2");
}

/* Park fds above the target range so moving one never overwrites another. */
static int park(int fd) {
    if (fd < 0) return fd;
    int n = fcntl(fd, F_DUPFD_CLOEXEC, 10);
    if (n == -1) DIE_ERRNO(EX_OSERR, "fcntl(F_DUPFD_CLOEXEC)");
    if (close(fd) != 0) DIE_ERRNO(EX_OSERR, "close");
    return n;
}

static void devnull_to(int fd) {
    int n = open("/dev/null", O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (n == -1) DIE_ERRNO(EX_OSERR, "open /dev/null");
    move_fd(n, fd);
    if (n != fd && close(n) != 0) DIE_ERRNO(EX_OSERR, "close");
}

static char env_uid[48], env_gid[48], env_user[300], env_mapfile[4200], env_writer[48];

static void run_node(const struct options *o, const char *role, char *const extra_env[]) {
    char *argv[8 + MAX_FORWARDED];
    int a = 0;
    argv[a++] = (char *)HS_NODE;
    argv[a++] = (char *)HS_CLI;
    argv[a++] = (char *)"user";
    if (o->info) {
        argv[a++] = o->info == 2 ? (char *)"--version" : (char *)"--help";
    } else {
        if (o->verbose) argv[a++] = (char *)"--verbose";
        if (o->cleanup) argv[a++] = (char *)"--cleanup";
        if (o->serialize) argv[a++] = (char *)"--serialize";
        if (o->untagged) argv[a++] = (char *)"--untagged";
        /* One element each, so a value such as "--cleanup" can never be read as a flag. */
        static char tags_arg[4200], deadline_arg[64];
        if (o->tags) {
            if (snprintf(tags_arg, sizeof tags_arg, "--tags=%s", o->tags) >= (int)sizeof tags_arg) die(EX_USAGE, "--tags value too long");
            argv[a++] = tags_arg;
        }
        if (o->deadline) {
            if (snprintf(deadline_arg, sizeof deadline_arg, "--deadline=%s", o->deadline) >= (int)sizeof deadline_arg) die(EX_USAGE, "--deadline value too long");
            argv[a++] = deadline_arg;
        }
    }
    argv[a] = NULL;

    char *envp[16];
    int e = 0;
    envp[e++] = (char *)"HS_WRAPPER=1";
    if (role) {
        static char env_role[32];
        if (snprintf(env_role, sizeof env_role, "HS_ROLE=%s", role) >= (int)sizeof env_role) die(EX_SOFTWARE, "role");
        envp[e++] = env_role;
        envp[e++] = env_uid;
        envp[e++] = env_gid;
        envp[e++] = env_user;
        envp[e++] = env_mapfile;
    }
    for (int i = 0; extra_env && extra_env[i]; i++) envp[e++] = extra_env[i];
    if (journal_stream[0]) envp[e++] = journal_stream;
    envp[e] = NULL;
    execve(HS_NODE, argv, envp);
    DIE_ERRNO(EX_OSERR, "execve " HS_NODE);
}

int main(int argc, char **argv) {
    ensure_std_fds();
    close_other_fds();
    save_journal_stream();
    const char *env_api_key = getenv("OP_API_KEY_PATH");
    const char *env_map_file = getenv("OP_MAP_FILE_PATH");
    /* Copy before clearenv: these point into the old environment. */
    static char env_api_key_copy[4096], env_map_file_copy[4096];
    if (env_api_key) {
        if (strlen(env_api_key) >= sizeof env_api_key_copy) die(EX_USAGE, "OP_API_KEY_PATH too long");
        strcpy(env_api_key_copy, env_api_key);
        env_api_key = env_api_key_copy;
    }
    if (env_map_file) {
        if (strlen(env_map_file) >= sizeof env_map_file_copy) die(EX_USAGE, "OP_MAP_FILE_PATH too long");
        strcpy(env_map_file_copy, env_map_file);
        env_map_file = env_map_file_copy;
    }
    if (clearenv() != 0) die(EX_OSERR, "clearenv failed");
    umask(077);
    if (chdir("/") != 0) DIE_ERRNO(EX_OSERR, "chdir /");
    struct rlimit nocore = {0, 0};
    if (setrlimit(RLIMIT_CORE, &nocore) != 0) DIE_ERRNO(EX_OSERR, "setrlimit(RLIMIT_CORE)");
    reset_signals();
    check_limits();

    uid_t caller_uid = getuid(), start_euid = geteuid();
    gid_t caller_gid = getgid(), start_egid = getegid();

    struct options o;
    parse_args(argc, argv, &o);

    if (o.info == 3) {
        /* What this binary was built against, for `homelab-secrets doctor`; nothing runs. */
        become(caller_uid, caller_gid, 0);
        if (printf("node=%s\ncli=%s\nconfig-dir=%s\nstate-dir=%s\n", HS_NODE, HS_CLI, HS_CONFIG_DIR, HS_STATE_DIR) < 0 || fflush(stdout) != 0)
            DIE_ERRNO(EX_OSERR, "stdout");
        return 0;
    }
    check_tree();
    if (o.info) {
        /* --help / --version: nothing privileged; run the CLI as the caller. */
        become(caller_uid, caller_gid, 0);
        run_node(&o, NULL, NULL);
    }

    check_set_id_took_effect();

    /* Who is the service account? The SUID/SGID target, or for a SUID-root install the
       account named at build time. */
    uid_t svc_uid;
    gid_t svc_gid;
    if (start_euid == 0) {
#ifdef HS_SERVICE_USER
        struct passwd *sp = getpwnam(HS_SERVICE_USER);
        if (!sp) die(EX_CONFIG, "service account \"%s\" does not exist", HS_SERVICE_USER);
        svc_uid = sp->pw_uid;
        svc_gid = sp->pw_gid;
        if (svc_uid == 0) die(EX_CONFIG, "the service account must not be root");
#else
        die(EX_CONFIG, "installed SUID root but built without -DHS_SERVICE_USER; install it SUID+SGID to the service account");
#endif
    } else {
        svc_uid = start_euid;
        struct passwd *sp = getpwuid(svc_uid);
        if (!sp) die(EX_CONFIG, "the service account (uid %u) has no passwd entry", (unsigned)svc_uid);
        svc_gid = sp->pw_gid;
        if (start_egid != svc_gid)
            die(EX_CONFIG, "not installed SGID to the service account's group (egid %u, expected %u)", (unsigned)start_egid, (unsigned)svc_gid);
    }
    int can_drop_groups = start_euid == 0 || caller_uid == 0;

    errno = 0;
    struct passwd *cp = getpwuid(caller_uid);
    if (!cp) die(EX_NOPERM, "your uid %u has no passwd entry", (unsigned)caller_uid);
    if (snprintf(env_user, sizeof env_user, "HS_CALLER_USER=%s", cp->pw_name) >= (int)sizeof env_user) die(EX_NOPERM, "user name too long");
    if (snprintf(env_uid, sizeof env_uid, "HS_CALLER_UID=%u", (unsigned)caller_uid) >= (int)sizeof env_uid) die(EX_SOFTWARE, "uid");
    if (snprintf(env_gid, sizeof env_gid, "HS_CALLER_GID=%u", (unsigned)caller_gid) >= (int)sizeof env_gid) die(EX_SOFTWARE, "gid");

    /* Path overrides: root only (anyone else could map their name to any item). */
    const char *api_key_path = o.api_key_path ? o.api_key_path : env_api_key;
    const char *map_file_path = o.map_file_path ? o.map_file_path : env_map_file;
    if ((api_key_path || map_file_path) && caller_uid != 0)
        die(EX_NOPERM, "--api-key-path, --map-file-path, OP_API_KEY_PATH and OP_MAP_FILE_PATH are honoured only for root "
                       "or when homelab-secrets runs unprivileged (without this wrapper)");
    if ((api_key_path && api_key_path[0] != '/') || (map_file_path && map_file_path[0] != '/'))
        die(EX_USAGE, "path overrides must be absolute");

    const char *mapfile = map_file_path ? map_file_path : HS_CONFIG_DIR "/mapfile";
    const char *token = api_key_path ? api_key_path : HS_CONFIG_DIR "/token";
    if (snprintf(env_mapfile, sizeof env_mapfile, "HS_MAPFILE_PATH=%s", mapfile) >= (int)sizeof env_mapfile) die(EX_USAGE, "mapfile path too long");

    int map_fd = open_config(mapfile, MAPFILE, 0, map_file_path != NULL, svc_uid);
    int token_fd = open_config(token, TOKEN, 1, api_key_path != NULL, svc_uid);
    int config_fd = open_config(HS_CONFIG_DIR "/config.json", CONFIG, 1, 0, svc_uid);

    int p[2], lp[2];
    if (pipe2(p, O_CLOEXEC) != 0 || pipe2(lp, O_CLOEXEC) != 0) DIE_ERRNO(EX_OSERR, "pipe2");
    if (fflush(NULL) != 0) DIE_ERRNO(EX_OSERR, "fflush");
    pid_t writer_pid = getpid();
    pid_t pid = fork();
    if (pid == -1) DIE_ERRNO(EX_OSERR, "fork");

    if (pid == 0) {
        /* FETCHER: the service account, completely. */
        prog = "homelab-secrets-user (fetcher)";
        if (close(p[0]) != 0 || close(lp[0]) != 0) DIE_ERRNO(EX_OSERR, "close");
        /* From here on we never write to a caller's fd: a blocked write could hold the lock. */
        if (dup2(lp[1], 2) != 2) DIE_ERRNO(EX_OSERR, "dup2");
        if (close(lp[1]) != 0) DIE_ERRNO(EX_OSERR, "close");
        int fl = fcntl(2, F_GETFL);
        if (fl == -1 || fcntl(2, F_SETFL, fl | O_NONBLOCK) == -1) DIE_ERRNO(EX_OSERR, "fcntl(O_NONBLOCK)");
        become(svc_uid, svc_gid, can_drop_groups);
        /* Out of the caller's session: their terminal's ^Z/^C/hangup no longer reach us. */
        if (setsid() == -1) DIE_ERRNO(EX_OSERR, "setsid");
        /* No PR_SET_PDEATHSIG: the kernel sends it with the dying parent's (the caller's)
           rights, which may not signal the service account. The fetcher instead watches
           getppid() and stops when the writer is gone (helper/src/user/fetcher.ts). */
        if (getppid() != writer_pid) die(EX_TEMPFAIL, "the writer went away");
        int out = park(p[1]);
        map_fd = park(map_fd);
        token_fd = park(token_fd);
        config_fd = park(config_fd);
        move_fd(map_fd, FD_MAPFILE);
        if (token_fd >= 0) move_fd(token_fd, FD_TOKEN);
        if (config_fd >= 0) move_fd(config_fd, FD_CONFIG);
        move_fd(out, FD_OUT);
        devnull_to(0);
        devnull_to(1);
        if (o.serialize) {
            alarm(HS_LOCK_TIMEOUT_S + 5); /* a backstop: the wait gives up by itself first */
            wait_for_lock(FD_MAPFILE, writer_pid);
        }
        alarm(HS_FETCHER_LIMIT_S); /* cannot fail; replaces the wait's backstop */
        char *extra[8];
        int x = 0;
        if (snprintf(env_writer, sizeof env_writer, "HS_WRITER_PID=%d", (int)writer_pid) >= (int)sizeof env_writer) die(EX_SOFTWARE, "pid");
        extra[x++] = env_writer;
        extra[x++] = (char *)"HS_MAPFILE_FD=3";
        if (token_fd >= 0) extra[x++] = (char *)"HS_TOKEN_FD=4";
        if (config_fd >= 0) extra[x++] = (char *)"HS_CONFIG_FD=5";
        extra[x++] = (char *)"HS_OUT_FD=6";
        static char env_limit[48];
        if (snprintf(env_limit, sizeof env_limit, "HS_FETCHER_LIMIT_S=%d", (int)(HS_FETCHER_LIMIT_S)) >= (int)sizeof env_limit) die(EX_SOFTWARE, "limit");
        extra[x++] = env_limit;
        extra[x++] = (char *)"HS_STATE_DIR=" HS_STATE_DIR;
        extra[x] = NULL;
        run_node(&o, "fetcher", extra);
    }

    /* WRITER: the caller, completely; it never holds the token, mapfile or config. */
    prog = "homelab-secrets-user (writer)";
    if (close(p[1]) != 0 || close(lp[1]) != 0) DIE_ERRNO(EX_OSERR, "close");
    if (close(map_fd) != 0) DIE_ERRNO(EX_OSERR, "close");
    if (token_fd >= 0 && close(token_fd) != 0) DIE_ERRNO(EX_OSERR, "close");
    if (config_fd >= 0 && close(config_fd) != 0) DIE_ERRNO(EX_OSERR, "close");
    become(caller_uid, caller_gid, 0);
    int in = park(p[0]);
    int log_in = park(lp[0]);
    move_fd(in, FD_IN);
    move_fd(log_in, FD_LOG);
    devnull_to(0);
    char *extra[] = {(char *)"HS_IN_FD=3", (char *)"HS_LOG_FD=4", NULL};
    run_node(&o, "writer", extra);
    return EX_SOFTWARE;
}
