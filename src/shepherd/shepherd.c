/* The shepherd: owns exactly one command.
 *
 * It starts the command, relays signals, reaps everything it is handed (it is
 * a child subreaper), and stops the whole tree -- SIGTERM, kill_timeout,
 * SIGKILL until nothing is left -- when asked, when the command exits with
 * leftovers, and when its owner hangs up. It never exits while a child of its
 * own lives (except with FLAG_DETACH, once the command has exited).
 *
 * One poll loop over {signalfd, control socket} with one deadline. */
#define _GNU_SOURCE
#include "shepherd.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "tree.h"

/* Sanitizer builds: shepherds end with _exit, which skips LeakSanitizer's
 * atexit check, so run it explicitly before leaving. */
#if defined(__SANITIZE_ADDRESS__)
#define NR_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NR_LSAN 1
#endif
#endif
#ifdef NR_LSAN
#include <sanitizer/lsan_interface.h>
#define leak_check() __lsan_do_leak_check()
#else
#define leak_check() ((void)0)
#endif

#define KILL_RESCAN_MS 20

enum state { WAIT_SPAWN, RUNNING, STOPPING, KILLING };

struct shepherd {
    int ctl, sfd;
    int fds[NR_SPAWN_FDS]; /* the command's stdin, stdout, stderr, cwd; -1 when not held */
    int owner;      /* the control socket is still connected */
    enum state state;
    pid_t self, child;
    int child_reaped, status;
    uint32_t flags, kill_timeout_ms;
    int64_t deadline; /* CLOCK_MONOTONIC ms, -1 for none */
    uint64_t utime_us, stime_us, maxrss_kb;
    unsigned char *spawn_buf;
    size_t spawn_len, spawn_cap;
};

/* Shared with the vfork child: how exec failed. */
struct exec_report {
    volatile int error;
    volatile int stage;
};

/* Every exit of a shepherd (not of its vfork child, which shares our memory). */
static void __attribute__((noreturn)) leave(void)
{
    leak_check();
    _exit(0);
}

static void fail(const char *call)
{
    fprintf(stderr, "netrunner-shepherd: %s: %s\n", call, strerror(errno));
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void send_record(struct shepherd *s, const unsigned char *buf, size_t len)
{
    if (!s->owner)
        return;
    while (send(s->ctl, buf, len, MSG_NOSIGNAL) < 0) {
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN) { /* tiny records: practically never; wait for room */
            struct pollfd p = {.fd = s->ctl, .events = POLLOUT};
            if (poll(&p, 1, 1000) > 0)
                continue;
        }
        s->owner = 0; /* the owner is gone; nobody to tell */
        return;
    }
}

static void send_error(struct shepherd *s, uint32_t code, int err)
{
    unsigned char rec[NR_S_ERROR_SIZE] = {NR_S_ERROR};
    nr_put_u32(rec + NR_S_ERROR_CODE, code);
    nr_put_u32(rec + NR_S_ERROR_ERROR, (uint32_t)err);
    send_record(s, rec, sizeof rec);
}

static void close_stdio(struct shepherd *s)
{
    for (int i = 0; i < NR_SPAWN_FDS; i++) {
        if (s->fds[i] >= 0) {
            close(s->fds[i]);
            s->fds[i] = -1;
        }
    }
}

/* The end: report (if anyone listens) and exit. */
static void __attribute__((noreturn)) finish(struct shepherd *s)
{
    unsigned char rec[NR_S_EXITED_SIZE] = {NR_S_EXITED};
    nr_put_u32(rec + NR_S_EXITED_STATUS, (uint32_t)s->status);
    nr_put_u64(rec + NR_S_EXITED_UTIME_US, s->utime_us);
    nr_put_u64(rec + NR_S_EXITED_STIME_US, s->stime_us);
    nr_put_u64(rec + NR_S_EXITED_MAXRSS_KB, s->maxrss_kb);
    send_record(s, rec, sizeof rec);
    leave();
}

/* ---- the command ---------------------------------------------------------- */

