#define _GNU_SOURCE
#include "tree.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct proc {
    pid_t pid, ppid;
    int mark;
};

/* The parent pid from /proc/PID/stat: the field after the state, after the
 * last ')' (the command name may itself contain parentheses). */
static pid_t read_ppid(const char *pid)
{
    char path[64], buf[512];
    char *end;
    ssize_t n;
    int fd;

    if ((size_t)snprintf(path, sizeof path, "/proc/%s/stat", pid) >= sizeof path)
        return -1;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    end = strrchr(buf, ')');
    if (end == NULL || end[1] != ' ' || end[2] == '\0' || end[3] != ' ')
        return -1;
    return (pid_t)strtol(end + 4, NULL, 10);
}

static int by_pid(const void *a, const void *b)
{
    pid_t x = ((const struct proc *)a)->pid, y = ((const struct proc *)b)->pid;
    return (x > y) - (x < y);
}

/* Every process on the system with its parent, sorted by pid, in a buffer
 * kept between calls (the stop loop rescans every few milliseconds). */
static struct proc *list_procs(size_t *count)
{
    static struct proc *procs;
    static size_t cap;
    size_t n = 0;
    struct dirent *de;
    DIR *dir = opendir("/proc");

    if (dir == NULL)
        return NULL;
    while ((de = readdir(dir)) != NULL) {
        pid_t ppid;
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        ppid = read_ppid(de->d_name);
        if (ppid <= 0)
            continue; /* gone meanwhile, or a child of the kernel */
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 256;
            struct proc *grown = realloc(procs, ncap * sizeof *procs);
            if (grown == NULL)
                break; /* signal what we have; the caller rescans */
            procs = grown;
            cap = ncap;
        }
        procs[n].pid = (pid_t)strtol(de->d_name, NULL, 10);
        procs[n].ppid = ppid;
        procs[n].mark = 0;
        n++;
    }
    closedir(dir);
    if (n > 1)
        qsort(procs, n, sizeof *procs, by_pid);
    *count = n;
    return procs;
}

int nr_signal_descendants(pid_t root, int sig)
{
    size_t n = 0;
    struct proc *procs = list_procs(&n);
    int changed, count = 0;

    if (procs == NULL)
        return -1;
    /* Mark the descendants of root: a pass per generation at most (a parent
     * whose pid is larger than its child's, after pid wrap, needs a second). */
    do {
        changed = 0;
        for (size_t i = 0; i < n; i++) {
            struct proc key, *parent;
            if (procs[i].mark)
                continue;
            key.pid = procs[i].ppid;
            parent = procs[i].ppid == root ? NULL : bsearch(&key, procs, n, sizeof *procs, by_pid);
            if (procs[i].ppid == root || (parent != NULL && parent->mark)) {
                procs[i].mark = 1;
                changed = 1;
            }
        }
    } while (changed);

    for (size_t i = 0; i < n; i++) {
        if (procs[i].mark && kill(procs[i].pid, sig) == 0)
            count++;
    }
    return count;
}
