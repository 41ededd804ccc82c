/*
 * balloonlab validate: the guest-side workload (issue #5). Built at run time with
 * `gcc -static -O2` and started by the initramfs's /init as the guest's last process.
 *
 * It is a command interpreter on a serial port (the guest's /dev/ttyS1, a unix socket on the
 * host): the host sends one command per line, the workload performs it in the guest and answers
 * with any data lines followed by `BLV OK <command>` or `BLV ERR <command>: <reason>`. The host
 * drives the scenario's order and does the host-side steps (balloon over QMP, waits) itself.
 *
 *   write PATH VALUE           write VALUE to a sysfs/procfs file
 *   memhog ID BYTES THP KEEP   mmap anonymous memory (2 MiB aligned), MADV_HUGEPAGE when THP is
 *                              1 else MADV_NOHUGEPAGE, write every 4 KiB page, then
 *                              MADV_DONTNEED every page i with (i + 1) % KEEP != 0 (usemem's
 *                              --punch-holes, as src/guest/anon.ts); kept until `free`
 *   free ID|all                munmap a memhog (or all of them)
 *   slab ID BYTES SPREAD       unmovable order-0 kernel pages left spread out, as the model's
 *                              `slab` step (src/guest/kernel_alloc.ts allocKernelMemory): with
 *                              K = ceil(BYTES / 4 KiB) pages to keep, K * SPREAD pages are
 *                              allocated one after another and all but every SPREAD-th freed.
 *                              The pages are pipe buffers (fs/pipe.c pipe_write: alloc_page(
 *                              GFP_HIGHUSER | __GFP_ACCOUNT), MIGRATE_UNMOVABLE order 0, one per
 *                              4096-byte write). SPREAD groups of pipes of SLAB_PIPE_PAGES slots
 *                              each are made first (F_SETPIPE_SZ, RLIMIT_NOFILE and
 *                              /proc/sys/fs/pipe-max-size raised as needed); allocated page j
 *                              goes to group j % SPREAD, filling that group's pipes in turn; then
 *                              the pages of groups 1..SPREAD-1 are read back in allocation order
 *                              (a read page is freed, except the first of each pipe, which the
 *                              pipe caches as its tmp_page) and those pipes closed (which frees
 *                              the cached page). Group 0, every SPREAD-th page, stays until the
 *                              guest powers off
 *   touch BYTES FREE           write a tmpfs file of BYTES in /mnt/touch, deleted when FREE is 1
 *   compact                    echo 1 > /proc/sys/vm/compact_memory
 *   pagecache PATH DROP        read the file PATH (on the read-only ext4 disk /mnt/data) with
 *                              read() into a 1 MiB buffer to its end, so that it is clean page
 *                              cache; then, when DROP is 1, echo 1 > /proc/sys/vm/drop_caches
 *   cat PATH NAME              the file between `BLV BEGIN NAME` and `BLV END NAME`
 *   snapshot                   cat of /proc/buddyinfo, /proc/vmstat, /proc/meminfo,
 *                              /proc/zoneinfo, /proc/slabinfo and /proc/pagetypeinfo (read in
 *                              this order)
 *   kpageflags BLOCKS          the guest's view of each 2 MiB block of guest-physical RAM
 *                              0 .. BLOCKS-1 from /proc/kpageflags and /proc/kpagecount, one
 *                              character per block, 64 per line, between `BLV BEGIN blocks`
 *                              and `BLV END blocks`: B all 512 pages in the balloon
 *                              (KPF_OFFLINE), F all 512 free in the buddy allocator
 *                              (KPF_BUDDY), H an anonymous THP starts at the block (KPF_THP,
 *                              KPF_COMPOUND_HEAD, KPF_ANON) and all 512 of its pages are mapped
 *                              (kpagecount >= 1: PMD-mapped, or PTE-mapped whole), t such a THP
 *                              with some pages unmapped (split PMD, waiting for deferred split),
 *                              . anything else
 *   poweroff                   sync and power the guest off
 *
 * At start it prints `BLV HELLO <release>` and waits for commands.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <termios.h>
#include <unistd.h>

#define PAGE 4096UL
#define HUGE (2UL * 1024 * 1024)
#define MAX_HOGS 64
#define LINE_MAX_LEN 4096

struct hog {
  char id[128];
  char *base;
  size_t length;
};

static struct hog hogs[MAX_HOGS];

/* Slots per pipe for `slab`: a 4 MiB pipe (its pipe_buffer array, 40 KiB, is one order-4
 * allocation made when the pipe is resized, before any page is written). */
#define SLAB_PIPE_PAGES 1024UL
#define MAX_SLAB_PIPES 65536

/* Kept `slab` pipes (both ends), never closed. */
static int slab_kept[MAX_SLAB_PIPES][2];
static size_t slab_kept_count;
static int port = -1;
static unsigned touch_count;

