#define _GNU_SOURCE
#include "tree.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void nr_tree_init(struct nr_tree *t, pid_t self)
{
    memset(t, 0, sizeof *t);
    t->self = self;
}

/* Index of the first entry >= pid in the sorted TERM list. */
static size_t lower_bound(const struct nr_tree *t, pid_t pid)
{
    size_t lo = 0, hi = t->nterm;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->termed[mid] < pid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int was_termed(const struct nr_tree *t, pid_t pid)
{
    size_t i = lower_bound(t, pid);
    return i < t->nterm && t->termed[i] == pid;
}

static void remember(struct nr_tree *t, pid_t pid)
{
    size_t i = lower_bound(t, pid);
    if (i < t->nterm && t->termed[i] == pid)
        return;
    if (t->nterm == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        pid_t *grown = realloc(t->termed, cap * sizeof *grown);
        if (grown == NULL)
            return; /* it may get a second SIGTERM: harmless */
        t->termed = grown;
        t->cap = cap;
    }
    memmove(t->termed + i + 1, t->termed + i, (t->nterm - i) * sizeof *t->termed);
    t->termed[i] = pid;
    t->nterm++;
}

void nr_tree_forget(struct nr_tree *t, pid_t pid)
{
    size_t i = lower_bound(t, pid);
    if (i < t->nterm && t->termed[i] == pid) {
        memmove(t->termed + i, t->termed + i + 1, (t->nterm - i - 1) * sizeof *t->termed);
        t->nterm--;
    }
}

/* `pid` is an unreaped child of ours: its number, and the number of the group
 * it leads, cannot be reused before we wait for it. */
static void signal_child(struct nr_tree *t, pid_t pid, enum nr_round round)
{
    int leader;

    if (round == NR_ROUND_COUNT)
        return;
    leader = getpgid(pid) == pid;
    if (round == NR_ROUND_KILL) {
        kill(pid, SIGKILL);
        if (leader)
            kill(-pid, SIGKILL);
        return;
    }
    if (was_termed(t, pid))
        return;
    kill(pid, SIGTERM);
    kill(pid, SIGCONT); /* a stopped process must run to see its SIGTERM */
    if (leader) {
        kill(-pid, SIGTERM);
        kill(-pid, SIGCONT);
    }
    remember(t, pid);
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

int nr_children(struct nr_tree *t, pid_t skip1, pid_t skip2, enum nr_round round)
{
    static char buf[16384];
    char path[64];
    long pid = 0;
    int digits = 0, found = 0, fd;
    ssize_t n;

    if (!proc_is_ours(t->self))
        return -1;
    snprintf(path, sizeof path, "/proc/self/task/%d/children", (int)t->self);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    /* Space-separated decimal pids; a number may straddle two reads. */
    for (;;) {
        n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        for (ssize_t i = 0; i <= n; i++) {
            if (i < n && buf[i] >= '0' && buf[i] <= '9') {
                if (digits < 10)
                    pid = pid * 10 + (buf[i] - '0');
                digits++;
                continue;
            }
            if (i == n)
                break; /* the number may go on in the next read */
            if (digits > 0 && digits < 10 && pid > 0 && (pid_t)pid != skip1 && (pid_t)pid != skip2) {
                signal_child(t, (pid_t)pid, round);
                found++;
            }
            pid = 0;
            digits = 0;
        }
    }
    if (n == 0 && digits > 0 && digits < 10 && pid > 0 && (pid_t)pid != skip1 && (pid_t)pid != skip2) {
        signal_child(t, (pid_t)pid, round);
        found++;
    }
    close(fd);
    return n < 0 ? -1 : found;
}