/* Close every fd >= lowfd. In the vfork child: system calls only, no malloc. */
static void close_from(int lowfd)
{
    union {
        struct dirent64 align;
        char bytes[4096];
    } buf;
    struct rlimit rl;
    long n, max;
    int dir;

#ifdef SYS_close_range
    if (syscall(SYS_close_range, (unsigned)lowfd, ~0U, 0U) == 0)
        return;
#endif
    /* Before Linux 5.9: the fds actually open, from /proc (closing while
     * listing is fine, the listing goes by fd number), else every number
     * below the soft limit. */
    dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
        while ((n = syscall(SYS_getdents64, dir, buf.bytes, sizeof buf.bytes)) > 0) {
            for (long off = 0; off < n;) {
                struct dirent64 *d = (struct dirent64 *)(void *)(buf.bytes + off);
                int fd = 0;
                const char *p = d->d_name;
                for (; *p >= '0' && *p <= '9'; p++)
                    fd = fd * 10 + (*p - '0');
                if (*p == '\0' && p != d->d_name && fd >= lowfd && fd != dir)
                    close(fd);
                off += d->d_reclen;
            }
        }
        close(dir);
        if (n == 0)
            return;
    }
    max = (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) ? (long)rl.rlim_cur : 65536;
    for (long fd = lowfd; fd < max; fd++)
        close((int)fd);
}

/* In the vfork child: only system calls, everything prepared beforehand. */
static void __attribute__((noreturn))
exec_child(const struct shepherd *s, const struct nr_spawn *sp, uint32_t npaths, struct exec_report *report)
{
    uint64_t none = 0;
    int saved = 0;

    report->stage = NR_STAGE_SETUP;
    if (setpgid(0, 0) < 0 || prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
        goto failed;
    if (getppid() != s->self) /* the shepherd died before prctl took effect */
        _exit(127);
    for (int i = 0; i < 3; i++) {
        if (dup2(s->fds[i], i) < 0)
            goto failed;
    }
    /* Signal dispositions need no work: the zygote reset every one to the
     * default at start, neither it nor a shepherd ignores or catches any
     * (they take signals through a signalfd), and execve drops handlers.
     * The mask is the shepherd's blocked set: clear it (a raw system call,
     * since glibc will not touch the signals it reserves). */
    if (syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, (size_t)(NSIG / 8)) < 0)
        goto failed;
    /* The owner's working directory (by fd: it may have been renamed or
     * removed), then the requested one, relative to it. */
    report->stage = NR_STAGE_CHDIR;
    if (fchdir(s->fds[3]) < 0 || (sp->cwd != NULL && chdir(sp->cwd) < 0))
        goto failed;
    close_from(3);
    /* PATH search as CPython's _posixsubprocess: try every candidate, report
     * the first error that is not "no such file" (else the last one). */
    report->stage = NR_STAGE_EXEC;
    for (uint32_t i = 0; i < npaths; i++) {
        execve(sp->paths[i], sp->argv, sp->envp);
        if (errno != ENOENT && errno != ENOTDIR && saved == 0)
            saved = errno;
    }
    if (saved != 0)
        errno = saved;
failed:
    report->error = errno ? errno : EINVAL;
    _exit(127);
}

