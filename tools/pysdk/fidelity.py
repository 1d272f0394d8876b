#!/usr/bin/env python3
"""Checks keepsim against the official Arvados Python SDK: KeepClient, built on a real
arvados.api() client (the SDK's own discovery path against keepsim's API server), must put
(copies=2), get back (MD5-checked by the SDK) and list blocks. Prints one JSON document for the Rust test
(tools/keepsim/tests/python_sdk.rs) to check placement against keepmover's rendezvous order.

Usage: fidelity.py path/cluster.json:ID
"""
import hashlib
import json
import sys

import arvados
import arvados.keep

from keepsim_api import load_cluster, read_index, service_roots


def main():
    cluster, services = load_cluster(sys.argv[1])
    token = cluster["system_root_token"]
    api = arvados.api("v1", host=cluster["api_host"], token=token, insecure=True, cache=False, num_retries=1)
    kc = arvados.keep.KeepClient(api_client=api, num_retries=1)
    uuid_of_root = {}
    for uuid, root in service_roots(services):
        uuid_of_root[root + "/"] = uuid
    report = {"blocks": {}}
    for n in range(12):
        data = (b"keepsim fidelity %d " % n) * (1 + n * 500)
        signed = kc.put(data, copies=2)
        back = kc.get(signed)
        assert back == data, "GET returned other bytes"
        md5 = hashlib.md5(data).hexdigest()
        assert signed.startswith(md5 + "+%d+A" % len(data)), signed
        order = [uuid_of_root[r] for r in kc.weighted_service_roots(arvados.keep.KeepLocator(signed))]
        report["blocks"][md5] = {"size": len(data), "python_order": order, "holders": []}
    for uuid, root in service_roots(services):
        for locator in read_index(root, token, cluster["tls"]):
            md5 = locator[:32]
            if md5 in report["blocks"]:
                report["blocks"][md5]["holders"].append(uuid)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
