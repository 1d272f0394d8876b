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
import os
import ssl
import sys
import time
import urllib.request

import arvados.keep


class StubApi:
    """The three things KeepClient asks of its API client, answered from keepsim's files."""

    def __init__(self, services, token, insecure):
        self._services = services
        self.api_token = token
        self.insecure = insecure
        self.request_id = None

    def keep_services(self):
        services = self._services

        class Accessible:
            def execute(self, num_retries=None):
                return services

        class Resource:
            def accessible(self):
                return Accessible()

        return Resource()

    def config(self):
        return {"StorageClasses": {"default": {"Default": True}}}


def load_cluster(spec):
    path, name = spec.rsplit(":", 1)
    with open(path) as f:
        doc = json.load(f)
    for cluster in doc["clusters"]:
        if cluster["id"] == name:
            return cluster
    sys.exit(f"no cluster {name} in {path}")


def read_index(root, token, insecure):
    ctx = ssl._create_unverified_context() if insecure else None
    req = urllib.request.Request(root.rstrip("/") + "/index", headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, context=ctx) as resp:
        body = resp.read().decode()
    if not body.endswith("\n\n") and body != "\n":
        raise RuntimeError("Got incomplete index from " + root)
    return {line.split(" ")[0] for line in body.split("\n") if line}


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
    src, dst = load_cluster(args.src), load_cluster(args.dst)
    src_services = json.loads(open(src["keep_services_json_file"]).read())
    dst_services = json.loads(open(dst["keep_services_json_file"]).read())
    src_kc = arvados.keep.KeepClient(api_client=StubApi(src_services, src["system_root_token"], src["tls"]), num_retries=2)
    dst_kc = arvados.keep.KeepClient(api_client=StubApi(dst_services, dst["system_root_token"], dst["tls"]), num_retries=2)
    start = time.monotonic()
    src_set, dst_set = set(), set()
    for cluster, services, into in ((src, src_services, src_set), (dst, dst_services, dst_set)):
        for item in services["items"]:
            scheme = "https" if item["service_ssl_flag"] else "http"
            root = f"{scheme}://{item['service_host']}:{item['service_port']}"
            into |= read_index(root, cluster["system_root_token"], cluster["tls"])
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