static void start_command(struct shepherd *s, const struct nr_frame *head)
{
    size_t nslots = nr_spawn_slots(head, s->spawn_len);
    char **slots;
    struct nr_spawn sp;
    /* Static, not on the stack: the vfork child writes it while we wait. */
    static struct exec_report report;
    unsigned char rec[NR_S_EXEC_FAILED_SIZE > NR_S_STARTED_SIZE ? NR_S_EXEC_FAILED_SIZE : NR_S_STARTED_SIZE];
    pid_t pid;

    if (nslots == 0) {
        send_error(s, NR_ERR_MALFORMED, 0); /* counts the bytes cannot hold */
        leave();
    }
    slots = calloc(nslots, sizeof *slots);
    if (slots == NULL) {
        send_error(s, NR_ERR_SYSTEM, errno);
        leave();
    }
    if (nr_parse_spawn((char *)s->spawn_buf, s->spawn_len, head, slots, nslots, &sp) != 0) {
        send_error(s, NR_ERR_MALFORMED, 0);
        leave();
    }
    s->flags = head->flags;
    s->kill_timeout_ms = head->kill_timeout_ms;
    report.error = 0;
    report.stage = 0;

    pid = vfork();
    if (pid == 0)
        exec_child(s, &sp, head->npaths, &report);
    if (pid < 0) {
        report.error = errno;
        report.stage = NR_STAGE_SETUP;
    }
    close_stdio(s);
    free(slots);
    free(s->spawn_buf);
    s->spawn_buf = NULL;
    s->spawn_len = 0;
    if (report.error != 0) {
        /* The child has already exited (vfork returns after its _exit). */
        while (pid > 0 && waitpid(pid, NULL, __WALL) < 0 && errno == EINTR)
            ;
        memset(rec, 0, sizeof rec);
        rec[0] = NR_S_EXEC_FAILED;
        nr_put_u32(rec + NR_S_EXEC_FAILED_ERROR, (uint32_t)report.error);
        nr_put_u32(rec + NR_S_EXEC_FAILED_STAGE, (uint32_t)report.stage);
        send_record(s, rec, NR_S_EXEC_FAILED_SIZE);
        leave();
    }
    s->child = pid;
    setpgid(pid, pid); /* already done by the child; EACCES after exec is fine */
    s->state = RUNNING;
    memset(rec, 0, sizeof rec);
    rec[0] = NR_S_STARTED;
    nr_put_u32(rec + NR_S_STARTED_PID, (uint32_t)pid);
    send_record(s, rec, NR_S_STARTED_SIZE);
}

/* ---- the tree ------------------------------------------------------------- */

static void signal_tree(struct shepherd *s, int sig)
{
    /* The group only while the command is unreaped: after that its number
     * could in theory be reused. Descendants are found by their parentage. */
    if (s->child > 0 && !s->child_reaped)
        kill(-s->child, sig);
    nr_signal_descendants(s->self, sig);
}

static void begin_stop(struct shepherd *s, uint32_t timeout_ms)
{
    int64_t deadline = now_ms() + (int64_t)(timeout_ms ? timeout_ms : s->kill_timeout_ms);

    if (s->state == STOPPING) {
        if (deadline < s->deadline)
            s->deadline = deadline;
        return;
    }
    if (s->state == KILLING)
        return;
    s->state = STOPPING;
    s->deadline = deadline;
    signal_tree(s, SIGTERM);
    signal_tree(s, SIGCONT); /* a stopped process must run to see its SIGTERM */
}

static void on_deadline(struct shepherd *s)
{
    s->state = KILLING;
    signal_tree(s, SIGKILL);
    s->deadline = now_ms() + KILL_RESCAN_MS; /* catch whatever forked meanwhile */
}

/* Reap every child that has exited, adding up its rusage. Returns 1 when no
 * child is left at all (ECHILD), 0 while some still run. */
static int reap(struct shepherd *s)
{
    for (;;) {
        struct rusage ru;
        int st;
        pid_t pid = wait4(-1, &st, WNOHANG | __WALL, &ru);
        if (pid > 0) {
            s->utime_us += (uint64_t)ru.ru_utime.tv_sec * 1000000u + (uint64_t)ru.ru_utime.tv_usec;
            s->stime_us += (uint64_t)ru.ru_stime.tv_sec * 1000000u + (uint64_t)ru.ru_stime.tv_usec;
            if ((uint64_t)ru.ru_maxrss > s->maxrss_kb)
                s->maxrss_kb = (uint64_t)ru.ru_maxrss;
            if (pid == s->child) {
                s->child_reaped = 1;
                s->status = st;
            }
            continue;
        }
        if (pid == 0)
            return 0; /* children remain */
        if (errno == EINTR)
            continue;
        if (errno == ECHILD)
            return 1;
        fail("wait4");
        return 0; /* cannot happen with valid arguments; keep polling */
    }
}

