// SPDX-License-Identifier: GPL-2.0
/* File operations: writes, creations, deletions, renames, mode, owner and
 * extended attribute changes, links, device nodes, and reads of credential
 * files, each with the full path as the process saw it and its result.
 *
 * - Each syscall of PT_FILE_SYSCALLS (events.h) has an entry and an exit
 *   program on its tracepoints (syscalls/sys_enter_X + sys_exit_X), as the
 *   privilege programs in their tracepoint mode. The entry keeps the arguments
 *   per thread; the exit builds the path, decides, and sends one record.
 * - Filtered here, not in userspace: a read-only open is kept only when its
 *   path is absolute and under a watched credential prefix (`read_watch`), so
 *   the opens of everything else stop at the entry after one string read and
 *   one trie lookup and never reach the ring buffer. Every other operation is
 *   recorded when its path (or the new name of a rename or link) is under a
 *   watched prefix (`write_watch`) or has a watched file name (`name_watch`),
 *   or, anywhere: a hidden file or directory created, a chmod giving an execute
 *   or setuid/setgid bit, a `security.*` extended attribute set, a device node
 *   made. Userspace fills the three maps at load (the defaults and --watch).
 * Records the ring buffer or a map cannot take are counted in `drops`. */
#define PT_RING_BYTES (4 << 20)

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "events.h"
#include "common.h"

char LICENSE[] SEC("license") = "GPL";

#define AT_FDCWD -100
#define O_ACCMODE 3
#define O_CREAT 0100
#define O_TRUNC 01000
#define FMODE_CREATED 0x100000
#define S_IFMT 0170000
#define S_IFCHR 0020000
#define S_IFBLK 0060000
#define S_ISUID 04000
#define S_ISGID 02000
#define S_IXUGO 0111

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, PT_RING_BYTES);
} events SEC(".maps");

/* podtraild's own process (set at load): its own writes are not recorded. */
const volatile __u32 self_tgid = 0;

const struct pt_file_event *unused_file_event __attribute__((unused));
const struct pt_file_match_key *unused_file_match_key __attribute__((unused));

/* Watched path prefixes: any change under them (write_watch), read-only opens
 * under them (read_watch). Value: the prefix's index in podtraild's list. */
struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(max_entries, 256);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct pt_file_match_key);
    __type(value, __u32);
} write_watch SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(max_entries, 256);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct pt_file_match_key);
    __type(value, __u32);
} read_watch SEC(".maps");

/* Watched file names, wherever they are (NUL-padded). Value: the name's index. */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 256);
    __type(key, char[PT_FILE_BASENAME_MAX]);
    __type(value, __u32);
} name_watch SEC(".maps");

/* Files created or truncated by an open that was not recorded, by (device,
 * inode generation, inode): if one is executed later, file_exec sends the open
 * then (the dropper pattern, anywhere). The generation tells a reused inode
 * number from the file that had it (filesystems without one give 0). LRU: the
 * oldest writes make room; a file written and executed after many thousand
 * other writes is not linked, and that is not loss of a row that was due. */
struct written_key {
    __u32 dev;
    __u32 generation;
    __u64 ino;
};

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 2048);
    __type(key, struct written_key);
    __type(value, struct pt_file_event);
} written SEC(".maps");

/* A file syscall between its entry and exit, per thread. */
struct file_pending {
    __u32 op;
    __u32 uid;
    __u32 euid;
    __u32 read_watch;   /* read-only open: the matched read_watch index */
    __s64 nr;           /* the syscall's number: its exit must have the same */
    __u8 syscall;       /* position in PT_FILE_SYSCALLS, and how it names its files */
    __u8 dfd_arg;
    __u8 path_arg;
    __u8 dfd2_arg;
    __u8 path2_arg;
    __u8 pad[3];
    __u64 time_ns;
    __u64 cgroup_id;
    __u64 open_flags;
    __u64 args[6];
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16384);
    __type(key, __u64); /* pid_tgid */
    __type(value, struct file_pending);
} file_pending SEC(".maps");

/* Per-CPU work space: the record, the string a process gave, the directory
 * built backwards (leaf last), the trie and name keys. */
