"""crm/forget_cluster.py: reading the ZooKeeper node that names a partition's last quorum insert."""

from __future__ import annotations

from crm.forget_cluster import last_quorum_parts


def test_last_quorum_parts_reads_both_node_formats() -> None:
    version_2 = "version: 2\nparts count: 3\n20231114\t20231114_0_0_0\n20260921\t20260921_0_0_0\nall\tall_3_3_0\n"
    assert last_quorum_parts(version_2) == ["20231114_0_0_0", "20260921_0_0_0", "all_3_3_0"]
    assert last_quorum_parts("201901_12_12_0") == ["201901_12_12_0"]
    assert last_quorum_parts("") == []
