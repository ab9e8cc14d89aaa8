//! What earlier local runs left: a run killed outright (SIGKILL, a crash)
//! cannot tear itself down, and the kernel keeps its network namespaces and
//! bridge; a `--keep` run leaves them on purpose. Every run writes an
//! `owner` file into its directory first: the pid and start time of its
//! `mpijob-agent local`, and `kept` once it keeps its hosts. A run whose
//! owner is gone is dead. Each new run removes dead runs' leftovers;
//! `mpijob-agent local --clean` also removes kept ones.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::net::{self, NETNS_DIR};
use crate::init::Init;

/// The owner file's name, in the run's directory.
pub const OWNER: &str = "owner";
/// As root, a copy of each run's owner file, named by its id, with the
/// run's directory: it tells a dead run's namespaces from a live one's
/// whatever TMPDIR either used.
pub const REGISTRY: &str = "/run/mpijob-local";
/// A directory younger than this without an owner file is a run being
/// made, not a dead one.
const YOUNG: Duration = Duration::from_secs(30);

/// The owner file's text for this process, whose run's directory is `dir`.
pub fn owner_text(dir: &Path) -> String {
    let pid = std::process::id();
    let start = process_start(pid as i32).unwrap_or_default();
    format!("{pid} {start}\ndir {}\n", dir.display())
}

/// The directory an owner file names.
fn dir_in(text: &str) -> Option<PathBuf> {
    text.lines()
        .find_map(|l| l.strip_prefix("dir "))
        .map(PathBuf::from)
}

/// The owner file's text once the run keeps its hosts.
pub fn kept_text(owner: &str) -> String {
    format!("{}kept\n", owner)
}

/// A process's start time, in clock ticks after boot (field 22 of
/// `/proc/PID/stat`), which tells a pid reused by another process apart.
fn process_start(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: count after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// What a run is, by its owner file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Its `mpijob-agent local` runs.
    Alive,
    /// It kept its hosts (`--keep`) and ended.
    Kept,
    /// Its `mpijob-agent local` is gone without tearing down.
    Dead,
    /// Namespaces or a bridge with no directory here: a run made with
    /// another TMPDIR, perhaps going. Left alone.
    Unknown,
}

/// The state an owner file's `text` says, given whether pid `p` runs
/// with start time `s` (`alive(p, s)`). No owner file: a dead run, unless
/// the directory is young.
pub fn state(text: Option<&str>, young: bool, alive: impl Fn(i32, u64) -> bool) -> State {
    let Some(text) = text else {
        return if young { State::Alive } else { State::Dead };
    };
    let mut lines = text.lines();
    let owner = lines.next().and_then(|l| {
        let mut w = l.split_whitespace();
        Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
    });
    if lines.any(|l| l.trim() == "kept") {
        return State::Kept;
    }
    match owner {
        Some((pid, start)) if alive(pid, start) => State::Alive,
        _ => State::Dead,
    }
}

/// One earlier run, by its id: what of it is still here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Run {
    pub id: String,
    pub dir: Option<PathBuf>,
    /// Its entry under [`REGISTRY`].
    pub registered: Option<PathBuf>,
    pub netns: Vec<String>,
    pub bridge: Option<String>,
}

/// A run id: six lowercase hex digits.
fn is_id(s: &str) -> bool {
    s.len() == 6
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Every run something of which is here: directories in `tmp`, network
/// namespaces, bridges. Sorted by id.
pub fn find(tmp: &Path) -> Vec<Run> {
    let mut runs: std::collections::BTreeMap<String, Run> = Default::default();
    fn at<'a>(runs: &'a mut std::collections::BTreeMap<String, Run>, id: &str) -> &'a mut Run {
        runs.entry(id.to_string()).or_insert_with(|| Run {
            id: id.to_string(),
            ..Run::default()
        })
    }
    let names = |dir: &Path| -> Vec<String> {
        fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    for name in names(tmp) {
        if let Some(id) = name.strip_prefix("mpijob-local-").filter(|id| is_id(id)) {
            at(&mut runs, id).dir = Some(tmp.join(&name));
        }
    }
    for name in names(Path::new(NETNS_DIR)) {
        let id = name
            .strip_prefix("mpijob-")
            .and_then(|r| r.split('-').next());
        if let Some(id) = id.filter(|id| is_id(id)) {
            at(&mut runs, id).netns.push(name.clone());
        }
    }
    for name in names(Path::new(REGISTRY)) {
        if is_id(&name) {
            let entry = Path::new(REGISTRY).join(&name);
            let dir = fs::read_to_string(&entry).ok().and_then(|t| dir_in(&t));
            let run = at(&mut runs, &name);
            run.registered = Some(entry);
            if run.dir.is_none() {
                run.dir = dir.filter(|d| d.is_dir());
            }
        }
    }
    for name in names(Path::new("/sys/class/net")) {
        if let Some(id) = name.strip_prefix("mjl-").filter(|id| is_id(id)) {
            at(&mut runs, id).bridge = Some(name.clone());
        }
    }
    for run in runs.values_mut() {
        run.netns.sort();
    }
    runs.into_values().collect()
}

