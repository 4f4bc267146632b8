/* The shepherd: owns exactly one command.
 *
 * It starts the command, relays signals, reaps everything it is handed (it is
 * a child subreaper), and stops the whole tree -- SIGTERM, kill_timeout,
 * SIGKILL until nothing is left -- when asked, when the command exits with
 * leftovers, and when its owner hangs up.
 *
 * Signals go only to pinned targets, never to a pid number read earlier:
 * the command while it is unreaped (its pidfd, made by the clone, tells when
 * it exits), the command's process group while a member of it is unreaped,
 * and the shepherd's own unreaped children and the groups they lead
 * (tree.c). To keep the group pinned through a stop, the shepherd puts an
 * "anchor" into it before the command can be reaped: a child of its own that
 * never execs and has exit signal 0, which makes it a "clone child" that
 * wait4 without __WALL never reaps. The group number therefore stays
 * allocated until the anchor is reaped, at the very end. (The command itself
 * cannot play that part: execve resets its exit signal to SIGCHLD.)
 *
 * ECHILD from wait4(-1) is the only proof that the tree is gone; a listing of
 * /proc is a hint that finds more targets, never a proof.
 *
 * With cgroups (C_CGROUP records before the spawn), the command joins them
 * before it execs, and the "kill cgroup" (the cgroup-v2 directory, else the
 * first v1 one) is a second listing that no setsid or double fork escapes:
 * its members are signalled through pidfds confirmed by a second read
 * (tree.c), the KILL rounds write its cgroup.kill, and the tree is gone
 * only when ECHILD holds and the cgroup is empty. Then its statistics are
 * read and the directories netrunner created are removed.
 *
 * One poll loop over {signalfd, pidfd, control socket} with its deadlines. */
#define _GNU_SOURCE
#include "shepherd.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fds.h"
#include "frame.h"
#include "rawsys.h"
#include "tree.h"

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#ifndef PIDFD_SIGNAL_PROCESS_GROUP
#define PIDFD_SIGNAL_PROCESS_GROUP (1U << 2)
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

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
/* LeakSanitizer stops the process and reads its memory map through /proc:
 * where /proc is missing or another pid namespace's, it cannot work and would
 * turn every clean exit into a fatal error, so it is turned off there (this
 * hook serves the zygote's exit too). */
int __lsan_is_turned_off(void)
{
    char link[32], want[32];
    ssize_t n = readlink("/proc/self", link, sizeof link - 1);
    if (n <= 0)
        return 1;
    link[n] = '\0';
    snprintf(want, sizeof want, "%ld", (long)syscall(SYS_getpid));
    return strcmp(link, want) != 0;
}
#else
#define leak_check() ((void)0)
#endif

/* While stopping, the children are listed again on every SIGCHLD and on a
 * timer that backs off from SCAN_FIRST_MS to SCAN_MAX_MS. */
#define SCAN_FIRST_MS 8
#define SCAN_MAX_MS 100
/* In the KILL phase, once the command has exited: how long children may
 * remain that no listing finds and nothing reaps before they are abandoned. */
#define ABANDON_GRACE_MS 250
/* The clone child runs exec_child on this stack while the shepherd waits. */
#define CHILD_STACK_SIZE (64 * 1024)
/* A member directory that is busy right after the tree is gone (a kernel
 * still releasing its last process) is tried this many times, this long
 * apart, before it is reported kept. */
#define RMDIR_TRIES 10
#define RMDIR_PAUSE_MS 5
/* Room for a cgroup path (NUL included) and the longest file name appended
 * to it, "/memory.max_usage_in_bytes": never truncated. */
#define CGROUP_FILE_MAX (NR_CGROUP_PATH_MAX + 32)

/* One C_CGROUP record. */
struct cgroup {
    uint32_t role, flags;
    char *path;  /* a copy of the record's absolute path */
    int procs;   /* members: <path>/cgroup.procs for the clone child, open until the exec is over; else -1 */
};

/* What the kernel takes for prlimit64 (struct rlimit64 of linux/resource.h). */
struct nr_rlimit64 {
    uint64_t cur, max;
};

/* A C_ATTRS record, copied (the record buffer is reused) into the form the
 * clone child hands to the kernel as it is. */
struct attrs {
    uint32_t flags; /* NR_ATTR_* */
    uint32_t umask;
    int32_t nice;
    uint32_t nrlimits;
    uint32_t resource[NR_MAX_RLIMITS];
    struct nr_rlimit64 limit[NR_MAX_RLIMITS];
    unsigned long mask[NR_AFFINITY_MAX_BYTES / sizeof(unsigned long)]; /* a cpu_set_t's layout */
    size_t mask_len;                                                   /* bytes of mask, whole words */
};

/* EXECING: the command is cloned and has not exec'd yet; the shepherd goes
 * on serving its loop meanwhile (a chdir or execve that hangs on a dead
 * filesystem, or a stop signal, must not freeze it). DONE: S_EXITED went out
 * with EXITED_REUSABLE; nothing of the tree is left and everything of the
 * command is released (the state is a new shepherd's): as in WAIT_SPAWN the
 * next spawn's frames are taken, and a hang-up or a signal ends the
 * shepherd; frames about the last command (sent before its owner read
 * S_EXITED) are ignored. */
enum state { DONE, WAIT_SPAWN, EXECING, RUNNING, STOPPING, KILLING };

struct shepherd {
    int ctl, sfd;
    int pidfd;                 /* the command's; -1 before it started */
    int exec_report;           /* read end of the exec report pipe while the exec is pending, else -1 */
    char **exec_slots;         /* the parsed spawn strings, kept until the exec is over */
    int started_sent;          /* S_STARTED went out */
    int fds[NR_SPAWN_FDS];     /* the command's stdin, stdout, stderr, cwd; -1 when not held */
    int owner;                 /* the control socket is still connected */
    int exit_code;             /* NR_EXIT_* */
    enum state state;
    pid_t self, child;
    int child_exited;          /* the pidfd said so: a zombie until reaped */
    int child_reaped, status;
    pid_t anchor;              /* pins the command's group once a stop begins; 0 for none */
    int free_reap;             /* wait4(-1) may reap the command (it is reaped, or anchored) */
    int childless;             /* ECHILD with __WALL: no child of any kind, and none can come back */
    int group_termed;          /* the TERM round reached the command's group */
    uint32_t flags, kill_timeout_ms, exited_flags;
    int64_t deadline;          /* end of the TERM phase (CLOCK_MONOTONIC ms), -1 for none */
    int64_t next_scan;         /* next listing of the children while stopping, -1 for none */
    int scan_interval;
    int64_t quiet_since;       /* KILL phase: last time a child was reaped or listed */
    uint64_t utime_us, stime_us, maxrss_kb, peak_memory;
    unsigned char *spawn_buf;
    size_t spawn_len, spawn_cap;
    struct nr_tree tree;
    struct cgroup cg[NR_MAX_CGROUPS]; /* in record order */
    int ncg;
    int cg_error;              /* errno of the first cgroup.procs that would not open; 0 for none */
    int cg_kill;               /* index of the kill cgroup in cg; -1 for none */
    int cg_no_kill_file;       /* its cgroup.kill is missing (Linux < 5.14): SIGKILL by listing */
    int cg_listed;             /* how many processes its last listing held (-1: unreadable) */
    int cg_removed;            /* the REMOVE directories were dealt with */
    int cg_v2_dir;             /* the v2 directory, open until the command is cloned; else -1 */
    struct attrs *attrs;       /* a C_ATTRS record's (static: see keep_attrs); NULL for none */
};

/* What the clone child writes to its report pipe when it cannot exec. The
 * pipe is close-on-exec: end of file with nothing read means execve worked
 * (or the child was killed before it). */
struct exec_report {
    int32_t error;
    int32_t stage;
};

/* Everything the clone child needs, copied by value before the clone: the
 * shepherd changes its own state meanwhile. The strings stay in the
 * shepherd's spawn buffer, which is kept until the exec is over. */