struct file_scratch {
    struct pt_file_event e;
    struct pt_file_match_key key;
    char name[PT_FILE_BASENAME_MAX];
    __u32 pos;        /* start of the directory in dir[] */
    __u32 truncated;
    char given[PT_FILE_NAME_MAX + 1];
    char dir[PT_FILE_DIR_MAX + 256];
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct file_scratch);
} file_scratch SEC(".maps");

/* Look `s->key.data` (a path of `len` bytes, without NUL) up in a trie. */
static __always_inline __u32 *match_prefix(void *trie, struct file_scratch *s, long len)
{
    if (len <= 0)
        return NULL;
    if (len > PT_FILE_MATCH_MAX)
        len = PT_FILE_MATCH_MAX;
    s->key.prefixlen = (__u32)len * 8;
    return bpf_map_lookup_elem(trie, &s->key);
}

/* The read_watch forms that stand for many directories: a path under a home
 * directory (`/root/x`, `/home/<user>/x`) is looked up again as `~/x`, and
 * one under another process's /proc directory (`/proc/<pid>/x`, pid neither
 * the caller's process nor its thread) as `/proc/ * /x` (without the spaces).
 * `s->key.data` holds the path (`len` bytes, no NUL); `s->given` is used as
 * work space. Returns the matched entry's index, or NULL. */
static __noinline __u32 *match_read_form(struct file_scratch *s, long len, __u64 id)
{
    if (len < 7 || len > PT_FILE_MATCH_MAX)
        return NULL;
    char *p = (char *)s->key.data;
    long skip = 0; /* bytes of the path the form replaces */
    int home = 0;
    if (p[0] == '/' && p[1] == 'r' && p[2] == 'o' && p[3] == 'o' && p[4] == 't' && p[5] == '/') {
        skip = 5;
        home = 1;
    } else if (p[0] == '/' && p[1] == 'h' && p[2] == 'o' && p[3] == 'm' && p[4] == 'e' && p[5] == '/') {
        /* The user's directory name: up to the next slash. */
        for (int i = 6; i < 6 + PT_FILE_BASENAME_MAX * 2; i++) {
            if (i >= len)
                return NULL;
            if (p[i & (PT_FILE_MATCH_MAX - 1)] == '/') {
                skip = i;
                break;
            }
        }
        home = 1;
    } else if (p[0] == '/' && p[1] == 'p' && p[2] == 'r' && p[3] == 'o' && p[4] == 'c' && p[5] == '/') {
        __u64 pid = 0;
        for (int i = 6; i < 6 + 11; i++) {
            if (i >= len)
                return NULL;
            char c = p[i & (PT_FILE_MATCH_MAX - 1)];
            if (c == '/' && i > 6) {
                skip = i;
                break;
            }
            if (c < '0' || c > '9')
                return NULL; /* self, thread-self, or not a process */
            pid = pid * 10 + (c - '0');
        }
        if (pid == (id >> 32) || pid == (__u32)id)
            return NULL;
    }
    if (skip == 0)
        return NULL;
    /* Rewrite the key: the form, then the rest of the path from its slash. */
    if (bpf_probe_read_kernel(s->given, PT_FILE_MATCH_MAX, p) != 0)
        return NULL;
    long at = home ? 1 : 7;
    if (home)
        p[0] = '~';
    else {
        p[6] = '*'; /* "/proc/" is already there */
    }
    long rest = len - skip;
    if (rest <= 0 || rest > PT_FILE_MATCH_MAX - 7)
        return NULL;
    if (bpf_probe_read_kernel(&s->key.data[at & 7], rest & (PT_FILE_MATCH_MAX - 1), &s->given[skip & (PT_FILE_MATCH_MAX - 1)]) != 0)
        return NULL;
    return match_prefix(&read_watch, s, at + rest);
}