/// Whether this user can remove all of `run`: no namespaces or bridge,
/// and a directory of its own.
pub fn ours(run: &Run) -> bool {
    use std::os::unix::fs::MetadataExt;
    run.netns.is_empty()
        && run.bridge.is_none()
        && run.dir.as_ref().is_some_and(|d| {
            fs::metadata(d).is_ok_and(|m| m.uid() == nix::unistd::geteuid().as_raw())
        })
}

/// The cleaners' lock, `mpijob-local.lock` in `tmp`, held until dropped.
pub fn lock(tmp: &Path) -> Result<nix::fcntl::Flock<fs::File>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = tmp.join("mpijob-local.lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o644)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| format!("{}: {e}", path.display()))
}

/// The run's state, from its directory's owner file.
pub fn state_of(run: &Run) -> State {
    let text = |f: Option<PathBuf>| f.and_then(|f| fs::read_to_string(f).ok());
    let owner = text(run.dir.as_ref().map(|d| d.join(OWNER)));
    let (text, young) = match (owner, text(run.registered.clone()), &run.dir) {
        (Some(t), _, _) | (None, Some(t), _) => (Some(t), false),
        (None, None, Some(dir)) => {
            let young = fs::metadata(dir)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age < YOUNG);
            (None, young)
        }
        (None, None, None) => return State::Unknown,
    };
    state(text.as_deref(), young, |pid, start| {
        process_start(pid) == Some(start)
    })
}

/// Remove a run: every process in its namespaces, the namespaces, the
/// bridge, the directory. The error names what stayed.
pub fn remove(init: &mut Init, run: &Run) -> Result<(), String> {
    let ids: Vec<(u64, u64)> = run
        .netns
        .iter()
        .filter_map(|n| net::netns_identity(n))
        .collect();
    net::kill_all_in(&ids, Duration::from_secs(2), || {
        let _ = init.reap();
    });
    if !run.netns.is_empty() || run.bridge.is_some() {
        let commands = net::delete_commands(run.bridge.as_deref(), &run.netns);
        super::ip_batch(init, None, &commands)?;
    }
    if let Some(dir) = &run.dir {
        fs::remove_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    if let Some(entry) = &run.registered {
        let _ = fs::remove_file(entry);
    }
    Ok(())
}

/// As root, register this run: a copy of its owner file under
/// [`REGISTRY`]. Returns the entry, to remove at the end.
pub fn register(id: &str, owner: &str) -> std::io::Result<PathBuf> {
    fs::create_dir_all(REGISTRY)?;
    let entry = Path::new(REGISTRY).join(id);
    fs::write(&entry, owner)?;
    Ok(entry)
}

/// What a run leaves, in words: `3 network namespaces, bridge mjl-ab12cd
/// and /tmp/mpijob-local-ab12cd`.
pub fn describe(run: &Run) -> String {
    let mut parts = Vec::new();
    if !run.netns.is_empty() {
        parts.push(format!(
            "{} network namespace{}",
            run.netns.len(),
            if run.netns.len() == 1 { "" } else { "s" }
        ));
    }
    if let Some(b) = &run.bridge {
        parts.push(format!("bridge {b}"));
    }
    if let Some(d) = &run.dir {
        parts.push(d.display().to_string());
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_alive_while_its_owner_runs_and_kept_once_it_says_so() {
        let alive = |pid: i32, start: u64| pid == 42 && start == 1000;
        assert_eq!(state(Some("42 1000\n"), false, alive), State::Alive);
        // The pid runs, but it is another process now.
        assert_eq!(state(Some("42 999\n"), false, alive), State::Dead);
        assert_eq!(state(Some("7 1000\n"), false, alive), State::Dead);
        assert_eq!(state(Some("7 1000\nkept\n"), false, alive), State::Kept);
        assert_eq!(
            state(Some(&kept_text("42 1000\n")), false, alive),
            State::Kept
        );
        // No owner file yet: a run being made, for a while.
        assert_eq!(state(None, true, alive), State::Alive);
        assert_eq!(state(None, false, alive), State::Dead);
        assert_eq!(state(Some("garbage"), false, alive), State::Dead);
    }

    #[test]
    fn this_process_is_its_own_live_owner() {
        let text = owner_text(Path::new("/tmp/mpijob-local-ab12cd"));
        assert_eq!(
            dir_in(&text),
            Some(PathBuf::from("/tmp/mpijob-local-ab12cd"))
        );
        let me = state(Some(&text), false, |pid, start| {
            process_start(pid) == Some(start)
        });
        assert_eq!(me, State::Alive, "{text}");
    }

    #[test]
    fn only_run_ids_are_runs() {
        assert!(is_id("ab12cd"));
        assert!(!is_id("ab12c"));
        assert!(!is_id("AB12CD"));
        assert!(!is_id("ab12cg"));
        let run = Run {
            id: "ab12cd".into(),
            dir: Some("/tmp/mpijob-local-ab12cd".into()),
            registered: None,
            netns: vec!["mpijob-ab12cd-dns".into(), "mpijob-ab12cd-w0".into()],
            bridge: Some("mjl-ab12cd".into()),
        };
        assert_eq!(
            describe(&run),
            "2 network namespaces, bridge mjl-ab12cd, /tmp/mpijob-local-ab12cd"
        );
    }
}
