//! The worker's OOM watch. MPI ranks run as children of sshd sessions, so
//! when a rank outgrows the container's memory limit the kernel kills the
//! rank, not the container, and Kubernetes never says that the worker ran
//! out of memory. The worker watches the `oom_kill` counter of its own
//! memory cgroup instead, and when it goes up, stops sshd and exits 137
//! (128 + SIGKILL, what Kubernetes shows for an OOM-killed container).
//!
//! The cgroup is found from `/proc/self/cgroup` and `/proc/self/mountinfo`:
//! - cgroup v1: the `memory` controller's mount; the counter is the
//!   `oom_kill` line of `memory.oom_control` (Linux 4.13 and later);
//! - cgroup v2: the unified mount; the counter is the `oom_kill` line of
//!   `memory.events`.
//!
//! A mount's root may be a sub-path of the hierarchy (a container's
//! `/sys/fs/cgroup/memory` bind-mounted from its own cgroup), so the
//! directory is the mount point plus the cgroup path minus the mount root.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tracing::warn;

/// How often the counter is read.
pub const INTERVAL: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// The agent's own memory cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryCgroup {
    pub version: Version,
    /// The cgroup's path as `/proc/self/cgroup` names it.
    pub name: String,
    /// Its directory in the cgroup file system.
    pub dir: PathBuf,
}

impl MemoryCgroup {
    /// The agent's memory cgroup with its counter open, or why there is
    /// none to watch.
    pub fn find() -> Result<(MemoryCgroup, Counter), String> {
        let read = |p: &str| fs::read_to_string(p).map_err(|e| format!("cannot read {p}: {e}"));
        let cgroups = read("/proc/self/cgroup")?;
        let mounts = read("/proc/self/mountinfo")?;
        let candidates = candidates(&cgroups, &mounts);
        if candidates.is_empty() {
            return Err("no cgroup v1 memory controller or cgroup v2 mount found".into());
        }
        let mut why = Vec::new();
        for cgroup in candidates {
            match Counter::open(cgroup.counter_file()) {
                Ok(counter) => return Ok((cgroup, counter)),
                Err(e) => why.push(e),
            }
        }
        Err(why.join("; "))
    }

    /// The file with the `oom_kill` counter.
    pub fn counter_file(&self) -> PathBuf {
        self.dir.join(match self.version {
            Version::V1 => "memory.oom_control",
            Version::V2 => "memory.events",
        })
    }

    /// The memory limit in bytes, the lowest on the way up for v1's
    /// hierarchy; `None` when there is none (or it cannot be read).
    pub fn limit(&self) -> Option<u64> {
        match self.version {
            Version::V1 => {
                let stat = fs::read_to_string(self.dir.join("memory.stat")).ok();
                stat.and_then(|s| counter(&s, "hierarchical_memory_limit"))
                    .or_else(|| {
                        let l = fs::read_to_string(self.dir.join("memory.limit_in_bytes")).ok()?;
                        l.trim().parse().ok()
                    })
                    .filter(|&l| l < V1_UNLIMITED)
            }
            // Up to the mount point: as far as this container can see.
            Version::V2 => self
                .dir
                .ancestors()
                .map_while(|d| fs::read_to_string(d.join("memory.max")).ok())
                .filter_map(|m| m.trim().parse::<u64>().ok())
                .min(),
        }
    }

    /// `/kubepods/.../abc (/sys/fs/cgroup/memory)`, or the directory alone.
    pub fn describe(&self) -> String {
        if self.name == "/" || self.name.is_empty() {
            self.dir.display().to_string()
        } else {
            format!("{} ({})", self.name, self.dir.display())
        }
    }
}

/// v1 reports "no limit" as the largest page-aligned counter value, about
/// 2^63; anything this high is no limit.
const V1_UNLIMITED: u64 = 1 << 62;

