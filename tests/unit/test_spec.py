"""Specs: each kind round-trips spec -> Config; bad input names file, line and field; the shipped
JSON Schema is the one generated from the public constructors."""

import json
import textwrap

import pytest

import ainative as ai
from ainative import errors, spec

TRAIN = """\
kind: TrainJob
name: mnist
entrypoint: tests.unit.specmods:train_fn
workers: 2
resources: {cpus: 1, accelerator: {type: h100, count: 1}}
placement: SPREAD
queue: team-a
priority: 5
checkpoint: {path: file:///tmp/ainative-spec-ckpt, keep: 2}
failure: {max_restarts: 3}
max_runtime_s: 3600
---
kind: Queue
name: team-a
quota: {H100: 8}
cohort: research
"""


def parse(text, file="spec.yaml"):
    return spec.parse(textwrap.dedent(text), file)


def test_train_job_round_trip():
    docs = parse(TRAIN)
    job = spec.build(docs[0])
    assert isinstance(job, ai.TrainJob)
    assert (job.min_workers, job.max_workers) == (2, 2)
    assert job.resources == ai.Resources(cpus=1, accelerator=ai.Accelerator("H100"))
    assert job.placement == "SPREAD" and job.queue == "team-a" and job.priority == 5
    assert job.checkpoint == ai.CheckpointConfig(path="file:///tmp/ainative-spec-ckpt", keep=2)
    assert job.failure.max_restarts == 3 and job.max_runtime_s == 3600
    from tests.unit import specmods

    assert job.train_fn is specmods.train_fn


def test_elastic_workers_and_defaults_come_from_the_constructor():
    job = spec.build(parse("kind: TrainJob\nname: e\nentrypoint: tests.unit.specmods:train_fn\n"
                           "workers: [1, 3]\n")[0])
    default = ai.TrainJob(lambda c: None, name="e")
    assert (job.min_workers, job.max_workers) == (1, 3)
    assert job.resources == default.resources and job.checkpoint == default.checkpoint


def test_endpoint_round_trip():
    doc = parse("""\
        kind: Endpoint
        name: classifier
        model: tests.unit.specmods:model_factory
        route: /classifier
        resources: {cpus: 0.5, accelerator: {type: L4, count: 0.5}}
        batching: {max_batch_size: 16, max_wait_ms: 5}
        autoscaling: {min_replicas: 1, max_replicas: 4, latency_slo_ms: 100}
        """)[0]
    ep = spec.build(doc)
    assert isinstance(ep, ai.Endpoint)
    assert ep.batching == ai.BatchingConfig(max_batch_size=16, max_wait_ms=5)
    assert ep.autoscaling.max_replicas == 4 and ep.autoscaling.latency_slo_ms == 100
    assert ep.fast_path is False                  # the constructor's default


def test_endpoint_fast_path_from_yaml_and_a_non_bool_refused():
    text = "kind: Endpoint\nname: tiny\nmodel: tests.unit.specmods:model_factory\n"
    assert spec.build(parse(text + "fast_path: true\n")[0]).fast_path is True
    with pytest.raises(errors.SpecError) as info:
        parse(text + "fast_path: 'yes'\n", "ep.yaml")
    assert "ep.yaml:4" in str(info.value) and "fast_path" in str(info.value)


def test_queue_budget_and_kuberay_round_trip():
    docs = parse("""\
        kind: Queue
        name: team-b
        quota: {H100: 8, A100: 16}
        cohort: research
        weight: 2.0
        borrowing_limit: {H100: 4}
        ---
        kind: Budget
        queue: team-b
        usd: 5000
        period: month
        warn_at: 0.8
        ---
        kind: KubeRayCluster
        name: research
        namespace: ml
        head: {cpus: 4, memory: 16Gi}
        worker_groups:
          - {name: h100, accelerator: {type: H100, count: 8}, cpus: 96, memory: 1Ti, replicas: 2,
             min_replicas: 0, max_replicas: 8}
        """)
    queue, budget, cluster = (spec.build(d) for d in docs)
    assert queue == ai.Queue("team-b", quota={"H100": 8, "A100": 16}, cohort="research", weight=2.0,
                             borrowing_limit={"H100": 4})
    assert budget == ai.Budget(usd=5000, period="month", warn_at=0.8)
    assert isinstance(cluster, ai.KubeRayClusterConfig)
    assert cluster.worker_groups[0].accelerator == ai.Accelerator("H100", count=8)


def test_unknown_field_has_line_and_did_you_mean():
    text = "kind: TrainJob\nname: x\nentrypoint: tests.unit.specmods:train_fn\nwokers: 2\n"
    with pytest.raises(errors.SpecError) as info:
        parse(text, "job.yaml")
    msg = str(info.value)
    assert msg.startswith("job.yaml:4: TrainJob.wokers:")
    assert "did you mean 'workers'" in msg
    assert info.value.line == 4 and info.value.field == "wokers"


def test_nested_unknown_field_and_wrong_type():
    with pytest.raises(errors.SpecError) as info:
        parse("kind: TrainJob\nname: x\nentrypoint: m:f\nresources:\n  cpus: 1\n  acelerator: H100\n")
    assert "spec.yaml:6: TrainJob.resources.acelerator" in str(info.value)
    assert "did you mean 'accelerator'" in str(info.value)
    with pytest.raises(errors.SpecError) as info:
        parse("kind: Queue\nname: q\nweight: heavy\n")
    assert "spec.yaml:3: Queue.weight" in str(info.value) and "number" in str(info.value)


def test_unknown_kind_and_missing_kind():
    expected = r"spec.yaml:1: unknown kind 'TrainJb' \(did you mean 'TrainJob'\?\)"
    with pytest.raises(errors.SpecError, match=expected):
        parse("kind: TrainJb\nname: x\n")
    with pytest.raises(errors.SpecError, match="missing 'kind:'"):
        parse("name: x\n")


def test_reference_to_undefined_queue():
    text = "kind: TrainJob\nname: x\nentrypoint: tests.unit.specmods:train_fn\nqueue: team-z\n"
    with pytest.raises(errors.SpecError) as info:
        parse(text)
    assert "spec.yaml:4: TrainJob.queue" in str(info.value) and "team-z" in str(info.value)


def test_config_validation_error_points_at_the_field_line():
    text = "kind: Queue\nname: q\nquota: {H100: 8}\nweight: -1\n"
    with pytest.raises(errors.SpecError) as info:
        spec.build(parse(text)[0])
    assert "spec.yaml:4: Queue.weight" in str(info.value)


def test_entrypoint_that_cannot_be_imported():
    doc = parse("kind: TrainJob\nname: x\nentrypoint: no_such_module_xyz:fn\n")[0]
    expected = "spec.yaml:3: TrainJob.entrypoint: entrypoint 'no_such_module_xyz:fn' cannot be imported"
    with pytest.raises(errors.SpecError, match=expected):
        spec.build(doc)


def test_yaml_syntax_error_has_a_line():
    with pytest.raises(errors.SpecError, match=r"spec.yaml:2: not valid YAML"):
        parse("kind: Queue\nname: [unclosed\n")


def test_shipped_schema_is_generated_from_the_code():
    shipped = json.loads(spec.schema_file().read_text())
    assert shipped == json.loads(json.dumps(spec.json_schema(), sort_keys=True)), (
        "src/ainative/spec.schema.json is stale: run `python -c 'from ainative import spec; "
        "spec.write_schema()'`")