struct exec_args {
    pid_t self;
    int fds[NR_SPAWN_FDS];
    int cgroup_procs[NR_MAX_CGROUPS]; /* the member directories' cgroup.procs */
    int ncgroup_procs;
    int ctl, sfd, report_fd;
    int pty; /* fds 0-2 are a PTY's slave side: a new session, with it as controlling terminal */
    struct nr_spawn sp;
    uint32_t npaths;
    const struct attrs *attrs; /* NULL without a C_ATTRS record; never changed once the command is cloned */
};

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

/* Receive one record and the fds that came with it (at most max_fds kept;
 * any more are closed and reported as a count above max_fds). An end of
 * file is believed only when read twice (nr_recv_record). */
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
    n = nr_recv_record(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
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

/* Refuse further records and read those already queued, closing any fds they
 * carry. A socket closed with unread records makes the kernel report
 * ECONNRESET to the peer ahead of the records we sent it; after SHUT_RD the
 * peer's sends fail with EPIPE instead of queueing. */
static void quiesce(int ctl)
{
    static unsigned char sink[NR_MAX_RECORD + 1];
    int nfds, flags;
    ssize_t n;

    shutdown(ctl, SHUT_RD);
    while ((n = receive(ctl, sink, sizeof sink, NULL, 0, &nfds, &flags)) > 0 || (n < 0 && errno == EINTR))
        ; /* EAGAIN: empty; 0: end of file; else nothing more to read */
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

/* ---- cgroups: small files ------------------------------------------------- */

/* "<dir>/<name>" in a static buffer, good until the next call. */
static const char *cg_file(const struct cgroup *c, const char *name)
{
    static char path[CGROUP_FILE_MAX];
    snprintf(path, sizeof path, "%s/%s", c->path, name);
    return path;
}

/* Open a cgroup file. O_NONBLOCK: a path that is not a cgroup's (a FIFO
 * where cgroup.procs should be) must not hang us; cgroup files ignore it. */
static int cg_open(const char *path, int flags)
{
    return open(path, flags | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
}

/* Read a small file into buf (size bytes, NUL included) as a C string; a
 * longer one is cut. Returns its length, or -1. */
static ssize_t read_text(const char *path, char *buf, size_t size)
{
    size_t len = 0;
    int fd = cg_open(path, O_RDONLY);

    if (fd < 0)
        return -1;
    while (len < size - 1) {
        ssize_t n = read(fd, buf + len, size - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            close(fd);
            return -1;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    return (ssize_t)len;
}

/* Write a short text in one write. Returns 0, or -1 with errno set. */
static int write_text(const char *path, const char *text)
{
    size_t len = strlen(text);
    ssize_t n;
    int fd = cg_open(path, O_WRONLY), err;

    if (fd < 0)
        return -1;
    while ((n = write(fd, text, len)) < 0 && errno == EINTR)
        ;
    err = n == (ssize_t)len ? 0 : n < 0 ? errno : EIO;
    close(fd);
    errno = err;
    return err ? -1 : 0;
}

/* The decimal number at p, ended by a space, a newline or the string's end.
 * Returns 0, or -1 for anything else (an overflow included). */
static int parse_u64(const char *p, uint64_t *out)
{
    uint64_t v = 0;

    if (*p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned digit = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - digit) / 10)
            return -1;
        v = v * 10 + digit;
    }
    if (*p != '\0' && *p != '\n' && *p != ' ')
        return -1;
    *out = v;
    return 0;
}

/* The number on the line "<key> <number>" of a flat keyed file (cpu.stat,
 * memory.events, cgroup.events, memory.oom_control). Returns 0, or -1. */
static int keyed_u64(const char *text, const char *key, uint64_t *out)
{
    size_t klen = strlen(key);

    for (const char *line = text; *line != '\0';) {
        const char *end = strchr(line, '\n');
        if (strncmp(line, key, klen) == 0 && line[klen] == ' ')
            return parse_u64(line + klen + 1, out);
        if (end == NULL)
            break;
        line = end + 1;
    }
    return -1;
}

/* A file holding one number (memory.peak, memory.max_usage_in_bytes). */
static int file_u64(const char *path, uint64_t *out)
{
    char buf[64];
    return read_text(path, buf, sizeof buf) > 0 ? parse_u64(buf, out) : -1;
}

static int file_keyed_u64(const char *path, const char *key, uint64_t *out)
{
    static char buf[4096];
    return read_text(path, buf, sizeof buf) >= 0 ? keyed_u64(buf, key, out) : -1;
}

/* ---- cgroups: records, statistics, removal ---------------------------------- */

static void protocol_error(struct shepherd *s, uint32_t code, int err);

static int is_member(uint32_t role)
{
    return role == NR_CGROUP_V2 || role == NR_CGROUP_V1 || role == NR_CGROUP_MEMORY_V1;
}

/* The shepherd's copies of the cgroup.procs fds: the clone child has its own
 * (it does not share our fd table). */
static void close_cgroup_procs(struct shepherd *s)
{
    if (s->cg_v2_dir >= 0) {
        close(s->cg_v2_dir);
        s->cg_v2_dir = -1;
    }
    for (int i = 0; i < s->ncg; i++) {
        if (s->cg[i].procs >= 0) {
            close(s->cg[i].procs);
            s->cg[i].procs = -1;
        }
    }
}

/* A C_CGROUP record (nr_parse_frame checked it: its tail is an absolute path
 * and a C string). A member's cgroup.procs is opened now, so that the clone
 * child only has to write to it; a failure is kept and reported when SPAWN
 * comes, and the record is kept too: its directory is still to be removed. */
static void add_cgroup(struct shepherd *s, const struct nr_frame *f)
{
    struct cgroup *c;

    if (s->ncg == NR_MAX_CGROUPS || (f->role == NR_CGROUP_V2 && s->cg_kill >= 0 &&
                                     s->cg[s->cg_kill].role == NR_CGROUP_V2)) {
        protocol_error(s, NR_ERR_UNEXPECTED, 0); /* one too many, or a second v2 directory */
        return;
    }
    c = &s->cg[s->ncg];
    c->path = strdup((const char *)f->tail);
    if (c->path == NULL) {
        protocol_error(s, NR_ERR_SYSTEM, ENOMEM);
        return;
    }
    c->role = f->role;
    c->flags = f->flags;
    c->procs = -1;
    s->ncg++;
    if (!is_member(c->role))
        return;
    c->procs = cg_open(cg_file(c, "cgroup.procs"), O_WRONLY);
    if (c->procs < 0 && s->cg_error == 0)
        s->cg_error = errno;
    if (c->role == NR_CGROUP_V2) /* for CLONE_INTO_CGROUP; without it the child joins by writing */
        s->cg_v2_dir = cg_open(c->path, O_RDONLY | O_DIRECTORY);
    /* The kill cgroup: the v2 one, else the first member. */
    if (c->role == NR_CGROUP_V2 || s->cg_kill < 0)
        s->cg_kill = s->ncg - 1;
}

/* A C_ATTRS record (nr_parse_frame checked it), kept for the clone child:
 * the limits as prlimit64 takes them, the mask as an array of longs, CPU n
 * being bit n % LONG_BIT of word n / LONG_BIT whatever the byte order. In
 * static memory that stays untouched (and costs no page) when no record
 * comes, the common case; nothing changes it once the command is cloned. */
static void keep_attrs(struct shepherd *s, const struct nr_frame *f)
{
    static struct attrs kept;
    struct attrs *at = &kept;
    const unsigned char *mask;
    size_t len;

    if (s->attrs != NULL) {
        protocol_error(s, NR_ERR_UNEXPECTED, 0); /* one per command */
        return;
    }
    memset(at, 0, sizeof *at);
    at->flags = f->flags;
    at->umask = f->umask;
    at->nice = f->nice;
    at->nrlimits = f->nrlimits;
    for (uint32_t i = 0; i < f->nrlimits; i++) {
        struct nr_rlimit rl;
        nr_attrs_rlimit(f, i, &rl);
        at->resource[i] = rl.resource;
        at->limit[i].cur = rl.cur;
        at->limit[i].max = rl.max;
    }
    mask = nr_attrs_mask(f, &len);
    for (size_t i = 0; i < len; i++)
        at->mask[i / sizeof(unsigned long)] |= (unsigned long)mask[i] << (8 * (i % sizeof(unsigned long)));
    at->mask_len = (len + sizeof(unsigned long) - 1) / sizeof(unsigned long) * sizeof(unsigned long);
    s->attrs = at;
}

/* Whether the kill cgroup holds no process but `skip` (0: none at all).
 * Without a kill cgroup, or with one that cannot be read (a directory
 * removed by someone else was empty), ECHILD decides alone. A v2 cgroup's
 * "populated" counts the cgroups below it too, which cgroup.procs does not
 * list: when it says empty, that is final. */
static int cgroup_holds_none_but(struct shepherd *s, pid_t skip)
{
    const struct cgroup *c;
    uint64_t populated;

    if (s->cg_kill < 0)
        return 1;
    c = &s->cg[s->cg_kill];
    if (c->role == NR_CGROUP_V2 && file_keyed_u64(cg_file(c, "cgroup.events"), "populated", &populated) == 0) {
        if (populated == 0)
            return 1;
        if (skip <= 0)
            return 0;
    }
    return nr_cgroup_round(&s->tree, cg_file(c, "cgroup.procs"), skip, NR_ROUND_COUNT) <= 0;
}

/* Once the tree is gone: the whole tree's CPU time, its peak memory and
 * whether the OOM killer struck, from the v2 directory, else the v1 memory
 * one. Unreadable files (no such controller) leave the shepherd's own
 * figures. */
static void cgroup_stats(struct shepherd *s)
{
    static char text[4096];
    int peak = 0, v1_done = 0;
    uint64_t a, b;

    s->exited_flags |= NR_EXITED_CGROUP;
    for (int i = 0; i < s->ncg; i++) {
        const struct cgroup *c = &s->cg[i];
        if (c->role != NR_CGROUP_V2)
            continue;
        if (read_text(cg_file(c, "cpu.stat"), text, sizeof text) >= 0 && keyed_u64(text, "user_usec", &a) == 0 &&
            keyed_u64(text, "system_usec", &b) == 0) {
            s->utime_us = a;
            s->stime_us = b;
        }
        if (file_u64(cg_file(c, "memory.peak"), &a) == 0) {
            s->peak_memory = a;
            peak = 1;
        }
        if (file_keyed_u64(cg_file(c, "memory.events"), "oom_kill", &a) == 0 && a > 0)
            s->exited_flags |= NR_EXITED_OOM_KILLED;
    }
    for (int i = 0; i < s->ncg && !v1_done; i++) {
        const struct cgroup *c = &s->cg[i];
        if (c->role != NR_CGROUP_MEMORY_V1)
            continue;
        v1_done = 1; /* the first one: every member holds the same tree */
        if (!peak && file_u64(cg_file(c, "memory.max_usage_in_bytes"), &a) == 0) {
            s->peak_memory = a;
            peak = 1;
        }
        if (file_keyed_u64(cg_file(c, "memory.oom_control"), "oom_kill", &a) == 0 && a > 0)
            s->exited_flags |= NR_EXITED_OOM_KILLED;
    }
    if (peak)
        s->exited_flags |= NR_EXITED_PEAK_MEMORY;
}

/* rmdir `path` (a buffer of CGROUP_FILE_MAX bytes, restored on return) and,
 * when that fails because it has cgroups of its own -- the command may make
 * some, as a container runtime or a nested init does -- those first, depth
 * first. Only directories are touched: in a cgroup filesystem every
 * directory is a cgroup, and the files go with it. */
static int rmdir_tree(char *path, int depth)
{
    size_t len = strlen(path);
    DIR *dir;
    struct dirent *e;

    if (rmdir(path) == 0 || errno == ENOENT)
        return 0;
    if ((errno != EBUSY && errno != ENOTEMPTY) || depth >= 32)
        return -1;
    dir = opendir(path);
    if (dir == NULL)
        return -1;
    while ((e = readdir(dir)) != NULL) {
        if (e->d_type != DT_DIR || strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (len + 1 + strlen(e->d_name) + 1 > CGROUP_FILE_MAX)
            continue; /* cannot be named here: the final rmdir reports it */
        path[len] = '/';
        strcpy(path + len + 1, e->d_name);
        rmdir_tree(path, depth + 1);
        path[len] = '\0';
    }
    closedir(dir);
    return rmdir(path) == 0 || errno == ENOENT ? 0 : -1;
}

/* Remove the directories netrunner created, the last record (the innermost)
 * first. Once, and only when no process of the tree can still be in one:
 * the tree is gone, or never started, or the clone child is reaped. */
static void remove_cgroups(struct shepherd *s)
{
    if (s->cg_removed)
        return;
    s->cg_removed = 1;
    close_cgroup_procs(s);
    for (int i = s->ncg - 1; i >= 0; i--) {
        const struct cgroup *c = &s->cg[i];
        int tries = 0;

        if (!(c->flags & NR_CGROUP_REMOVE))
            continue;
        if (c->role != NR_CGROUP_PARENT) {
            static char path[CGROUP_FILE_MAX];
            snprintf(path, sizeof path, "%s", c->path);
            if (rmdir_tree(path, 0) == 0)
                continue;
        }
        while (rmdir(c->path) < 0) {
            if (errno == ENOENT)
                break; /* gone already */
            /* A parent may hold another command's directory: that one removes it. */
            if (c->role == NR_CGROUP_PARENT && (errno == EBUSY || errno == ENOTEMPTY))
                break;
            /* A member may be busy a moment longer, while the kernel lets go of
             * its last process: a few short tries. */
            if (c->role != NR_CGROUP_PARENT && errno == EBUSY && ++tries < RMDIR_TRIES) {
                struct timespec pause = {.tv_sec = 0, .tv_nsec = RMDIR_PAUSE_MS * 1000000L};
                nanosleep(&pause, NULL);
                continue;
            }
            s->exited_flags |= NR_EXITED_CGROUP_KEPT;
            break;
        }
    }
}

/* Free and close what the shepherd holds, before it exits (the sanitizer
 * build checks for leaks). Only called when no clone child runs on our
 * memory: the command is reaped, or was never started. */
static void release(struct shepherd *s)
{
    close_cgroup_procs(s);
    for (int i = 0; i < s->ncg; i++) {
        free(s->cg[i].path);
        s->cg[i].path = NULL;
    }
    s->ncg = 0;
    s->cg_kill = -1;
    close_stdio(s);
    free(s->exec_slots);
    s->exec_slots = NULL;
    free(s->spawn_buf);
    s->spawn_buf = NULL;
    s->spawn_len = s->spawn_cap = 0;
    if (s->exec_report >= 0) {
        close(s->exec_report);
        s->exec_report = -1;
    }
    if (s->pidfd >= 0) {
        close(s->pidfd);
        s->pidfd = -1;
    }
    nr_tree_free(&s->tree);
}

/* Every exit of a shepherd (not of its clone child, which shares our memory).
 * The cgroup directories go first, whatever the reason for leaving. */
static void __attribute__((noreturn)) leave(struct shepherd *s)
{
    remove_cgroups(s);
    release(s);
    leak_check();
    quiesce(s->ctl); /* last: records that arrive meanwhile are read too */
    _exit(s->exit_code);
}

/* SIGTERM, SIGINT, SIGHUP or SIGQUIT with no command running: the exit code
 * says which (an owner that reads it learns why its shepherd is gone). */
static void __attribute__((noreturn)) leave_signalled(struct shepherd *s, uint32_t signo)
{
    s->exit_code = NR_EXIT_SIGNALLED + (int)(signo & 0x7f);
    leave(s);
}

static void send_record_fd(struct shepherd *s, const unsigned char *buf, size_t len, int fd)
{
    union {
        char bytes[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr msg;

    if (!s->owner)
        return;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (fd >= 0) {
        struct cmsghdr *c;
        memset(&control, 0, sizeof control);
        msg.msg_control = control.bytes;
        msg.msg_controllen = sizeof control.bytes;
        c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof fd);
    }
    while (sendmsg(s->ctl, &msg, MSG_NOSIGNAL) < 0) {
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN) { /* tiny records: practically never; wait for room */
            struct pollfd p = {.fd = s->ctl, .events = POLLOUT};
            if (poll(&p, 1, 1000) > 0)
                continue;
        }
        if (errno != EPIPE && errno != ECONNRESET && s->exit_code == NR_EXIT_OK)
            s->exit_code = NR_EXIT_SYSTEM; /* not a hang-up: the owner may be there to read the code */
        s->owner = 0; /* the owner is gone, or cannot be told; stop */
        return;
    }
}

static void send_record(struct shepherd *s, const unsigned char *buf, size_t len)
{
    send_record_fd(s, buf, len, -1);
}

static void send_error(struct shepherd *s, uint32_t code, int err)
{
    unsigned char rec[NR_S_ERROR_SIZE] = {NR_S_ERROR};
    nr_put_u32(rec + NR_S_ERROR_CODE, code);
    nr_put_u32(rec + NR_S_ERROR_ERROR, (uint32_t)err);
    send_record(s, rec, sizeof rec);
}

static void add_rusage(struct shepherd *s, const struct rusage *ru)
{
    s->utime_us += (uint64_t)ru->ru_utime.tv_sec * 1000000u + (uint64_t)ru->ru_utime.tv_usec;
    s->stime_us += (uint64_t)ru->ru_stime.tv_sec * 1000000u + (uint64_t)ru->ru_stime.tv_usec;
    if ((uint64_t)ru->ru_maxrss > s->maxrss_kb)
        s->maxrss_kb = (uint64_t)ru->ru_maxrss;
}

/* Reap the command, which has exited (so this does not block), through its
 * pidfd: its status and rusage. From here on its pid and group number are
 * free for reuse and nothing is sent to them. */
static void reap_command(struct shepherd *s)
{
    siginfo_t si;
    struct rusage ru;

    if (s->child_reaped)
        return;
    for (;;) {
        memset(&si, 0, sizeof si);
        memset(&ru, 0, sizeof ru);
        if (syscall(SYS_waitid, P_PIDFD, s->pidfd, &si, WEXITED | __WALL, &ru) == 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno == EINVAL) { /* no P_PIDFD before Linux 5.4: the pid is still ours */
            int st = 0;
            pid_t got;
            while ((got = wait4(s->child, &st, __WALL, &ru)) < 0 && errno == EINTR)
                ;
            if (got == s->child) {
                s->status = st;
                add_rusage(s, &ru);
            }
        } else {
            fail("waitid");
        }
        s->child_reaped = 1;
        nr_tree_forget(&s->tree, s->child);
        return;
    }
    switch (si.si_code) {
    case CLD_EXITED:
        s->status = (si.si_status & 0xff) << 8;
        break;
    case CLD_KILLED:
        s->status = si.si_status & 0x7f;
        break;
    case CLD_DUMPED:
        s->status = (si.si_status & 0x7f) | 0x80;
        break;
    default:
        break;
    }
    add_rusage(s, &ru);
    s->child_reaped = 1;
    nr_tree_forget(&s->tree, s->child);
}

/* The group anchor: it only waits to be killed. It holds no fd (the owner's
 * hang-up must not depend on it) and dies with the shepherd. */
static int anchor_main(void *arg)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != *(const pid_t *)arg)
        _exit(0);
    nr_close_from(0);
    for (;;)
        pause();
}

/* Before the command may be reaped, put a child of ours into its group (see
 * the top of this file). Without one (clone failed), the group is signalled
 * only until the command is reaped. */
static void make_anchor(struct shepherd *s)
{
    static unsigned char stack[16 * 1024] __attribute__((aligned(16)));
    pid_t pid;

    s->free_reap = 1;
    /* A PTY command leads a session of its own, and a process may join only
     * a group of its own session: no anchor can; kill_group goes through the
     * pidfd instead. */
    if (s->anchor > 0 || s->child_reaped || (s->flags & NR_FLAG_PTY))
        return;
    /* No CLONE_VM: the child runs on its own copy of `stack`. Exit signal 0. */
    s->childless = 0;
    pid = clone(anchor_main, stack + sizeof stack, 0, &s->self);
    if (pid < 0) {
        fail("clone(anchor)");
        return;
    }
    if (setpgid(pid, s->child) < 0) {
        fail("setpgid(anchor)");
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR)
            ;
        return;
    }
    s->anchor = pid;
}

static int group_pinned(const struct shepherd *s)
{
    return s->child > 0 && (!s->child_reaped || s->anchor > 0);
}

/* Signal the command's process group: by number while the number is pinned,
 * else through the command's pidfd with PIDFD_SIGNAL_PROCESS_GROUP (Linux
 * 6.9), which names the group's kernel object and never a reused number (it
 * reaches nobody once the group is empty). Returns 1 when a signal was sent
 * to the group. */
static int kill_group(struct shepherd *s, int sig)
{
    if (group_pinned(s))
        return kill(-s->child, sig) == 0;
    if (s->child > 0 && s->pidfd >= 0)
        return syscall(SYS_pidfd_send_signal, s->pidfd, sig, NULL, PIDFD_SIGNAL_PROCESS_GROUP) == 0;
    return 0;
}

static void send_started(struct shepherd *s)
{
    unsigned char rec[NR_S_STARTED_SIZE] = {NR_S_STARTED};

    if (s->started_sent)
        return;
    s->started_sent = 1;
    nr_put_u32(rec + NR_S_STARTED_PID, (uint32_t)s->child);
    send_record_fd(s, rec, sizeof rec, s->pidfd); /* a copy: we keep ours */
}

/* FLAG_STOPS: tell the owner that the command was stopped (a terminal's
 * SIGTSTP, SIGSTOP), once per stop: the waitid that finds a stop consumes
 * it. Only the command itself is watched, through its pidfd, and only while
 * it runs on its own: after S_STARTED, before its exit, and not once a stop
 * of the tree has begun (which continues it anyway). */
static void report_stop(struct shepherd *s)
{
    unsigned char rec[NR_S_STOPPED_SIZE] = {NR_S_STOPPED};
    siginfo_t si;

    if (!(s->flags & NR_FLAG_STOPS) || s->state != RUNNING || !s->started_sent || !s->owner ||
        s->child_exited || s->child_reaped || s->pidfd < 0)
        return;
    memset(&si, 0, sizeof si);
    if (syscall(SYS_waitid, P_PIDFD, s->pidfd, &si, WSTOPPED | WNOHANG | __WALL, NULL) < 0) {
        /* No P_PIDFD before Linux 5.4: the pid is still ours (unreaped). */
        if (errno != EINVAL || waitid(P_PID, (id_t)s->child, &si, WSTOPPED | WNOHANG | __WALL) < 0)
            return;
    }
    if (si.si_pid == 0 || si.si_code != CLD_STOPPED)
        return;
    nr_put_u32(rec + NR_S_STOPPED_SIGNO, (uint32_t)si.si_status);
    send_record(s, rec, sizeof rec);
}

/* Whether the shepherd may serve another command once this one is
 * reported: the owner asked for it (FLAG_REUSE) and is there, nothing went
 * wrong, and no child of any kind is left (ECHILD, the anchor included:
 * with FLAG_DETACH or abandoned processes there are some, and they would
 * become the next command's). As a subreaper without children, nothing of
 * the tree can come back to it. */
static int reusable(struct shepherd *s)
{
    siginfo_t si;

    if (!(s->flags & NR_FLAG_REUSE) || !s->owner || s->exit_code != NR_EXIT_OK || s->anchor > 0 ||
        !s->child_reaped || (s->exited_flags & NR_EXITED_ABANDONED))
        return 0;
    if (s->childless)
        return 1; /* reap() saw ECHILD with __WALL, and nothing has forked since */
    for (;;) {
        memset(&si, 0, sizeof si);
        if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT | __WALL) == 0)
            return 0; /* a child, exited or not */
        if (errno != EINTR)
            return errno == ECHILD;
    }
}

