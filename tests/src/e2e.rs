//! The end-to-end cluster of `tests/e2e` (a real kubelet, containerd and
//! cluster DNS next to the API server): finding it, installing the operator
//! from `deploy/` once per test process, and MPIJobs from `examples/`.

use std::marker::PhantomData;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{ListParams, LogParams, PostParams};
use kube::core::NamespaceResourceScope;
use kube::{Api, Client, Resource, ResourceExt};
use mpijob_api::kubeflow;
use serde_json::{json, Value};

use crate::cluster::repo_root;
use crate::controller::wait_for;
use crate::{crds, Harness, JobKind, TestNamespace};

/// The node's address on its bridge: kubelet, the cluster-DNS stand-in
/// and (with host networking) the controller's health endpoint.
pub const NODE_IP: &str = "198.19.254.1";
/// The e2e node's name.
pub const NODE: &str = "mpijob-e2e-node";
/// The images `tests/e2e/images.sh` loads into the node's containerd.
pub const OPENMPI_IMAGE: &str = "mpijob/openmpi:latest";
pub const MPICH_IMAGE: &str = "mpijob/mpich:latest";
/// Kubeflow-style images (images/kubeflow): sshd configured by the image.
pub const KUBEFLOW_OPENMPI4_IMAGE: &str = "mpijob/kubeflow-openmpi4:latest";
pub const KUBEFLOW_OPENMPI5_IMAGE: &str = "mpijob/kubeflow-openmpi5:latest";
pub const KUBEFLOW_MPICH_IMAGE: &str = "mpijob/kubeflow-mpich:latest";
/// `OPENMPI_IMAGE` and `KUBEFLOW_OPENMPI4_IMAGE` with the agent baked in
/// (images/baked/Dockerfile).
pub const OPENMPI_BAKED_IMAGE: &str = "mpijob/openmpi-baked:latest";
pub const KUBEFLOW_OPENMPI4_BAKED_IMAGE: &str = "mpijob/kubeflow-openmpi4-baked:latest";
/// Where deploy/ runs the controller.
pub const OPERATOR_NAMESPACE: &str = "mpijob-system";

/// The e2e cluster's state dir, as `tests/e2e/e2e.sh` uses it.
pub fn state_dir() -> PathBuf {
    std::env::var_os("MPIJOB_E2E_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/mpijob-e2e"))
}

/// The e2e cluster, driving jobs of kind `K` (either MPIJob API).
pub struct E2e<K> {
    pub harness: Harness,
    pub client: Client,
    kind: PhantomData<fn() -> K>,
}

static OPERATOR: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

impl<K: JobKind> E2e<K> {
    /// The running e2e cluster with the operator installed from deploy/.
    /// Panics, saying how to start it, when the cluster is not running.
    pub async fn get() -> Self {
        let harness = Harness::at(
            &state_dir(),
            "bash tests/e2e/e2e.sh start",
            "the end-to-end cluster (tests/e2e)",
        );
        let client = harness.client().await;
        OPERATOR
            .get_or_init(|| install_operator(&harness, &client))
            .await;
        E2e {
            harness,
            client,
            kind: PhantomData,
        }
    }

    /// The same cluster, driving jobs of kind `J`.
    pub fn of<J: JobKind>(&self) -> E2e<J> {
        E2e {
            harness: self.harness.clone(),
            client: self.client.clone(),
            kind: PhantomData,
        }
    }

    pub async fn namespace(&self, prefix: &str) -> TestNamespace {
        TestNamespace::new(&self.client, &self.harness, prefix).await
    }