static __always_inline int enter_common(__u32 op, const __u64 *args, long nr, __u32 syscall, int dfd_arg, int path_arg, int dfd2_arg, int path2_arg)
{
    __u64 id = bpf_get_current_pid_tgid();
    if ((__u32)(id >> 32) == self_tgid)
        return 0;
    __u64 open_flags = 0;
    __u32 read_index = 0;
    if (op == PT_FILE_OPEN) {
        /* open, openat: the argument after the path; creat: always a write;
         * openat2: struct open_how's first field. */
        open_flags = args[(path_arg + 1) & 7];
        if (args[5] == 1)
            open_flags = O_CREAT | O_TRUNC | 1;
        if (args[5] == 2) {
            __u64 f = 0;
            bpf_probe_read_user(&f, sizeof(f), (const void *)args[2]);
            open_flags = f;
        }
        if ((open_flags & (O_ACCMODE | O_CREAT | O_TRUNC)) == 0) {
            /* Read-only: only absolute paths under a read_watch prefix. */
            __u32 zero = 0;
            struct file_scratch *s = bpf_map_lookup_elem(&file_scratch, &zero);
            if (!s)
                return 0;
            long n = bpf_probe_read_user_str(s->key.data, PT_FILE_MATCH_MAX, (const void *)args[path_arg & 7]);
            if (n <= 1 || s->key.data[0] != '/')
                return 0;
            __u32 *idx = match_prefix(&read_watch, s, n - 1);
            if (!idx)
                idx = match_read_form(s, n - 1, id);
            if (!idx)
                return 0;
            read_index = *idx;
            op = PT_FILE_READ;
        }
    }
    struct file_pending p = {};
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    p.op = op;
    p.uid = BPF_CORE_READ(task, cred, uid.val);
    p.euid = BPF_CORE_READ(task, cred, euid.val);
    p.read_watch = read_index;
    p.nr = nr;
    p.syscall = syscall;
    p.dfd_arg = dfd_arg;
    p.path_arg = path_arg;
    p.dfd2_arg = dfd2_arg;
    p.path2_arg = path2_arg;
    p.time_ns = bpf_ktime_get_boot_ns();
    p.cgroup_id = bpf_get_current_cgroup_id();
    p.open_flags = open_flags;
    for (int i = 0; i < 6; i++)
        p.args[i] = args[i];
    if (op == PT_FILE_OPEN || op == PT_FILE_READ)
        p.args[5] = 0; /* the creat/openat2 mark, not an argument */
    if (bpf_map_update_elem(&file_pending, &id, &p, BPF_ANY) != 0)
        count_drop(PT_DROP_FILE_PENDING_FULL, p.cgroup_id);
    return 0;
}


/* Build in s->dir[s->pos..PT_FILE_DIR_MAX] the path of (dentry, vfsmnt) up to
 * the current task's root, walking up across mounts as exec's cwd does
 * (process.bpf.c read_cwd): each component written backwards as "/name". The
 * root gives an empty string. Sets s->truncated when the walk stopped short of
 * the root (too deep or too long). The position lives in map memory (s->pos),
 * not a register, to keep the walk verifiable. */
static __noinline int walk_dir(struct file_scratch *s, struct dentry *dentry, struct vfsmount *vfsmnt)
{
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    struct dentry *root = BPF_CORE_READ(task, fs, root.dentry);
    struct vfsmount *root_mnt = BPF_CORE_READ(task, fs, root.mnt);
    s->pos = PT_FILE_DIR_MAX;
    s->truncated = 1;
    for (int i = 0; i < PT_FILE_DEPTH; i++) {
        if (dentry == root && vfsmnt == root_mnt) {
            s->truncated = 0;
            return 0;
        }
        struct dentry *parent = BPF_CORE_READ(dentry, d_parent);
        if (dentry == BPF_CORE_READ(vfsmnt, mnt_root) || dentry == parent) {
            struct mount *mnt = (struct mount *)((void *)vfsmnt - bpf_core_field_offset(struct mount, mnt));
            struct mount *up = BPF_CORE_READ(mnt, mnt_parent);
            if (up == mnt) {
                s->truncated = 0;
                return 0; /* the root of the mount namespace */
            }
            dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
            vfsmnt = (struct vfsmount *)((void *)up + bpf_core_field_offset(struct mount, mnt));
            continue;
        }
        __u32 len = BPF_CORE_READ(dentry, d_name.len);
        const unsigned char *name = BPF_CORE_READ(dentry, d_name.name);
        __u32 pos = s->pos;
        if (len == 0 || len > 255 || pos < len + 1)
            return 0;
        pos -= len + 1;
        s->dir[pos & (PT_FILE_DIR_MAX - 1)] = '/';
        bpf_probe_read_kernel(&s->dir[(pos + 1) & (PT_FILE_DIR_MAX - 1)], len & 255, name);
        s->pos = pos;
        dentry = parent;
    }
    return 0;
}