static void out(const char *format, ...) {
  char buffer[LINE_MAX_LEN + 256];
  va_list args;
  va_start(args, format);
  int length = vsnprintf(buffer, sizeof buffer, format, args);
  va_end(args);
  if (length < 0) return;
  if ((size_t)length > sizeof buffer) length = sizeof buffer;
  for (int done = 0; done < length;) {
    ssize_t written = write(port, buffer + done, (size_t)(length - done));
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) return;
    done += (int)written;
  }
}

static int read_line(char *line, size_t size) {
  size_t used = 0;
  for (;;) {
    char c;
    ssize_t got = read(port, &c, 1);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return -1;
    if (c == '\r') continue;
    if (c == '\n') break;
    if (used + 1 < size) line[used++] = c;
  }
  line[used] = '\0';
  return 0;
}

static int write_file(const char *path, const char *value) {
  int fd = open(path, O_WRONLY);
  if (fd < 0) return -errno;
  ssize_t written = write(fd, value, strlen(value));
  int error = written < 0 ? -errno : 0;
  close(fd);
  return error;
}

static int cat_file(const char *path, const char *name) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return -errno;
  out("BLV BEGIN %s\n", name);
  char buffer[8192];
  ssize_t got;
  while ((got = read(fd, buffer, sizeof buffer)) > 0) {
    for (ssize_t done = 0; done < got;) {
      ssize_t written = write(port, buffer + done, (size_t)(got - done));
      if (written <= 0) break;
      done += written;
    }
  }
  close(fd);
  out("BLV END %s\n", name);
  return 0;
}

static struct hog *find_hog(const char *id) {
  for (int i = 0; i < MAX_HOGS; i++) {
    if (hogs[i].base != NULL && strcmp(hogs[i].id, id) == 0) return &hogs[i];
  }
  return NULL;
}

static int memhog(const char *id, size_t bytes, int thp, size_t keep) {
  struct hog *slot = NULL;
  for (int i = 0; i < MAX_HOGS && slot == NULL; i++) {
    if (hogs[i].base == NULL) slot = &hogs[i];
  }
  if (slot == NULL || find_hog(id) != NULL || keep == 0) return -EINVAL;
  size_t length = (bytes + PAGE - 1) / PAGE * PAGE;
  char *raw = mmap(NULL, length + HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
  if (raw == MAP_FAILED) return -errno;
  char *base = (char *)(((unsigned long)raw + HUGE - 1) & ~(HUGE - 1));
  if (base > raw) munmap(raw, (size_t)(base - raw));
  size_t tail = (size_t)(raw + length + HUGE - (base + length));
  if (tail > 0) munmap(base + length, tail);
  madvise(base, length, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
  for (size_t offset = 0; offset < length; offset += PAGE) base[offset] = 1;
  if (keep > 1) {
    for (size_t index = 0; index < length / PAGE; index++) {
      if ((index + 1) % keep == 0) continue;
      madvise(base + index * PAGE, PAGE, MADV_DONTNEED);
    }
  }
  snprintf(slot->id, sizeof slot->id, "%s", id);
  slot->base = base;
  slot->length = length;
  return 0;
}

static int free_hog(const char *id) {
  int freed = 0;
  for (int i = 0; i < MAX_HOGS; i++) {
    if (hogs[i].base == NULL) continue;
    if (strcmp(id, "all") != 0 && strcmp(hogs[i].id, id) != 0) continue;
    munmap(hogs[i].base, hogs[i].length);
    hogs[i].base = NULL;
    freed++;
  }
  return freed > 0 || strcmp(id, "all") == 0 ? 0 : -ENOENT;
}

static int write_all(int fd, const char *buffer, size_t length) {
  for (size_t done = 0; done < length;) {
    ssize_t written = write(fd, buffer + done, length - done);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) return written < 0 ? -errno : -EIO;
    done += (size_t)written;
  }
  return 0;
}

static int read_page(int fd, char *buffer) {
  for (size_t done = 0; done < PAGE;) {
    ssize_t got = read(fd, buffer + done, PAGE - done);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return got < 0 ? -errno : -EIO;
    done += (size_t)got;
  }
  return 0;
}

static int slab(const char *id, size_t bytes, size_t spread) {
  (void)id;
  if (spread == 0 || bytes == 0) return -EINVAL;
  size_t keep = (bytes + PAGE - 1) / PAGE;
  size_t pipe_pages = 1;
  while (pipe_pages < keep && pipe_pages < SLAB_PIPE_PAGES) pipe_pages *= 2;
  size_t per_group = (keep + pipe_pages - 1) / pipe_pages;
  size_t count = per_group * spread;
  if (count > MAX_SLAB_PIPES || slab_kept_count + per_group > MAX_SLAB_PIPES) return -E2BIG;
  /* Two descriptors per pipe plus what is already open. */
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return -errno;
  rlim_t want = (rlim_t)(2 * (count + slab_kept_count) + 64);
  if (limit.rlim_cur < want) {
    limit.rlim_cur = want;
    if (limit.rlim_max < want) limit.rlim_max = want;
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) return -errno;
  }
  char size_text[32];
  snprintf(size_text, sizeof size_text, "%lu", (unsigned long)(pipe_pages * PAGE));
  int error = 0;
  {
    char current[32] = "";
    int fd = open("/proc/sys/fs/pipe-max-size", O_RDONLY);
    if (fd >= 0) {
      ssize_t got = read(fd, current, sizeof current - 1);
      if (got > 0) current[got] = '\0';
      close(fd);
    }
    if (strtoul(current, NULL, 10) < pipe_pages * PAGE) {
      error = write_file("/proc/sys/fs/pipe-max-size", size_text);
      if (error != 0) return error;
    }
  }
  int(*fds)[2] = calloc(count, sizeof *fds);
  if (fds == NULL) return -ENOMEM;
  size_t made = 0;
  /* Every pipe and its ring first, so that the writes allocate nothing but pipe pages. */
  for (; made < count && error == 0; made++) {
    if (pipe2(fds[made], O_NONBLOCK) != 0) {
      error = -errno;
      break;
    }
    int size = fcntl(fds[made][1], F_SETPIPE_SZ, (int)(pipe_pages * PAGE));
    if (size < 0) error = -errno;
    else if ((size_t)size < pipe_pages * PAGE) error = -ENOSPC;
  }
  static char page[PAGE] __attribute__((aligned(4096)));
  memset(page, 0x5a, sizeof page);
  /* Allocated page j: group j % spread, that group's (j / spread)-th page. */
  size_t total = keep * spread;
  for (size_t j = 0; j < total && error == 0; j++) {
    size_t pipe_index = (j % spread) * per_group + (j / spread) / pipe_pages;
    error = write_all(fds[pipe_index][1], page, PAGE);
  }
  /* Free all but every spread-th page, in allocation order. */
  for (size_t j = 0; j < total && error == 0; j++) {
    if (j % spread == 0) continue;
    size_t pipe_index = (j % spread) * per_group + (j / spread) / pipe_pages;
    error = read_page(fds[pipe_index][0], page);
  }
  for (size_t index = 0; index < made; index++) {
    if (error == 0 && index < per_group) {
      slab_kept[slab_kept_count][0] = fds[index][0];
      slab_kept[slab_kept_count][1] = fds[index][1];
      slab_kept_count++;
      continue;
    }
    close(fds[index][0]);
    close(fds[index][1]);
  }
  free(fds);
  return error;
}

