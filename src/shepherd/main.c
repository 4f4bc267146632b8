/* netrunner-shepherd: the zygote, and through it every shepherd.
 *
 *   netrunner-shepherd --zygote FD    serve Z_FORK requests on socket FD
 *   netrunner-shepherd --version      print the protocol version and digest
 *
 * The zygote is single-threaded and never execs. For each Z_FORK it clones a
 * shepherd with CLONE_PARENT: the shepherd becomes a child of the zygote's
 * parent (Python), which reaps it with waitpid(pid, __WALL). Note that Linux
 * gives a CLONE_PARENT child the exit signal of its cloner (the zygote's
 * SIGCHLD), ignoring the one requested: a shepherd is an ordinary child to
 * wait(), not a "clone child".
 *
 * Shepherds are cloned with CLONE_FS too: they share the zygote's cwd, root
 * and umask, which are the interpreter's when Python started the zygote
 * sharing them (netrunner-spawn.so, spawn.c), so a command cloned by a
 * shepherd (without CLONE_FS) gets them as they are at that moment. Neither
 * the zygote nor a shepherd ever changes them: a chdir or umask here would
 * be the interpreter's.
 *
 * At start the zygote closes every fd it inherited except 0-2 and its socket
 * (moved to fd 3): posix_spawn cannot close the interpreter's inheritable fds,
 * and a pipe, lock or listening socket of the caller must not be held open by
 * the zygote or by the shepherds forked from it. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fds.h"
#include "frame.h"
#include "shepherd.h"

#define MAX_FDS 16

static int usage(void)
{
    fprintf(stderr, "usage: netrunner-shepherd --zygote FD | --version\n");
    return NR_EXIT_USAGE;
}

/* Every signal disposition back to the default (raw system calls: glibc
 * refuses to touch the signals it reserves, which may arrive ignored). An
 * all-zero kernel sigaction is SIG_DFL with no flags and an empty mask on
 * every architecture. Nothing is ignored or caught from here on: shepherds
 * send with MSG_NOSIGNAL and take signals through a signalfd, so commands
 * start with default dispositions without resetting them one by one.
 *
 * The terminal's stop signals are ignored for a moment first, which drops
 * one still pending (blocked): a Ctrl-Z typed while we were starting in our
 * parent's process group, which the terminal's foreground may be. Let
 * through, it would stop the zygote for good, and its parent would wait for
 * a hello that never comes. Called once in a group of our own. */
static void default_signals(void)
{
    static const int stops[] = {SIGTSTP, SIGTTIN, SIGTTOU};
    unsigned long ksa[8];
    uint64_t none = 0;

    memset(ksa, 0, sizeof ksa);
    ksa[0] = (unsigned long)SIG_IGN;
    for (size_t i = 0; i < sizeof stops / sizeof stops[0]; i++)
        syscall(SYS_rt_sigaction, stops[i], ksa, NULL, (size_t)(NSIG / 8));
    ksa[0] = (unsigned long)SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        syscall(SYS_rt_sigaction, sig, ksa, NULL, (size_t)(NSIG / 8)); /* EINVAL for KILL, STOP */
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, (size_t)(NSIG / 8));
}

/* SIGPIPE blocked, not ignored: a write to a closed pipe (an error message
 * to a stderr nobody reads) fails with EPIPE instead of killing us, and the
 * disposition commands inherit stays the default. Shepherds inherit the mask;
 * commands start with an empty one. */
static void block_sigpipe(void)
{
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    sigprocmask(SIG_BLOCK, &pipe, NULL);
}

/* Received fds must never land on 0-2, which the command's dup2s would clobber. */
static void occupy_stdio(void)
{
    for (int fd = 0; fd < 3; fd++) {
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
            int null = open("/dev/null", O_RDWR);
            if (null >= 0 && null != fd) {
                dup2(null, fd);
                close(null);
            }
        }
    }
}

/* Keep fds 0-2 and the socket, which moves to fd 3; close every other fd.
 * Returns the socket's fd, or -1 when `sock` is not open. */
static int keep_only_socket(int sock)
{
    if (fcntl(sock, F_GETFD) < 0)
        return -1;
    if (sock != 3) {
        if (dup2(sock, 3) < 0)
            return -1;
        close(sock); /* below 3: occupy_stdio fills the hole */
    }
    nr_close_from(4);
    return 3;
}

