//! The hostfile mpirun reads: one worker per line, in the implementation's
//! syntax. Open MPI wants `host slots=N`; MPICH and Intel MPI (Hydra) want
//! `host:N`.

use crate::mpirun::Implementation;

/// The hostfile text for `hosts`, each with `slots` slots.
pub fn render(implementation: Implementation, hosts: &[String], slots: u32) -> String {
    hosts
        .iter()
        .map(|h| match implementation {
            Implementation::OpenMpi => format!("{h} slots={slots}\n"),
            Implementation::Mpich | Implementation::Intel => format!("{h}:{slots}\n"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> Vec<String> {
        vec![
            "pi-worker-0.pi.team.svc".into(),
            "pi-worker-1.pi.team.svc".into(),
        ]
    }

    #[test]
    fn open_mpi_uses_slots_equals() {
        assert_eq!(
            render(Implementation::OpenMpi, &hosts(), 2),
            "pi-worker-0.pi.team.svc slots=2\npi-worker-1.pi.team.svc slots=2\n"
        );
    }

    #[test]
    fn hydra_uses_host_colon_n() {
        let want = "pi-worker-0.pi.team.svc:4\npi-worker-1.pi.team.svc:4\n";
        assert_eq!(render(Implementation::Mpich, &hosts(), 4), want);
        assert_eq!(render(Implementation::Intel, &hosts(), 4), want);
        assert_eq!(render(Implementation::Mpich, &[], 4), "");
    }
}
