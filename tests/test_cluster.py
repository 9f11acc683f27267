"""cluster.yaml and runtime_env.yaml pass Ray's own validation and keep their promises.

No cloud account is needed: Ray's cluster launcher validates a config against its JSON schema
(`validate_config`) after filling in the provider's defaults (`prepare_config`), which is what
`ray up` does before it calls AWS.
"""

from __future__ import annotations

import copy
import os

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(name: str) -> dict:
    with open(os.path.join(REPO, name)) as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def cluster() -> dict:
    return _load("cluster.yaml")


def test_cluster_yaml_passes_ray_validation(cluster):
    validate_config(prepare_config(copy.deepcopy(cluster)))


def test_validation_would_catch_a_mistake(cluster):
    # The check above means something: a misspelt key in a node type is refused.
    broken = copy.deepcopy(cluster)
    broken["available_node_types"]["gpu"]["max_worker"] = 8
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(broken))


def test_node_types_head_runs_no_work_gpu_and_cpu_workers_scale(cluster):
    types = cluster["available_node_types"]
    assert types[cluster["head_node_type"]]["resources"] == {"CPU": 0}
    workers = {name: t for name, t in types.items() if name != cluster["head_node_type"]}
    instance = {name: t["node_config"]["InstanceType"] for name, t in workers.items()}
    gpu = [n for n, it in instance.items() if it.split(".")[0][0] in "gp"]  # g5, g6, p4d, ...
    cpu = [n for n, it in instance.items() if it.split(".")[0][0] in "cmr"]  # c6i, m5, r6i, ...
    assert gpu and cpu, instance
    for name in workers:  # autoscaling: from zero (or a few) up to a larger number
        assert workers[name]["min_workers"] < workers[name]["max_workers"]


def test_token_authentication_stays_on(cluster):
    assert "RAY_AUTH_MODE=disabled" not in yaml.safe_dump(cluster)
    starts = cluster["head_start_ray_commands"] + cluster["worker_start_ray_commands"]
    for command in (c for c in starts if "ray start" in c):
        assert "RAY_AUTH_MODE=token" in command, command
    # The token reaches every node at the path Ray reads by default, readable by its owner only.
    assert cluster["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert "chmod 600 ~/.ray/auth_token" in cluster["setup_commands"]


def test_nodes_install_this_package_and_this_ray(cluster):
    setup = " ; ".join(cluster["setup_commands"])
    mounted = [remote for remote, local in cluster["file_mounts"].items() if local == "."]
    assert mounted and f"pip install --quiet {mounted[0]}" in setup
    # Job submission talks to the cluster's Ray: the version pinned there is the one tested here.
    assert f"=={ray.__version__}" in setup


def test_runtime_env_example_is_valid_and_uploads_no_venv():
    from ray.runtime_env import RuntimeEnv

    env = _load("runtime_env.yaml")
    RuntimeEnv(**env)  # raises on unknown keys or wrong types
    assert env["working_dir"] == "."
    assert {".venv/", ".git/"} <= set(env["excludes"])
