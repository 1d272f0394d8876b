#!/usr/bin/env python3
"""Reads blocks back from a keepsim cluster with the official Arvados Python SDK's
KeepClient (which MD5-checks what it gets), after keepmover repaired or copied them. The
locators are signed here with the cluster's blob signing key (the SDK cannot sign).

Usage: readback.py path/cluster.json:ID HASH+SIZE...
Prints one line per block (`ok HASH+SIZE`) and exits non-zero if any failed.
"""
import hashlib
import hmac
import sys
import time

import arvados.keep

from keepsim_api import StubApi, load_cluster


def sign(locator, token, key, ttl):
    expiry = "%08x" % (int(time.time()) + 86400)
    message = "%s@%s@%s@%x" % (locator[:32], token, expiry, ttl)
    signature = hmac.new(key.encode(), message.encode(), hashlib.sha1).hexdigest()
    return "%s+A%s@%s" % (locator, signature, expiry)


def main():
    cluster, services = load_cluster(sys.argv[1])
    token = cluster["system_root_token"]
    kc = arvados.keep.KeepClient(api_client=StubApi(services, token, cluster["tls"]), num_retries=2)
    failed = 0
    for locator in sys.argv[2:]:
        signed = sign(locator, token, cluster["blob_signing_key"], cluster["blob_signing_ttl_secs"]) \
            if cluster["blob_signing"] else locator
        try:
            data = kc.get(signed)
            if hashlib.md5(data).hexdigest() != locator[:32]:
                raise RuntimeError("wrong bytes")
            print("ok", locator)
        except Exception as e:  # noqa: BLE001 - report every failure, then exit non-zero
            failed += 1
            print("FAILED", locator, e)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
