"""The runner's two Ray-level settings, checked against the pinned Ray: trial actors carry no runtime_env of
their own (so they start on Ray's idle, preloaded workers), and Tune's result buffering follows the spec."""

from __future__ import annotations

import os

import pytest
from ray.tune.execution import class_cache

from study import runner
from study.spec import spec_from_dict
from tiny_specs import spec_variant


class _Trainable:
    pass


def test_trial_actors_get_no_runtime_env(monkeypatch):
    for name in class_cache.ENV_VARS_TO_PROPAGATE:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(class_cache.DEFAULT_ENV_VARS, "PL_DISABLE_FORK", "1")  # as Tune ships it
    assert class_cache._ActorClassCache().get(_Trainable)._default_options["runtime_env"]["env_vars"]
    runner._plain_trial_actors()
    remote = class_cache._ActorClassCache().get(_Trainable)
    assert not remote._default_options.get("runtime_env")  # none: the actor may start on an idle worker


@pytest.mark.parametrize("asha, length", [(None, "2"), ({"grace_period": 1, "reduction_factor": 2}, None)])
def test_results_are_buffered_unless_asha(monkeypatch, asha, length):
    monkeypatch.setenv("TUNE_RESULT_BUFFER_LENGTH", "7")
    runner._buffer_results(spec_from_dict(spec_variant(asha=asha)))
    assert os.environ.get("TUNE_RESULT_BUFFER_LENGTH") == length  # 2 = the tiny spec's epochs
    monkeypatch.delenv("TUNE_RESULT_BUFFER_LENGTH", raising=False)
    monkeypatch.delenv("TUNE_RESULT_BUFFER_MIN_TIME_S", raising=False)