/// The open `oom_kill` counter file. It stays open and is read at offset 0
/// into a buffer on the stack: while the cgroup is out of memory, opening
/// the file or growing the heap may have to wait for the cgroup (or fail),
/// and this read must not. The kernel keeps the file's buffer after the
/// first read.
#[derive(Debug)]
pub struct Counter {
    file: fs::File,
    path: PathBuf,
    /// The value at the last read.
    pub value: u64,
}

impl Counter {
    pub fn open(path: PathBuf) -> Result<Counter, String> {
        let file =
            fs::File::open(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut counter = Counter {
            file,
            path,
            value: 0,
        };
        counter.value = counter.read()?;
        Ok(counter)
    }

    /// How many processes of the cgroup the OOM killer has killed so far.
    pub fn read(&self) -> Result<u64, String> {
        use std::os::unix::fs::FileExt;
        let mut buf = [0u8; 1024];
        let n = self
            .file
            .read_at(&mut buf, 0)
            .map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
        let text = String::from_utf8_lossy(&buf[..n]);
        counter(&text, "oom_kill").ok_or_else(|| {
            format!(
                "{} has no oom_kill counter (it needs Linux 4.13 or later)",
                self.path.display()
            )
        })
    }
}

/// The watch the worker's init loop polls every [`INTERVAL`].
pub struct Watch {
    cgroup: MemoryCgroup,
    counter: Counter,
    /// The limit at the start, in case it cannot be read at the OOM kill.
    limit: Option<u64>,
    next: Instant,
}

/// An OOM kill in the watched cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Oom {
    /// One line: which cgroup, its limit and the counter.
    pub summary: String,
}

impl Watch {
    pub fn new(cgroup: MemoryCgroup, counter: Counter) -> Watch {
        let limit = cgroup.limit();
        Watch {
            cgroup,
            counter,
            limit,
            next: Instant::now() + INTERVAL,
        }
    }

    /// For the start-up log line.
    pub fn describe(&self) -> String {
        format!(
            "memory cgroup {}, {}, oom_kill {}",
            self.cgroup.describe(),
            limit_words(self.limit),
            self.counter.value
        )
    }

    /// When the next read is due.
    pub fn due(&self) -> Instant {
        self.next
    }

    /// Read the counter if due. `Ok(Some)` once it went up; `Err` when it
    /// cannot be read this time.
    pub fn check(&mut self, now: Instant) -> Result<Option<Oom>, String> {
        if now < self.next {
            return Ok(None);
        }
        self.next = now + INTERVAL;
        let count = self.counter.read()?;
        let seen = self.counter.value;
        if count <= seen {
            return Ok(None);
        }
        self.counter.value = count;
        let summary = format!(
            "the kernel's OOM killer killed a process in this worker's memory cgroup {}, {}, \
             oom_kill {seen} -> {count}",
            self.cgroup.describe(),
            limit_words(self.cgroup.limit().or(self.limit)),
        );
        Ok(Some(Oom { summary }))
    }
}

fn limit_words(limit: Option<u64>) -> String {
    limit.map_or_else(
        || "no memory limit".to_string(),
        |l| format!("memory limit {}", bytes(l)),
    )
}

/// `64 MiB`, `1.5 GiB`, `1000 bytes`.
pub fn bytes(n: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (unit, size) in UNITS {
        if n >= size {
            return if n % size == 0 {
                format!("{} {unit}", n / size)
            } else {
                format!("{:.1} {unit}", n as f64 / size as f64)
            };
        }
    }
    format!("{n} bytes")
}