static void init_state(struct shepherd *s, int ctl, int sfd, pid_t self);

/* After S_EXITED with EXITED_REUSABLE: forget the command. Everything it
 * held is released (no child; no fd but 0-2, the signalfd, the children
 * file and the control socket; no memory), its SIGCHLDs are dropped from
 * the signalfd (any other signal ends the shepherd, as it would have a
 * moment ago), and the state is a new shepherd's, in DONE. */
static void serve_again(struct shepherd *s)
{
    struct signalfd_siginfo si;
    int ctl = s->ctl, sfd = s->sfd, children_fd = s->tree.children_fd;
    pid_t self = s->self;

    remove_cgroups(s);
    release(s);
    while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo != SIGCHLD)
            leave_signalled(s, si.ssi_signo);
    }
    init_state(s, ctl, sfd, self);
    s->tree.children_fd = children_fd;
    s->state = DONE;
}

/* The end: report (if anyone listens), then exit -- or, when the shepherd
 * can serve again (reusable()), forget the command and return in state
 * DONE: the caller returns to the loop at once. */
static void finish(struct shepherd *s)
{
    unsigned char rec[NR_S_EXITED_SIZE] = {NR_S_EXITED};

    send_started(s); /* a command stopped before its exec completed still gets one */
    reap_command(s);
    if (s->anchor > 0) {
        kill(s->anchor, SIGKILL);
        while (waitpid(s->anchor, NULL, __WALL) < 0 && errno == EINTR)
            ;
        s->anchor = 0;
    }
    if (s->ncg > 0) {
        cgroup_stats(s);
        remove_cgroups(s); /* before S_EXITED: the owner may reuse the names at once */
    }
    nr_put_u32(rec + NR_S_EXITED_STATUS, (uint32_t)s->status);
    nr_put_u64(rec + NR_S_EXITED_UTIME_US, s->utime_us);
    nr_put_u64(rec + NR_S_EXITED_STIME_US, s->stime_us);
    nr_put_u64(rec + NR_S_EXITED_MAXRSS_KB, s->maxrss_kb);
    nr_put_u32(rec + NR_S_EXITED_FLAGS, s->exited_flags);
    nr_put_u64(rec + NR_S_EXITED_PEAK_MEMORY, s->peak_memory);
    if (reusable(s)) {
        s->exited_flags |= NR_EXITED_REUSABLE;
        nr_put_u32(rec + NR_S_EXITED_FLAGS, s->exited_flags);
        send_record(s, rec, sizeof rec);
        if (s->owner) { /* the send may have found it gone */
            serve_again(s);
            return;
        }
    } else {
        send_record(s, rec, sizeof rec);
    }
    leave(s);
}

