"""Helpers for the Python SDK checks: reading keepsim's cluster.json, listing indexes, and
StubApi, a stand-in for the Arvados API client answering the three things KeepClient asks of
it (keep_services().accessible().execute(), config(), api_token/insecure) from keepsim's
files. keepsim's API server now also works with the real arvados.api() (see api_check.py,
fidelity.py); StubApi remains for copier.py, which needs no API round trips."""
import json
import ssl
import urllib.request


class StubApi:
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
    """`path/cluster.json:ID` -> that cluster's entry and its keep-services list."""
    path, name = spec.rsplit(":", 1)
    with open(path) as f:
        doc = json.load(f)
    for cluster in doc["clusters"]:
        if cluster["id"] == name:
            with open(cluster["keep_services_json_file"]) as f:
                return cluster, json.load(f)
    raise SystemExit(f"no cluster {name} in {path}")


def service_roots(services):
    for item in services["items"]:
        scheme = "https" if item["service_ssl_flag"] else "http"
        yield item["uuid"], f"{scheme}://{item['service_host']}:{item['service_port']}"


def read_index(root, token, insecure):
    """GET /index with the admin token; the set of `hash+size`. The SDK has no index call,
    so this reads it the way keep-balance does, refusing a body without its final blank line."""
    ctx = ssl._create_unverified_context() if insecure else None
    req = urllib.request.Request(root.rstrip("/") + "/index", headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, context=ctx) as resp:
        body = resp.read().decode()
    if not body.endswith("\n\n") and body != "\n":
        raise RuntimeError("Got incomplete index from " + root)
    return [line.split(" ")[0] for line in body.split("\n") if line]