    /// Resources of any namespaced kind in `ns`.
    pub fn api<R>(&self, ns: &str) -> Api<R>
    where
        R: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), ns)
    }

    pub fn jobs(&self, ns: &str) -> Api<K> {
        self.api(ns)
    }

    pub fn pods(&self, ns: &str) -> Api<Pod> {
        self.api(ns)
    }

    pub async fn create(&self, ns: &str, job: Value) -> K {
        let kind = K::kind(&());
        let job: K = serde_json::from_value(job)
            .unwrap_or_else(|e| panic!("a well-formed {}/{kind}: {e}", K::api_version(&())));
        self.jobs(ns)
            .create(&PostParams::default(), &job)
            .await
            .unwrap_or_else(|e| panic!("creating the {kind} in {ns}: {e}"))
    }

    /// Wait until the job reaches `stage` and return its status. A job
    /// that finishes elsewhere fails the wait at once.
    pub async fn wait_phase(
        &self,
        ns: &str,
        name: &str,
        stage: K::Stage,
        timeout: Duration,
    ) -> K::Status {
        let jobs = self.jobs(ns);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let job = jobs.get(name).await.expect("reading the job");
            let status = job.status_or_default();
            if K::reached(&status, stage) {
                return status;
            }
            let finished = K::finished(&status);
            if finished || tokio::time::Instant::now() >= deadline {
                panic!(
                    "{} {ns}/{name}: wanted {stage:?}, {} {}\n{}",
                    K::api_version(&()),
                    if finished {
                        "it finished:".to_string()
                    } else {
                        format!("not there after {timeout:?}:")
                    },
                    serde_json::to_string(&status).unwrap(),
                    self.describe(ns).await
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Bind `pod` to the node, as a scheduler does: tests that hold a pod
    /// back give it a `schedulerName` that no scheduler serves.
    pub async fn bind(&self, ns: &str, pod: &str) {
        let binding = json!({
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": pod},
            "target": {"apiVersion": "v1", "kind": "Node", "name": NODE}
        });
        self.pods(ns)
            .create_subresource::<Value, Value>("binding", pod, &PostParams::default(), &binding)
            .await
            .unwrap_or_else(|e| panic!("binding {ns}/{pod}: {e}"));
    }

    /// The MPI container's log of `pod`.
    pub async fn logs(&self, ns: &str, pod: &str) -> String {
        self.mpi_log(ns, pod, false).await
    }

    /// [`E2e::logs`] with kubelet's timestamp before each line (read them
    /// with [`log_time`]).
    pub async fn stamped_logs(&self, ns: &str, pod: &str) -> String {
        self.mpi_log(ns, pod, true).await
    }

    /// The log of the MPI container: `mpi-worker`, or the first, as the
    /// controller picks it.
    async fn mpi_log(&self, ns: &str, pod: &str, timestamps: bool) -> String {
        let containers = match self.pods(ns).get(pod).await {
            Ok(p) => p.spec.map(|s| s.containers).unwrap_or_default(),
            Err(e) => return format!("(no log of {pod}: {e})"),
        };
        let mpi = containers
            .iter()
            .find(|c| c.name == "mpi-worker")
            .or(containers.first())
            .map_or("mpi-worker".to_string(), |c| c.name.clone());
        let lp = LogParams {
            container: Some(mpi),
            timestamps,
            ..LogParams::default()
        };
        self.pods(ns)
            .logs(pod, &lp)
            .await
            .unwrap_or_else(|e| format!("(no log of {pod}: {e})"))
    }

    /// Everything worth seeing when a test fails: the jobs' status (of
    /// both APIs), every pod's state, the events and the launchers' logs.
    pub async fn describe(&self, ns: &str) -> String {
        let mut s = self.of::<mpijob_api::MPIJob>().statuses(ns).await;
        s += &self.of::<kubeflow::MPIJob>().statuses(ns).await;
        for pod in self.pods(ns).list(&ListParams::default()).await.unwrap() {
            let name = pod.metadata.name.clone().unwrap_or_default();
            let status = pod.status.clone().unwrap_or_default();
            s += &format!(
                "pod {name}: phase {:?} containers {}\n",
                status.phase,
                serde_json::to_string(&status.container_statuses).unwrap()
            );
            if name.ends_with("-launcher") {
                s += &format!("--- log of {name}:\n{}\n---\n", self.logs(ns, &name).await);
            } else if pod.labels().get(KUBEFLOW_ROLE).map(String::as_str) == Some("launcher") {
                let log = kubeflow_launcher_log(&self.pods(ns), &name).await;
                s += &format!("--- log of {name}:\n{log}\n");
            }
        }
        let events: Api<Event> = self.api(ns);
        for e in events.list(&ListParams::default()).await.unwrap() {
            s += &format!(
                "event {} {}: {}\n",
                e.involved_object.name.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default()
            );
        }
        s
    }

    /// `<kind> <name>: <status>` for each job of kind `K` in `ns`.
    async fn statuses(&self, ns: &str) -> String {
        let jobs = self.jobs(ns).list(&ListParams::default()).await;
        let mut s = String::new();
        for job in jobs.map(|l| l.items).unwrap_or_default() {
            s += &format!(
                "{} {}: {}\n",
                K::api_version(&()),
                job.name_any(),
                serde_json::to_string(&job.status_or_default()).unwrap()
            );
        }
        s
    }
}

/// The label that tells a Kubeflow job's launcher and workers apart.
const KUBEFLOW_ROLE: &str = "training.kubeflow.org/job-role";

impl E2e<kubeflow::MPIJob> {
    /// The launcher pods the Job controller made for Kubeflow job `job`.
    pub async fn launcher_pods(&self, ns: &str, job: &str) -> Vec<String> {
        let lp = ListParams::default().labels(&format!(
            "training.kubeflow.org/job-name={job},{KUBEFLOW_ROLE}=launcher"
        ));
        self.pods(ns)
            .list(&lp)
            .await
            .unwrap()
            .items
            .iter()
            .map(|p| p.name_any())
            .collect()
    }

    /// A Kubeflow launcher pod's log: its wait for the workers, then mpirun.
    pub async fn launcher_log(&self, ns: &str, pod: &str) -> String {
        kubeflow_launcher_log(&self.pods(ns), pod).await
    }
}

async fn kubeflow_launcher_log(pods: &Api<Pod>, pod: &str) -> String {
    let mut out = String::new();
    for container in ["mpijob-wait-for-workers", "mpi-launcher"] {
        let lp = LogParams {
            container: Some(container.into()),
            ..LogParams::default()
        };
        let log = pods
            .logs(pod, &lp)
            .await
            .unwrap_or_else(|e| format!("(no log: {e})"));
        out += &format!("[{container}]\n{log}");
    }
    out
}

/// When a line of a log read with `timestamps: true` was written, in
/// seconds of the day: the agent's own timestamp (second field) where the
/// line has one, else kubelet's (first field), which is when containerd
/// read the line and can be tens of milliseconds later.
pub fn log_time(line: &str) -> Option<f64> {
    let mut fields = line.split_whitespace();
    let kubelet = fields.next()?;
    let agent = fields
        .next()
        .filter(|f| f.len() > 11 && f.as_bytes()[10] == b'T');
    let time = agent
        .unwrap_or(kubelet)
        .split('T')
        .nth(1)?
        .trim_end_matches('Z');
    let mut parts = time.split(':').map(|x| x.parse::<f64>().ok());
    Some(parts.next()?? * 3600.0 + parts.next()?? * 60.0 + parts.next()??)
}

/// `examples/pi/pi.yaml` as JSON, in `ns`, running `image`, never pulled.
pub fn pi_example(ns: &str, image: &str) -> Value {
    let path = repo_root().join("examples/pi/pi.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut job: Value = mpijob_api::yaml::from_str(&text).unwrap();
    job["metadata"]["namespace"] = json!(ns);
    on_this_node(
        &mut job["spec"]["worker"]["template"]["spec"]["containers"][0],
        image,
    );
    job
}

/// Make a manifest's `container` run here: `image`, never pulled, and small
/// requests. Examples ask for a whole CPU per pod; this node has two, and
/// tests run side by side.
pub fn on_this_node(container: &mut Value, image: &str) {
    container["image"] = json!(image);
    container["imagePullPolicy"] = json!("Never");
    container["resources"] = json!({
        "requests": {"cpu": "10m", "memory": "64Mi"},
        "limits": {"memory": "1Gi"}
    });
}

/// How many `rank r of n on host H` lines of pi's output name `host`.
pub fn ranks_on(log: &str, host: &str) -> usize {
    let suffix = format!("on host {host}");
    log.lines()
        .filter(|l| l.starts_with("rank ") && l.ends_with(&suffix))
        .count()
}

/// `examples/kubeflow/pi.yaml` in namespace `ns`, on the Kubeflow-style
/// `image` (which holds pi at `/home/mpiuser/pi`), with small requests.
pub fn kubeflow_pi_example(ns: &str, image: &str) -> Value {
    let path = repo_root().join("examples/kubeflow/pi.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut job: Value = mpijob_api::yaml::from_str(&text).unwrap();
    job["metadata"]["namespace"] = json!(ns);
    for role in ["Launcher", "Worker"] {
        on_this_node(
            &mut job["spec"]["mpiReplicaSpecs"][role]["template"]["spec"]["containers"][0],
            image,
        );
    }
    let launcher =
        &mut job["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0];
    let command = launcher["command"]
        .as_array_mut()
        .expect("the launcher's command");
    *command.last_mut().unwrap() = json!("/home/mpiuser/pi");
    job
}

/// Apply deploy/mpijob-operator.yaml, changed only where this cluster needs
/// it, and wait for the controller pod to be Ready.
///
/// The node has no kube-proxy, so a pod cannot reach the `kubernetes`
/// Service's ClusterIP. The controller pod therefore uses the host's
/// network and is pointed at the API server's loopback address through
/// `KUBERNETES_SERVICE_HOST`/`_PORT`, which is how every in-cluster client
/// finds the API server. It still authenticates with the ServiceAccount
/// token deploy/ gives it, so deploy/'s RBAC is what is tested. Images are
/// never pulled (`Never`), and its health port moves to the node address.
async fn install_operator(h: &Harness, client: &Client) {
    let api_port = read_port("apiserver");
    let health_port = free_node_port();
    let text = std::fs::read_to_string(repo_root().join("deploy/mpijob-operator.yaml")).unwrap();
    let mut docs = Vec::new();
    for mut v in mpijob_api::yaml::from_str_multiple::<Value>(&text).unwrap() {
        if v["kind"] == "Deployment" && v["metadata"]["name"] == "mpijob-controller" {
            let spec = &mut v["spec"]["template"]["spec"];
            spec["hostNetwork"] = json!(true);
            spec["dnsPolicy"] = json!("ClusterFirstWithHostNet");
            let c = &mut spec["containers"][0];
            c["imagePullPolicy"] = json!("Never");
            let args = c["args"].as_array_mut().unwrap();
            args.extend([
                json!("--agent-image-pull-policy"),
                json!("Never"),
                json!("--health-addr"),
                json!(format!("{NODE_IP}:{health_port}")),
                // Kubeflow jobs' hostfiles name hosts in full, as
                // mpi-operator's --cluster-domain does.
                json!("--cluster-domain"),
                json!("cluster.local"),
            ]);
            let env = c["env"].as_array_mut().unwrap();
            env.push(json!({"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"}));
            env.push(json!({"name": "KUBERNETES_SERVICE_PORT", "value": api_port.to_string()}));
            c["ports"][0]["containerPort"] = json!(health_port);
        }
        docs.push(v);
    }
    let file = state_dir().join("mpijob-operator.e2e.json");
    let list = json!({"apiVersion": "v1", "kind": "List", "items": docs});
    std::fs::write(&file, serde_json::to_vec_pretty(&list).unwrap()).unwrap();
    h.kubectl_ok(&["apply", "-f", file.to_str().unwrap()]);
    crds::wait_established(client, "mpijobs.batch.tensorstack.dev").await;
    crds::wait_established(client, "mpijobs.kubeflow.org").await;

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let pods: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    wait_for(
        "the controller Deployment to be available",
        Duration::from_secs(120),
        || async {
            let d = deployments
                .get("mpijob-controller")
                .await
                .map_err(|e| e.to_string())?;
            let s = d.status.unwrap_or_default();
            let generation = d.metadata.generation.unwrap_or(0);
            if s.observed_generation == Some(generation)
                && s.updated_replicas == Some(1)
                && s.available_replicas == Some(1)
                && s.replicas == Some(1)
            {
                Ok(())
            } else {
                let pods = pods
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| e.to_string())?;
                Err(format!(
                    "deployment status {s:?}; pods: {}",
                    pods.items
                        .iter()
                        .map(|p| format!(
                            "{} {}",
                            p.metadata.name.as_deref().unwrap_or("?"),
                            serde_json::to_string(&p.status).unwrap()
                        ))
                        .collect::<Vec<_>>()
                        .join("; ")
                ))
            }
        },
    )
    .await
}

/// A value from the harness's `ports` file (`apiserver=NNNN`).
fn read_port(key: &str) -> u16 {
    let text = std::fs::read_to_string(state_dir().join("ports")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {}/ports", state_dir().display()))
}

/// The controller's health port on the node address: free when first
/// chosen, then kept in the state dir, so that installing again into the
/// same cluster changes nothing.
fn free_node_port() -> u16 {
    let file = state_dir().join("controller-health-port");
    if let Some(port) = std::fs::read_to_string(&file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        return port;
    }
    let l = std::net::TcpListener::bind((NODE_IP, 0))
        .unwrap_or_else(|e| panic!("binding {NODE_IP}:0 (is the e2e node up?): {e}"));
    let port = l.local_addr().unwrap().port();
    std::fs::write(&file, port.to_string()).unwrap();
    port
}

/// One of the e2e cluster's processes (`kube-apiserver`, `etcd`,
/// `kubelet`, …), by the pid file `cluster.sh` keeps for it.
pub struct Component {
    pub name: &'static str,
}

impl Component {
    fn pidfile(&self) -> PathBuf {
        state_dir().join("pids").join(format!("{}.pid", self.name))
    }

    /// Its pid now.
    pub fn pid(&self) -> i32 {
        let f = self.pidfile();
        std::fs::read_to_string(&f)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
            .trim()
            .parse()
            .unwrap()
    }

    /// Send it `signal`.
    pub fn signal(&self, signal: i32) {
        let pid = self.pid();
        // SAFETY: kill(2) on the pid cluster.sh recorded for the component.
        let r = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            r,
            0,
            "signal {signal} to {} ({pid}): {}",
            self.name,
            std::io::Error::last_os_error()
        );
    }

    /// Stop it (SIGTERM, SIGKILL after 10 s) and start it again with the same command line and
    /// environment, in its own session, logging where it logged, and
    /// record the new pid where `cluster.sh stop` will find it.
    pub fn restart(&self) {
        use std::os::unix::process::CommandExt;
        let pid = self.pid();
        let read = |f: &str| std::fs::read(format!("/proc/{pid}/{f}")).unwrap();
        let split = |b: Vec<u8>| -> Vec<String> {
            b.split(|c| *c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        };
        let argv = split(read("cmdline"));
        let env = split(read("environ"));
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
        // A clean stop when it takes one within 10 s (kube-apiserver
        // drains its watches first), else SIGKILL, as a crash.
        let gone = |secs: u64| {
            (0..secs * 10).any(|_| {
                let gone = !std::path::Path::new(&format!("/proc/{pid}")).exists();
                if !gone {
                    std::thread::sleep(Duration::from_millis(100));
                }
                gone
            })
        };
        self.signal(libc::SIGTERM);
        if !gone(10) {
            self.signal(libc::SIGKILL);
            assert!(gone(30), "{} ({pid}) did not stop", self.name);
        }
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(state_dir().join("logs").join(format!("{}.log", self.name)))
            .unwrap();
        let mut cmd = std::process::Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .env_clear()
            .envs(env.iter().filter_map(|kv| kv.split_once('=')))
            .current_dir(cwd)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // SAFETY: setsid(2) only, between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("restarting {}: {e}", self.name));
        std::fs::write(self.pidfile(), format!("{}\n", child.id())).unwrap();
        // It runs on in its own session; cluster.sh stops it.
        std::mem::forget(child);
    }
}

#[cfg(test)]
mod tests {
    use super::log_time;

    #[test]
    fn log_time_prefers_the_agents_own_timestamp() {
        let agent = "2026-11-22T03:43:24.598665072Z 2026-11-22T03:43:24.598500Z  INFO ready";
        assert!((log_time(agent).unwrap() - (3.0 * 3600.0 + 43.0 * 60.0 + 24.5985)).abs() < 1e-6);
        let plain = "2026-11-22T03:44:09.661378163Z rank 1 of 2 on host late-worker-1";
        assert!(
            (log_time(plain).unwrap() - (3.0 * 3600.0 + 44.0 * 60.0 + 9.661378163)).abs() < 1e-6
        );
        assert_eq!(log_time("garbage"), None);
    }
}
