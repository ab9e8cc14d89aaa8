//! `mpijob-controller`: the MPIJob operator.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use mpijob_controller::runtime::{self, throttle};
use mpijob_controller::Config;

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
    /// Run the operator: watch MPIJobs and create, watch and clean up their
    /// Secret, Service and Pods.
    ///
    /// Uses $KUBECONFIG, ~/.kube/config or the in-cluster service account,
    /// in that order. Stops cleanly on SIGTERM or Ctrl-C.
    ///
    /// Example: mpijob-controller run --agent-image mpijob/agent:0.1.0
    Run(Box<RunArgs>),
    /// Print an MPIJob CustomResourceDefinition as YAML.
    ///
    /// `crd` (or `crd t9k`) prints what `crds/mpijob.yaml` holds; `crd
    /// kubeflow` prints `crds/kubeflow.org_mpijobs.yaml`. Install them with
    /// `kubectl apply -f crds/`.
    Crd {
        /// Which API's CRD.
        #[arg(value_enum, default_value = "t9k")]
        api: Api,
    },
    /// Check MPIJob manifests the way the controller does, without a cluster.
    ///
    /// Both APIs: `batch.tensorstack.dev/v1beta1` and `kubeflow.org/v2beta1`,
    /// told apart by each manifest's apiVersion.
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
    /// Convert an MPIJob manifest to another API, and print it as YAML.
    ///
    /// Reads Kubeflow's kubeflow.org/v1alpha1, v1alpha2 (and v1) and v2beta1,
    /// and T9k's batch.tensorstack.dev/v1beta1 in each of its schema eras.
    /// Writes kubeflow.org/v2beta1 or batch.tensorstack.dev/v1beta1
    /// [default: v2beta1 for older Kubeflow versions, else the other API].
    /// Every field that cannot be carried over is named on stderr, with the
    /// reason; the output passes `validate`. Exits 1 on invalid input.
    ///
    /// Example: mpijob-controller convert -f old.yaml --to kubeflow.org/v2beta1 > new.yaml
    Convert {
        /// The manifest file (YAML or JSON).
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// The apiVersion to write.
        #[arg(long, value_parser = ["kubeflow.org/v2beta1", "batch.tensorstack.dev/v1beta1"])]
        to: Option<String>,
    },
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// The image the init container copies `/mpijob-agent` from.
    #[arg(long, env = "MPIJOB_AGENT_IMAGE")]
    agent_image: String,

    /// Pull policy for the agent image: Always, IfNotPresent or Never.
    #[arg(
        long,
        env = "MPIJOB_AGENT_IMAGE_PULL_POLICY",
        default_value = "IfNotPresent"
    )]
    agent_image_pull_policy: String,

    /// The APIs to serve, comma-separated: t9k, kubeflow [default: each
    /// API whose CRD is installed; the log says which and why]. An API
    /// named here whose CRD is missing stops the controller with an error.
    #[arg(long, env = "MPIJOB_APIS", value_enum, value_delimiter = ',')]
    apis: Vec<Api>,

    /// The cluster's DNS domain, e.g. cluster.local. Kubeflow jobs' hostfiles
    /// then name hosts `<pod>.<job>.<ns>.svc.<domain>` (mpi-operator's flag of
    /// the same name) [default: hosts end in `.svc`].
    #[arg(long, env = "MPIJOB_CLUSTER_DOMAIN")]
    cluster_domain: Option<String>,

    /// Gang-schedule every job: give each a PodGroup, so that all of its
    /// pods start together or none do. `volcano` for Volcano
    /// (scheduling.volcano.sh), any other value as the schedulerName of a
    /// scheduler-plugins profile with coscheduling (scheduling.x-k8s.io),
    /// as mpi-operator reads it. Kubeflow jobs' runPolicy.schedulingPolicy
    /// fills the PodGroup. A T9k job with spec.scheduler.t9kScheduler keeps
    /// the T9k scheduler [default: only those T9k jobs are gang-scheduled].
    #[arg(long, env = "MPIJOB_GANG_SCHEDULING")]
    gang_scheduling: Option<String>,

    /// Watch only this namespace [default: all namespaces].
    #[arg(long, env = "MPIJOB_WATCH_NAMESPACE")]
    namespace: Option<String>,

    /// Serve /healthz, /readyz and /metrics here; `off` to disable.
    #[arg(long, env = "MPIJOB_HEALTH_ADDR", default_value = "0.0.0.0:8080")]
    health_addr: String,

    /// This instance's name in events [default: $POD_NAME, else the host name].
    #[arg(long, env = "POD_NAME")]
    instance: Option<String>,

    /// Log format: text for a terminal, json for a cluster's log collector.
    #[arg(long, env = "MPIJOB_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,

    /// Elect a leader through a Lease in this namespace, so that several
    /// replicas can run and one acts [default: no election; in a cluster,
    /// deploy/ sets it to the controller's namespace].
    #[arg(long, env = "MPIJOB_LEADER_ELECTION_NAMESPACE")]
    leader_election_namespace: Option<String>,

    /// The Lease's name.
    #[arg(long, default_value = "mpijob-controller")]
    lease_name: String,

    /// How long the lease lasts unrenewed before another replica takes over.
    #[arg(long, default_value = "15s", value_parser = mpijob_api::duration::parse)]
    lease_duration: std::time::Duration,

    /// How often the leader renews the lease.
    #[arg(long, default_value = "5s", value_parser = mpijob_api::duration::parse)]
    lease_renew_every: std::time::Duration,

    /// Requests per second to the API server, sustained (mpi-operator's
    /// flag of the same name); 0 for no limit. Each job also has at most
    /// 32 pod writes in flight, whatever this says.
    #[arg(long, env = "MPIJOB_KUBE_API_QPS", default_value_t = 0.0)]
    kube_api_qps: f64,

    /// Requests the controller may send at once above --kube-api-qps
    /// before it waits.
    #[arg(long, env = "MPIJOB_KUBE_API_BURST", default_value_t = 10)]
    kube_api_burst: u32,
}