/* Reap, then decide: the command is gone and so is its tree -> finish. */
static void reap_and_decide(struct shepherd *s)
{
    int empty = reap(s);

    if (!s->child_reaped)
        return;
    /* A command that exits on its own with FLAG_DETACH leaves its descendants
     * be; once a stop was asked for, the whole tree goes. */
    if (empty || (s->state == RUNNING && (s->flags & NR_FLAG_DETACH)))
        finish(s);
    if (s->state == RUNNING)
        begin_stop(s, 0); /* leftovers: the fast path above needed no /proc scan */
}

/* ---- events ----------------------------------------------------------------- */

static void hang_up(struct shepherd *s)
{
    s->owner = 0;
    if (s->state == WAIT_SPAWN)
        leave(); /* nothing was started (an idle spare shepherd ends here) */
    begin_stop(s, 0);
}

static void protocol_error(struct shepherd *s, uint32_t code, int err)
{
    send_error(s, code, err);
    shutdown(s->ctl, SHUT_RDWR);
    hang_up(s);
}

/* Receive one record and the fds that came with it (at most max_fds kept;
 * any more are closed and reported as a count above max_fds). */
static ssize_t receive(int sock, unsigned char *buf, size_t len, int *fds, int max_fds, int *nfds, int *flags)
{
    union {
        char bytes[CMSG_SPACE(sizeof(int) * 8)];
        struct cmsghdr align;
    } control;
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr msg;
    ssize_t n;

    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.bytes;
    msg.msg_controllen = sizeof control.bytes;
    *nfds = 0;
    n = recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0)
        return n;
    *flags = msg.msg_flags;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            if (*nfds < max_fds)
                fds[*nfds] = fd;
            else
                close(fd);
            (*nfds)++;
        }
    }
    return n;
}

/* Append a SPAWN or SPAWN_PART tail to the request being assembled. */
static int append_tail(struct shepherd *s, const struct nr_frame *f)
{
    if (f->tail_len > NR_MAX_SPAWN_BYTES - s->spawn_len)
        return NR_ERR_TOO_LARGE;
    if (s->spawn_len + f->tail_len > s->spawn_cap) { /* grow geometrically */
        size_t cap = s->spawn_cap ? s->spawn_cap : 4096;
        unsigned char *grown;
        while (cap < s->spawn_len + f->tail_len)
            cap *= 2;
        grown = realloc(s->spawn_buf, cap);
        if (grown == NULL)
            return NR_ERR_SYSTEM;
        s->spawn_buf = grown;
        s->spawn_cap = cap;
    }
    if (f->tail_len > 0) {
        memcpy(s->spawn_buf + s->spawn_len, f->tail, f->tail_len);
        s->spawn_len += f->tail_len;
    }
    return 0;
}

/* A frame before the command started: only the pieces of a SPAWN. */
static void on_spawn_frame(struct shepherd *s, const struct nr_frame *f, const int *fds)
{
    int err;

    if (f->type != NR_C_SPAWN && f->type != NR_C_SPAWN_PART) {
        protocol_error(s, NR_ERR_UNEXPECTED, 0);
        return;
    }
    err = append_tail(s, f);
    if (err != 0) {
        protocol_error(s, (uint32_t)err, err == NR_ERR_SYSTEM ? ENOMEM : 0);
        return;
    }
    if (f->type == NR_C_SPAWN) {
        memcpy(s->fds, fds, sizeof s->fds);
        start_command(s, f);
    }
}

/* A frame once the command runs (or is being stopped). */
static void on_running_frame(struct shepherd *s, const struct nr_frame *f)
{
    switch (f->type) {
    case NR_C_SIGNAL:
        /* Only the unreaped command's group: after that its number could be
         * reused. An invalid signo makes kill fail with EINVAL: ignored. */
        if (!s->child_reaped && f->signo > 0 && f->signo < (uint32_t)NSIG)
            kill(-s->child, (int)f->signo);
        break;
    case NR_C_STOP:
        begin_stop(s, f->kill_timeout_ms);
        break;
    case NR_C_WINSIZE:
        break; /* pty support is not built yet: accepted and ignored */
    default:
        protocol_error(s, NR_ERR_UNEXPECTED, 0);
    }
}