/// The memory cgroups `/proc/self/cgroup` and `/proc/self/mountinfo`
/// point at, most likely first: v1's memory controller, then v2's unified
/// hierarchy (which has memory only when it is the controller's, so the
/// caller checks the counter file).
pub fn candidates(cgroups: &str, mountinfo: &str) -> Vec<MemoryCgroup> {
    let mounts: Vec<Mount> = mountinfo.lines().filter_map(parse_mount).collect();
    let mut found = Vec::new();
    for line in cgroups.lines().filter_map(parse_cgroup) {
        let (version, fstype) = if line.id == 0 && line.controllers.is_empty() {
            (Version::V2, "cgroup2")
        } else if line.controllers.contains(&"memory") {
            (Version::V1, "cgroup")
        } else {
            continue;
        };
        let dir = mounts
            .iter()
            .filter(|m| m.fstype == fstype)
            .filter(|m| version == Version::V2 || m.super_options.split(',').any(|o| o == "memory"))
            .find_map(|m| cgroup_dir(&m.mount_point, &m.root, line.path));
        if let Some(dir) = dir {
            found.push(MemoryCgroup {
                version,
                name: line.path.to_string(),
                dir,
            });
        }
    }
    found.sort_by_key(|c| c.version == Version::V2);
    found
}

/// One line of `/proc/self/cgroup`: `id:controllers:path`.
#[derive(Debug, PartialEq, Eq)]
pub struct CgroupLine<'a> {
    pub id: u32,
    pub controllers: Vec<&'a str>,
    pub path: &'a str,
}

pub fn parse_cgroup(line: &str) -> Option<CgroupLine<'_>> {
    let mut fields = line.splitn(3, ':');
    let id = fields.next()?.parse().ok()?;
    let controllers = fields.next()?;
    let path = fields.next()?;
    if !path.starts_with('/') {
        return None;
    }
    Some(CgroupLine {
        id,
        controllers: controllers.split(',').filter(|c| !c.is_empty()).collect(),
        path,
    })
}

/// The fields of a `/proc/self/mountinfo` line that matter here.
#[derive(Debug, PartialEq, Eq)]
pub struct Mount {
    pub root: String,
    pub mount_point: PathBuf,
    pub fstype: String,
    pub super_options: String,
}

/// `id parent major:minor root mount-point options [optional...] - fstype
/// source super-options`, with spaces, tabs, newlines and backslashes in
/// paths written as octal escapes.
pub fn parse_mount(line: &str) -> Option<Mount> {
    let fields: Vec<&str> = line.split(' ').collect();
    let dash = fields.iter().position(|&f| f == "-")?;
    if dash < 6 || fields.len() < dash + 3 {
        return None;
    }
    Some(Mount {
        root: unescape(fields[3]),
        mount_point: PathBuf::from(unescape(fields[4])),
        fstype: fields[dash + 1].to_string(),
        super_options: fields.get(dash + 3).copied().unwrap_or("").to_string(),
    })
}

/// Undo mountinfo's `\ooo` escapes.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) if b[i] == b'\\' => {
                let v = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(v as u8);
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The directory of cgroup `path` under a mount of `root` at
/// `mount_point`; `None` when the cgroup lies outside the mounted part.
pub fn cgroup_dir(mount_point: &Path, root: &str, path: &str) -> Option<PathBuf> {
    let rel = Path::new(path).strip_prefix(root).ok()?;
    if rel
        .components()
        .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return None;
    }
    if rel.as_os_str().is_empty() {
        // join("") would add a trailing slash.
        return Some(mount_point.to_path_buf());
    }
    Some(mount_point.join(rel))
}

/// The number after `name` on its own line of a flat-keyed cgroup file.
pub fn counter(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        (f.next()? == name)
            .then(|| f.next()?.parse().ok())
            .flatten()
    })
}

/// 128 + SIGKILL: what Kubernetes shows for an OOM-killed container.
pub const OOM_EXIT: i32 = 137;

/// The OOM watch, and whether its last read failed (said once per run of
/// failures: the cgroup may be short of memory too).
pub struct OomWatch {
    watch: Watch,
    failing: bool,
}