/* Write into the record's path[] (`second`: path2[]; PT_FILE_PATH_MAX bytes)
 * the path of one file argument:
 * `base` says where a relative string starts (an argument index of a directory
 * descriptor, PT_FILE_ARG_CWD) or, with no string (PT_FILE_ARG_NONE), that the
 * descriptor is the file itself; PT_FILE_ARG_RAW copies the string as given.
 * Leaves the file's name (last component) in s->name for name_watch and the
 * first PT_FILE_MATCH_MAX bytes in s->key.data; returns the path's length with
 * its NUL (0: none); s->truncated says whether the directory was cut. */
#define HOW_RAW 1
#define HOW_STRING 2
#define HOW_CWD 4
/* A global function: the kernel verifies it once, on its own, whatever its
 * callers' states (scalars only in and out: the work space is looked up here). */
__noinline int build_path(__u32 second, __u64 base_fd, __u64 string, __u32 how)
{
    __u32 zero = 0;
    struct file_scratch *s = bpf_map_lookup_elem(&file_scratch, &zero);
    if (!s)
        return 0;
    char *out = second ? s->e.path2 : s->e.path;
    int raw = how & HOW_RAW, has_string = how & HOW_STRING, use_cwd = how & HOW_CWD;
    long n = 0;
    out[0] = 0;
    s->name[0] = 0;
    s->truncated = 0;
    if (has_string) {
        n = bpf_probe_read_user_str(s->given, sizeof(s->given), (const void *)string);
        if (n <= 0)
            return 0;
        if (raw || s->given[0] == '/') {
            bpf_probe_read_kernel(out, n & PT_FILE_NAME_MAX, s->given);
            goto done;
        }
    }
    struct dentry *dentry;
    struct vfsmount *mnt;
    if (use_cwd || (has_string && (int)base_fd == AT_FDCWD)) {
        struct task_struct *task = (struct task_struct *)bpf_get_current_task();
        dentry = BPF_CORE_READ(task, fs, pwd.dentry);
        mnt = BPF_CORE_READ(task, fs, pwd.mnt);
    } else {
        struct file *f = pt_fd_file(base_fd);
        if (!f)
            return 0;
        dentry = BPF_CORE_READ(f, f_path.dentry);
        mnt = BPF_CORE_READ(f, f_path.mnt);
    }
    walk_dir(s, dentry, mnt);
    __u32 pos = s->pos;
    __u32 dlen = PT_FILE_DIR_MAX - pos;
    if (dlen > PT_FILE_DIR_MAX)
        return 0;
    if (dlen > 0)
        bpf_probe_read_kernel(out, dlen & (PT_FILE_DIR_MAX - 1 + PT_FILE_DIR_MAX), &s->dir[pos & (PT_FILE_DIR_MAX - 1)]);
    if (!has_string || n <= 1) {
        /* The descriptor's own file, or an empty string (AT_EMPTY_PATH). */
        if (dlen == 0) {
            out[0] = '/';
            dlen = 1;
        }
        out[dlen & (PT_FILE_PATH_MAX - 1)] = 0;
        n = dlen + 1;
        goto done;
    }
    out[dlen & (PT_FILE_PATH_MAX - 1)] = '/';
    bpf_probe_read_kernel(&out[(dlen + 1) & (PT_FILE_DIR_MAX - 1 + PT_FILE_DIR_MAX)], n & PT_FILE_NAME_MAX, s->given);
    n = dlen + 1 + n;
    if (n > PT_FILE_PATH_MAX)
        n = PT_FILE_PATH_MAX;
done:
    if (raw)
        return n;
    /* The last component: scan back from the end for a slash. */
    {
        __u32 start = 0;
        for (int i = 1; i < PT_FILE_PATH_MAX; i++) {
            int j = n - 1 - i;
            if (j < 0)
                break;
            if (out[j & (PT_FILE_PATH_MAX - 1)] == '/') {
                start = j + 1;
                break;
            }
        }
        bpf_probe_read_kernel_str(s->name, sizeof(s->name), &out[start & (PT_FILE_PATH_MAX - 1)]);
        /* A name longer than the buffer is not a watched one: no false match on its head. */
        if (n - 1 - start >= PT_FILE_BASENAME_MAX)
            s->name[0] = 0;
    }
    bpf_probe_read_kernel(s->key.data, PT_FILE_MATCH_MAX, out);
    return n;
}