static void on_control(struct shepherd *s)
{
    /* One byte more than the largest record, so a longer one is seen as such
     * (static: it is touched only as far as records reach, keeping RSS low). */
    static unsigned char buf[NR_MAX_RECORD + 1];
    struct nr_frame f;
    int fds[NR_SPAWN_FDS], nfds = 0, flags = 0;
    ssize_t n;
    int want;

    n = receive(s->ctl, buf, sizeof buf, fds, NR_SPAWN_FDS, &nfds, &flags);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) {
        hang_up(s); /* end of file, or a reset: the owner is gone */
        return;
    }
    /* Only SPAWN carries fds; a late SPAWN is unexpected whatever it carries. */
    want = buf[0] != NR_C_SPAWN ? 0 : s->state == WAIT_SPAWN ? NR_SPAWN_FDS : nfds;
    if ((flags & (MSG_TRUNC | MSG_CTRUNC)) || (size_t)n > NR_MAX_RECORD || nfds != want ||
        nr_parse_frame(buf, (size_t)n, &f) != 0) {
        for (int i = 0; i < nfds && i < NR_SPAWN_FDS; i++)
            close(fds[i]);
        protocol_error(s, NR_ERR_MALFORMED, 0);
        return;
    }
    if (s->state == WAIT_SPAWN) {
        on_spawn_frame(s, &f, fds);
        return;
    }
    for (int i = 0; i < nfds; i++)
        close(fds[i]); /* a second SPAWN's */
    on_running_frame(s, &f);
}

static void on_signals(struct shepherd *s)
{
    struct signalfd_siginfo si;
    int chld = 0;

    while (read(s->sfd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGCHLD)
            chld = 1;
        else if (s->state == WAIT_SPAWN)
            leave();
        else
            begin_stop(s, 0); /* SIGTERM, SIGINT, SIGHUP, SIGQUIT to the shepherd */
    }
    if (chld)
        reap_and_decide(s);
}

/* ---- main --------------------------------------------------------------- */

static int setup(struct shepherd *s)
{
    sigset_t mask;

    if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
        fail("prctl(PR_SET_CHILD_SUBREAPER)");
        return -1;
    }
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGQUIT);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) {
        fail("sigprocmask");
        return -1;
    }
    s->sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (s->sfd < 0) {
        fail("signalfd");
        return -1;
    }
    return 0;
}

static void __attribute__((noreturn)) loop(struct shepherd *s)
{
    for (;;) {
        struct pollfd pfd[2] = {{.fd = s->sfd, .events = POLLIN}, {.fd = s->ctl, .events = POLLIN}};
        int timeout = -1, n;

        if (s->deadline >= 0) {
            int64_t left = s->deadline - now_ms();
            timeout = left < 0 ? 0 : (left > 60000 ? 60000 : (int)left);
        }
        n = poll(pfd, s->owner ? 2 : 1, timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fail("poll");
            hang_up(s);
            continue;
        }
        if (pfd[0].revents)
            on_signals(s);
        if (s->owner && pfd[1].revents)
            on_control(s);
        if (!s->owner && s->state == RUNNING)
            begin_stop(s, 0); /* a send failed: the owner is gone */
        if (s->deadline >= 0 && now_ms() >= s->deadline && s->state >= STOPPING)
            on_deadline(s);
        if (s->state >= STOPPING)
            reap_and_decide(s); /* SIGCHLD coalesces; do not rely on it alone */
    }
}

void nr_shepherd_main(int ctl)
{
    struct shepherd s;

    memset(&s, 0, sizeof s);
    s.ctl = ctl;
    for (int i = 0; i < NR_SPAWN_FDS; i++)
        s.fds[i] = -1;
    s.owner = 1;
    s.state = WAIT_SPAWN;
    s.self = (pid_t)syscall(SYS_getpid); /* not the cached value of the zygote */
    s.deadline = -1;
    s.kill_timeout_ms = 5000;
    if (setup(&s) < 0) {
        send_error(&s, NR_ERR_SYSTEM, errno);
        _exit(1);
    }
    loop(&s);
}
