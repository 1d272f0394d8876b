//! The keepstore conformance suite (`keepmover::mover::conformance`) against keepsim
//! over real HTTP on loopback, on both I/O backends: the engine's rules, through the HTTP
//! `Keepstores`, against a simulator faithful to keepstore. The in-memory fake passes the
//! same suite in the unit tests.

use keepmover::cluster::Cluster;
use keepmover::keep::services::{KeepServiceList, Roots};
use keepmover::keep::BlockId;
use keepmover::keepstore::http::{HttpFactory, HttpKeepstores};
use keepmover::keepstore::KeepstoresFactory;
use keepmover::mover::conformance::{run_all, Harness};
use keepmover::mover::{Job, Signing};
use keepmover::net::{build_runtime, io_uring_available, ClientConfig, IoBackend};

struct KeepsimHarness {
    src_sim: keepsim::Cluster,
    dst_sim: keepsim::Cluster,
    src: Cluster,
    dst: Cluster,
}

fn cluster_of(sim: &keepsim::Cluster, label: &'static str) -> Cluster {
    let list = KeepServiceList::from_json(&sim.keep_services_json()).expect("services JSON");
    Cluster::from_roots(
        label,
        sim.config.system_root_token.clone(),
        &Roots::from_list(&list),
        true,
    )
    .expect("cluster")
}

fn harness() -> KeepsimHarness {
    let src_sim = keepsim::Cluster::start(keepsim::ClusterConfig::new("srcaa", 3)).expect("src");
    let dst_sim = keepsim::Cluster::start(keepsim::ClusterConfig::new("dstbb", 4)).expect("dst");
    KeepsimHarness {
        src: cluster_of(&src_sim, "src"),
        dst: cluster_of(&dst_sim, "dst"),
        src_sim,
        dst_sim,
    }
}

impl Harness for KeepsimHarness {
    type Keepstores = HttpKeepstores;

    fn keepstores(&self) -> HttpKeepstores {
        HttpFactory::new(ClientConfig::default(), &[&self.src, &self.dst]).client()
    }

    fn job(&self, replicas: u32) -> Job {
        Job {
            src: self.src.clone(),
            dst: self.dst.clone(),
            signing: Some(Signing {
                key: keepmover::keep::signature::SigningKey::new(
                    self.src_sim.config.blob_signing_key.as_bytes(),
                ),
                ttl_secs: self.src_sim.config.blob_signing_ttl,
            }),
            dst_signing: Some(Signing {
                key: keepmover::keep::signature::SigningKey::new(
                    self.dst_sim.config.blob_signing_key.as_bytes(),
                ),
                ttl_secs: self.dst_sim.config.blob_signing_ttl,
            }),
            replicas,
            classes: std::sync::Arc::from([]),
        }
    }

    fn put_source(&self, server: usize, data: &[u8]) -> BlockId {
        let locator = self.src_sim.put_block(server, data).expect("put");
        let hash = keepmover::keep::BlockHash::from_hex(&locator[..32]).expect("hash");
        BlockId::new(hash, data.len() as u64)
    }

    fn destination_holds(&self, server: usize, id: &BlockId) -> bool {
        self.dst_sim
            .get_block(server, id.short().hash_hex())
            .is_some_and(|data| {
                data.len() as u64 == id.size && keepmover::hash::md5(&data) == id.hash.0
            })
    }

    fn corrupt_reads(&self, server: usize) {
        self.src_sim.set_faults(
            server,
            keepsim::Faults {
                corrupt_body: true,
                ..keepsim::Faults::default()
            },
        );
    }

    fn fill_up(&self, server: usize) {
        self.dst_sim.set_read_only(server, true);
    }
}

fn run_on(backend: IoBackend) {
    if backend == IoBackend::Uring && !io_uring_available() {
        eprintln!("io_uring unavailable here: skipping the io_uring run");
        return;
    }
    let (runtime, _) = build_runtime(backend).expect("runtime");
    runtime.block_on(run_all(harness));
}

#[test]
fn keepsim_over_http_conforms_on_io_uring() {
    run_on(IoBackend::Uring);
}

#[test]
fn keepsim_over_http_conforms_on_epoll() {
    run_on(IoBackend::Epoll);
}
