import time

from bench.latency import machine_info, time_callable, torch_eager_latency


def test_time_callable_counts_runs_and_measures():
    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.002)

    stats = time_callable(fn, runs=5, warmup=2)
    assert len(calls) == 1 + 2 + 5 and stats["runs"] == 5
    assert 2.0 <= stats["latency_ms_median"] <= stats["latency_ms_p90"]  # a lower bound only: never a speed target
    assert stats["first_inference_ms"] >= 2.0


def test_torch_latency_records_follow_the_schema():
    recs = torch_eager_latency("fixed-gaussian", ["default"], 2, [64, 96], [1], runs=2, warmup=0)
    assert [(r.input_size, r.threads) for r in recs] == [(64, 1), (96, 1)]
    for r in recs:  # the same record bench and android write, first inference under the same name
        assert r.ok and r.first_inference_ms > 0 and 0 < r.latency_ms_median <= r.latency_ms_p90
        assert r.extra["weights"] in ("shipped", "untrained") and "first_ms" not in r.to_json()
    info = machine_info()
    assert info["cores"] >= 1 and info["torch"]
