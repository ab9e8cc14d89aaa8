//! Ranks per worker for the T9k API, which has no slots field.
//!
//! T9k users say how many processes each worker runs the way they would to
//! mpirun: `-N 9` in `extraMPIArgs`, or a total (`-np 12`) that mpirun
//! spreads over the hosts. The hostfile the launcher writes must hold
//! enough slots for that, or Open MPI refuses with "There are not enough
//! slots available in the system". [`per_worker`] reads the request from
//! the arguments, in the spellings of Open MPI 4 and 5 and of MPICH's
//! Hydra:
//!
//! | Asks for | Spellings |
//! |---|---|
//! | N per worker | `-N N`, `-npernode N`, `--npernode N`, `--map-by ppr:N:node[:…]` (also `-map-by`, `=`), `-ppn N` (Hydra) |
//! | N in all | `-np N`, `--np N`, `-n N`, `--n N`, `-c N` (also `--np=N`) |
//!
//! The pre-2023 schema also has `worker.processesPerWorker`. The slots per
//! worker are the largest of it, the per-worker count and the total spread
//! over the workers, rounded up; 1 when nothing asks for more.

use crate::FieldError;

/// The field the request is read from.
pub const FIELD: &str = "spec.worker.extraMPIArgs";

/// [`per_worker`] for a job that passed validation, raised to its
/// `processesPerWorker`: its slots per worker, or
/// [`crate::contract::DEFAULT_SLOTS`] should the arguments not parse
/// (validation reports that).
pub fn of_valid(extra_mpi_args: &[String], workers: u32, processes_per_worker: Option<i32>) -> u32 {
    let asked =
        per_worker(FIELD, extra_mpi_args, workers).unwrap_or(crate::contract::DEFAULT_SLOTS);
    let given = processes_per_worker
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0);
    asked.max(given)
}

/// What the arguments ask of mpirun, and where.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// Processes on each worker, and the index of the flag that says so.
    pub per_worker: Option<(u32, usize)>,
    /// Processes in all, and the index of the flag that says so.
    pub total: Option<(u32, usize)>,
}

/// Flags whose value is the number of processes on each node.
const PER_NODE: &[&str] = &["-N", "-npernode", "--npernode", "-ppn", "--ppn"];
/// Flags whose value is the number of processes in all.
const TOTAL: &[&str] = &["-np", "--np", "-n", "--n", "-c"];
/// Flags whose value is a mapping policy, which may be `ppr:N:node`.
const MAP_BY: &[&str] = &["--map-by", "-map-by"];

/// Read what `args` (a job's `extraMPIArgs`, at `path`) ask of mpirun. A
/// count that is not a whole number of at least 1 is an error naming the
/// entry.
pub fn request(path: &str, args: &[String]) -> Result<Request, FieldError> {
    let mut r = Request::default();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        // `--flag=value`, or the flag and the next entry.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v)),
            _ => (arg, None),
        };
        let known = PER_NODE.contains(&flag) || TOTAL.contains(&flag) || MAP_BY.contains(&flag);
        if !known {
            i += 1;
            continue;
        }
        let (value, at) = match inline {
            Some(v) => (Some(v), i),
            None => (args.get(i + 1).map(String::as_str), i + 1),
        };
        let Some(value) = value else {
            return Err(FieldError::new(
                format!("{path}[{i}]"),
                format!("{flag} needs a value after it, e.g. [\"{flag}\", \"2\"]"),
            ));
        };
        if MAP_BY.contains(&flag) {
            if let Some(n) = ppr_per_node(value) {
                r.per_worker = Some((count(path, at, flag, n, "ppr:2:node")?, i));
            }
        } else if PER_NODE.contains(&flag) {
            r.per_worker = Some((count(path, at, flag, value, "2")?, i));
        } else {
            r.total = Some((count(path, at, flag, value, "2")?, i));
        }
        i = at + 1;
    }
    Ok(r)
}

/// The slots each of `workers` workers needs for `args`.
pub fn per_worker(path: &str, args: &[String], workers: u32) -> Result<u32, FieldError> {
    let r = request(path, args)?;
    let spread = r.total.map_or(0, |(n, _)| n.div_ceil(workers.max(1)));
    Ok(r.per_worker.map_or(0, |(n, _)| n).max(spread).max(1))
}

