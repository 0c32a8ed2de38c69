/*
 * homelab-secrets-agent — the socket-activated front end of the credential agent.
 *
 * systemd's LoadCredential=ID:/run/homelab-secrets/credentials.sock connects to our
 * listening socket from an abstract address "\0<random>/unit/<unit>/<ID>" and reads until
 * EOF. Node's net module shows neither that peer address nor SO_PEERCRED, so this program
 * accepts the connections and collects the facts; one long-lived Node agent (its child)
 * decides and renders. Style of the privilege wrapper: tiny, every syscall checked.
 *
 *   homelab-secrets-agent [--idle-exit SECONDS] -- NODE CLI agent [agent flags...]
 *   homelab-secrets-agent --guard ID...      (a consumer's ExecStartPre=, see guard())
 *
 * Flow
 *   1. systemd passes exactly one listening AF_UNIX stream socket (LISTEN_PID/LISTEN_FDS,
 *      fd 3, Accept=no). Anything else: exit 78.
 *   2. Per connection: accept4, getpeername (the abstract address), SO_PEERCRED (uid, pid),
 *      the peer's /proc/PID/cgroup. The peer is blocked reading from us while we look, so
 *      its pid cannot be reused meanwhile. These facts go to the Node agent unjudged; it
 *      checks uid 0, the unit name against the cgroup, and the policy.
 *   3. The Node agent is spawned on the first connection with a socketpair as its fd 3
 *      (environment without LISTEN_*), and again after it dies.
 *   4. Its answer is written whole and the connection closed. A refusal, a Node agent that
 *      dies before answering, or an answer that is not whole is written as FAIL_BYTES bytes:
 *      more than systemd accepts for a credential, so the unit's credential setup fails
 *      (243/CREDENTIALS) instead of starting the service with an empty file.
 *      Client sockets are non-blocking: an answer is written as far as the peer reads, the
 *      rest when poll says it can, so a peer that stops reading holds up nobody else. One
 *      that has not read its whole answer WRITE_TIMEOUT_S after it was ready is closed.
 *   5. With --idle-exit N, no open connection and nothing for N seconds: exit 0 (socket
 *      activation starts us again). The Node agent sees EOF on its fd 3 and exits.
 *
 * Protocol on the socketpair (mirrored in helper/src/agent/frames.ts), big-endian:
 *   front -> agent: u32 length, then u32 id, u32 uid, u32 pid, u16 n, n bytes peer address
 *                   (sun_path as returned, "\0..." for abstract), u16 m, m bytes cgroup file.
 *   agent -> front: u32 length, then u32 id, u8 status (0 = serve, else refuse), data.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LISTEN_FD 3
#define MAX_CONNS 256
#define MAX_REPLY ((1u << 20) + 64u)
#define FAIL_BYTES ((1u << 20) + 4096u)
#define CGROUP_MAX 4096
#define WRITE_TIMEOUT_S 5

extern char **environ;

struct conn {
  int fd;
  uint32_t id;
  char unit[96]; /* for log lines only */
  /* Set once the answer is ready: what is left to write, and until when. */
  int writing, ok;
  unsigned char *out; /* the rest of an answer (ok), malloc'd */
  size_t left, off;   /* bytes left; offset into out */
  long long deadline_ms;
};

static struct conn conns[MAX_CONNS];
static unsigned nconns;
static uint32_t next_id = 1;
static int agent_fd = -1;
static pid_t agent_pid = -1;
static char **agent_argv;
static int journal;
static unsigned char rbuf[MAX_REPLY + 4];
static size_t rlen;
static const unsigned char zeros[65536];