static void send_all(int sock, const unsigned char *rec, size_t len)
{
    while (send(sock, rec, len, MSG_NOSIGNAL) < 0) {
        if (errno != EINTR)
            _exit(0); /* the owner is gone */
    }
}

static void reply(int sock, pid_t pid, int error)
{
    unsigned char rec[NR_Z_FORKED_SIZE] = {NR_Z_FORKED};
    nr_put_u32(rec + NR_Z_FORKED_PID, (uint32_t)pid);
    nr_put_u32(rec + NR_Z_FORKED_ERROR, (uint32_t)error);
    send_all(sock, rec, sizeof rec);
}

/* fork(), except that the child's parent is our parent and that it shares
 * our cwd, root and umask (see the top). (exit_signal 0 is
 * asked for, but with CLONE_PARENT the kernel uses ours, SIGCHLD.) Without
 * clone3 (ENOSYS), or where a seccomp profile refuses it (EPERM, as older
 * container runtimes do), the classic clone does the same. */
static pid_t clone_parent(void)
{
#ifdef SYS_clone3
    struct clone_args args;
    long pid;
    memset(&args, 0, sizeof args);
    args.flags = CLONE_PARENT | CLONE_FS;
    args.exit_signal = 0;
    pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid >= 0 || (errno != ENOSYS && errno != EPERM))
        return (pid_t)pid;
#endif
#if defined(__x86_64__) || defined(__aarch64__) || defined(__riscv)
    return (pid_t)syscall(SYS_clone, CLONE_PARENT | CLONE_FS, 0, 0, 0, 0);
#else
    errno = ENOSYS;
    return -1;
#endif
}

static int serve(int sock)
{
    unsigned char hello[NR_Z_HELLO_SIZE] = {NR_Z_HELLO};
    nr_put_u32(hello + NR_Z_HELLO_VERSION, NR_PROTOCOL_VERSION);
    nr_put_u32(hello + NR_Z_HELLO_DIGEST, NR_PROTOCOL_DIGEST);
    nr_put_u32(hello + NR_Z_HELLO_PID, (uint32_t)getpid());
    send_all(sock, hello, sizeof hello);

    for (;;) {
        unsigned char buf[64];
        union {
            char bytes[CMSG_SPACE(sizeof(int) * MAX_FDS)];
            struct cmsghdr align;
        } control;
        struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf};
        struct msghdr msg;
        struct cmsghdr *c;
        int fds[MAX_FDS], nfds = 0, err;
        ssize_t n;
        pid_t pid;

        memset(&msg, 0, sizeof msg);
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.bytes;
        msg.msg_controllen = sizeof control.bytes;
        n = nr_recv_record(sock, &msg, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return NR_EXIT_OK; /* the owner is gone */
        for (c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                int count = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                for (int i = 0; i < count && nfds < MAX_FDS; i++)
                    memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            }
        }
        if (n != NR_Z_FORK_SIZE || buf[0] != NR_Z_FORK || nfds != NR_ZYGOTE_FDS ||
            (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
            for (int i = 0; i < nfds; i++)
                close(fds[i]);
            reply(sock, 0, EINVAL);
            continue;
        }
        pid = clone_parent();
        if (pid == 0) {
            close(sock);
            nr_shepherd_main(fds[0]); /* never returns */
        }
        err = pid < 0 ? errno : 0;
        close(fds[0]); /* the shepherd's now */
        reply(sock, pid > 0 ? pid : 0, err);
    }
}

int main(int argc, char **argv)
{
    char *end;
    long fd;

    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("netrunner-shepherd protocol %d digest 0x%08x\n", NR_PROTOCOL_VERSION, NR_PROTOCOL_DIGEST);
        return 0;
    }
    if (argc != 3 || strcmp(argv[1], "--zygote") != 0)
        return usage();
    errno = 0;
    fd = strtol(argv[2], &end, 10);
    if (errno != 0 || *end != '\0' || fd < 0 || fd > 1 << 20)
        return usage();
    fd = keep_only_socket((int)fd);
    if (fd < 0) {
        fprintf(stderr, "netrunner-shepherd: --zygote %s: %s\n", argv[2], strerror(EBADF));
        return NR_EXIT_USAGE;
    }
    occupy_stdio();
    /* A process group of its own, so the terminal's Ctrl-C and Ctrl-Z never
     * reach it (the starters did this already; the fallback may not have). */
    setpgid(0, 0);
    default_signals();
    block_sigpipe();
    return serve((int)fd);
}
