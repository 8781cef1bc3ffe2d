"""Rollout traces: record shape, round trip, streaming reads and malformed-line reports."""

import json
import os

import numpy as np
import pytest

from sagc import Decision, Observation, StepStats
from sagc.trace import TraceWriter, make_record, read_trace, record_to_stats, write_trace


def stats(step=0):
    return StepStats(group_id=[0, 0, 0, 1, 1, 1], length=[10 + step, 20, 30, 5, 6, 700],
                     reward=[1.0, 0.0, float("nan"), 0.0, 0.0, 0.0], truncated=[False] * 5 + [True],
                     group_size=3, rollout_s=3.25, step_s=4.5)


def test_record_has_the_section_6_shape():
    d = Decision(group_size=3, queue=0.4, risk={2: 0.01, 4: 0.05})
    o = Observation(event=True, figure=4.7, queue=1.3, group_size=3)
    rec = make_record(12, stats(), d, o, extra={"controller_name": "sagc"}, group_ids=["p-1", "p-2"])
    assert set(rec) == {"step", "group_size", "rollout_s", "step_s", "groups", "controller", "controller_name"}
    assert rec["step"] == 12 and rec["group_size"] == 3 and rec["rollout_s"] == 3.25 and rec["step_s"] == 4.5
    assert rec["groups"][0] == {"id": "p-1", "lengths": [10, 20, 30], "rewards": [1, 0, None],
                                "truncated": [False, False, False]}
    assert rec["groups"][1]["truncated"] == [False, False, True]
    assert rec["controller"] == {"event": True, "queue": 1.3, "risk": {"2": 0.01, "4": 0.05}, "figure": 4.7}
    json.dumps(rec, allow_nan=False)  # plain JSON, no NaN


def test_record_without_observation_uses_the_decision_queue():
    rec = make_record(0, stats(), Decision(group_size=3, queue=0.7))
    assert rec["controller"] == {"event": None, "queue": 0.7, "risk": {}, "figure": None}
    assert "controller" not in make_record(0, stats())


def test_extra_cannot_overwrite_standard_fields():
    with pytest.raises(ValueError, match="'groups'"):
        make_record(0, stats(), extra={"groups": []})


def test_round_trip_through_writer_and_reader(tmp_path):
    path = tmp_path / "run" / "trace.jsonl"
    with TraceWriter(path) as w:
        for t in range(3):
            w.write(make_record(t, stats(t), Decision(group_size=3, risk={3: 0.2})))
    with TraceWriter(path) as w:  # default mode appends, as a resumed run would
        w.write(make_record(3, stats(3)))
    records = list(read_trace(path))
    assert [r["step"] for r in records] == [0, 1, 2, 3]
    for t, rec in enumerate(records):
        back, orig = record_to_stats(rec), stats(t)
        assert np.array_equal(back.length, orig.length)
        assert np.array_equal(back.reward, orig.reward, equal_nan=True)
        assert np.array_equal(back.truncated, orig.truncated)
        assert np.array_equal(back.group_index, orig.group_index)
        assert back.group_size == 3 and back.rollout_s == 3.25 and back.step_s == 4.5
    assert records[0]["controller"]["risk"] == {"3": 0.2}


def test_writer_rejects_a_bad_record_without_writing_anything(tmp_path):
    path = tmp_path / "t.jsonl"
    with TraceWriter(path, mode="w") as w:
        w.write(make_record(0, stats()))
        bad = make_record(1, stats())
        bad["groups"][0]["lengths"][0] = -3
        with pytest.raises(ValueError, match=r"groups\[0\]\.lengths\[0\] must be a positive integer, got -3"):
            w.write(bad)
    assert len(path.read_text().splitlines()) == 1


def test_null_times_read_as_nan(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"step": 0, "group_size": 2, "rollout_s": null, "groups": [{"id": 1, "lengths": [3, 4]}]}\n\n')
    (rec,) = list(read_trace(path))
    assert np.isnan(rec["rollout_s"]) and np.isnan(rec["step_s"])
    s = record_to_stats(rec)
    assert np.isnan(s.rollout_s) and np.all(np.isnan(s.reward))


GOOD_LINE = json.dumps({"step": 0, "group_size": 2, "groups": [{"id": "a", "lengths": [3, 4], "rewards": [1, 0],
                                                                 "truncated": [False, False]}]})


@pytest.mark.parametrize("bad,field", [
    ('{"step": 1, "group_size": 2, "groups": [', "not valid JSON"),
    ('[1, 2]', "record must be a JSON object"),
    ('{"step": 1, "groups": [{"lengths": [3]}]}', "missing required field 'group_size'"),
    ('{"step": -1, "group_size": 2, "groups": [{"lengths": [3]}]}', "step must be an integer >= 0, got -1"),
    ('{"step": 1, "group_size": 2, "groups": []}', "groups must be a non-empty list"),
    ('{"step": 1, "group_size": 2, "groups": [{"lengths": [3, 0]}]}', r"groups\[0\]\.lengths\[1\] must be a positive integer, got 0"),
    ('{"step": 1, "group_size": 2, "groups": [{"lengths": [3, 2.5]}]}', r"groups\[0\]\.lengths\[1\] must be a positive integer"),
    ('{"step": 1, "group_size": 2, "groups": [{"lengths": [3], "rewards": [1, 0]}]}', r"groups\[0\]\.rewards must be a list of 1 entries"),
    ('{"step": 1, "group_size": 2, "groups": [{"lengths": [3], "truncated": ["no"]}]}', r"groups\[0\]\.truncated\[0\] must be true or false"),
    ('{"step": 1, "group_size": 2, "rollout_s": -1, "groups": [{"lengths": [3]}]}', "rollout_s must be a number >= 0 or null"),
    ('{"step": 1, "group_size": 2, "groups": [{"lengths": [3]}], "controller": {"risk": {"4": 1.5}}}', r"controller\.risk\['4'\] must be a probability"),
    ('{"step": 1, "group_size": 2, "groups": [{"lengths": [3]}], "controller": {"event": "yes"}}', "controller.event must be true, false or null"),
])
def test_malformed_line_is_reported_with_file_line_and_field(tmp_path, bad, field):
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join([GOOD_LINE, GOOD_LINE, bad, GOOD_LINE]) + "\n")
    reader = read_trace(path)
    assert next(reader)["step"] == 0 and next(reader)["step"] == 0  # streaming: good lines come first
    with pytest.raises(ValueError, match=rf"t\.jsonl, line 3: .*{field}"):
        next(reader)


def test_write_trace_is_atomic(tmp_path):
    path = tmp_path / "t.jsonl"
    write_trace(path, [make_record(0, stats())])
    before = path.read_bytes()

    def records():
        yield make_record(1, stats())
        raise RuntimeError("simulator crashed")

    with pytest.raises(RuntimeError):
        write_trace(path, records())
    assert path.read_bytes() == before  # the old file is intact ...
    assert os.listdir(tmp_path) == ["t.jsonl"]  # ... and no temp file is left behind
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # usual permissions, not mkstemp's 0600
