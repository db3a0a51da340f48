"""api/openapi.yaml and the daemon's route table agree in both directions."""
import os
import re
import subprocess

from cellboxd import BUILD, ROOT

METHODS = {"get", "put", "post", "delete", "patch"}


def spec_routes():
    routes, path = set(), None
    with open(os.path.join(ROOT, "api", "openapi.yaml")) as f:
        in_paths = False
        for line in f:
            if line.startswith("paths:"):
                in_paths = True
                continue
            if not in_paths:
                continue
            m = re.match(r"^  (/\S*):\s*$", line)
            if m:
                path = m.group(1)
                continue
            m = re.match(r"^    (\w+):\s*$", line)
            if m and m.group(1) in METHODS and path:
                routes.add((m.group(1).upper(), path))
    return routes


def router_routes():
    out = subprocess.run([os.path.join(BUILD, "cellboxd"), "--print-routes"],
                         capture_output=True, text=True, check=True).stdout
    return {tuple(l.split(" ", 1)) for l in out.splitlines() if l}


def test_openapi_matches_router():
    spec, router = spec_routes(), router_routes()
    assert router, "no routes printed"
    assert router - spec == set(), "routes missing from openapi.yaml"
    assert spec - router == set(), "openapi.yaml documents routes the router lacks"