static int touch(size_t bytes, int free_after) {
  char path[64];
  snprintf(path, sizeof path, "/mnt/touch/touch-%u", touch_count++);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) return -errno;
  static char chunk[1 << 20];
  memset(chunk, 0x5a, sizeof chunk);
  int error = 0;
  for (size_t done = 0; done < bytes && error == 0;) {
    size_t want = bytes - done < sizeof chunk ? bytes - done : sizeof chunk;
    ssize_t written = write(fd, chunk, want);
    if (written <= 0) error = written < 0 ? -errno : -ENOSPC;
    else done += (size_t)written;
  }
  close(fd);
  if (free_after) unlink(path);
  return error;
}

static int pagecache(const char *path, int drop) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return -errno;
  static char buffer[1 << 20];
  int error = 0;
  for (;;) {
    ssize_t got = read(fd, buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) error = -errno;
    if (got <= 0) break;
  }
  close(fd);
  if (error == 0 && drop) error = write_file("/proc/sys/vm/drop_caches", "1");
  return error;
}

static int snapshot(void) {
  int error = cat_file("/proc/buddyinfo", "buddyinfo");
  if (error == 0) error = cat_file("/proc/vmstat", "vmstat");
  if (error == 0) error = cat_file("/proc/meminfo", "meminfo");
  if (error == 0) error = cat_file("/proc/zoneinfo", "zoneinfo");
  if (error == 0) error = cat_file("/proc/slabinfo", "slabinfo");
  if (error == 0) error = cat_file("/proc/pagetypeinfo", "pagetypeinfo");
  return error;
}

/* include/uapi/linux/kernel-page-flags.h */
#define KPF_BUDDY 10
#define KPF_ANON 12
#define KPF_COMPOUND_HEAD 15
#define KPF_THP 22
#define KPF_OFFLINE 23
#define BLOCK_PAGES 512

static int read_at(int fd, unsigned long long *words, size_t count, off_t offset) {
  size_t want = count * sizeof *words;
  for (size_t done = 0; done < want;) {
    ssize_t got = pread(fd, (char *)words + done, want - done, offset + (off_t)done);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return got < 0 ? -errno : -EIO;
    done += (size_t)got;
  }
  return 0;
}