/// `N` of a `ppr:N:node` mapping (with modifiers after it, `ppr:2:node:pe=4`),
/// as text; `None` for every other mapping, which asks nothing of slots.
fn ppr_per_node(policy: &str) -> Option<&str> {
    let mut parts = policy.split(':');
    let kind = parts.next()?;
    let n = parts.next()?;
    let unit = parts.next()?;
    (kind.eq_ignore_ascii_case("ppr") && unit.eq_ignore_ascii_case("node")).then_some(n)
}

/// `value` as a count of processes; `example` is a right value for `flag`.
fn count(path: &str, at: usize, flag: &str, value: &str, example: &str) -> Result<u32, FieldError> {
    match value.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(FieldError::new(
            format!("{path}[{at}]"),
            format!(
                "{flag} needs a whole number of processes of at least 1, got {value:?}, e.g. [\"{flag}\", \"{example}\"]"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "spec.worker.extraMPIArgs";

    fn slots(args: &[&str], workers: u32) -> Result<u32, String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        per_worker(PATH, &args, workers).map_err(|e| e.to_string())
    }

    #[test]
    fn every_spelling_gives_the_slots_each_worker_needs() {
        let cases: &[(&[&str], u32, u32)] = &[
            (&[], 3, 1),
            (&["--bind-to", "none", "-x", "NCCL_DEBUG=INFO"], 3, 1),
            // minigo-4gpu.yaml: 9 on each worker.
            (&["-N", "9", "--bind-to", "none"], 2, 9),
            (&["-npernode", "2"], 3, 2),
            (&["--npernode", "2"], 3, 2),
            (&["--npernode=4"], 3, 4),
            (&["--map-by", "ppr:2:node"], 3, 2),
            (&["--map-by=ppr:3:node:pe=2"], 3, 3),
            (&["-map-by", "PPR:2:NODE"], 3, 2),
            // A mapping that is not per node asks nothing of slots.
            (&["--map-by", "ppr:2:socket"], 3, 1),
            (&["--map-by", "slot"], 3, 1),
            // Hydra.
            (&["-ppn", "4"], 2, 4),
            // A total spread over the workers, rounded up.
            (&["-np", "4"], 3, 2),
            (&["-n", "6"], 3, 2),
            (&["--np", "7"], 3, 3),
            (&["--np=2"], 3, 1),
            (&["-c", "3"], 1, 3),
            // Both: the larger.
            (&["-np", "12", "-N", "2"], 3, 4),
            (&["-N", "5", "-np", "4"], 2, 5),
        ];
        for (args, workers, want) in cases {
            assert_eq!(
                slots(args, *workers),
                Ok(*want),
                "{args:?} on {workers} workers"
            );
        }
    }

    #[test]
    fn a_bad_count_names_the_entry_the_flag_and_the_fix() {
        assert_eq!(
            slots(&["--bind-to", "none", "-N", "many"], 2).unwrap_err(),
            "spec.worker.extraMPIArgs[3]: -N needs a whole number of processes of at least 1, got \"many\", e.g. [\"-N\", \"2\"]"
        );
        assert_eq!(
            slots(&["-np", "0"], 2).unwrap_err(),
            "spec.worker.extraMPIArgs[1]: -np needs a whole number of processes of at least 1, got \"0\", e.g. [\"-np\", \"2\"]"
        );
        assert_eq!(
            slots(&["--npernode=x"], 2).unwrap_err(),
            "spec.worker.extraMPIArgs[0]: --npernode needs a whole number of processes of at least 1, got \"x\", e.g. [\"--npernode\", \"2\"]"
        );
        assert_eq!(
            slots(&["-x", "A", "-N"], 2).unwrap_err(),
            "spec.worker.extraMPIArgs[2]: -N needs a value after it, e.g. [\"-N\", \"2\"]"
        );
        assert_eq!(
            slots(&["--map-by", "ppr:two:node"], 2).unwrap_err(),
            "spec.worker.extraMPIArgs[1]: --map-by needs a whole number of processes of at least 1, got \"two\", e.g. [\"--map-by\", \"ppr:2:node\"]"
        );
    }
}