/* ---- the command ---------------------------------------------------------- */

/* ---- the clone child: nr_sys only (rawsys.h), no C library, no memory
 * written but its own stack -- it shares the shepherd's memory. ---------- */

static void __attribute__((noreturn)) child_exit(int code)
{
    for (;;)
        nr_sys1(SYS_exit_group, code);
}

/* Tell the shepherd why the exec failed (`err` is a negative errno), then end. */
static void __attribute__((noreturn)) exec_failed(int fd, long err, int stage)
{
    struct exec_report r;

    r.error = err < 0 ? (int32_t)-err : EINVAL;
    r.stage = stage;
    while (nr_sys3(SYS_write, fd, &r, sizeof r) == -EINTR)
        ;
    child_exit(127);
}

/* The C_ATTRS attributes, last before execve. The kernel refusing to lower
 * the nice value (EACCES: it takes CAP_SYS_NICE or RLIMIT_NICE, and the
 * shepherd has the nice value of the thread that started the zygote) leaves
 * the shepherd's; an affinity with no CPU of the command's cpuset (EINVAL)
 * leaves the one the cgroup gives. Anything else fails the start. */
static void give_attrs(const struct attrs *at, int report)
{
    long r;

    if (at->flags & NR_ATTR_UMASK)
        nr_sys1(SYS_umask, at->umask); /* cannot fail */
    if ((at->flags & NR_ATTR_NICE) && (r = nr_sys3(SYS_setpriority, PRIO_PROCESS, 0, at->nice)) < 0 &&
        r != -EACCES)
        exec_failed(report, r, NR_STAGE_ATTRS);
    if ((at->flags & NR_ATTR_AFFINITY) && (r = nr_sys3(SYS_sched_setaffinity, 0, at->mask_len, at->mask)) < 0 &&
        r != -EINVAL)
        exec_failed(report, r, NR_STAGE_ATTRS);
    for (uint32_t i = 0; i < at->nrlimits; i++) {
        if ((r = nr_sys4(SYS_prlimit64, 0, at->resource[i], &at->limit[i], NULL)) < 0)
            exec_failed(report, r, NR_STAGE_ATTRS);
    }
}