impl OomWatch {
    /// The watch, or none, and the words for the start-up line.
    pub fn start(on: bool) -> (Option<OomWatch>, String) {
        if !on {
            return (None, "off: --no-oom-watch".to_string());
        }
        match MemoryCgroup::find() {
            Ok((cgroup, counter)) => {
                let watch = Watch::new(cgroup, counter);
                let words = watch.describe();
                let watch = OomWatch {
                    watch,
                    failing: false,
                };
                (Some(watch), words)
            }
            Err(why) => (None, format!("off: {why}")),
        }
    }

    /// When the counter is next due to be read.
    pub fn due(&self) -> Instant {
        self.watch.due()
    }

    /// Read the counter when due, or now when the supervised child is gone
    /// (the OOM killer may have taken it).
    pub fn check(&mut self, now: Instant, child_gone: bool) -> Option<Oom> {
        let now = if child_gone { self.watch.due() } else { now };
        match self.watch.check(now) {
            Ok(found) => {
                self.failing = false;
                found
            }
            Err(why) => {
                if !self.failing {
                    warn!("OOM watch: {why}; trying again");
                    self.failing = true;
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1_MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw";

    const V1_CGROUPS: &str = "\
9:name=systemd:/
4:memory:/process_api/6504
1:cpu:/
0::/";

    #[test]
    fn v1_memory_comes_before_the_hybrid_unified_hierarchy() {
        let found = candidates(V1_CGROUPS, V1_MOUNTS);
        assert_eq!(
            found,
            vec![
                MemoryCgroup {
                    version: Version::V1,
                    name: "/process_api/6504".into(),
                    dir: "/sys/fs/cgroup/memory/process_api/6504".into(),
                },
                MemoryCgroup {
                    version: Version::V2,
                    name: "/".into(),
                    dir: "/sys/fs/cgroup/unified".into(),
                },
            ]
        );
    }

    #[test]
    fn a_runc_container_mounts_its_own_cgroup_as_the_root() {
        // Host cgroup namespace: the path is the full one, the mount's root
        // is the container's cgroup, bind-mounted at /sys/fs/cgroup/memory.
        let mounts = "\
1203 1195 0:31 /kubepods/burstable/pod1/abc /sys/fs/cgroup/memory ro,nosuid,nodev,noexec,relatime master:15 - cgroup cgroup rw,memory
1204 1195 0:32 /kubepods/burstable/pod1/abc /sys/fs/cgroup/cpu,cpuacct ro,nosuid - cgroup cgroup rw,cpu,cpuacct";
        let cgroups = "\
11:cpu,cpuacct:/kubepods/burstable/pod1/abc
7:memory:/kubepods/burstable/pod1/abc
0::/";
        let found = candidates(cgroups, mounts);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].dir, Path::new("/sys/fs/cgroup/memory"));
        assert_eq!(found[0].version, Version::V1);
        assert_eq!(
            found[0].describe(),
            "/kubepods/burstable/pod1/abc (/sys/fs/cgroup/memory)"
        );
        // Controllers mounted together: memory,cpuset on one hierarchy.
        let mounts =
            "35 31 0:32 / /sys/fs/cgroup/cpuset,memory rw - cgroup cgroup rw,cpuset,memory";
        let found = candidates("4:cpuset,memory:/a/b", mounts);
        assert_eq!(found[0].dir, Path::new("/sys/fs/cgroup/cpuset,memory/a/b"));
    }

    #[test]
    fn v2_with_a_private_cgroup_namespace() {
        let mounts = "\
690 680 0:27 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup rw,nsdelegate,memory_recursiveprot";
        let found = candidates("0::/\n", mounts);
        assert_eq!(
            found,
            vec![MemoryCgroup {
                version: Version::V2,
                name: "/".into(),
                dir: "/sys/fs/cgroup".into(),
            }]
        );
        assert_eq!(found[0].describe(), "/sys/fs/cgroup");
        assert_eq!(
            found[0].counter_file(),
            Path::new("/sys/fs/cgroup/memory.events")
        );
        // A host systemd session.
        let mounts = "25 21 0:22 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw";
        let found = candidates("0::/user.slice/user-1000.slice/session-3.scope", mounts);
        assert_eq!(
            found[0].dir,
            Path::new("/sys/fs/cgroup/user.slice/user-1000.slice/session-3.scope")
        );
    }

    #[test]
    fn a_cgroup_outside_the_mounted_part_or_no_mount_gives_nothing() {
        let mounts =
            "1 0 0:31 /kubepods/pod1/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory";
        assert_eq!(candidates("7:memory:/kubepods/pod1/other", mounts), vec![]);
        // A cgroup namespace whose root is below ours.
        assert_eq!(candidates("7:memory:/../..", mounts), vec![]);
        // No cgroup file system mounted at all.
        let mounts = "22 1 0:21 / /proc rw - proc proc rw";
        assert_eq!(candidates(V1_CGROUPS, mounts), vec![]);
        assert_eq!(candidates("", ""), vec![]);
        // A memory hierarchy is not taken for another controller's.
        let mounts = "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu";
        assert_eq!(candidates("4:memory:/a", mounts), vec![]);
    }

    #[test]
    fn parses_mountinfo_lines_with_escapes_and_optional_fields() {
        let line = r"36 35 98:0 /my\040root /mnt/a\011b\012c\134d rw,noatime master:1 shared:2 - cgroup cg\040src rw,memory";
        assert_eq!(
            parse_mount(line),
            Some(Mount {
                root: "/my root".into(),
                mount_point: "/mnt/a\tb\nc\\d".into(),
                fstype: "cgroup".into(),
                super_options: "rw,memory".into(),
            })
        );
        let line = "36 35 98:0 / /x rw - tmpfs tmpfs rw";
        assert_eq!(parse_mount(line).unwrap().fstype, "tmpfs");
        assert_eq!(parse_mount("36 35 98:0 / /x rw tmpfs tmpfs"), None);
        assert_eq!(parse_mount("garbage"), None);
        assert_eq!(parse_mount(""), None);
        // A lone backslash or a short escape stays as it is.
        assert_eq!(unescape(r"a\b\12"), r"a\b\12");
        assert_eq!(unescape(r"\040\040"), "  ");
    }

    #[test]
    fn parses_proc_self_cgroup_lines() {
        assert_eq!(
            parse_cgroup("4:memory:/process_api/x"),
            Some(CgroupLine {
                id: 4,
                controllers: vec!["memory"],
                path: "/process_api/x",
            })
        );
        assert_eq!(
            parse_cgroup("0::/a:b"),
            Some(CgroupLine {
                id: 0,
                controllers: vec![],
                path: "/a:b",
            })
        );
        assert_eq!(
            parse_cgroup("11:cpu,cpuacct:/").unwrap().controllers,
            vec!["cpu", "cpuacct"]
        );
        assert_eq!(parse_cgroup("x:memory:/"), None);
        assert_eq!(parse_cgroup("4:memory"), None);
        assert_eq!(parse_cgroup(""), None);
    }

    #[test]
    fn reads_the_counters() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(counter(v1, "oom_kill"), Some(3));
        // Before Linux 4.13 there is no such line.
        assert_eq!(
            counter("oom_kill_disable 0\nunder_oom 0\n", "oom_kill"),
            None
        );
        let v2 = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(counter(v2, "oom_kill"), Some(1));
        assert_eq!(counter(v2, "oom"), Some(2));
        assert_eq!(counter("oom_kill x\n", "oom_kill"), None);
        let stat = "cache 0\nhierarchical_memory_limit 67108864\n";
        assert_eq!(counter(stat, "hierarchical_memory_limit"), Some(64 << 20));
    }

    #[test]
    fn cgroup_dirs_strip_the_mount_root() {
        let dir = |root, path| cgroup_dir(Path::new("/m"), root, path);
        assert_eq!(dir("/", "/"), Some("/m".into()));
        assert_eq!(dir("/", "/a/b"), Some("/m/a/b".into()));
        assert_eq!(dir("/a", "/a/b"), Some("/m/b".into()));
        assert_eq!(dir("/a/b", "/a/b"), Some("/m".into()));
        // Component-wise: /ab is not under /a.
        assert_eq!(dir("/a", "/ab"), None);
        assert_eq!(dir("/a", "/b"), None);
    }

    #[test]
    fn sizes_read_as_words() {
        assert_eq!(bytes(64 << 20), "64 MiB");
        assert_eq!(bytes(3 << 29), "1.5 GiB");
        assert_eq!(bytes(1_000_000_000), "953.7 MiB");
        assert_eq!(bytes(1000), "1000 bytes");
        assert_eq!(limit_words(None), "no memory limit");
    }

    #[test]
    fn the_watch_fires_once_per_increase() {
        let dir = std::env::temp_dir().join(format!("mpijob-oom-unit-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("memory.events");
        // Rewritten in place, as the kernel's file reads anew at offset 0.
        let rewrite = |text: &str| {
            use std::io::Write;
            let mut f = fs::OpenOptions::new().write(true).open(&file).unwrap();
            f.write_all(text.as_bytes()).unwrap();
        };
        fs::write(&file, "oom 0\noom_kill 2\n").unwrap();
        fs::write(dir.join("memory.max"), "max\n").unwrap();
        let cgroup = MemoryCgroup {
            version: Version::V2,
            name: "/".into(),
            dir: dir.clone(),
        };
        assert_eq!(cgroup.limit(), None);
        let counter = Counter::open(cgroup.counter_file()).unwrap();
        assert_eq!(counter.value, 2);
        let mut watch = Watch::new(cgroup, counter);
        assert!(watch.describe().ends_with(", no memory limit, oom_kill 2"));
        let t = watch.due();
        assert_eq!(watch.check(t - INTERVAL / 2), Ok(None));
        assert_eq!(watch.check(t), Ok(None));
        assert_eq!(watch.due(), t + INTERVAL);
        rewrite("oom 1\noom_kill 3\n");
        fs::write(dir.join("memory.max"), "67108864\n").unwrap();
        // Not due yet.
        assert_eq!(watch.check(t + INTERVAL / 2), Ok(None));
        let oom = watch.check(t + INTERVAL).unwrap().unwrap();
        assert!(
            oom.summary
                .ends_with(", memory limit 64 MiB, oom_kill 2 -> 3"),
            "{}",
            oom.summary
        );
        assert_eq!(watch.check(t + INTERVAL * 2), Ok(None));
        rewrite("oom 1\nfoo_bar 3\n");
        assert!(watch.check(t + INTERVAL * 3).is_err());
        fs::remove_dir_all(&dir).unwrap();
        assert!(Counter::open(dir.join("memory.events")).is_err());
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the kernel files hold, the parsers answer or pass the
        /// line over; they never panic.
        #[test]
        fn proc_and_mountinfo_parsers_never_panic(
            cgroup in "[0-9:a-z,/\\\\ .-]{0,40}|.{0,40}",
            mountinfo in "([0-9a-z/:\\\\ -]{0,30}\n){0,4}|.{0,80}",
            counters in ".{0,60}",
        ) {
            let _ = parse_cgroup(&cgroup);
            let _ = parse_mount(&mountinfo);
            let _ = unescape(&mountinfo);
            let _ = candidates(&cgroup, &mountinfo);
            let _ = counter(&counters, "oom_kill");
        }

        /// What mountinfo escapes reads back as it was.
        #[test]
        fn unescape_undoes_octal_escapes(path in "[ -~\t\n]{0,30}") {
            let escaped: String = path
                .chars()
                .map(|c| match c {
                    ' ' | '\t' | '\n' | '\\' => format!("\\{:03o}", c as u32),
                    c => c.to_string(),
                })
                .collect();
            prop_assert_eq!(unescape(&escaped), path);
        }
    }
}