/// The two MPIJob APIs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Api {
    /// `batch.tensorstack.dev/v1beta1` (TensorStack T9k).
    T9k,
    /// `kubeflow.org/v2beta1` (Kubeflow mpi-operator).
    Kubeflow,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run_operator(*args),
        Command::Crd { api } => {
            match api {
                Api::T9k => print!("{}", mpijob_api::crd::mpijob_yaml()),
                Api::Kubeflow => print!("{}", mpijob_api::crd::kubeflow_yaml()),
            }
            ExitCode::SUCCESS
        }
        Command::Validate { files } => validate(&files),
        Command::Convert { file, to } => convert(&file, to.as_deref()),
    }
}

fn convert(file: &std::path::Path, to: Option<&str>) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("{}: cannot read: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let to = to.and_then(mpijob_api::convert::Target::of);
    match mpijob_api::convert::convert(&text, to) {
        Ok(converted) => {
            for note in &converted.notes {
                eprintln!("{}: {note}", file.display());
            }
            print!("{}", converted.yaml());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in errors.0 {
                eprintln!("{}: {e}", file.display());
            }
            ExitCode::FAILURE
        }
    }
}

/// Whether the text log is coloured: only on a terminal, and not when
/// `NO_COLOR` is set to anything (<https://no-color.org>).
fn colour(is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    is_terminal && no_color.is_none_or(|v| v.is_empty())
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
        for warning in mpijob_api::manifest::warnings(&text) {
            println!("{shown}: warning: {warning}");
        }
        let kubeflow = mpijob_api::manifest::api_version_of(&text).as_deref()
            == Some(mpijob_api::kubeflow::API_VERSION);
        let checked = if kubeflow {
            mpijob_api::kubeflow::parse(&text).map(|(job, r)| {
                format!(
                    "valid Kubeflow MPIJob {:?} with {} worker(s)",
                    job.metadata.name.unwrap_or_default(),
                    r.workers()
                )
            })
        } else {
            mpijob_api::manifest::parse(&text).map(|job| {
                format!(
                    "valid MPIJob {:?} with {} worker(s)",
                    job.metadata.name.unwrap_or_default(),
                    job.spec.worker().replicas
                )
            })
        };
        match checked {
            Ok(line) => println!("{shown}: {line}"),
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

fn run_operator(args: RunArgs) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => builder.json().with_ansi(false).init(),
        LogFormat::Text => builder
            .with_ansi(colour(
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR"),
            ))
            .init(),
    }
    let health_addr = match args.health_addr.as_str() {
        "off" | "" => None,
        addr => match addr.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(e) => {
                eprintln!("mpijob-controller: --health-addr {addr:?}: {e}: give HOST:PORT, e.g. 0.0.0.0:8080, or off");
                return ExitCode::from(2);
            }
        },
    };
    let instance = args
        .instance
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "mpijob-controller".into());
    let gang_scheduling = match args.gang_scheduling.as_deref().filter(|g| !g.is_empty()) {
        None => None,
        Some(g) => match mpijob_controller::gang::GangScheduling::parse(g) {
            Ok(g) => Some(g),
            Err(e) => {
                eprintln!("mpijob-controller: --gang-scheduling: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let config = Config {
        agent_image: args.agent_image,
        agent_image_pull_policy: args.agent_image_pull_policy,
    };
    let leader = args
        .leader_election_namespace
        .map(|namespace| runtime::leader::LeaseConfig {
            namespace,
            name: args.lease_name,
            identity: instance.clone(),
            duration: args.lease_duration,
            renew_every: args.lease_renew_every,
        });
    let opts = runtime::Options {
        namespace: args.namespace,
        cluster_domain: args.cluster_domain.filter(|d| !d.is_empty()),
        gang_scheduling,
        health_addr,
        instance,
        leader,
        apis: (!args.apis.is_empty()).then(|| {
            args.apis
                .iter()
                .map(|a| match a {
                    Api::T9k => runtime::Served::T9k,
                    Api::Kubeflow => runtime::Served::Kubeflow,
                })
                .collect()
        }),
    };
    let (qps, burst) = (args.kube_api_qps, args.kube_api_burst);
    if !qps.is_finite() || qps < 0.0 || burst == 0 {
        eprintln!(
            "mpijob-controller: --kube-api-qps {qps} --kube-api-burst {burst}: give a rate of 0 (no limit) or more, and a burst of 1 or more, e.g. --kube-api-qps 50 --kube-api-burst 100"
        );
        return ExitCode::from(2);
    }
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let result = runtime.block_on(async move {
        let kube_config = kube::Config::infer().await?;
        let client = kube::client::ClientBuilder::try_from(kube_config)?
            .with_layer(&throttle::ThrottleLayer::new(qps, burst))
            .build();
        runtime::run(client, config, opts).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("mpijob-controller: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::colour;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some("".into())));
        assert!(!colour(true, Some("1".into())));
        assert!(!colour(false, None));
    }
}
