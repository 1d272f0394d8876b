/* The floor under any copier on this machine: what the kernel charges a process that only
 * receives each byte from one loopback TCP connection and sends it on another, with no
 * protocol, no hashing and no allocation. keepmover's CPU-s per GiB is read against it
 * (BENCHMARKS.md, "The kernel's floor"): what keepmover pays above it is MD5 and its own
 * work; what it pays below it does not exist.
 *
 * A writer (core 0) sends BLOCK-byte blocks to the middle, which passes them to a reader
 * (core 0); the middle runs on core 1 and reports its own user and system CPU seconds per
 * GiB. Two ways through the middle:
 *   copy    read() the whole block into a buffer, touch one byte per cache line, write() it:
 *           one copy in, one copy out, like keepmover's plain-HTTP path
 *   splice  splice() the block into a pipe, tee() it to a second pipe, read() that one into a
 *           buffer (the copy a hash would need), splice() the first pipe to the socket: no
 *           send-side copy from user memory (on loopback the kernel copies later instead)
 * BUFFERS=N in the environment makes the middle cycle through N block buffers instead of
 * reusing one, as a copier with N blocks in flight does: how much its working set, leaving
 * the caches, adds to the kernel's copies.
 *
 *   cc -O2 -o copy_floor copy_floor.c && ./copy_floor copy 6144 && ./copy_floor splice 6144
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BLOCK (1 << 20)

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void pin(int core) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(core, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) perror("sched_setaffinity (not pinned)");
}

static struct sockaddr_in loopback(int port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

/* A listener on an ephemeral loopback port; its port number in *port. */
static int listen_any(int *port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = loopback(0);
    socklen_t len = sizeof a;
    if (s < 0 || bind(s, (void *)&a, sizeof a) || listen(s, 1) ||
        getsockname(s, (void *)&a, &len))
        die("listen");
    *port = ntohs(a.sin_port);
    return s;
}

static int connect_to(int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = loopback(port);
    if (s < 0 || connect(s, (void *)&a, sizeof a)) die("connect");
    return s;
}

/* Repeats call until it has moved n bytes in all; `left` is what is still to move. */
#define WHOLE(n, call)                                  \
    for (long left = (n); left > 0;) {                  \
        ssize_t got_ = (call);                          \
        if (got_ <= 0) die(#call);                      \
        left -= got_;                                   \
    }

int main(int argc, char **argv) {
    if (argc != 3 || (strcmp(argv[1], "copy") && strcmp(argv[1], "splice"))) {
        fprintf(stderr, "usage: %s copy|splice BLOCKS_OF_1MiB\n", argv[0]);
        return 2;
    }
    int splicing = strcmp(argv[1], "splice") == 0;
    long blocks = atol(argv[2]);
    int src_port, dst_port;
    int src_listener = listen_any(&src_port), dst_listener = listen_any(&dst_port);
    if (fork() == 0) { /* the writer */
        pin(0);
        int c = accept(src_listener, 0, 0);
        char *b = malloc(BLOCK);
        if (c < 0 || !b) die("writer");
        memset(b, 7, BLOCK);
        for (long i = 0; i < blocks; i++) {
            long o = 0;
            while (o < BLOCK) {
                ssize_t n = write(c, b + o, BLOCK - o);
                if (n <= 0) die("writer write");
                o += n;
            }
        }
        return 0;
    }
    if (fork() == 0) { /* the reader */
        pin(0);
        int c = accept(dst_listener, 0, 0);
        char *b = malloc(BLOCK);
        if (c < 0 || !b) die("reader");
        while (read(c, b, BLOCK) > 0) {}
        return 0;
    }
    pin(1);
    int src = connect_to(src_port), dst = connect_to(dst_port);
    const char *buffers_env = getenv("BUFFERS");
    long buffers = buffers_env ? atol(buffers_env) : 1;
    if (buffers < 1) buffers = 1;
    char *all = aligned_alloc(4096, BLOCK * buffers);
    if (!all) die("aligned_alloc");
    memset(all, 1, BLOCK * buffers);
    int held[2], copied[2];
    if (pipe(held) || pipe(copied)) die("pipe");
    if (splicing && (fcntl(held[0], F_SETPIPE_SZ, BLOCK) < 0 ||
                     fcntl(copied[0], F_SETPIPE_SZ, BLOCK) < 0))
        die("F_SETPIPE_SZ (fs.pipe-max-size below 1 MiB?)");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    unsigned long touched = 0;
    for (long i = 0; i < blocks; i++) {
        char *buf = all + (i % buffers) * (long)BLOCK;
        if (!splicing) {
            long o = 0;
            while (o < BLOCK) {
                ssize_t n = read(src, buf + o, BLOCK - o);
                if (n <= 0) die("read");
                o += n;
            }
            for (long k = 0; k < BLOCK; k += 64) touched += (unsigned char)buf[k];
            o = 0;
            while (o < BLOCK) {
                ssize_t n = write(dst, buf + o, BLOCK - o);
                if (n <= 0) die("write");
                o += n;
            }
        } else {
            WHOLE(BLOCK, splice(src, 0, held[1], 0, left, SPLICE_F_MOVE));
            WHOLE(BLOCK, tee(held[0], copied[1], left, 0));
            long o = 0;
            while (o < BLOCK) {
                ssize_t n = read(copied[0], buf + o, BLOCK - o);
                if (n <= 0) die("read pipe");
                o += n;
            }
            for (long k = 0; k < BLOCK; k += 64) touched += (unsigned char)buf[k];
            WHOLE(BLOCK, splice(held[0], 0, dst, 0, left, SPLICE_F_MOVE | SPLICE_F_MORE));
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double gib = blocks / 1024.0;
    double user = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
    double sys = ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    double wall = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("%s, %ld buffer(s): %.3f CPU-s/GiB (user %.3f, system %.3f), %.0f MB/s%s\n", argv[1], buffers,
           (user + sys) / gib, user / gib, sys / gib, blocks * (double)BLOCK / wall / 1e6,
           touched == 1 ? " " : "");
    close(dst);
    close(src);
    while (wait(0) > 0) {}
    return 0;
}