static void say(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(int prio, const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (journal) fprintf(stderr, "<%d>homelab-secrets-agent: %s\n", prio, line);
  else fprintf(stderr, "homelab-secrets-agent: %s\n", line);
}

static void die(int code, const char *what) {
  say(3, "%s: %s", what, strerror(errno));
  exit(code);
}

static void put32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24); p[1] = (unsigned char)(v >> 16); p[2] = (unsigned char)(v >> 8); p[3] = (unsigned char)v;
}
static uint32_t get32(const unsigned char *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static long long now_ms(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) die(71, "clock_gettime");
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Write everything or fail (a blocking fd: the socketpair to the Node agent); EINTR retried. */
static int write_all(int fd, const void *data, size_t len) {
  const unsigned char *p = data;
  while (len > 0) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static void drop(struct conn *c) {
  if (close(c->fd) != 0 && errno != EINTR) say(4, "close: %s", strerror(errno));
  free(c->out);
  *c = conns[--nconns];
}

/*
 * Write what the peer's socket takes now. 1: all written, or the peer is gone (for a refusal,
 * systemd stopping to read past its size limit is the point); 0: more later.
 */
static int pump(struct conn *c, const unsigned char *data) {
  while (c->left > 0) {
    const unsigned char *p = c->ok ? data + c->off : zeros;
    size_t want = c->ok || c->left < sizeof zeros ? c->left : sizeof zeros;
    ssize_t n = send(c->fd, p, want, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    if (n <= 0) {
      if (c->ok) say(3, "could not write the answer to %s: %s", c->unit, n < 0 ? strerror(errno) : "short write");
      return 1;
    }
    c->off += (size_t)n;
    c->left -= (size_t)n;
  }
  return 1;
}

/* Answer conns[i]: the data (ok) or FAIL_BYTES bytes; what the peer does not take now, later. */
static void finish(struct conn *c, int ok, const unsigned char *data, size_t len) {
  c->writing = 1;
  c->ok = ok;
  c->off = 0;
  c->left = ok ? len : FAIL_BYTES; /* past systemd's credential size limit: loading fails */
  c->deadline_ms = now_ms() + WRITE_TIMEOUT_S * 1000LL;
  if (pump(c, data)) {
    drop(c);
    return;
  }
  if (ok) {
    c->out = malloc(c->left);
    if (!c->out) {
      say(3, "out of memory for the answer to %s", c->unit);
      drop(c);
      return;
    }
    memcpy(c->out, data + c->off, c->left);
    c->off = 0;
  }
}

/* A writable (or failed) peer: go on writing; closed when done. */
static void resume(struct conn *c) {
  if (pump(c, c->out)) drop(c);
}

/* Refuse every connection still waiting for the Node agent's answer. */
static void fail_all(const char *why) {
  for (unsigned i = nconns; i-- > 0;) {
    if (conns[i].writing) continue;
    say(3, "refusing %s: %s", conns[i].unit, why);
    finish(&conns[i], 0, NULL, 0);
  }
}

static void reap_agent(void) {
  if (agent_fd >= 0 && close(agent_fd) != 0 && errno != EINTR) say(4, "close: %s", strerror(errno));
  agent_fd = -1;
  rlen = 0;
  if (agent_pid > 0) {
    int status = 0;
    pid_t r;
    do r = waitpid(agent_pid, &status, 0); while (r < 0 && errno == EINTR);
    if (r == agent_pid) {
      if (WIFEXITED(status)) say(WEXITSTATUS(status) == 0 ? 6 : 3, "the node agent exited with status %d", WEXITSTATUS(status));
      else if (WIFSIGNALED(status)) say(3, "the node agent was killed by signal %d", WTERMSIG(status));
    }
  }
  agent_pid = -1;
}

static void spawn_agent(void) {
  int sp[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0) die(71, "socketpair");
  pid_t pid = fork();
  if (pid < 0) die(71, "fork");
  if (pid == 0) {
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) _exit(71);
    if (dup2(sp[1], 3) != 3) _exit(71); /* also closes our copy of the listening socket */
    if (unsetenv("LISTEN_PID") != 0 || unsetenv("LISTEN_FDS") != 0 || unsetenv("LISTEN_FDNAMES") != 0) _exit(71);
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null < 0 || dup2(null, 0) != 0) _exit(71);
    execve(agent_argv[0], agent_argv, environ);
    fprintf(stderr, "homelab-secrets-agent: cannot run %s: %s\n", agent_argv[0], strerror(errno));
    _exit(71);
  }
  if (close(sp[1]) != 0) die(71, "close");
  agent_fd = sp[0];
  agent_pid = pid;
}

/* The peer's cgroup file, at most CGROUP_MAX bytes; length, or 0 if unreadable. */
static size_t read_cgroup(pid_t pid, char *out) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/cgroup", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return 0;
  size_t len = 0;
  while (len < CGROUP_MAX) {
    ssize_t n = read(fd, out + len, CGROUP_MAX - len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    len += (size_t)n;
  }
  close(fd);
  return len;
}

static void accept_one(int listen_fd) {
  int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd < 0) {
    if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED) say(4, "accept: %s", strerror(errno));
    return;
  }
  struct conn c = { .fd = fd, .id = next_id++ };
  if (next_id == 0) next_id = 1;
  snprintf(c.unit, sizeof c.unit, "connection %u", (unsigned)c.id);
  struct sockaddr_un addr;
  socklen_t alen = sizeof addr;
  struct ucred cred;
  socklen_t clen = sizeof cred;
  memset(&addr, 0, sizeof addr);
  if (getpeername(fd, (struct sockaddr *)&addr, &alen) != 0 ||
      getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0 || clen != sizeof cred) {
    say(3, "%s: cannot read the peer's address or credentials: %s", c.unit, strerror(errno));
    conns[nconns++] = c;
    finish(&conns[nconns - 1], 0, NULL, 0);
    return;
  }
  size_t plen = alen > offsetof(struct sockaddr_un, sun_path) ? alen - offsetof(struct sockaddr_un, sun_path) : 0;
  if (plen > sizeof addr.sun_path) plen = sizeof addr.sun_path;
  /* A readable label for our own log lines: the address after "\0". */
  if (plen > 1 && addr.sun_path[0] == '\0') {
    size_t n = plen - 1 < sizeof c.unit - 1 ? plen - 1 : sizeof c.unit - 1;
    for (size_t i = 0; i < n; i++) {
      unsigned char ch = (unsigned char)addr.sun_path[i + 1];
      c.unit[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    c.unit[n] = '\0';
  }
  char cgroup[CGROUP_MAX];
  size_t cglen = read_cgroup(cred.pid, cgroup);

  unsigned char frame[4 + 12 + 2 + sizeof addr.sun_path + 2 + CGROUP_MAX];
  size_t off = 4;
  put32(frame + off, c.id); off += 4;
  put32(frame + off, (uint32_t)cred.uid); off += 4;
  put32(frame + off, (uint32_t)cred.pid); off += 4;
  frame[off++] = (unsigned char)(plen >> 8); frame[off++] = (unsigned char)plen;
  memcpy(frame + off, addr.sun_path, plen); off += plen;
  frame[off++] = (unsigned char)(cglen >> 8); frame[off++] = (unsigned char)cglen;
  memcpy(frame + off, cgroup, cglen); off += cglen;
  put32(frame, (uint32_t)(off - 4));

  conns[nconns++] = c;
  if (agent_fd < 0) spawn_agent();
  if (write_all(agent_fd, frame, off) != 0) {
    say(3, "cannot reach the node agent: %s", strerror(errno));
    reap_agent();
    fail_all("the node agent is gone");
  }
}

/* Read what the agent sent; answer every complete frame. Returns -1 when it is gone. */
static int read_agent(void) {
  ssize_t n;
  do n = read(agent_fd, rbuf + rlen, sizeof rbuf - rlen); while (n < 0 && errno == EINTR);
  if (n <= 0) return -1;
  rlen += (size_t)n;
  for (;;) {
    if (rlen < 4) return 0;
    uint32_t len = get32(rbuf);
    if (len < 5 || len > MAX_REPLY) {
      say(3, "the node agent sent a frame of %u bytes; stopping it", (unsigned)len);
      return -1;
    }
    if (rlen < 4 + (size_t)len) return 0;
    uint32_t id = get32(rbuf + 4);
    unsigned status = rbuf[8];
    unsigned found = 0;
    for (unsigned i = 0; i < nconns; i++) {
      if (conns[i].id != id || conns[i].writing) continue;
      finish(&conns[i], status == 0, rbuf + 9, len - 5);
      found = 1;
      break;
    }
    if (!found) say(4, "the node agent answered unknown connection %u", (unsigned)id);
    memmove(rbuf, rbuf + 4 + len, rlen - 4 - len);
    rlen -= 4 + len;
  }
}

static int check_listen_fd(void) {
  const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
  char self[32];
  snprintf(self, sizeof self, "%d", (int)getpid());
  if (!pid || !fds || strcmp(pid, self) != 0 || strcmp(fds, "1") != 0) return -1;
  int v = 0;
  socklen_t l = sizeof v;
  if (getsockopt(LISTEN_FD, SOL_SOCKET, SO_DOMAIN, &v, &l) != 0 || v != AF_UNIX) return -1;
  l = sizeof v;
  if (getsockopt(LISTEN_FD, SOL_SOCKET, SO_TYPE, &v, &l) != 0 || v != SOCK_STREAM) return -1;
  l = sizeof v;
  if (getsockopt(LISTEN_FD, SOL_SOCKET, SO_ACCEPTCONN, &v, &l) != 0 || v != 1) return -1;
  if (fcntl(LISTEN_FD, F_SETFD, FD_CLOEXEC) != 0) return -1;
  return 0;
}

/*
 * A consumer's ExecStartPre=: every credential ID must be a non-empty regular file in
 * $CREDENTIALS_DIRECTORY. systemd starts a Type=simple service even when loading failed,
 * and gives it an empty file when the agent closed without answering; this makes the start
 * job fail instead, with a journal line naming the credential.
 */
static int guard(int n, char **ids) {
  const char *dir = getenv("CREDENTIALS_DIRECTORY");
  if (!dir || dir[0] != '/') {
    say(3, "no $CREDENTIALS_DIRECTORY: the unit loads no credentials");
    return 78;
  }
  int bad = 0;
  for (int i = 0; i < n; i++) {
    char path[4096];
    struct stat st;
    int fd = -1;
    if (ids[i][0] == '\0' || strchr(ids[i], '/') || snprintf(path, sizeof path, "%s/%s", dir, ids[i]) >= (int)sizeof path ||
        (fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
      say(3, "credential %s is missing or empty: the agent could not serve it (see journalctl -u homelab-secrets-agent)", ids[i]);
      bad = 1;
    }
    if (fd >= 0) close(fd);
  }
  return bad ? 1 : 0;
}

int main(int argc, char **argv) {
  journal = getenv("JOURNAL_STREAM") != NULL;
  if (argc >= 2 && strcmp(argv[1], "--guard") == 0) return guard(argc - 2, argv + 2);
  long idle = 0;
  int i = 1;
  if (i + 1 < argc && strcmp(argv[i], "--idle-exit") == 0) {
    char *end;
    errno = 0;
    idle = strtol(argv[i + 1], &end, 10);
    if (errno != 0 || *end != '\0' || end == argv[i + 1] || idle < 0 || idle > 86400) {
      say(3, "--idle-exit needs a number of seconds from 0 to 86400");
      return 64;
    }
    i += 2;
  }
  if (i >= argc || strcmp(argv[i], "--") != 0 || i + 1 >= argc || argv[i + 1][0] != '/') {
    say(3, "usage: homelab-secrets-agent [--idle-exit SECONDS] -- /ABS/NODE CLI agent [flags]");
    return 64;
  }
  agent_argv = argv + i + 1;
  if (check_listen_fd() != 0) {
    say(3, "expected one listening AF_UNIX stream socket from systemd (LISTEN_FDS=1, Accept=no)");
    return 78;
  }
  if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) die(71, "signal");
  umask(077);

  long long last = now_ms();
  static struct pollfd p[2 + MAX_CONNS];
  for (;;) {
    p[0] = (struct pollfd){ .fd = nconns < MAX_CONNS ? LISTEN_FD : -1, .events = POLLIN };
    p[1] = (struct pollfd){ .fd = agent_fd, .events = POLLIN };
    /* p[2 + i] is conns[i]'s: a peer still reading its answer. */
    long long now = now_ms(), wake = -1;
    for (unsigned i = 0; i < nconns; i++) {
      p[2 + i] = (struct pollfd){ .fd = conns[i].writing ? conns[i].fd : -1, .events = POLLOUT };
      if (conns[i].writing && (wake < 0 || conns[i].deadline_ms < wake)) wake = conns[i].deadline_ms;
    }
    if (idle > 0 && nconns == 0) {
      if (last + idle * 1000 <= now) {
        say(6, "idle for %ld s, exiting", idle);
        if (agent_pid > 0 && kill(agent_pid, SIGTERM) != 0 && errno != ESRCH) say(4, "kill: %s", strerror(errno));
        reap_agent();
        return 0;
      }
      wake = last + idle * 1000;
    }
    int timeout = wake < 0 ? -1 : wake <= now ? 0 : (int)(wake - now);
    unsigned polled = nconns;
    int r = poll(p, 2 + polled, timeout);
    if (r < 0) {
      if (errno == EINTR) continue;
      die(71, "poll");
    }
    now = now_ms();
    /* Downwards: drop() moves the last connection into the freed slot, one already handled. */
    for (unsigned i = polled; i-- > 0;) {
      if (p[2 + i].fd < 0) continue;
      if (p[2 + i].revents) resume(&conns[i]);
      else if (conns[i].deadline_ms <= now) {
        say(4, "%s did not read its answer within %d s; closing the connection", conns[i].unit, WRITE_TIMEOUT_S);
        drop(&conns[i]);
      }
    }
    if (r == 0) continue;
    last = now;
    if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      if (read_agent() != 0) {
        if (agent_pid > 0 && kill(agent_pid, SIGTERM) != 0 && errno != ESRCH) say(4, "kill: %s", strerror(errno));
        reap_agent();
        fail_all("the node agent stopped before answering");
      }
    }
    if (p[0].revents & POLLIN) accept_one(LISTEN_FD);
    else if (p[0].revents & (POLLHUP | POLLERR)) {
      say(3, "the listening socket failed");
      return 71;
    }
  }
}
