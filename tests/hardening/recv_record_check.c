/* The shepherd's and the zygote's receive, nr_recv_record (src/shepherd/fds.c),
 * against real collisions: a peer queues its last record and hangs up while
 * this process receives without blocking, over and over. Every round must
 * read the record, then the end of file -- never the end of file first.
 *
 * recvmsg is wrapped (link with -Wl,--wrap=recvmsg) to see what the kernel
 * itself answered: a round where its first answer was the end of file and
 * its second the record is one where a plain receive would have lost the
 * record. The check runs until it has seen WANTED of those, or SECONDS.
 *
 *   recv_record_check WANTED SECONDS [plain]
 *
 * Prints "rounds R hidden H". Exit status: 0 when every round was right and
 * H >= WANTED; 1 for a wrong round (printed); 2 when the kernel hid a record
 * fewer than WANTED times (the precondition of the check did not happen).
 * "plain" receives with recvmsg itself instead: the control that shows the
 * check fails a receive that believes the first end of file. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fds.h"

ssize_t __real_recvmsg(int sock, struct msghdr *msg, int flags);
ssize_t __wrap_recvmsg(int sock, struct msghdr *msg, int flags);

/* What the kernel answered in this round: the first two results that were
 * not an error (EAGAIN while the peer has not sent yet). */
static ssize_t answered[2];
static int answers;
/* The receive under test: nr_recv_record, or recvmsg for the control. */
static ssize_t (*receive)(int, struct msghdr *, int) = nr_recv_record;

ssize_t __wrap_recvmsg(int sock, struct msghdr *msg, int flags)
{
    ssize_t n = __real_recvmsg(sock, msg, flags);

    if (n >= 0) {
        if (answers < 2)
            answered[answers] = n;
        answers++;
    }
    return n;
}

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The peer: for each socket end it is handed over ctl, the last record,
 * then the hang-up. A process kept running rather than one forked per
 * round: its send and close come at once, while this process receives. */
static void serve_as_peer(int ctl)
{
    for (;;) {
        char byte, room[CMSG_SPACE(sizeof(int))];
        struct iovec iov = {&byte, 1};
        struct msghdr msg;
        struct cmsghdr *c;
        int end;

        memset(&msg, 0, sizeof msg);
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = room;
        msg.msg_controllen = sizeof room;
        if (recvmsg(ctl, &msg, 0) <= 0)
            _exit(0);
        c = CMSG_FIRSTHDR(&msg);
        if (c == NULL || c->cmsg_type != SCM_RIGHTS)
            _exit(1);
        memcpy(&end, CMSG_DATA(c), sizeof end);
        if (send(end, "last", 4, 0) != 4)
            _exit(1);
        close(end);
    }
}

static void hand_over(int ctl, int end)
{
    char byte = 's', room[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {&byte, 1};
    struct msghdr msg;
    struct cmsghdr *c;

    memset(&msg, 0, sizeof msg);
    memset(room, 0, sizeof room);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = room;
    msg.msg_controllen = sizeof room;
    c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &end, sizeof end);
    if (sendmsg(ctl, &msg, 0) != 1) {
        perror("sendmsg to the peer");
        exit(3);
    }
}

/* One round; returns 1 when the kernel hid the record behind the end of
 * file, 0 when it did not, -1 when nr_recv_record gave a wrong sequence. */
static int one_round(int ctl, long round)
{
    int sv[2];
    ssize_t got[2] = {-1, -1};
    int records = 0;
    char data[16];
    double deadline = now() + 10;

    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        perror("socketpair");
        exit(3);
    }
    hand_over(ctl, sv[1]);
    close(sv[1]);
    answers = 0;
    for (;;) {
        struct iovec iov = {data, sizeof data};
        struct msghdr msg;
        ssize_t n;

        memset(&msg, 0, sizeof msg);
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        n = receive(sv[0], &msg, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (now() > deadline) {
                fprintf(stderr, "round %ld: the peer neither sent nor hung up within 10 s\n", round);
                exit(3);
            }
            continue;
        }
        if (n < 0) {
            perror("receive");
            exit(3);
        }
        if (records < 2)
            got[records] = n;
        records++;
        if (n == 0)
            break;
    }
    close(sv[0]);
    if (records != 2 || got[0] != 4 || memcmp(data, "last", 4) != 0 || got[1] != 0) {
        fprintf(stderr, "round %ld: the receive gave %d results, the first %zd, the second %zd\n", round,
                records, got[0], got[1]);
        return -1;
    }
    return answers >= 2 && answered[0] == 0 && answered[1] == 4;
}

int main(int argc, char **argv)
{
    long wanted, rounds = 0, hidden = 0;
    double deadline;
    int ctl[2], status, verdict;
    pid_t peer;

    if (argc < 3 || argc > 4 || (argc == 4 && strcmp(argv[3], "plain") != 0)) {
        fprintf(stderr, "usage: %s WANTED SECONDS [plain]\n", argv[0]);
        return 3;
    }
    if (argc == 4)
        receive = recvmsg;
    wanted = strtol(argv[1], NULL, 10);
    deadline = now() + strtod(argv[2], NULL);
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctl) != 0) {
        perror("socketpair");
        return 3;
    }
    peer = fork();
    if (peer < 0) {
        perror("fork");
        return 3;
    }
    if (peer == 0) {
        close(ctl[0]);
        serve_as_peer(ctl[1]);
    }
    close(ctl[1]);
    verdict = 0;
    while (hidden < wanted && now() < deadline) {
        int r = one_round(ctl[0], ++rounds);
        if (r < 0) {
            verdict = 1;
            break;
        }
        hidden += r;
    }
    close(ctl[0]); /* the peer's receive ends: it exits */
    if (waitpid(peer, &status, 0) != peer || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "the peer failed (wait status %d)\n", status);
        return 3;
    }
    printf("rounds %ld hidden %ld\n", rounds, hidden);
    if (verdict)
        return verdict;
    return hidden >= wanted ? 0 : 2;
}