static char block_kind(const unsigned long long *flags, const unsigned long long *counts) {
  int offline = 0, buddy = 0, mapped = 0;
  for (int i = 0; i < BLOCK_PAGES; i++) {
    offline += (flags[i] >> KPF_OFFLINE) & 1;
    buddy += (flags[i] >> KPF_BUDDY) & 1;
    mapped += counts[i] > 0;
  }
  if (offline == BLOCK_PAGES) return 'B';
  if (buddy == BLOCK_PAGES) return 'F';
  unsigned long long head = (1ULL << KPF_THP) | (1ULL << KPF_COMPOUND_HEAD) | (1ULL << KPF_ANON);
  if ((flags[0] & head) == head) return mapped == BLOCK_PAGES ? 'H' : 't';
  return '.';
}

static int kpageflags(unsigned long blocks) {
  int flags_fd = open("/proc/kpageflags", O_RDONLY);
  if (flags_fd < 0) return -errno;
  int counts_fd = open("/proc/kpagecount", O_RDONLY);
  if (counts_fd < 0) {
    int error = -errno;
    close(flags_fd);
    return error;
  }
  static unsigned long long flags[BLOCK_PAGES], counts[BLOCK_PAGES];
  char line[65];
  int used = 0, error = 0;
  out("BLV BEGIN blocks\n");
  for (unsigned long block = 0; block < blocks && error == 0; block++) {
    off_t offset = (off_t)(block * BLOCK_PAGES * sizeof flags[0]);
    error = read_at(flags_fd, flags, BLOCK_PAGES, offset);
    if (error == 0) error = read_at(counts_fd, counts, BLOCK_PAGES, offset);
    if (error != 0) break;
    line[used++] = block_kind(flags, counts);
    if (used == 64 || block + 1 == blocks) {
      line[used] = '\0';
      out("%s\n", line);
      used = 0;
    }
  }
  out("BLV END blocks\n");
  close(flags_fd);
  close(counts_fd);
  return error;
}

static int run(char *line) {
  char *save = NULL;
  char *verb = strtok_r(line, " ", &save);
  char *a = strtok_r(NULL, " ", &save);
  char *b = strtok_r(NULL, " ", &save);
  char *c = strtok_r(NULL, " ", &save);
  char *d = strtok_r(NULL, " ", &save);
  if (verb == NULL) return -EINVAL;
  if (strcmp(verb, "write") == 0 && a && b) return write_file(a, b);
  if (strcmp(verb, "memhog") == 0 && a && b && c && d)
    return memhog(a, strtoull(b, NULL, 10), atoi(c), strtoull(d, NULL, 10));
  if (strcmp(verb, "free") == 0 && a) return free_hog(a);
  if (strcmp(verb, "slab") == 0 && a && b && c)
    return slab(a, strtoull(b, NULL, 10), strtoull(c, NULL, 10));
  if (strcmp(verb, "touch") == 0 && a && b) return touch(strtoull(a, NULL, 10), atoi(b));
  if (strcmp(verb, "compact") == 0) return write_file("/proc/sys/vm/compact_memory", "1");
  if (strcmp(verb, "pagecache") == 0 && a && b) return pagecache(a, atoi(b));
  if (strcmp(verb, "cat") == 0 && a && b) return cat_file(a, b);
  if (strcmp(verb, "snapshot") == 0) return snapshot();
  if (strcmp(verb, "kpageflags") == 0 && a) return kpageflags(strtoul(a, NULL, 10));
  if (strcmp(verb, "poweroff") == 0) {
    out("BLV OK poweroff\n");
    sync();
    reboot(RB_POWER_OFF);
  }
  return -EINVAL;
}

int main(int argc, char **argv) {
  const char *device = argc > 1 ? argv[1] : "/dev/ttyS1";
  port = open(device, O_RDWR | O_NOCTTY);
  if (port < 0) {
    perror(device);
    return 1;
  }
  struct termios mode;
  if (tcgetattr(port, &mode) == 0) {
    cfmakeraw(&mode);
    cfsetispeed(&mode, B115200);
    cfsetospeed(&mode, B115200);
    tcsetattr(port, TCSANOW, &mode);
  }
  struct utsname name;
  uname(&name);
  out("BLV HELLO %s\n", name.release);
  char line[LINE_MAX_LEN];
  char command[LINE_MAX_LEN];
  while (read_line(line, sizeof line) == 0) {
    if (line[0] == '\0') continue;
    snprintf(command, sizeof command, "%s", line);
    int error = run(line);
    if (error == 0) out("BLV OK %s\n", command);
    else out("BLV ERR %s: %s\n", command, strerror(-error));
  }
  return 0;
}
