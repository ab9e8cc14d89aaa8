//! `mpijob-agent keygen`: the files, their modes whatever the umask, and
//! keys that are never overwritten unless asked.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

use common::*;

const FILES: [&str; 5] = [
    "id_ed25519",
    "id_ed25519.pub",
    "authorized_keys",
    "known_hosts",
    "config",
];

fn keygen(args: &[&str]) -> Output {
    let mut cmd = Command::new(AGENT);
    cmd.arg("keygen").args(args).env_remove("MPIJOB_LOG_FORMAT");
    // A umask that would leave everything world-readable.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    cmd.output().unwrap()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn writes_a_private_pinned_directory_and_never_overwrites_keys_unasked() {
    let tmp = TempDir::new("keygen");
    let out = tmp.path("job");
    let dir = out.display().to_string();
    let first = keygen(&["--hosts", "n1,n2.example", "--port", "2022", "--out", &dir]);
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(first.status.success(), "{first:?}");
    assert!(stdout.starts_with(&format!(
        "wrote {dir} (mode 0700; files 0600): id_ed25519, id_ed25519.pub, authorized_keys, known_hosts, config\n"
    )));
    assert_eq!(mode(&out), 0o700);
    for f in FILES {
        assert_eq!(mode(&out.join(f)), 0o600, "{f}");
    }
    let key = fs::read_to_string(out.join("id_ed25519")).unwrap();
    let public = fs::read_to_string(out.join("id_ed25519.pub")).unwrap();
    assert!(!stdout.contains(key.trim()) && !stdout.contains("PRIVATE"));
    assert_eq!(
        fs::read_to_string(out.join("authorized_keys")).unwrap(),
        public
    );
    let key_only: Vec<&str> = public.split_whitespace().take(2).collect();
    assert_eq!(
        fs::read_to_string(out.join("known_hosts")).unwrap(),
        format!("[n1]:2022,[n2.example]:2022 {}\n", key_only.join(" "))
    );
    let config = fs::read_to_string(out.join("config")).unwrap();
    assert!(
        config.contains("Host n1 n2.example\n    Port 2022\n"),
        "{config}"
    );
    assert!(config.contains(&format!("IdentityFile {dir}/id_ed25519\n")));
    assert!(config.contains(&format!("UserKnownHostsFile {dir}/known_hosts\n")));
    // ssh-keygen reads the private key and derives the same public key.
    let derived = Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(out.join("id_ed25519"))
        .output()
        .unwrap();
    assert!(derived.status.success(), "{derived:?}");
    let derived = String::from_utf8_lossy(&derived.stdout);
    assert!(derived.starts_with(&key_only.join(" ")), "{derived}");

    // Again: refused, and nothing changed.
    let again = keygen(&["--hosts", "n1", "--out", &dir]);
    assert_eq!(again.status.code(), Some(2), "{again:?}");
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains(&format!(
            "--out {dir}: already holds id_ed25519, id_ed25519.pub, authorized_keys, known_hosts, config; keep them, choose another --out, or pass --force"
        )),
        "{err}"
    );
    assert_eq!(fs::read_to_string(out.join("id_ed25519")).unwrap(), key);

    // --force: a new key, still private; a loose directory is made private.
    fs::set_permissions(&out, fs::Permissions::from_mode(0o755)).unwrap();
    let forced = keygen(&["--hosts", "n1", "--out", &dir, "--force"]);
    assert!(forced.status.success(), "{forced:?}");
    assert_ne!(fs::read_to_string(out.join("id_ed25519")).unwrap(), key);
    assert_eq!(mode(&out), 0o700);
    for f in FILES {
        assert_eq!(mode(&out.join(f)), 0o600, "{f}");
    }
}

#[test]
fn bad_hosts_exit_2_with_one_line_and_write_nothing() {
    let tmp = TempDir::new("keygen-bad");
    let out = tmp.path("job");
    let dir = out.display().to_string();
    for (args, want) in [
        (
            vec!["--hosts", "n1,n1"],
            "--hosts: n1 is listed twice; give each host once",
        ),
        (
            vec!["--hosts=-oProxyCommand=x"],
            "--hosts: \"-oProxyCommand=x\" starts with '-'; give host names or addresses",
        ),
        (
            vec![],
            "no hosts given: pass --hosts h1,h2,h3 or --hostfile FILE",
        ),
        (
            vec!["--hostfile", "/nonexistent/hosts"],
            "--hostfile /nonexistent/hosts: ",
        ),
    ] {
        let mut all = args.clone();
        all.extend(["--out", &dir]);
        let o = keygen(&all);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        let errors: Vec<&str> = err.lines().filter(|l| l.contains(" ERROR ")).collect();
        assert_eq!(errors.len(), 1, "{err}");
        assert!(
            errors[0].split_once(" ERROR ").unwrap().1.starts_with(want),
            "{err}"
        );
        assert!(!out.exists(), "{args:?} wrote {dir}");
    }
}
