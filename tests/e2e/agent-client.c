/*
 * agent-client SOCKET ADDRESS [--print|--sum|--stall] — connect to SOCKET from the abstract address
 * "\0ADDRESS", as systemd's LoadCredential= does, read until EOF and print "bytes N" (with
 * --print, the data after it; the front end's own tests use that with a fake agent, never
 * with real secrets). The e2e suite uses it to ask the agent in another unit's name.
 * --sum: also print "fnv1a64 HEX" of all the bytes (to check a large answer is whole).
 * --stall: never read; print "receiving" once the answer starts to arrive, then "closed"
 * when the other side closes the connection (a client that holds the front end up).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
  int print = argc == 4 && strcmp(argv[3], "--print") == 0;
  int stall = argc == 4 && strcmp(argv[3], "--stall") == 0;
  int sum = argc == 4 && strcmp(argv[3], "--sum") == 0;
  if (argc != 3 && !print && !stall && !sum) {
    fprintf(stderr, "usage: agent-client SOCKET ADDRESS [--print|--sum|--stall]\n");
    return 64;
  }
  struct sockaddr_un self = { .sun_family = AF_UNIX }, peer = { .sun_family = AF_UNIX };
  size_t n = strlen(argv[2]);
  if (n + 1 > sizeof self.sun_path || strlen(argv[1]) + 1 > sizeof peer.sun_path) return 64;
  memcpy(self.sun_path + 1, argv[2], n);
  strcpy(peer.sun_path, argv[1]);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || bind(fd, (struct sockaddr *)&self, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n)) != 0) {
    fprintf(stderr, "agent-client: bind: %s\n", strerror(errno));
    return 71;
  }
  if (connect(fd, (struct sockaddr *)&peer, sizeof peer) != 0) {
    fprintf(stderr, "agent-client: connect: %s\n", strerror(errno));
    return 77;
  }
  if (stall) {
    int queued = 0;
    while (queued == 0) {
      if (ioctl(fd, FIONREAD, &queued) != 0) return 71;
      if (queued == 0) usleep(10000);
    }
    printf("receiving\n");
    fflush(stdout);
    struct pollfd p = { .fd = fd, .events = POLLRDHUP };
    while (!(p.revents & (POLLRDHUP | POLLHUP))) {
      if (poll(&p, 1, -1) < 0 && errno != EINTR) return 71;
    }
    printf("closed\n");
    return 0;
  }
  static char buf[65536], shown[4096];
  unsigned long long total = 0, fnv = 0xcbf29ce484222325ULL;
  size_t kept = 0;
  for (;;) {
    ssize_t r = read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      fprintf(stderr, "agent-client: read: %s\n", strerror(errno));
      return 74;
    }
    if (r == 0) break;
    if (print && kept < sizeof shown) {
      size_t take = (size_t)r < sizeof shown - kept ? (size_t)r : sizeof shown - kept;
      memcpy(shown + kept, buf, take);
      kept += take;
    }
    for (ssize_t k = 0; k < r; k++) fnv = (fnv ^ (unsigned char)buf[k]) * 0x100000001b3ULL;
    total += (unsigned long long)r;
  }
  printf("bytes %llu\n", total);
  if (sum) printf("fnv1a64 %016llx\n", fnv);
  if (print) fwrite(shown, 1, kept, stdout);
  return 0;
}
