"""The optional `tail` field of a rollout-trace record (a step run under a tail-control policy)."""

import copy
import json

import numpy as np
import pytest

from sagc.trace import TraceWriter, read_trace, tail_flags, write_trace


def record(**tail):
    """Two groups of 2 trained rows (lengths 10, 40 | 7, 30); a resume step by default."""
    base = {"policy": "resume", "rate": 1.5, "kind": "short", "resumed": [0, 1, 0, 0], "deferred": [0, 0, 0, 0],
            "stale_tokens": [0, 12, 0, 0], "aborted_lengths": [37, 5], "aborted_fate": ["resume", "resume"],
            "on_policy_share": 0.85, "queue": 0, "carried": 2}
    base.update(tail)
    return {"step": 3, "group_size": 2, "rollout_s": 1.0, "step_s": 2.0,
            "groups": [{"id": "p1", "lengths": [10, 40], "rewards": [1, 0]}, {"id": "p2", "lengths": [7, 30]}],
            "tail": {k: v for k, v in base.items() if v is not None}}


def test_a_good_tail_round_trips_and_gives_arrays(tmp_path):
    recs = [record(), record(policy="drop", aborted_fate=["drop", "drop"], resumed=[0] * 4, stale_tokens=[0] * 4),
            record(policy="defer", kind="long", aborted_lengths=[], aborted_fate=[], resumed=[False] * 4,
                   deferred=[1, 1, 0, 0], stale_tokens=[0] * 4),
            record(policy="auto", rate=1.0, resumed=[True, True, False, False], stale_tokens=[10, 40, 0, 0],
                   on_policy_share=None, queue=None)]
    path = write_trace(tmp_path / "t.jsonl", recs)
    back = list(read_trace(path))
    assert [r["tail"]["policy"] for r in back] == ["resume", "drop", "defer", "auto"]
    f = tail_flags(back[0])
    assert f["resumed"].tolist() == [False, True, False, False] and f["resumed"].dtype == bool
    assert f["stale_tokens"].tolist() == [0, 12, 0, 0] and f["stale_tokens"].dtype == np.int64
    assert f["aborted_lengths"].tolist() == [37, 5] and f["aborted_fate"].tolist() == ["resume", "resume"]
    assert tail_flags(back[2])["deferred"].tolist() == [True, True, False, False]


def test_a_record_without_tail_is_unchanged_and_minimal_tail_fills_zeros(tmp_path):
    plain = record()
    del plain["tail"]
    minimal = record()
    minimal["tail"] = {"policy": "full"}
    path = write_trace(tmp_path / "t.jsonl", [plain, minimal])
    back = list(read_trace(path))
    assert "tail" not in back[0] and tail_flags(back[0]) is None
    f = tail_flags(back[1])
    assert f["resumed"].tolist() == [False] * 4 and f["stale_tokens"].tolist() == [0] * 4
    assert f["aborted_lengths"].size == 0 and f["aborted_fate"].size == 0
    plain["tail"] = None  # null: as absent
    TraceWriter(tmp_path / "n.jsonl", mode="w").write(plain)


@pytest.mark.parametrize("change, field", [
    ({"tail": "resume"}, r"tail must be an object, got 'resume'"),
    ({"tail": {"rate": 2.0}}, r"tail must name its policy \(tail\.policy\)"),
    ({"policy": "slime"}, r"tail\.policy must be one of \['full', 'drop', 'resume', 'defer', 'auto'\], got 'slime'"),
    ({"kind": "medium"}, r"tail\.kind must be one of \['full', 'short', 'long'\], got 'medium'"),
    ({"rate": 0.5}, r"tail\.rate must be a finite number >= 1"),
    ({"rate": "1.5"}, r"tail\.rate must be a finite number >= 1"),
    ({"on_policy_share": 1.2}, r"tail\.on_policy_share must be a number in \[0, 1\] or null, got 1\.2"),
    ({"queue": -1}, r"tail\.queue must be an integer >= 0, got -1"),
    ({"carried": 1.5}, r"tail\.carried must be an integer >= 0, got 1\.5"),
    ({"resumed": [0, 1, 0]}, r"tail\.resumed must be a list of 4 entries \(one per completion in groups\)"),
    ({"deferred": [0, 2, 0, 0]}, r"tail\.deferred\[1\] must be 0 or 1, got 2"),
    ({"stale_tokens": [0, -1, 0, 0]}, r"tail\.stale_tokens\[1\] must be an integer >= 0, got -1"),
    ({"stale_tokens": [0, 41, 0, 0]}, r"tail\.stale_tokens\[1\] must be <= the completion's length 40, got 41"),
    ({"stale_tokens": [0, 0, 8, 0]}, r"tail\.stale_tokens\[2\] must be <= the completion's length 7, got 8"),
    ({"deferred": [0, 1, 0, 0]}, r"tail\.resumed\[1\] and tail\.deferred\[1\] cannot both be 1"),
    ({"aborted_lengths": [37, -5]}, r"tail\.aborted_lengths\[1\] must be an integer >= 0, got -5"),
    ({"aborted_lengths": 37}, r"tail\.aborted_lengths must be a list"),
    ({"aborted_fate": ["resume"]}, r"tail\.aborted_fate must be a list of 2 entries \(one per aborted_lengths"),
    ({"aborted_fate": ["resume", "later"]}, r"tail\.aborted_fate\[1\] must be one of \['resume', 'drop', 'defer'\]"),
    ({"aborted_fate": ["resume", "drop"]}, r"tail\.aborted_fate\[1\] must be 'resume' under policy 'resume', got 'drop'"),
    ({"kind": "long"}, r"tail\.aborted_lengths must be empty in a long step"),
    ({"policy": "full", "aborted_fate": None}, r"tail\.aborted_fate must be a list of 2 entries"),
])
def test_a_bad_tail_is_reported_with_file_line_and_field(tmp_path, change, field):
    rec = record()
    if "tail" in change:
        rec["tail"] = change["tail"]
    else:
        for k, v in change.items():
            if v is None:
                rec["tail"].pop(k)
            else:
                rec["tail"][k] = v
    good = record()
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in (good, rec, good)) + "\n")
    reader = read_trace(path)
    assert next(reader)["tail"]["policy"] == "resume"
    with pytest.raises(ValueError, match=rf"t\.jsonl, line 2: {field}"):
        next(reader)
    # the writer refuses the same record (a caller's bug), naming the file and the field
    with TraceWriter(tmp_path / "w.jsonl", mode="w") as w, pytest.raises(ValueError, match=rf"w\.jsonl: {field}"):
        w.write(copy.deepcopy(rec))
    assert (tmp_path / "w.jsonl").read_text() == ""


def test_full_policy_with_cancelled_completions_is_refused(tmp_path):
    rec = record(policy="full", kind=None)
    with pytest.raises(ValueError, match=r"tail\.aborted_lengths must be empty in a full step"):
        write_trace(tmp_path / "t.jsonl", [rec])
