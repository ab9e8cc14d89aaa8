//! A launcher's mpirun command line, split into what the T9k API keeps
//! apart (`mpiHome`, `mca`, `extraMPIArgs`, `cmd`), and joined again.
//!
//! The split is at the first word that is neither an option nor the value
//! of an option known to take one (`-np 4`, `--map-by ppr:2:node`, `-x
//! VAR`, Hydra's `-ppn 2`, …); an option not in that list is taken to
//! stand alone. `--` ends the options.

use std::collections::BTreeMap;

/// Options of Open MPI's mpirun and MPICH's Hydra that take a value as the
/// next word.
const TAKES_VALUE: &[&str] = &[
    "-np",
    "--np",
    "-n",
    "--n",
    "-c",
    "-N",
    "-npernode",
    "--npernode",
    "-npersocket",
    "--npersocket",
    "-ppn",
    "--ppn",
    "--map-by",
    "-map-by",
    "--rank-by",
    "-rank-by",
    "--bind-to",
    "-bind-to",
    "-x",
    "-H",
    "-host",
    "--host",
    "-hosts",
    "--hostfile",
    "-hostfile",
    "--machinefile",
    "-machinefile",
    "-f",
    "--default-hostfile",
    "--max-restarts",
    "-wdir",
    "--wdir",
    "-wd",
    "--preload-files",
    "--prefix",
    "-output-filename",
    "--output-filename",
    "-launcher",
    "-launcher-exec",
    "-bootstrap",
    "-bootstrap-exec",
    "-genv",
    "-env",
    "-genvlist",
    "-envlist",
    "-iface",
    "-errfile-pattern",
    "-outfile-pattern",
    "--timeout",
    "--report-state-on-timeout",
    "--personality",
    "--runtime-options",
    "--tune",
    "--am",
];

/// Options whose value is two words (`-genv NAME VALUE`).
const TAKES_TWO: &[&str] = &["-genv", "-env"];

/// A launcher's command line, split.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Split {
    /// The mpirun program as written (`mpirun`, `/opt/openmpi/bin/mpirun`).
    pub mpirun: String,
    /// `--mca KEY VALUE` (and `-mca`), in order.
    pub mca: BTreeMap<String, String>,
    /// Every other option, with its values, in order.
    pub options: Vec<String>,
    /// The program mpirun starts, and its arguments.
    pub program: Vec<String>,
}

/// Whether `word` names mpirun or mpiexec (any path, Hydra's `.hydra` and
/// Debian's `.openmpi`/`.mpich` suffixes too).
pub fn is_mpirun(word: &str) -> bool {
    let base = word.rsplit('/').next().unwrap_or(word);
    let stem = base.split('.').next().unwrap_or(base);
    matches!(stem, "mpirun" | "mpiexec" | "orterun" | "prterun")
}

/// Split `argv` (the launcher's command and args); `None` when it does not
/// start with mpirun.
pub fn split(argv: &[String]) -> Option<Split> {
    let (first, rest) = argv.split_first()?;
    if !is_mpirun(first) {
        return None;
    }
    let mut s = Split {
        mpirun: first.clone(),
        ..Split::default()
    };
    let mut i = 0;
    while i < rest.len() {
        let word = rest[i].as_str();
        if word == "--" {
            s.program = rest[i + 1..].to_vec();
            return Some(s);
        }
        if !word.starts_with('-') || word == "-" {
            break;
        }
        if (word == "--mca" || word == "-mca") && i + 2 < rest.len() {
            s.mca.insert(rest[i + 1].clone(), rest[i + 2].clone());
            i += 3;
            continue;
        }
        let values = if word.contains('=') {
            0
        } else if TAKES_TWO.contains(&word) {
            2
        } else if TAKES_VALUE.contains(&word) {
            1
        } else {
            0
        };
        let end = (i + 1 + values).min(rest.len());
        s.options.extend(rest[i..end].iter().cloned());
        i = end;
    }
    s.program = rest[i..].to_vec();
    Some(s)
}

/// `mpiHome` for an mpirun path `<home>/bin/mpirun`; `None` for a bare
/// name (found on PATH) or another layout.
pub fn home_of(mpirun: &str) -> Option<String> {
    let bin = mpirun.rsplit_once('/')?.0;
    let home = bin.strip_suffix("/bin")?;
    Some(if home.is_empty() {
        "/".to_string()
    } else {
        home.to_string()
    })
}

/// The command line of a split: mpirun, the MCA parameters, the other
/// options, then the program.
pub fn join(s: &Split) -> Vec<String> {
    let mut argv = vec![s.mpirun.clone()];
    for (k, v) in &s.mca {
        argv.extend(["--mca".to_string(), k.clone(), v.clone()]);
    }
    argv.extend(s.options.iter().cloned());
    argv.extend(s.program.iter().cloned());
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn splits_options_from_the_program() {
        let s = split(&strings(&[
            "/usr/local/bin/mpirun",
            "--allow-run-as-root",
            "-np",
            "4",
            "--mca",
            "btl",
            "^openib",
            "-x",
            "NCCL_DEBUG=INFO",
            "--bind-to=none",
            "python",
            "train.py",
            "-np",
            "2",
        ]))
        .unwrap();
        assert_eq!(s.mpirun, "/usr/local/bin/mpirun");
        assert_eq!(s.mca, BTreeMap::from([("btl".into(), "^openib".into())]));
        assert_eq!(
            s.options,
            strings(&[
                "--allow-run-as-root",
                "-np",
                "4",
                "-x",
                "NCCL_DEBUG=INFO",
                "--bind-to=none"
            ])
        );
        assert_eq!(s.program, strings(&["python", "train.py", "-np", "2"]));
        assert_eq!(home_of(&s.mpirun).as_deref(), Some("/usr/local"));
        assert_eq!(home_of("mpirun"), None);
        assert_eq!(home_of("/bin/mpirun").as_deref(), Some("/"));
    }

    #[test]
    fn a_double_dash_ends_the_options_and_joining_gives_it_back() {
        let argv = strings(&[
            "mpiexec.hydra",
            "-ppn",
            "2",
            "-genv",
            "A",
            "1",
            "--",
            "-weird",
        ]);
        let s = split(&argv).unwrap();
        assert_eq!(s.options, strings(&["-ppn", "2", "-genv", "A", "1"]));
        assert_eq!(s.program, strings(&["-weird"]));
        let plain = strings(&["mpirun", "--mca", "pml", "ob1", "-N", "2", "./pi"]);
        assert_eq!(join(&split(&plain).unwrap()), plain);
    }

    #[test]
    fn only_mpirun_commands_split() {
        for yes in [
            "mpirun",
            "/usr/bin/mpirun.openmpi",
            "mpiexec",
            "mpiexec.hydra",
            "prterun",
        ] {
            assert!(is_mpirun(yes), "{yes}");
        }
        for no in ["sh", "horovodrun", "python", "/usr/bin/mpicc"] {
            assert!(split(&strings(&[no, "x"])).is_none(), "{no}");
        }
    }
}
