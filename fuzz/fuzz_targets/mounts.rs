//! keepstore `GET /mounts` replies: `parse_mounts` never panics, and what keepmover builds
//! from an accepted list (the copy's `Layout` with its replica caps for
//! `X-Keep-Replicas-Stored` claims and write capacities, pull mode's placement and replica
//! count) never panics either, whatever replication a mount claims; a server's cap is at
//! least each of its mounts' replication.
#![no_main]
use keepmover::cluster::{Cluster, Service};
use keepmover::index::layout::{Layout, ServerMounts};
use keepmover::index::SourceBlock;
use keepmover::keep::wire::{parse_mounts, Bearer};
use keepmover::keep::{BlockHash, BlockId};
use keepmover::mover::pull::plan::{count, place, shortfall, Destination, Holdings, Wants};
use keepmover::net::Origin;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mounts) = parse_mounts(data) else {
        return;
    };
    for m in &mounts {
        assert!(!m.classes().is_empty());
    }
    let Ok(origin) = Origin::parse("http://keep0.zzzzz.example:25107") else {
        return;
    };
    let service = |uuid: &str, read_only| Service {
        uuid: uuid.to_string(),
        origin: origin.clone(),
        read_only,
        is_disk: true,
    };
    let cluster = Cluster {
        label: "dst",
        bearer: Bearer::new(""),
        services: vec![
            service("zzzzz-bi6l4-000000000000000", false),
            service("zzzzz-bi6l4-111111111111111", true),
        ],
        insecure_tls: false,
    };
    // Both servers report the same list: shared mounts, as with a shared volume.
    let layout = Layout::from_answers(
        &cluster,
        vec![
            ServerMounts::Known(mounts.clone()),
            ServerMounts::Known(mounts.clone()),
        ],
    );
    for cap in layout.replica_caps().into_iter().flatten() {
        for m in &mounts {
            assert!(cap >= m.replication.max(1), "cap {cap} < {}", m.replication);
        }
    }
    let mut classes: Vec<String> = mounts
        .iter()
        .flat_map(|m| m.classes().into_iter().map(str::to_string))
        .collect();
    classes.sort();
    classes.dedup();
    classes.truncate(4);
    for server in 0..2 {
        let _ = layout.write_capacity(&cluster, server, None);
        for class in &classes {
            let _ = layout.write_capacity(&cluster, server, Some(class));
        }
    }

    // Pull mode: two destination servers with these mounts, one missing block.
    let dest = Destination {
        servers: vec![0, 1],
        uuids: cluster.services.iter().map(|s| s.uuid.clone()).collect(),
        mounts: vec![mounts.clone(), mounts.clone()],
    };
    let wants = Wants {
        replicas: data.len() as u32 % 5,
        classes,
    };
    let id = BlockId::new(BlockHash([7; 16]), 3);
    let blocks = place(
        vec![SourceBlock {
            id,
            holders: vec![0],
        }],
        vec![vec![0, 1]],
        &dest,
        &wants,
    );
    // Every mount of both servers lists the block.
    let every: Vec<u16> = (0..mounts.len().min(u16::MAX as usize) as u16).collect();
    let holdings: Vec<Holdings> = (0..2).map(|_| [(0u32, every.clone())].into()).collect();
    for block in &blocks {
        for t in &block.targets {
            assert!((t.slot as usize) < 2);
            if let Some(m) = t.mount {
                assert!((m as usize) < mounts.len());
            }
        }
        let _ = count(block, 0, &dest, &holdings, &wants);
        let _ = shortfall(block, 0, &dest, &holdings, &wants);
    }
});
