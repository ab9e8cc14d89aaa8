//! `mpijob-controller`: the MPIJob operator.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The MPIJob operator: turns each MPIJob into a Secret, a headless Service,
/// worker Pods and a launcher Pod, and keeps its status true.
#[derive(Parser, Debug)]
#[command(name = "mpijob-controller", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the MPIJob CustomResourceDefinition as YAML.
    ///
    /// The output is what `crds/mpijob.yaml` holds; install it with
    /// `kubectl apply -f crds/`.
    Crd,
    /// Check MPIJob manifests the way the controller does, without a cluster.
    ///
    /// Prints one line per problem, each naming the field, the bad value and
    /// the fix. Exits 0 when every manifest is valid, 1 otherwise.
    ///
    /// Example: mpijob-controller validate -f examples/pi/pi.yaml
    Validate {
        /// A manifest file (YAML or JSON). Repeatable.
        #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", mpijob_api::crd::mpijob_yaml());
            ExitCode::SUCCESS
        }
        Command::Validate { files } => validate(&files),
    }
}

fn validate(files: &[PathBuf]) -> ExitCode {
    let mut ok = true;
    for path in files {
        let shown = path.display();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                println!("{shown}: cannot read: {e}");
                ok = false;
                continue;
            }
        };
        match mpijob_api::manifest::parse(&text) {
            Ok(job) => println!(
                "{shown}: valid MPIJob {:?} with {} worker(s)",
                job.metadata.name.unwrap_or_default(),
                job.spec.worker.replicas
            ),
            Err(errors) => {
                ok = false;
                for e in errors.0 {
                    println!("{shown}: {e}");
                }
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