/* The clone child. It shares the shepherd's memory but not its fd table,
 * and starts with every signal blocked (the shepherd blocked them around the
 * clone), so no signal acts on it before execve but SIGKILL and SIGSTOP --
 * which the shepherd, not waiting for it, can answer. */
static int exec_child(void *arg)
{
    const struct exec_args *a = arg;
    const uint64_t none = 0, all = ~(uint64_t)0;
    const size_t masksize = NSIG / 8;
    long r, saved = 0;
    int report = a->report_fd;

    /* First of all, join the cgroups ("0": the writer itself): the command
     * runs no instruction of its own outside them, and all it starts is born
     * inside. */
    for (int i = 0; i < a->ncgroup_procs; i++) {
        while ((r = nr_sys3(SYS_write, a->cgroup_procs[i], "0", 1)) == -EINTR)
            ;
        if (r != 1)
            exec_failed(report, r, NR_STAGE_CGROUP); /* 0 bytes written: reported as EINVAL */
    }
    /* The control socket and signalfd are the shepherd's: a copy held here
     * while a chdir hangs would hide the shepherd's own death from Python. */
    nr_sys1(SYS_close, a->ctl);
    nr_sys1(SYS_close, a->sfd);
    /* Its own process group; on a PTY its own session, whose controlling
     * terminal the PTY becomes below. */
    r = a->pty ? nr_sys0(SYS_setsid) : nr_sys2(SYS_setpgid, 0, 0);
    if (r < 0 || (r = nr_sys2(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL)) < 0)
        exec_failed(report, r, NR_STAGE_SETUP);
    if (nr_sys0(SYS_getppid) != a->self) /* the shepherd died before prctl took effect */
        child_exit(127);
    for (int i = 0; i < 3; i++) {
        /* dup3 refuses equal fds; 0-2 are the shepherd's /dev/null, so never. */
        if ((r = nr_sys3(SYS_dup3, a->fds[i], i, 0)) < 0)
            exec_failed(report, r, NR_STAGE_SETUP);
    }
    if (a->pty && (r = nr_sys3(SYS_ioctl, 0, TIOCSCTTY, 0)) < 0)
        exec_failed(report, r, NR_STAGE_SETUP);
    /* Signal dispositions need no work: the zygote reset every one to the
     * default at start, neither it nor a shepherd ignores or catches any
     * (they take signals through a signalfd), and execve drops handlers. */
    /* The owner's working directory (by fd: it may have been renamed or
     * removed), then the requested one, relative to it. */
    if ((r = nr_sys1(SYS_fchdir, a->fds[3])) < 0 || (a->sp.cwd != NULL && (r = nr_sys1(SYS_chdir, a->sp.cwd)) < 0))
        exec_failed(report, r, NR_STAGE_CHDIR);
    /* Keep only 0-2 and the report pipe, moved to 3 (still close-on-exec). */
    if (report != 3) {
        if ((r = nr_sys3(SYS_dup3, report, 3, O_CLOEXEC)) < 0)
            exec_failed(report, r, NR_STAGE_SETUP);
        report = 3;
    }
    nr_close_from(4);
    /* After the fds are closed: a low RLIMIT_NOFILE must not get in the way. */
    if (a->attrs != NULL)
        give_attrs(a->attrs, report);
    /* PATH search as CPython's _posixsubprocess: try every candidate, report
     * the first error that is not "no such file" (else the last one). The
     * mask is emptied right before each attempt and blocked again after a
     * failure. */
    for (uint32_t i = 0; i < a->npaths; i++) {
        nr_sys4(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, masksize);
        r = nr_sys3(SYS_execve, a->sp.paths[i], a->sp.argv, a->sp.envp);
        nr_sys4(SYS_rt_sigprocmask, SIG_SETMASK, &all, NULL, masksize);
        if (r != -ENOENT && r != -ENOTDIR && saved == 0)
            saved = r;
    }
    exec_failed(report, saved != 0 ? saved : r, NR_STAGE_EXEC);
}