/* Whether a path is under /root/ or /home/: hidden files there are ordinary
 * (shells, editors and tools keep theirs there); elsewhere they are a way to hide. */
static __always_inline int in_home(const char *p)
{
    return p[0] == '/' && ((p[1] == 'r' && p[2] == 'o' && p[3] == 'o' && p[4] == 't' && p[5] == '/') ||
                           (p[1] == 'h' && p[2] == 'o' && p[3] == 'm' && p[4] == 'e' && p[5] == '/'));
}

/* Why a path is recorded: a watched prefix or file name (0: neither). */
static __always_inline __u32 watched(struct file_scratch *s, int len, __u16 *prefix_index, __u16 *name_index)
{
    __u32 why = 0;
    if (len <= 1)
        return 0;
    __u32 *w = match_prefix(&write_watch, s, len - 1);
    if (w) {
        why |= PT_FILE_WHY_WATCHED;
        *prefix_index = (__u16)*w;
    }
    if (s->name[0]) {
        /* A NUL-padded key: the bytes after the name's NUL must be zero. */
        char key[PT_FILE_BASENAME_MAX] = {};
        bpf_probe_read_kernel_str(key, sizeof(key), s->name);
        __u32 *nw = bpf_map_lookup_elem(&name_watch, key);
        if (nw) {
            why |= PT_FILE_WHY_NAME;
            *name_index = (__u16)*nw;
        }
    }
    return why;
}

/* The exit of every file syscall: each syscall's own exit program tail-calls
 * this one, so the kernel verifies the path building once, not once per
 * syscall (loading took 10 s with 30 copies). What the syscall is and how it
 * names its files come from its entry's record. Never attached itself. */
