//! `keepmover plan -k8s`: a batch/v1 Indexed Job with one completion per shard. Each pod
//! runs the copy with `-shard auto/N` (keepmover reads `JOB_COMPLETION_INDEX`) and keeps its
//! checkpoint, block report and summary under `/state`, named by its index. Settings files
//! come from one Secret per cluster, mounted read-only; the manifest names the Secrets and
//! never holds a token. A failed pod is retried up to `-backoff-limit-per-index` times for
//! its own index (a new pod, which resumes from the checkpoint when `/state` is a claim),
//! without using up the other shards' retries; a usage error (exit 2) fails its index at
//! once, and evictions do not count.

use super::yaml::{map, s, strings, to_yaml, Node};
use super::{
    memory_mib, settings_name, settings_source, shard_flags, KubernetesArgs, Plan, PlanArgs,
    PlanError,
};

/// Where each pod keeps its per-shard files.
pub const STATE_DIR: &str = "/state";
/// Where the Secrets are mounted: `<SECRETS_DIR>/<secret>/<name>.conf`.
pub const SECRETS_DIR: &str = "/etc/keepmover";
/// The user the image runs as (distroless's `nonroot`); the pod asks for it by number so
/// `runAsNonRoot` can be checked.
pub const USER_ID: i64 = 65_532;
/// The container's name, which the pod failure policy refers to.
const CONTAINER: &str = "keepmover";
/// How Kubernetes spells the index inside a command line (`$(VAR)` expansion).
const INDEX: &str = "$(JOB_COMPLETION_INDEX)";

/// Kubernetes expands `$(VAR)` in commands and turns `$$` into `$`: a user's value keeps
/// its `$` by doubling it.
fn escape(value: &str) -> String {
    value.replace('$', "$$")
}

/// One side's Secret: its name, the key it holds, and the path the pod reads.
struct SecretFile {
    secret: String,
    key: String,
    source: String,
}

fn secret_file(
    flag: &'static str,
    value: &str,
    secret: &str,
    secret_flag: &'static str,
) -> Result<SecretFile, PlanError> {
    let name = settings_name(value);
    let key = format!("{name}.conf");
    let key_ok = key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if name.is_empty() || !key_ok || key.len() > 253 {
        return Err(PlanError::Name {
            flag,
            value: value.to_string(),
            why: "the settings file's name must be letters, digits, '-', '_' or '.' to be a Secret key".to_string(),
        });
    }
    let derived = secret.is_empty();
    let secret = if derived {
        format!("keepmover-{name}")
    } else {
        secret.to_string()
    };
    super::check_label(secret_flag, &secret).map_err(|e| match e {
        PlanError::Name { value, why, .. } if derived => PlanError::Name {
            flag: secret_flag,
            value,
            why: format!("{why} (it comes from {flag} {name}; name the Secret with {secret_flag})"),
        },
        other => other,
    })?;
    Ok(SecretFile {
        secret,
        key,
        source: settings_source(value),
    })
}

fn path_of(file: &SecretFile) -> String {
    format!("{SECRETS_DIR}/{}/{}", file.secret, file.key)
}