/* ---- starting it ----------------------------------------------------------- */

static void send_exec_failed(struct shepherd *s, int error, int stage)
{
    unsigned char rec[NR_S_EXEC_FAILED_SIZE] = {NR_S_EXEC_FAILED};

    nr_put_u32(rec + NR_S_EXEC_FAILED_ERROR, (uint32_t)error);
    nr_put_u32(rec + NR_S_EXEC_FAILED_STAGE, (uint32_t)stage);
    send_record(s, rec, sizeof rec);
}

#ifdef NR_RAW_SYSCALLS
/* CLONE_VM: no copy of our memory (as fast as vfork); no CLONE_VFORK: we go
 * on while it works towards execve, so nothing it waits for can freeze us. */
#define CHILD_CLONE CLONE_VM
#else
/* The child uses the C library, which writes errno: we must wait. */
#define CHILD_CLONE (CLONE_VM | CLONE_VFORK)
#endif

#ifdef NR_HAVE_CLONE3_RUN
/* linux/sched.h's struct clone_args up to `cgroup` (CLONE_ARGS_SIZE_VER2),
 * spelled out: older headers lack it. */
struct nr_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size,
        cgroup;
};
#define NR_CLONE_INTO_CGROUP 0x200000000ULL
#endif

/* Create the command, running exec_child(args) on `stack`. With a cgroup-v2
 * directory it is born in it (clone3 with CLONE_INTO_CGROUP): the child then
 * never moves there, and the cgroup's limits hold from its first instruction.
 * Otherwise -- no such directory, a kernel or seccomp filter without clone3
 * (ENOSYS, E2BIG, EPERM), or an architecture without nr_clone3_run -- the
 * child joins every member directory by writing cgroup.procs, which also
 * reports the true reason when joining is what failed. */
static pid_t clone_command(struct shepherd *s, struct exec_args *args, unsigned char *stack, size_t size,
                           int *pidfd)
{
#ifdef NR_HAVE_CLONE3_RUN
    if (s->cg_v2_dir >= 0) {
        struct nr_clone_args ca;
        long pid;

        memset(&ca, 0, sizeof ca);
        ca.flags = CLONE_VM | CLONE_PIDFD | NR_CLONE_INTO_CGROUP;
        ca.pidfd = (uint64_t)(uintptr_t)pidfd;
        ca.exit_signal = SIGCHLD;
        ca.stack = (uint64_t)(uintptr_t)stack;
        ca.stack_size = size;
        ca.cgroup = (uint64_t)s->cg_v2_dir;
        args->ncgroup_procs = 0;
        for (int i = 0; i < s->ncg; i++) {
            if (s->cg[i].procs >= 0 && s->cg[i].role != NR_CGROUP_V2)
                args->cgroup_procs[args->ncgroup_procs++] = s->cg[i].procs;
        }
        pid = nr_clone3_run(&ca, sizeof ca, exec_child, args);
        if (pid > 0)
            return (pid_t)pid;
    }
#endif
    args->ncgroup_procs = 0;
    for (int i = 0; i < s->ncg; i++) {
        if (s->cg[i].procs >= 0)
            args->cgroup_procs[args->ncgroup_procs++] = s->cg[i].procs;
    }
    return clone(exec_child, stack + size, CHILD_CLONE | CLONE_PIDFD | SIGCHLD, args, pidfd, NULL, NULL);
}

static void start_command(struct shepherd *s, const struct nr_frame *head)
{
    /* Static: the clone child uses them until its exec is over. */
    static struct exec_args args;
    static unsigned char stack[CHILD_STACK_SIZE] __attribute__((aligned(16)));
    size_t nslots = nr_spawn_slots(head, s->spawn_len);
    uint64_t all = ~(uint64_t)0, old = 0;
    int pidfd = -1, report[2];
    pid_t pid;

    if (nslots == 0) {
        send_error(s, NR_ERR_MALFORMED, 0); /* counts the bytes cannot hold */
        s->exit_code = NR_EXIT_PROTOCOL;
        leave(s);
    }
    s->exec_slots = calloc(nslots, sizeof *s->exec_slots);
    if (s->exec_slots == NULL) {
        send_error(s, NR_ERR_SYSTEM, errno);
        s->exit_code = NR_EXIT_SYSTEM;
        leave(s);
    }
    if (nr_parse_spawn((char *)s->spawn_buf, s->spawn_len, head, s->exec_slots, nslots, &args.sp) != 0) {
        send_error(s, NR_ERR_MALFORMED, 0);
        s->exit_code = NR_EXIT_PROTOCOL;
        leave(s);
    }
    s->flags = head->flags;
    s->kill_timeout_ms = head->kill_timeout_ms;
    if (s->cg_error != 0) {
        /* A cgroup it could not join: the command must not run outside it. */
        close_stdio(s);
        remove_cgroups(s); /* before the report: the owner may reuse the names at once */
        send_exec_failed(s, s->cg_error, NR_STAGE_CGROUP);
        leave(s);
    }
    if (pipe2(report, O_CLOEXEC) < 0) {
        send_exec_failed(s, errno, NR_STAGE_SETUP);
        leave(s);
    }
    args.self = s->self;
    memcpy(args.fds, s->fds, sizeof args.fds);
    args.ctl = s->ctl;
    args.sfd = s->sfd;
    args.report_fd = report[1];
    args.npaths = head->npaths;
    args.pty = (head->flags & NR_FLAG_PTY) != 0;
    args.attrs = s->attrs;

    /* CLONE_PIDFD: a pidfd that names the command from its birth. SIGCHLD as
     * exit signal (execve would reset any other to it). */
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, &old, (size_t)(NSIG / 8));
    pid = clone_command(s, &args, stack, sizeof stack, &pidfd);
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &old, NULL, (size_t)(NSIG / 8));
    /* The child has copies of these (no CLONE_FILES): ours can go. */
    close(report[1]);
    close_stdio(s);
    close_cgroup_procs(s);
    if (pid < 0) {
        int err = errno;
        close(report[0]);
        send_exec_failed(s, err, NR_STAGE_SETUP);
        leave(s);
    }
    s->child = pid;
    s->pidfd = pidfd;
    s->exec_report = report[0];
    if (!args.pty)
        setpgid(pid, pid); /* the child does it too; whichever comes first (a PTY child's setsid must come first) */
    s->state = EXECING;
}

/* The exec report pipe is readable: a report of failure, or end of file (the
 * exec worked: the pipe was close-on-exec; or the child died before it). */
static void on_exec_report(struct shepherd *s)
{
    struct exec_report r;
    ssize_t n = read(s->exec_report, &r, sizeof r);

    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    close(s->exec_report);
    s->exec_report = -1;
    /* The child is past its exec (or dead): its strings can go. */
    free(s->exec_slots);
    s->exec_slots = NULL;
    free(s->spawn_buf);
    s->spawn_buf = NULL;
    s->spawn_len = 0;
    if (n == (ssize_t)sizeof r) {
        reap_command(s); /* it exits right after writing */
        close(s->pidfd);
        s->pidfd = -1;
        remove_cgroups(s); /* it is reaped: nothing of the tree is in them */
        send_exec_failed(s, r.error, r.stage);
        leave(s);
    }
    send_started(s);
    if (s->state == EXECING)
        s->state = RUNNING;
    report_stop(s); /* a stop that came before S_STARTED */
}

/* ---- the tree ------------------------------------------------------------- */

