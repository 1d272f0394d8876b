#!/usr/bin/env python3
"""Checks that the official Arvados Python SDK works against keepsim through its own
discovery path, with no stub: arvados.api() fetches keepsim's discovery document and builds
its client from it (googleapiclient), api.config() reads /arvados/v1/config, and
KeepClient(api_client=api) lists the keep services, puts blocks (copies=2) and gets them
back (MD5-checked by the SDK). Prints one JSON document for the Rust test
(tools/keepsim/tests/python_sdk_api.rs).

Usage: api_check.py path/cluster.json:ID
"""
import hashlib
import json
import sys

import arvados
import arvados.keep

from keepsim_api import load_cluster


def main():
    cluster, _ = load_cluster(sys.argv[1])
    api = arvados.api(
        "v1",
        host=cluster["api_host"],
        token=cluster["system_root_token"],
        insecure=True,
        cache=False,
        num_retries=1,
    )
    config = api.config()
    listed = api.keep_services().accessible().execute()
    kc = arvados.keep.KeepClient(api_client=api, num_retries=1)
    blocks = {}
    for n in range(4):
        data = (b"keepsim api check %d " % n) * (1 + n * 1000)
        signed = kc.put(data, copies=2)
        back = kc.get(signed)
        assert back == data, "GET returned other bytes"
        md5 = hashlib.md5(data).hexdigest()
        assert signed.startswith("%s+%d+A" % (md5, len(data))), signed
        blocks[md5] = len(data)
    print(json.dumps({
        "root_url": api._rootDesc["rootUrl"],
        "blob_signature_ttl": api._rootDesc["blobSignatureTtl"],
        "default_replication": api._rootDesc["defaultCollectionReplication"],
        "config_collections": config["Collections"],
        "storage_classes": config["StorageClasses"],
        "services": [s["uuid"] for s in listed["items"]],
        "blocks": blocks,
    }))


if __name__ == "__main__":
    main()
