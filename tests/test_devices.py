"""cassle/devices.py: which process is rank 0 before a trainer exists, and multi-node launches that would hang."""

from __future__ import annotations

import pytest

from cassle.devices import RANK_VARIABLES, check_node_launch, is_global_zero_process, parse_devices
from cassle.errors import ArgumentError, RunError

#: what each launcher sets in the environment of each process it starts
LAUNCHES = {
    "plain process": ({}, True),
    "Lightning's child for device 1": ({"LOCAL_RANK": "1", "NODE_RANK": "0", "WORLD_SIZE": "2"}, False),
    "torchrun rank 0": ({"RANK": "0", "LOCAL_RANK": "0", "GROUP_RANK": "0"}, True),
    "torchrun rank 3 (node 1, device 1)": ({"RANK": "3", "LOCAL_RANK": "1", "GROUP_RANK": "1"}, False),
    "torchrun rank 2 (node 1, device 0)": ({"RANK": "2", "LOCAL_RANK": "0", "GROUP_RANK": "1"}, False),
    "srun task 0": ({"SLURM_PROCID": "0", "SLURM_LOCALID": "0"}, True),
    "srun task 1": ({"SLURM_PROCID": "1"}, False),
    # a multi-node launch by hand: one main_continual.py per node; the first process of node 1 has no LOCAL_RANK
    "node 0 by hand": ({"NODE_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}, True),
    "node 1 by hand": ({"NODE_RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}, False),
    "node 1 by hand, device 1": ({"NODE_RANK": "1", "LOCAL_RANK": "1"}, False),
    "empty values": ({"RANK": "", "LOCAL_RANK": " ", "NODE_RANK": ""}, True),
}


@pytest.fixture
def clean_env(monkeypatch):
    for var in (*RANK_VARIABLES, "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
    for var in ("SLURM_NTASKS", "SLURM_JOB_NAME", "SLURM_PROCID", "LSB_JOBID", "OMPI_COMM_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


@pytest.mark.parametrize("launch", LAUNCHES)
def test_global_zero_from_the_launch_environment(clean_env, launch):
    env, zero = LAUNCHES[launch]
    for var, value in env.items():
        clean_env.setenv(var, value)
    assert is_global_zero_process() is zero


def test_one_node_needs_nothing(clean_env):
    check_node_launch(1)


def test_num_nodes_without_a_node_rank_is_one_error_naming_what_to_set(clean_env):
    with pytest.raises(RunError) as err:
        check_node_launch(2)
    msg = str(err.value)
    assert "--num_nodes 2 without SLURM or torchrun needs NODE_RANK, MASTER_ADDR, MASTER_PORT set" in msg
    assert "NODE_RANK=0 .. 1" in msg and "job_launcher.py --mode slurm" in msg
    clean_env.setenv("NODE_RANK", "1")
    with pytest.raises(RunError, match="needs MASTER_ADDR, MASTER_PORT set"):
        check_node_launch(2)
    clean_env.setenv("MASTER_ADDR", "10.0.0.1")
    with pytest.raises(RunError, match="needs MASTER_PORT set"):
        check_node_launch(2)


def test_a_complete_launch_by_hand_passes(clean_env):
    clean_env.setenv("MASTER_ADDR", "10.0.0.1")
    clean_env.setenv("MASTER_PORT", "29500")
    for node in ("0", "1", "2"):
        clean_env.setenv("NODE_RANK", node)
        check_node_launch(3)
    clean_env.delenv("NODE_RANK")
    clean_env.setenv("GROUP_RANK", "1")  # Lightning reads torchrun's name for the node rank too
    check_node_launch(2)


@pytest.mark.parametrize(
    "var, value, match",
    [("NODE_RANK", "2", "NODE_RANK=2 is not one of 0 .. 1"), ("NODE_RANK", "one", "NODE_RANK=one"),
     ("MASTER_PORT", "port", "MASTER_PORT=port is not a port number"), ("MASTER_PORT", "70000", "MASTER_PORT=70000")],
)  # fmt: skip
def test_bad_values_are_refused(clean_env, var, value, match):
    clean_env.setenv("NODE_RANK", "0")
    clean_env.setenv("MASTER_ADDR", "10.0.0.1")
    clean_env.setenv("MASTER_PORT", "29500")
    clean_env.setenv(var, value)
    with pytest.raises(RunError, match=match):
        check_node_launch(2)


def test_a_cluster_launcher_sets_the_ranks_itself(clean_env):
    clean_env.setenv("TORCHELASTIC_RUN_ID", "job")  # torchrun: Lightning takes RANK, GROUP_RANK etc. from it
    check_node_launch(2)


def test_parse_devices():
    assert parse_devices("2") == 2 and parse_devices("0,1") == [0, 1] and parse_devices("auto") == "auto"
    assert parse_devices(3) == 3
    with pytest.raises(ArgumentError, match="--devices 'two'"):
        parse_devices("two")


def test_a_hand_launched_node_is_not_lightnings_rank_zero_before_its_process_group(monkeypatch):
    """Lightning reads RANK / LOCAL_RANK / SLURM_PROCID, not NODE_RANK: before the process group exists it takes
    node 1's process for rank 0, and every rank-zero-only write (loggers' log dirs, files) happened on node 1
    too. After align_rank_zero_only the process is non-zero until Lightning's strategy sets the true rank."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    from cassle.devices import align_rank_zero_only

    for var in ("RANK", "SLURM_PROCID", "GROUP_RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    monkeypatch.setenv("NODE_RANK", "1")
    align_rank_zero_only()
    assert rank_zero_only.rank != 0
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    monkeypatch.setenv("NODE_RANK", "0")
    align_rank_zero_only()
    assert rank_zero_only.rank == 0  # the main node stays rank 0