SEC("tracepoint")
int file_exit(struct trace_event_raw_sys_exit *ctx)
{
    long ret = ctx->ret;
    __u64 id = bpf_get_current_pid_tgid();
    struct file_pending *p = bpf_map_lookup_elem(&file_pending, &id);
    if (!p)
        return 0;
    if (p->nr != ctx->id) {
        bpf_map_delete_elem(&file_pending, &id); /* an entry whose exit never came */
        return 0;
    }
    __u32 op = p->op;
    __u32 syscall = p->syscall;
    int dfd_arg = p->dfd_arg, path_arg = p->path_arg, dfd2_arg = p->dfd2_arg, path2_arg = p->path2_arg;
    __u32 zero = 0;
    struct file_scratch *s = bpf_map_lookup_elem(&file_scratch, &zero);
    if (!s) {
        bpf_map_delete_elem(&file_pending, &id);
        return 0;
    }
    struct pt_file_event *e = &s->e;
    e->kind = PT_KIND_FILE;
    e->op = op;
    e->pid = id >> 32;
    e->tid = (__u32)id;
    e->uid = p->uid;
    e->euid = p->euid;
    e->ret = ret;
    e->time_ns = p->time_ns;
    e->cgroup_id = p->cgroup_id;
    for (int i = 0; i < 6; i++)
        e->args[i] = p->args[i];
    e->open_flags = p->open_flags;
    __u32 read_index = p->read_watch;
    bpf_map_delete_elem(&file_pending, &id);
    e->ino = 0;
    e->dev = 0;
    e->why = 0;
    e->flags = 0;
    e->watch = 0;
    e->name_watch = 0;
    e->path2_len = 0;
    e->path2[0] = 0;
    e->syscall = syscall;
    e->reserved = 0;

    /* The first file. */
    int has_string = path_arg != PT_FILE_ARG_NONE;
    int use_cwd = dfd_arg == PT_FILE_ARG_CWD;
    __u64 base = use_cwd ? 0 : e->args[dfd_arg & 7];
    __u64 string = has_string ? e->args[path_arg & 7] : 0;
    int len = build_path(0, base, string, (has_string ? HOW_STRING : 0) | (use_cwd ? HOW_CWD : 0));
    e->path_len = len;
    if (s->truncated)
        e->flags |= PT_FILE_PATH_TRUNCATED;
    __u32 why = 0;
    __u16 watch = 0, name_watch = 0;
    if (op == PT_FILE_READ) {
        why = PT_FILE_WHY_READ;
        watch = read_index;
    } else {
        why = watched(s, len, &watch, &name_watch);
    }
    char first = s->name[0];

    /* The file's inode: the descriptor an open returned, or the one operated on. */
    struct file *f = NULL;
    if ((op == PT_FILE_OPEN || op == PT_FILE_READ) && ret >= 0)
        f = pt_fd_file(ret);
    else if (!has_string && !use_cwd)
        f = pt_fd_file(base);
    if (f) {
        e->ino = BPF_CORE_READ(f, f_inode, i_ino);
        e->dev = BPF_CORE_READ(f, f_inode, i_sb, s_dev);
        e->flags |= PT_FILE_HAS_INODE;
        if ((op == PT_FILE_OPEN) && (BPF_CORE_READ(f, f_mode) & FMODE_CREATED))
            e->flags |= PT_FILE_CREATED;
    }
    int created = (e->flags & PT_FILE_CREATED) || ((op == PT_FILE_MKDIR || op == PT_FILE_MKNOD || op == PT_FILE_SYMLINK) && ret == 0);
    int home = in_home(e->path);
    struct written_key wkey = {};
    if (f) {
        wkey.dev = e->dev;
        wkey.generation = BPF_CORE_READ(f, f_inode, i_generation);
        wkey.ino = e->ino;
    }

    /* The second: a new name (watched too), or a string as given. */
    if (path2_arg != PT_FILE_ARG_NONE) {
        int raw = dfd2_arg == PT_FILE_ARG_RAW;
        int cwd2 = dfd2_arg == PT_FILE_ARG_CWD;
        __u64 base2 = (raw || cwd2) ? 0 : e->args[dfd2_arg & 7];
        int len2 = build_path(1, base2, e->args[path2_arg & 7], HOW_STRING | (raw ? HOW_RAW : 0) | (cwd2 ? HOW_CWD : 0));
        e->path2_len = len2;
        if (s->truncated)
            e->flags |= PT_FILE_PATH2_TRUNCATED;
        if (!raw) {
            __u16 w2 = 0, n2 = 0;
            __u32 why2 = watched(s, len2, &w2, &n2);
            if ((why2 & PT_FILE_WHY_WATCHED) && !(why & PT_FILE_WHY_WATCHED))
                watch = w2;
            if ((why2 & PT_FILE_WHY_NAME) && !(why & PT_FILE_WHY_NAME))
                name_watch = n2;
            why |= why2;
            /* A rename or link makes its new name: hidden when it starts with a
             * dot, outside home directories. */
            int home2 = in_home(e->path2);
            if (ret == 0 && !home2 && s->name[0] == '.' && s->name[1] != 0 && !(s->name[1] == '.' && s->name[2] == 0))
                why |= PT_FILE_WHY_HIDDEN;
        } else if (op == PT_FILE_SETXATTR) {
            char sec[9] = {};
            bpf_probe_read_kernel(sec, sizeof(sec), e->path2);
            if (sec[0] == 's' && sec[1] == 'e' && sec[2] == 'c' && sec[3] == 'u' && sec[4] == 'r' && sec[5] == 'i' && sec[6] == 't' && sec[7] == 'y' && sec[8] == '.')
                why |= PT_FILE_WHY_SECURITY_XATTR;
        }
    }
    if (created && first == '.' && !home)
        why |= PT_FILE_WHY_HIDDEN;
    /* chmod and mknod: the mode is the argument after the path (or the descriptor). */
    __u64 mode = e->args[(has_string ? path_arg + 1 : 1) & 7];
    if (op == PT_FILE_CHMOD) {
        if (mode & (S_ISUID | S_ISGID))
            why |= PT_FILE_WHY_SETID;
        if (mode & S_IXUGO)
            why |= PT_FILE_WHY_EXEC_BIT;
    }
    if (op == PT_FILE_MKNOD) {
        if ((mode & S_IFMT) == S_IFCHR || (mode & S_IFMT) == S_IFBLK)
            why |= PT_FILE_WHY_DEVICE;
    }
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    if (!why) {
        /* Not recorded now: a created or truncated file is remembered in
         * case it is executed. */
        if (op == PT_FILE_OPEN && f && ((e->flags & PT_FILE_CREATED) || (e->open_flags & O_TRUNC))) {
            e->mnt_ns = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
            bpf_get_current_comm(&e->comm, sizeof(e->comm));
            bpf_map_update_elem(&written, &wkey, e, BPF_ANY);
        }
        return 0;
    }
    e->why = why;
    e->watch = watch;
    e->name_watch = name_watch;
    e->mnt_ns = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    /* Without a second string, the record ends after path. */
    __u64 size = e->path2_len ? sizeof(*e) : __builtin_offsetof(struct pt_file_event, path2);
    if (bpf_ringbuf_output(&events, e, size, pt_submit_flags(&events)) != 0)
        count_drop(PT_DROP_FILE_RING, e->cgroup_id);
    return 0;
}

