#!/usr/bin/env python3
"""What an operator would script instead of keepmover, with the official Arvados Python SDK:
keep-rsync's algorithm (read every index, diff, then KeepClient.get / KeepClient.put) in a
thread pool. Used by tools/bench_e2e.sh to compare throughput side by side.

Usage: copier.py --src cluster.json:NAME --dst cluster.json:NAME [--threads N] [--replicas N]
Prints one JSON line: {"blocks": n, "bytes": b, "seconds": s}.
"""
import argparse
import concurrent.futures
import hashlib
import hmac
import json
import sys
import time

import arvados.keep

from keepsim_api import StubApi, load_cluster, read_index, service_roots


def sign(locator, token, key, ttl):
    expiry = "%08x" % (int(time.time()) + 86400)
    message = "@".join([locator[:32], token, expiry, "%x" % ttl])
    sig = hmac.new(key.encode(), message.encode(), hashlib.sha1).hexdigest()
    return f"{locator}+A{sig}@{expiry}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", required=True)
    ap.add_argument("--dst", required=True)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--replicas", type=int, default=1)
    args = ap.parse_args()
    (src, src_services), (dst, dst_services) = load_cluster(args.src), load_cluster(args.dst)
    src_kc = arvados.keep.KeepClient(api_client=StubApi(src_services, src["system_root_token"], src["tls"]), num_retries=2)
    dst_kc = arvados.keep.KeepClient(api_client=StubApi(dst_services, dst["system_root_token"], dst["tls"]), num_retries=2)
    start = time.monotonic()
    src_set, dst_set = set(), set()
    for cluster, services, into in ((src, src_services, src_set), (dst, dst_services, dst_set)):
        for _uuid, root in service_roots(services):
            into |= set(read_index(root, cluster["system_root_token"], cluster["tls"]))
    missing = sorted(src_set - dst_set)
    key = src.get("blob_signing_key") if src.get("blob_signing") else None

    def copy(locator):
        signed = sign(locator, src["system_root_token"], key, src["blob_signing_ttl_secs"]) if key else locator
        data = src_kc.get(signed)
        dst_kc.put(data, copies=args.replicas)
        return len(data)

    total = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.threads) as pool:
        for n in pool.map(copy, missing):
            total += n
    print(json.dumps({"blocks": len(missing), "bytes": total, "seconds": time.monotonic() - start}))


if __name__ == "__main__":
    main()