/* The kill cgroup's part of a round. TERM: its members through pidfds
 * (tree.c), each once, those of a group already termed as a whole left out.
 * KILL: its cgroup.kill, which kills everything in it and below it, forks in
 * flight included, whatever our /proc or pid namespace shows; without one
 * (a v1 directory, or Linux < 5.14), SIGKILL to its members through pidfds.
 * A change in how many it lists counts as progress (maybe_abandon). */
static void cgroup_round(struct shepherd *s, int kill_round)
{
    const struct cgroup *c;
    enum nr_round round = kill_round ? NR_ROUND_KILL : NR_ROUND_TERM;
    int listed;

    if (s->cg_kill < 0)
        return;
    c = &s->cg[s->cg_kill];
    if (kill_round && c->role == NR_CGROUP_V2 && !s->cg_no_kill_file) {
        if (write_text(cg_file(c, "cgroup.kill"), "1") == 0)
            round = NR_ROUND_COUNT; /* done by the kernel: only count */
        else if (errno == ENOENT)
            s->cg_no_kill_file = 1;
    }
    listed = nr_cgroup_round(&s->tree, cg_file(c, "cgroup.procs"), s->child_reaped ? 0 : s->child, round);
    if (listed != s->cg_listed) {
        s->cg_listed = listed;
        s->quiet_since = now_ms();
    }
}

/* One round of signals to every pinned target: the command and its group
 * while the command is unreaped, the children we can list (tree.c), and the
 * members of the kill cgroup. In the TERM round each target gets SIGTERM and
 * SIGCONT once; in the KILL round every target gets SIGKILL every time. */
static void signal_round(struct shepherd *s, int kill_round)
{
    int found;

    if (kill_round) {
        if (!s->child_reaped)
            kill(s->child, SIGKILL); /* the command, even if it left its group */
        kill_group(s, SIGKILL);
    } else if (!s->group_termed) {
        /* Once: a second SIGTERM is, for many programs, "stop waiting and quit
         * now". The command gets its own only if it left its group. */
        int via_group = group_pinned(s) && !s->child_reaped && getpgid(s->child) == s->child;
        if (!s->child_reaped && !via_group) {
            kill(s->child, SIGTERM);
            kill(s->child, SIGCONT); /* a stopped process must run to see its SIGTERM */
        }
        if (kill_group(s, SIGTERM)) {
            kill_group(s, SIGCONT);
            nr_pidset_add(&s->tree.groups, s->child); /* its members in the cgroup had theirs */
        }
        s->group_termed = 1;
    }
    found = nr_children(&s->tree, s->child_reaped ? 0 : s->child, s->anchor,
                        kill_round ? NR_ROUND_KILL : NR_ROUND_TERM);
    if (found < 0)
        s->exited_flags |= NR_EXITED_SCAN_FAILED;
    else if (found > 0)
        s->quiet_since = now_ms();
    cgroup_round(s, kill_round);
}

static void schedule_scan(struct shepherd *s, int restart)
{
    if (restart)
        s->scan_interval = SCAN_FIRST_MS;
    else if (s->scan_interval < SCAN_MAX_MS)
        s->scan_interval = s->scan_interval * 2 > SCAN_MAX_MS ? SCAN_MAX_MS : s->scan_interval * 2;
    s->next_scan = now_ms() + s->scan_interval;
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
    make_anchor(s);
    s->state = STOPPING;
    s->deadline = deadline;
    signal_round(s, 0);
    schedule_scan(s, 1);
}

static void on_deadline(struct shepherd *s)
{
    s->state = KILLING;
    s->deadline = -1;
    s->quiet_since = now_ms();
    signal_round(s, 1);
    schedule_scan(s, 1);
}

/* Reap every child that has exited, adding up its rusage. Returns 1 when no
 * child is left but the anchor (ECHILD), 0 while some remain. Without an
 * anchor the last wait4 has __WALL, so its ECHILD says no child of any kind
 * is left (childless, which reusable() needs).
 *
 * Until a stop begins the command must not be reaped (its group would lose
 * its pin before the anchor is in it): then zombies are found with WNOWAIT
 * and reaped by pid, and the command, when it is the zombie found, is left
 * for reap_and_decide. Without __WALL, wait4 never reaps the anchor. */
static int reap(struct shepherd *s)
{
    for (;;) {
        struct rusage ru;
        int st = 0, every_kind = 0;
        pid_t pid;

        if (!s->free_reap && !s->child_reaped) {
            siginfo_t si;
            memset(&si, 0, sizeof si);
            if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == ECHILD)
                    return 1;
                fail("waitid");
                return 0;
            }
            if (si.si_pid == 0 || si.si_pid == s->child)
                return 0; /* none has exited, or the command has: see reap_and_decide */
            pid = wait4(si.si_pid, &st, WNOHANG, &ru);
        } else {
            every_kind = s->anchor <= 0; /* no clone child to keep: __WALL */
            pid = wait4(-1, &st, WNOHANG | (every_kind ? __WALL : 0), &ru);
        }
        if (pid > 0) {
            add_rusage(s, &ru);
            nr_tree_forget(&s->tree, pid);
            s->quiet_since = now_ms();
            if (pid == s->child) {
                s->child_reaped = 1;
                s->child_exited = 1;
                s->status = st;
            }
            continue;
        }
        if (pid == 0)
            return 0; /* children remain */
        if (errno == EINTR)
            continue;
        if (errno == ECHILD) {
            s->childless = every_kind;
            return 1;
        }
        fail("wait4");
        return 0; /* cannot happen with valid arguments; keep polling */
    }
}

/* Reap, then decide what the command's exit means. */
static void reap_and_decide(struct shepherd *s)
{
    int empty;

    if (s->state == DONE)
        return;
    empty = reap(s);

    if (!s->child_exited)
        return;
    if (s->state != RUNNING) {
        /* The command and everything else reaped, and nothing left in the
         * cgroup (an outsider put there, say): the tree is gone. */
        if (empty && cgroup_holds_none_but(s, 0))
            finish(s);
        return;
    }
    /* The command exited on its own. With FLAG_DETACH its descendants are
     * left be (a stop asked for before is acted on first: on_command_exit);
     * but not with a cgroup, whose directories are about to be removed
     * (Python refuses the combination; here the cgroup wins). */
    if ((s->flags & NR_FLAG_DETACH) && s->cg_kill < 0) {
        finish(s);
        return;
    }
    /* The fast path: the listing shows no other child, and the cgroup nothing
     * but the command, so the command can be reaped at once, and ECHILD (and
     * the cgroup, empty) confirms the tree is gone.
     *
     * On Linux 6.18 an exited command that is not reaped yet is neither
     * listed in cgroup.procs nor counted as "populated", in v2 and v1 alike
     * (the kernel takes a task out of its cgroups in do_exit, before its
     * parent can see it exit; tried with a zombie held unreaped): so this asks
     * for an empty cgroup. A kernel that did list the zombie would still pass
     * here, its pid left out, and be checked again once it is reaped. */
    if (!s->child_reaped) {
        int others = nr_children(&s->tree, s->child, 0, NR_ROUND_COUNT);
        if (others < 0)
            s->exited_flags |= NR_EXITED_SCAN_FAILED;
        if (others == 0 && cgroup_holds_none_but(s, s->child)) {
            reap_command(s);
            s->free_reap = 1;
            if (reap(s) && cgroup_holds_none_but(s, 0)) {
                finish(s);
                return;
            }
        }
    }
    begin_stop(s, 0); /* leftovers */
}

/* KILL phase, the command gone: children remain that no listing finds (no
 * usable /proc) and nothing has died for a while. Nothing more can reach
 * them: report them abandoned rather than wait forever. */
static void maybe_abandon(struct shepherd *s)
{
    if (s->state == KILLING && s->child_exited && now_ms() - s->quiet_since >= ABANDON_GRACE_MS) {
        s->exited_flags |= NR_EXITED_ABANDONED;
        finish(s);
    }
}

/* ---- events ----------------------------------------------------------------- */

static void hang_up(struct shepherd *s)
{
    s->owner = 0;
    if (s->state == WAIT_SPAWN || s->state == DONE)
        leave(s); /* nothing was started, or all is over (an idle shepherd ends here) */
    begin_stop(s, 0);
}

