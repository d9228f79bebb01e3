import pytest

from broker.topics import Topics, parse_model_topic, topic_matches


def test_topic_tree_has_no_leading_slash_and_is_versioned() -> None:
    """Every topic sits under twin/v1/{run_id}/ as the contract says."""
    t = Topics("run-1")
    assert t.status == "twin/v1/run-1/status"
    assert t.telemetry("home-health", "hh-0001") == "twin/v1/run-1/agents/home-health/hh-0001/telemetry"
    assert t.update("svc", 3, "hh-0001") == "twin/v1/run-1/ml/svc/3/update/hh-0001"
    assert t.global_model("svc", 3) == "twin/v1/run-1/ml/svc/3/global"


def test_run_id_with_wildcards_is_refused() -> None:
    """A run id that would break the topic tree is refused."""
    with pytest.raises(ValueError):
        Topics("a/b")
    with pytest.raises(ValueError):
        Topics("a+")


def test_parse_model_topics() -> None:
    """Whole, manifest and chunk parts of updates and globals parse; anything else is None."""
    t = Topics("r")
    assert parse_model_topic(t, "twin/v1/r/ml/s/2/update/d1").part == "whole"
    chunk = parse_model_topic(t, "twin/v1/r/ml/s/2/global/chunk/4")
    assert chunk is not None and chunk.kind == "global" and chunk.chunk_index == 4
    assert parse_model_topic(t, "twin/v1/r/ml/s/2/update/d1/manifest").part == "manifest"
    for bad in (
        "twin/v1/r/ml/s/x/update/d1",
        "twin/v1/r/ml/s/2/update",
        "twin/v1/other/ml/s/2/global",
        "twin/v1/r/ml/s/2/global/chunk/x",
        "twin/v1/r/ml/s/2/pwn/d1",
    ):
        assert parse_model_topic(t, bad) is None, bad


def test_wildcard_matching() -> None:
    """MQTT + and # semantics."""
    assert topic_matches("a/+/c", "a/b/c")
    assert not topic_matches("a/+/c", "a/b/d")
    assert topic_matches("a/#", "a/b/c/d")
    assert not topic_matches("a/b", "a/b/c")
