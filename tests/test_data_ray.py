"""The same ingest pipeline on a Ray cluster gives the same documents as on local cores."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_corpus import plant, rows

ray = pytest.importorskip("ray")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # datatrove's placement-group calls, not ours
def test_ray_executor_matches_local_executor(quark, home: Path, tmp_path: Path) -> None:
    corpus = plant(tmp_path / "corpus").root
    local = quark.json("data", "ingest", str(corpus), "--name", "on-local", "--workers", "2")
    from quark.data.executors import RAY_RUNTIME_ENV

    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             configure_logging=False, runtime_env=RAY_RUNTIME_ENV)
    try:
        on_ray = quark.json("data", "ingest", str(corpus), "--name", "on-ray", "--workers", "2", "--executor", "ray")
    finally:
        ray.shutdown()
    assert on_ray["executor"] == "ray"
    assert local["datasets"][0]["dropped"] == on_ray["datasets"][0]["dropped"]
    local_rows = {(row["sha256"], row["text"]) for row in rows(home, "on-local")}
    assert local_rows == {(row["sha256"], row["text"]) for row in rows(home, "on-ray")}
    assert len(local_rows) == local["datasets"][0]["docs"] > 10
