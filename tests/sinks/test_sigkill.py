"""The publishing process is SIGKILLed at random moments, several times (once while the broker is down),
and restarted on the same spool: the spool opens clean every time and every record whose ``write()``
returned arrives, in order per topic."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from device.sinks.spool import Spool, SpoolOptions
from tests.sinks.conftest import DEVICE, wait_until
from tests.sinks.mosquitto_broker import first_arrivals

CHILD = Path(__file__).with_name("_child_publisher.py")
BASE = f"spinal/{DEVICE}"
TOPICS = {"reading": f"{BASE}/readings/bme280", "prediction": f"{BASE}/predictions/activity"}
RUNS = 5


def start_child(port: int, spool: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(CHILD), "--port", str(port), "--spool", str(spool), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def accepted_lines(out: str) -> list[tuple[str, int]]:
    """Complete ``<kind> <seq>`` lines (a line cut by the kill is not counted)."""
    lines = out.split("\n")[:-1]
    return [(k, int(s)) for k, s in (ln.split() for ln in lines if ln.startswith(("reading ", "prediction ")))]


def settle(subscriber, quiet_s: float = 1.0, timeout: float = 30.0) -> None:
    """Wait until the subscriber has received nothing new for ``quiet_s`` (the broker's queue is delivered)."""
    deadline = time.monotonic() + timeout
    count, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now_count = len(subscriber.snapshot())
        if now_count != count:
            count, since = now_count, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.05)


@pytest.mark.parametrize("batch", [1, 50])
def test_publisher_sigkilled_at_random_moments_loses_nothing(broker, subscriber, tmp_path, batch):
    """batch 50: write_many() of 100 records, killed mid-batch too (the writer hands a batch to paho
    before its commit): what write_many() had returned for must all arrive."""
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    spool = tmp_path / "state" / "spool.db"
    accepted: dict[str, list[int]] = {t: [] for t in TOPICS.values()}
    depths = []
    for run in range(RUNS):
        broker_down = run == 2
        if broker_down:
            # What the broker acknowledged is the sink's promise kept; what the broker then holds for a slow
            # subscriber dies with a SIGKILLed broker. Let it deliver first (an emulated Pi's subscriber lags).
            settle(subscriber)
            broker.kill()
        child = start_child(broker.port, spool, "--base", str(run * 1_000_000), "--batch", str(batch))
        assert child.stdout.readline() == "started\n", child.stderr.read()
        time.sleep(rng.uniform(0.2, 1.5))
        os.kill(child.pid, signal.SIGKILL)
        out, _ = child.communicate(timeout=10)
        got = accepted_lines(out)
        assert got, f"run {run} accepted nothing (seed {seed})"
        for kind, seq in got:
            accepted[TOPICS[kind]].append(seq)
        if broker_down:
            broker.start()
        with Spool(SpoolOptions(spool)) as sp:  # opens clean after the kill
            assert sp.integrity_ok() and sp.corrupt_recoveries == 0
            depths.append(sp.depth)
        if run == 0:  # the broker published the last will when the connection died with the process
            assert wait_until(lambda: any(m.payload == b"offline" for m in
                                          subscriber.snapshot(f"{BASE}/status/availability")), 5)
    assert depths[2] > 0, depths  # the run without a broker left its records in the spool

    child = start_child(broker.port, spool, "--count", "0", "--drain", "60")
    out, err = child.communicate(timeout=90)
    assert child.returncode == 0 and "drained" in out, err

    def complete() -> bool:
        got = subscriber.seqs_by_topic(BASE)
        return all(set(got.get(t, ())) >= set(a) for t, a in accepted.items())

    assert wait_until(complete, 30), f"seed {seed}"
    got = subscriber.seqs_by_topic(BASE)
    for topic, seqs in accepted.items():
        arrived = first_arrivals(got[topic])
        assert arrived == sorted(arrived), f"{topic} out of order (seed {seed})"
        assert set(seqs) <= set(arrived), f"{topic} lost {sorted(set(seqs) - set(arrived))[:10]} (seed {seed})"
    with Spool(SpoolOptions(spool)) as sp:
        assert sp.depth == 0 and sp.dropped_total == 0
    print(f"\nseed {seed}: accepted {sum(map(len, accepted.values()))}, spool depths after kills {depths}")
