#define _GNU_SOURCE
#include "tree.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434 /* one number on every architecture since 5.1 (alpha aside) */
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

/* At most this many pidfds are held at once, so a huge cgroup cannot exhaust
 * the fd limit: it is handled a batch at a time, each with its own second read. */
#define PIDFD_BATCH 256

void nr_tree_init(struct nr_tree *t, pid_t self)
{
    memset(t, 0, sizeof *t);
    t->self = self;
    t->children_fd = -1;
}

void nr_tree_free(struct nr_tree *t)
{
    nr_pidset_free(&t->termed);
    nr_pidset_free(&t->groups);
    nr_pidset_free(&t->listed);
    nr_pidset_free(&t->again);
}

/* Index of the first entry >= pid. */
static size_t lower_bound(const struct nr_pidset *set, pid_t pid)
{
    size_t lo = 0, hi = set->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (set->v[mid] < pid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int nr_pidset_has(const struct nr_pidset *set, pid_t pid)
{
    size_t i = lower_bound(set, pid);
    return i < set->n && set->v[i] == pid;
}

/* Room for one more pid. Returns 0, or -1 when memory ran out. */
static int make_room(struct nr_pidset *set)
{
    if (set->n == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 64;
        pid_t *grown = realloc(set->v, cap * sizeof *grown);
        if (grown == NULL)
            return -1;
        set->v = grown;
        set->cap = cap;
    }
    return 0;
}

int nr_pidset_add(struct nr_pidset *set, pid_t pid)
{
    size_t i = lower_bound(set, pid);
    if (i < set->n && set->v[i] == pid)
        return 0;
    if (make_room(set) < 0)
        return -1;
    memmove(set->v + i + 1, set->v + i, (set->n - i) * sizeof *set->v);
    set->v[i] = pid;
    set->n++;
    return 0;
}

void nr_pidset_del(struct nr_pidset *set, pid_t pid)
{
    size_t i = lower_bound(set, pid);
    if (i < set->n && set->v[i] == pid) {
        memmove(set->v + i, set->v + i + 1, (set->n - i - 1) * sizeof *set->v);
        set->n--;
    }
}

void nr_pidset_free(struct nr_pidset *set)
{
    free(set->v);
    memset(set, 0, sizeof *set);
}

void nr_tree_forget(struct nr_tree *t, pid_t pid)
{
    nr_pidset_del(&t->termed, pid);
}

/* `pid` is an unreaped child of ours: its number, and the number of the group
 * it leads, cannot be reused before we wait for it. */
static void signal_child(struct nr_tree *t, pid_t pid, enum nr_round round)
{
    pid_t pgid;
    int leader;

    if (round == NR_ROUND_COUNT)
        return;
    pgid = getpgid(pid);
    leader = pgid == pid;
    if (round == NR_ROUND_KILL) {
        kill(pid, SIGKILL);
        if (leader)
            kill(-pid, SIGKILL);
        return;
    }
    if (nr_pidset_has(&t->termed, pid))
        return;
    if (nr_pidset_has(&t->groups, pgid)) {
        /* A member of a group that got its SIGTERM as a whole (the command's,
         * say, whose background job we now hold): one is enough. */
        nr_pidset_add(&t->termed, pid);
        return;
    }
    /* A leader gets its SIGTERM through its group, not a second one of its
     * own (it could run its handler between the two). Only if it left the
     * group meanwhile is it sent one directly. */
    if (leader) {
        kill(-pid, SIGTERM);
        kill(-pid, SIGCONT); /* a stopped process must run to see its SIGTERM */
        nr_pidset_add(&t->groups, pid); /* out of memory: members may get a second one, harmless */
    }
    if (!leader || getpgid(pid) != pid) {
        kill(pid, SIGTERM);
        kill(pid, SIGCONT);
    }
    nr_pidset_add(&t->termed, pid); /* out of memory: it may get a second SIGTERM, harmless */
}

/* /proc is this pid namespace's and shows us as ourselves: in a child pid
 * namespace with the parent's /proc mounted, /proc/self names another pid. */
static int proc_is_ours(pid_t self)
{
    char link[32], want[32];
    ssize_t n = readlink("/proc/self", link, sizeof link - 1);

    if (n <= 0)
        return 0;
    link[n] = '\0';
    snprintf(want, sizeof want, "%d", (int)self);
    return strcmp(link, want) == 0;
}

static int by_pid(const void *a, const void *b)
{
    pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;
    return (x > y) - (x < y);
}

/* Append, unsorted (read_pids sorts once at the end). */
static int append(struct nr_pidset *set, pid_t pid)
{
    if (make_room(set) < 0)
        return -1;
    set->v[set->n++] = pid;
    return 0;
}

/* Read a file of decimal pids (cgroup.procs: one a line; a children file:
 * space-separated) into `out`: sorted,
 * without duplicates, without 0 (a process outside our pid namespace).
 * Returns 0, or -1 when it cannot be opened or read. */
static int read_pids(const char *path, struct nr_pidset *out)
{
    static char buf[16384];
    long pid = 0;
    int digits = 0, fd, err = 0;
    size_t kept = 0;
    ssize_t n;

    out->n = 0;
    /* O_NONBLOCK: a path that is not a cgroup's (a FIFO) must not hang us. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return -1;
    for (;;) {
        n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; i++) { /* a number may straddle two reads */
            if (buf[i] >= '0' && buf[i] <= '9') {
                if (digits < 10)
                    pid = pid * 10 + (buf[i] - '0');
                digits++;
                continue;
            }
            if (digits > 0 && digits < 10 && pid > 0 && append(out, (pid_t)pid) < 0)
                err = 1;
            pid = 0;
            digits = 0;
        }
    }
    if (n == 0 && digits > 0 && digits < 10 && pid > 0 && append(out, (pid_t)pid) < 0)
        err = 1;
    if (n < 0)
        err = 1;
    close(fd);
    if (out->n > 0) {
        qsort(out->v, out->n, sizeof *out->v, by_pid);
        for (size_t i = 0; i < out->n; i++) {
            if (kept == 0 || out->v[i] != out->v[kept - 1])
                out->v[kept++] = out->v[i];
        }
        out->n = kept;
    }
    return err ? -1 : 0;
}