static void protocol_error(struct shepherd *s, uint32_t code, int err)
{
    send_error(s, code, err);
    s->exit_code = code == NR_ERR_SYSTEM ? NR_EXIT_SYSTEM : NR_EXIT_PROTOCOL;
    shutdown(s->ctl, SHUT_RDWR); /* what is still queued is read by quiesce */
    hang_up(s);
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

/* A frame before the command started: the pieces of a SPAWN and its cgroups. */
static void on_spawn_frame(struct shepherd *s, const struct nr_frame *f, const int *fds)
{
    int err;

    if (f->type == NR_C_CGROUP) {
        add_cgroup(s, f);
        return;
    }
    if (f->type == NR_C_ATTRS) {
        keep_attrs(s, f);
        return;
    }
    if (f->type != NR_C_SPAWN && f->type != NR_C_SPAWN_PART) {
        protocol_error(s, NR_ERR_UNEXPECTED, 0);
        return;
    }
    err = append_tail(s, f);
    if (err != 0) {
        if (f->type == NR_C_SPAWN) {
            for (int i = 0; i < NR_SPAWN_FDS; i++)
                close(fds[i]);
        }
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

/* Read and act on one control record. Returns 1 when a record was handled,
 * 0 when none was queued or the owner is gone. */
static int on_control(struct shepherd *s)
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
        return 0;
    if (n <= 0) {
        if (n < 0 && errno != ECONNRESET)
            s->exit_code = NR_EXIT_SYSTEM; /* not a hang-up (out of memory, say): stop all the same */
        hang_up(s); /* end of file, or a reset: the owner is gone */
        return 0;
    }
    /* Only SPAWN carries fds; a late SPAWN is unexpected whatever it carries. */
    want = buf[0] != NR_C_SPAWN ? 0 : s->state == WAIT_SPAWN || s->state == DONE ? NR_SPAWN_FDS : nfds;
    if ((flags & (MSG_TRUNC | MSG_CTRUNC)) || (size_t)n > NR_MAX_RECORD || nfds != want ||
        nr_parse_frame(buf, (size_t)n, &f) != 0) {
        for (int i = 0; i < nfds && i < NR_SPAWN_FDS; i++)
            close(fds[i]);
        protocol_error(s, NR_ERR_MALFORMED, 0);
        return 1;
    }
    if (s->state == DONE) {
        /* What the owner sent about the last command before it read
         * S_EXITED: nobody is left to act on it. */
        if (f.type == NR_C_SIGNAL || f.type == NR_C_STOP || f.type == NR_C_WINSIZE)
            return 1;
        s->state = WAIT_SPAWN; /* the next command's first frame */
    }
    if (s->state == WAIT_SPAWN) {
        on_spawn_frame(s, &f, fds);
        return 1;
    }
    for (int i = 0; i < nfds; i++)
        close(fds[i]); /* a second SPAWN's */
    on_running_frame(s, &f);
    return 1;
}

/* The pidfd says the command has exited. What the owner sent before that
 * (a C_STOP in particular, which must win over FLAG_DETACH) is acted on
 * first -- when the poll that saw the exit saw it too (`control_ready`):
 * a frame that came later came after the exit -- and the decision follows
 * in the loop. */
static void on_command_exit(struct shepherd *s, int control_ready)
{
    while (control_ready && s->owner && on_control(s))
        ;
    s->child_exited = 1;
}

static void on_signals(struct shepherd *s)
{
    struct signalfd_siginfo si[8];
    ssize_t n;
    int chld = 0;

    /* A read short of the buffer took every signal pending then; one that
     * comes later makes the signalfd readable again. */
    do {
        n = read(s->sfd, si, sizeof si);
        for (ssize_t i = 0; n > 0 && i < n / (ssize_t)sizeof si[0]; i++) {
            if (si[i].ssi_signo == SIGCHLD)
                chld = 1;
            else if (s->state == WAIT_SPAWN || s->state == DONE)
                leave_signalled(s, si[i].ssi_signo);
            else
                begin_stop(s, 0); /* SIGTERM, SIGINT, SIGHUP, SIGQUIT to the shepherd */
        }
    } while (n == (ssize_t)sizeof si);
    if (chld && s->state >= STOPPING) {
        /* A child died: its children are ours now. Reap, then list again. */
        reap(s);
        signal_round(s, s->state == KILLING);
        schedule_scan(s, 1);
    }
    if (chld)
        report_stop(s);
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
    nr_tree_keep_children(&s->tree);
    return 0;
}

static int poll_timeout(const struct shepherd *s)
{
    int64_t next = -1, now;

    if (s->state == STOPPING && s->deadline >= 0)
        next = s->deadline;
    if (s->state >= STOPPING && s->next_scan >= 0 && (next < 0 || s->next_scan < next))
        next = s->next_scan;
    if (s->state == KILLING && s->child_exited) {
        int64_t give_up = s->quiet_since + ABANDON_GRACE_MS;
        if (next < 0 || give_up < next)
            next = give_up;
    }
    if (next < 0)
        return -1;
    now = now_ms();
    return next <= now ? 0 : (next - now > 60000 ? 60000 : (int)(next - now));
}

static void __attribute__((noreturn)) loop(struct shepherd *s)
{
    for (;;) {
        struct pollfd pfd[4] = {
            {.fd = s->sfd, .events = POLLIN},
            {.fd = s->child_exited ? -1 : s->pidfd, .events = POLLIN},
            {.fd = s->owner ? s->ctl : -1, .events = POLLIN},
            {.fd = s->exec_report, .events = POLLIN},
        };
        int n = poll(pfd, 4, poll_timeout(s));
        int64_t now;

        if (n < 0) {
            if (errno == EINTR)
                continue;
            fail("poll");
            s->exit_code = NR_EXIT_SYSTEM;
            hang_up(s);
            continue;
        }
        if (pfd[3].revents)
            on_exec_report(s); /* before the exit it may precede */
        if (pfd[1].revents)
            on_command_exit(s, pfd[2].revents != 0);
        if (pfd[0].revents)
            on_signals(s);
        if (s->owner && pfd[2].revents)
            on_control(s);
        if (!s->owner && (s->state == RUNNING || s->state == EXECING))
            begin_stop(s, 0); /* a send failed: the owner is gone */
        now = now_ms();
        if (s->state == STOPPING && now >= s->deadline)
            on_deadline(s);
        else if (s->state >= STOPPING && now >= s->next_scan) {
            signal_round(s, s->state == KILLING);
            schedule_scan(s, 0);
        }
        reap_and_decide(s); /* SIGCHLD coalesces; do not rely on it alone */
        maybe_abandon(s);
    }
}

/* The state of a shepherd waiting for its spawn, on control socket `ctl`
 * (a new shepherd, or one serving again: everything else is forgotten). */
static void init_state(struct shepherd *s, int ctl, int sfd, pid_t self)
{
    memset(s, 0, sizeof *s);
    s->ctl = ctl;
    s->sfd = sfd;
    s->pidfd = -1;
    s->exec_report = -1;
    for (int i = 0; i < NR_SPAWN_FDS; i++)
        s->fds[i] = -1;
    s->owner = 1;
    s->exit_code = NR_EXIT_OK;
    s->state = WAIT_SPAWN;
    s->self = self;
    s->deadline = -1;
    s->next_scan = -1;
    s->kill_timeout_ms = 5000;
    s->cg_kill = -1;
    s->cg_listed = -1;
    s->cg_v2_dir = -1;
    for (int i = 0; i < NR_MAX_CGROUPS; i++)
        s->cg[i].procs = -1;
    nr_tree_init(&s->tree, s->self);
}

void nr_shepherd_main(int ctl)
{
    struct shepherd s;

    init_state(&s, ctl, -1, (pid_t)syscall(SYS_getpid)); /* not the cached pid of the zygote */
    if (setup(&s) < 0) {
        send_error(&s, NR_ERR_SYSTEM, errno);
        s.exit_code = NR_EXIT_SYSTEM;
        leave(&s);
    }
    loop(&s);
}