pub fn render(args: &PlanArgs, k8s: &KubernetesArgs) -> Result<Plan, PlanError> {
    if !k8s.namespace.is_empty() {
        super::check_label("-namespace", &k8s.namespace)?;
    }
    if let Some(claim) = &k8s.pvc {
        super::check_label("-pvc", claim)?;
    }
    let src = secret_file("-src", &args.src, &k8s.src_secret, "-src-secret")?;
    let dst = secret_file("-dst", &args.dst, &k8s.dst_secret, "-dst-secret")?;
    let n = args.shards;

    let mut command = vec![
        "keepmover".to_string(),
        "-src".to_string(),
        path_of(&src),
        "-dst".to_string(),
        path_of(&dst),
    ];
    command.extend(shard_flags(n, STATE_DIR, INDEX));
    command.extend(
        args.copy_flags
            .iter()
            .flat_map(|f| f.argv())
            .map(|a| escape(&a)),
    );

    // One volume per distinct Secret (a single-cluster job has one).
    let mut secrets: Vec<&SecretFile> = vec![&src];
    if dst.secret != src.secret {
        secrets.push(&dst);
    }
    let mut mounts = vec![
        map([("name", s("state")), ("mountPath", s(STATE_DIR))]),
        map([("name", s("tmp")), ("mountPath", s("/tmp"))]),
    ];
    let state_volume = match &k8s.pvc {
        Some(claim) => map([
            ("name", s("state")),
            (
                "persistentVolumeClaim",
                map([("claimName", s(claim.as_str()))]),
            ),
        ]),
        None => map([("name", s("state")), ("emptyDir", Node::Map(vec![]))]),
    };
    let mut volumes = vec![
        state_volume,
        map([("name", s("tmp")), ("emptyDir", Node::Map(vec![]))]),
    ];
    for (i, file) in secrets.iter().enumerate() {
        let volume = format!("settings-{i}");
        mounts.push(map([
            ("name", s(volume.as_str())),
            ("mountPath", s(format!("{SECRETS_DIR}/{}", file.secret))),
            ("readOnly", Node::Bool(true)),
        ]));
        volumes.push(map([
            ("name", s(volume)),
            (
                "secret",
                map([
                    ("secretName", s(file.secret.as_str())),
                    // 0440: readable by the pod's group (fsGroup), nobody else.
                    ("defaultMode", Node::Int(0o440)),
                ]),
            ),
        ]));
    }

    let memory = s(format!("{}Mi", memory_mib(args)));
    let cpu = s(args.cpus.to_string());
    let resources = map([
        (
            "requests",
            map([("cpu", cpu.clone()), ("memory", memory.clone())]),
        ),
        ("limits", map([("cpu", cpu), ("memory", memory)])),
    ]);
    let labels = map([
        ("app.kubernetes.io/name", s("keepmover")),
        ("app.kubernetes.io/instance", s(args.name.as_str())),
    ]);
    let container = map([
        ("name", s(CONTAINER)),
        ("image", s(k8s.image.as_str())),
        ("command", strings(command)),
        (
            "env",
            Node::List(vec![map([
                ("name", s("JOB_COMPLETION_INDEX")),
                (
                    "valueFrom",
                    map([(
                        "fieldRef",
                        map([(
                            "fieldPath",
                            s("metadata.annotations['batch.kubernetes.io/job-completion-index']"),
                        )]),
                    )]),
                ),
            ])]),
        ),
        ("resources", resources),
        ("volumeMounts", Node::List(mounts)),
        (
            "securityContext",
            map([
                ("allowPrivilegeEscalation", Node::Bool(false)),
                ("readOnlyRootFilesystem", Node::Bool(true)),
                ("capabilities", map([("drop", strings(["ALL"]))])),
            ]),
        ),
    ]);
    let mut metadata = vec![("name".to_string(), s(args.name.as_str()))];
    if !k8s.namespace.is_empty() {
        metadata.push(("namespace".to_string(), s(k8s.namespace.as_str())));
    }
    metadata.push(("labels".to_string(), labels.clone()));
    let job = map([
        ("apiVersion", s("batch/v1")),
        ("kind", s("Job")),
        ("metadata", Node::Map(metadata)),
        (
            "spec",
            map([
                ("completionMode", s("Indexed")),
                ("completions", Node::Int(i64::from(n))),
                ("parallelism", Node::Int(i64::from(args.parallelism))),
                (
                    "backoffLimitPerIndex",
                    Node::Int(i64::from(k8s.backoff_limit_per_index)),
                ),
                (
                    "podFailurePolicy",
                    map([(
                        "rules",
                        Node::List(vec![
                            map([
                                ("action", s("FailIndex")),
                                (
                                    "onExitCodes",
                                    map([
                                        ("containerName", s(CONTAINER)),
                                        ("operator", s("In")),
                                        (
                                            "values",
                                            Node::List(vec![Node::Int(i64::from(
                                                crate::exit::USAGE,
                                            ))]),
                                        ),
                                    ]),
                                ),
                            ]),
                            map([
                                ("action", s("Ignore")),
                                (
                                    "onPodConditions",
                                    Node::List(vec![map([("type", s("DisruptionTarget"))])]),
                                ),
                            ]),
                        ]),
                    )]),
                ),
                (
                    "template",
                    map([
                        ("metadata", map([("labels", labels)])),
                        (
                            "spec",
                            map([
                                ("restartPolicy", s("Never")),
                                (
                                    "securityContext",
                                    map([
                                        ("runAsNonRoot", Node::Bool(true)),
                                        ("runAsUser", Node::Int(USER_ID)),
                                        ("runAsGroup", Node::Int(USER_ID)),
                                        ("fsGroup", Node::Int(USER_ID)),
                                    ]),
                                ),
                                ("containers", Node::List(vec![container])),
                                ("volumes", Node::List(volumes)),
                            ]),
                        ),
                    ]),
                ),
            ]),
        ),
    ]);

    let mut warnings = Vec::new();
    let mut header = vec![
        format!(
            "keepmover plan {}: copy {} to {} in {n} shards as a Kubernetes Indexed Job;",
            env!("CARGO_PKG_VERSION"),
            args.src,
            args.dst
        ),
        format!("pod I copies shard I/{n} and keeps ck-I, report-I.jsonl and summary-I.json in {STATE_DIR}."),
        "No token is in this file: create the settings Secrets first, e.g.".to_string(),
    ];
    for file in &secrets {
        header.push(format!(
            "  kubectl create secret generic {} --from-file={}={}",
            file.secret, file.key, file.source
        ));
    }
    header.push(format!(
        "then: kubectl apply -f THIS_FILE; afterwards copy the summaries out of {STATE_DIR} and run"
    ));
    header.push(format!(
        "  keepmover report merge -shards {n} summary-*.json"
    ));
    match &k8s.pvc {
        Some(claim) => {
            if args.parallelism > 1 {
                header.push(format!(
                    "{STATE_DIR} is the claim {claim}: pods on several nodes need it ReadWriteMany."
                ));
            }
        }
        None => {
            let warning = format!(
                "{STATE_DIR} is an emptyDir (no -pvc): checkpoints, reports and summaries are lost with each pod, so a retried pod starts its shard over and the summaries must be read before the pods are deleted"
            );
            header.push(format!("WARNING: {warning}."));
            warnings.push(warning);
        }
    }
    let mut text: String = header
        .iter()
        .map(|l| format!("# {}\n", super::one_line(l)))
        .collect();
    text.push_str(&to_yaml(&job));
    Ok(Plan { text, warnings })
}