/* Each syscall's position in PT_FILE_SYSCALLS: what records name it by. */
#define FILE_SYSCALL_INDEX(name, ...) FILE_SYS_##name,
enum { PT_FILE_SYSCALLS(FILE_SYSCALL_INDEX) };

/* file_exit, put at index 0 by podtraild before any entry program attaches. */
struct {
    __uint(type, BPF_MAP_TYPE_PROG_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u32);
} file_exit_prog SEC(".maps");

/* A syscall's exit: hand over to file_exit. Returning here means the tail call
 * failed: the entry's record is dropped and counted. */
static __always_inline int on_exit(struct trace_event_raw_sys_exit *ctx)
{
    bpf_tail_call(ctx, &file_exit_prog, 0);
    __u64 id = bpf_get_current_pid_tgid();
    struct file_pending *p = bpf_map_lookup_elem(&file_pending, &id);
    if (p) {
        count_drop(PT_DROP_FILE_PENDING_FULL, p->cgroup_id);
        bpf_map_delete_elem(&file_pending, &id);
    }
    return 0;
}

/* An exec of a file remembered in `written`: send the open that created or
 * truncated it, with its own time and process, marked WHY_EXECUTED, once. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(file_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
    struct file *f = BPF_CORE_READ(bprm, file);
    struct written_key k = {};
    k.dev = BPF_CORE_READ(f, f_inode, i_sb, s_dev);
    k.generation = BPF_CORE_READ(f, f_inode, i_generation);
    k.ino = BPF_CORE_READ(f, f_inode, i_ino);
    struct pt_file_event *w = bpf_map_lookup_elem(&written, &k);
    if (!w)
        return 0;
    w->why = PT_FILE_WHY_EXECUTED;
    w->watch = 0;
    w->name_watch = 0;
    if (bpf_ringbuf_output(&events, w, __builtin_offsetof(struct pt_file_event, path2), pt_submit_flags(&events)) != 0)
        count_drop(PT_DROP_FILE_RING, w->cgroup_id);
    bpf_map_delete_elem(&written, &k);
    return 0;
}

/* The entry keeps the arguments; creat and openat2 mark themselves in the
 * unused sixth slot (1, 2) so that enter_common finds their flags. */
static __always_inline int on_enter(struct trace_event_raw_sys_enter *ctx, int mark, __u32 op, int nargs, __u32 syscall, int dfd_arg, int path_arg, int dfd2_arg, int path2_arg)
{
    __u64 a[6] = {};
    if (nargs > 0) a[0] = ctx->args[0];
    if (nargs > 1) a[1] = ctx->args[1];
    if (nargs > 2) a[2] = ctx->args[2];
    if (nargs > 3) a[3] = ctx->args[3];
    if (nargs > 4) a[4] = ctx->args[4];
    if (nargs > 5) a[5] = ctx->args[5];
    if (mark)
        a[5] = mark;
    return enter_common(op, a, ctx->id, syscall, dfd_arg, path_arg, dfd2_arg, path2_arg);
}

/* 1: creat, 2: openat2 (the two opens whose flags are not an argument). */
#define OPEN_MARK(name) (sizeof(#name) == 6 && #name[0] == 'c' ? 1 : sizeof(#name) == 8 && #name[6] == '2' ? 2 : 0)

#define FILE_SYSCALL(name, op, nargs, dfd, path, dfd2, path2)                  \
    SEC("tracepoint/syscalls/sys_enter_" #name)                                 \
    int file_enter_##name(struct trace_event_raw_sys_enter *ctx) { return on_enter(ctx, OPEN_MARK(name), op, nargs, FILE_SYS_##name, dfd, path, dfd2, path2); } \
    SEC("tracepoint/syscalls/sys_exit_" #name)                                  \
    int file_exit_##name(struct trace_event_raw_sys_exit *ctx) { return on_exit(ctx); }

PT_FILE_SYSCALLS(FILE_SYSCALL)