/* The pids of the "NSpid:" line of a /proc/<pid>/status (outermost namespace
 * first, the process's own last): how many, up to `max`, or -1. */
static int read_nspid(const char *status, pid_t *out, int max)
{
    static char buf[4096];
    ssize_t n;
    int fd, count = 0;
    char *p, *end;

    fd = open(status, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return -1;
    do
        n = read(fd, buf, sizeof buf - 1); /* the line comes early in the file */
    while (n < 0 && errno == EINTR);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    p = strstr(buf, "\nNSpid:");
    if (p == NULL)
        return -1;
    p += 7;
    while (count < max) {
        long v = strtol(p, &end, 10);
        if (end == p || v <= 0)
            break;
        out[count++] = (pid_t)v;
        p = end;
    }
    return count > 0 ? count : -1;
}

/* Our children when /proc belongs to an ancestor pid namespace (a child pid
 * namespace whose owner kept the parent's /proc): /proc/self is our number
 * there, its children file lists theirs, and the NSpid line of each turns it
 * into our number (the same depth as ours). The numbers stay valid: they name
 * our unreaped children. Fills t->listed; returns 0, or -1 when this /proc
 * does not show us either (an empty or a sibling namespace's /proc). */
static int foreign_children(struct nr_tree *t)
{
    enum { DEPTH = 33 }; /* pid namespaces nest 32 deep at most */
    char path[96], self[16];
    pid_t ns[DEPTH];
    ssize_t len = readlink("/proc/self", self, sizeof self - 1);
    int depth;

    if (len <= 0)
        return -1;
    self[len] = '\0';
    snprintf(path, sizeof path, "/proc/%s/status", self);
    depth = read_nspid(path, ns, DEPTH);
    if (depth < 2 || ns[depth - 1] != t->self) /* not us, or not an ancestor's /proc */
        return -1;
    snprintf(path, sizeof path, "/proc/%s/task/%s/children", self, self);
    if (read_pids(path, &t->again) < 0)
        return -1;
    t->listed.n = 0;
    for (size_t i = 0; i < t->again.n; i++) {
        snprintf(path, sizeof path, "/proc/%d/status", (int)t->again.v[i]);
        if (read_nspid(path, ns, DEPTH) < depth)
            continue; /* reaped meanwhile: nothing to signal */
        if (nr_pidset_add(&t->listed, ns[depth - 1]) < 0)
            return -1;
    }
    return 0;
}

void nr_tree_keep_children(struct nr_tree *t)
{
    char path[64];

    if (t->children_fd >= 0 || !proc_is_ours(t->self))
        return;
    snprintf(path, sizeof path, "/proc/self/task/%d/children", (int)t->self);
    t->children_fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
}

/* The kept children file, read whole from offset 0 into t->listed. A
 * seq_file read returns less than asked only at its end. Returns 0 or -1. */
static int read_kept_children(struct nr_tree *t)
{
    static char buf[16384];
    off_t off = 0;
    ssize_t n;

    t->listed.n = 0;
    for (;;) {
        n = pread(t->children_fd, buf, sizeof buf, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        for (ssize_t i = 0; i < n;) { /* space-separated pids; a number may straddle two reads */
            ssize_t start = i;
            long pid = 0;
            while (i < n && buf[i] >= '0' && buf[i] <= '9')
                pid = pid * 10 + (buf[i++] - '0');
            if (i == n && n == (ssize_t)sizeof buf && i > start) {
                off += start; /* read this number again, whole */
                goto again;
            }
            if (i > start && i - start < 10 && pid > 0 && nr_pidset_add(&t->listed, (pid_t)pid) < 0)
                return -1;
            while (i < n && (buf[i] < '0' || buf[i] > '9'))
                i++;
        }
        if (n < (ssize_t)sizeof buf)
            return 0;
        off += n;
    again:;
    }
}

int nr_children(struct nr_tree *t, pid_t skip1, pid_t skip2, enum nr_round round)
{
    char path[64];
    int found = 0;

    if (t->children_fd >= 0) {
        if (read_kept_children(t) < 0)
            return -1;
    } else if (proc_is_ours(t->self)) {
        snprintf(path, sizeof path, "/proc/self/task/%d/children", (int)t->self);
        if (read_pids(path, &t->listed) < 0)
            return -1;
    } else if (foreign_children(t) < 0) {
        return -1;
    }
    for (size_t i = 0; i < t->listed.n; i++) {
        pid_t pid = t->listed.v[i];
        if (pid == skip1 || pid == skip2)
            continue;
        signal_child(t, pid, round);
        found++;
    }
    return found;
}

int nr_cgroup_round(struct nr_tree *t, const char *procs, pid_t skip, enum nr_round round)
{
    int pidfds[PIDFD_BATCH];
    pid_t pids[PIDFD_BATCH];
    size_t next = 0;
    int found = 0;

    if (read_pids(procs, &t->listed) < 0)
        return -1;
    for (size_t i = 0; i < t->listed.n; i++)
        found += t->listed.v[i] != skip;
    if (round == NR_ROUND_COUNT)
        return found;
    while (next < t->listed.n) {
        int batch = 0;
        /* Pin a batch: each pid not handled already, as a pidfd. */
        for (; next < t->listed.n && batch < PIDFD_BATCH; next++) {
            pid_t pid = t->listed.v[next];
            long fd;
            if (pid == skip || (round == NR_ROUND_TERM && nr_pidset_has(&t->termed, pid)))
                continue;
            fd = syscall(SYS_pidfd_open, pid, 0);
            if (fd < 0)
                continue; /* it exited: nothing to signal */
            pidfds[batch] = (int)fd;
            pids[batch] = pid;
            batch++;
        }
        if (batch == 0)
            break;
        /* Confirm: only a pid listed again is the process its pidfd names. */
        if (read_pids(procs, &t->again) == 0) {
            for (int i = 0; i < batch; i++) {
                if (!nr_pidset_has(&t->again, pids[i]))
                    continue;
                if (round == NR_ROUND_KILL) {
                    syscall(SYS_pidfd_send_signal, pidfds[i], SIGKILL, NULL, 0);
                    continue;
                }
                /* Its pgid, read now that the pid is its own: if it dies
                 * meanwhile, the number may name another process's group, but
                 * the signals below then fail anyway. */
                if (!nr_pidset_has(&t->groups, getpgid(pids[i]))) {
                    syscall(SYS_pidfd_send_signal, pidfds[i], SIGTERM, NULL, 0);
                    syscall(SYS_pidfd_send_signal, pidfds[i], SIGCONT, NULL, 0);
                }
                nr_pidset_add(&t->termed, pids[i]); /* out of memory: maybe a second SIGTERM, harmless */
            }
        }
        for (int i = 0; i < batch; i++)
            close(pidfds[i]);
    }
    return found;
}
