"""The server as a Ray Serve application on a real local Ray cluster of two nodes: two replicas
serve concurrent real-time clients with exact tokens; a replica killed mid-stream gives its
clients replica_lost + close 1012, the other replica's streams go on, Serve replaces it."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from llmcodec.stream.buffer import encode_all
from llmcodec.stream.client import ServerError, stream_pcm

from conftest import token_differences

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'llmcodec[ray]'; make test installs it)")

TOKEN = "serve-t0ken"
CLIP_S = 6.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, token: str | None = TOKEN) -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture(scope="module")
def app():
    """Two nodes of one CPU each; the Serve application with 2 replicas (torch backend, one worker each)."""
    from ray import serve
    from ray.cluster_utils import Cluster
    from llmcodec.stream.ray_serve import APP_NAME, PROXY_ENV, build_app
    os.environ.update(PROXY_ENV)  # the proxy's middleware and routing: the nodes inherit them
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port}, proxy_location="HeadOnly")
    serve.run(build_app({"replicas": 2, "backend": "torch", "server": {"token": TOKEN, "idle_timeout": 20.0}}),
              name=APP_NAME, route_prefix="/")
    base = f"127.0.0.1:{port}"
    wait_for_replicas(base, 2)
    yield base
    serve.shutdown()
    ray.shutdown()
    cluster.shutdown()


def application(base: str) -> dict:
    return json.loads(get(f"http://{base}/health")[1])["application"]


def wait_for_replicas(base: str, n: int, timeout_s: float = 120.0) -> None:
    """Until Serve runs ``n`` replicas and all ``n`` have reported, 3 s in a row (a replica stopped by a
    failed health check still shows for a few seconds)."""
    from ray import serve
    from llmcodec.stream.ray_serve import APP_NAME, DEPLOYMENT
    deadline, steady = time.monotonic() + timeout_s, 0
    while time.monotonic() < deadline and steady < 6:
        running = serve.status().applications[APP_NAME].deployments[DEPLOYMENT].replica_states.get("RUNNING", 0)
        ok = running == n and application(base)["replicas"] == n
        steady = steady + 1 if ok else 0
        time.sleep(0.5)


def clips(speech: np.ndarray, n: int) -> list[np.ndarray]:
    step = int(16000 * 3.7)
    return [speech[i * step: i * step + int(16000 * CLIP_S)] for i in range(n)]


async def run_streams(base: str, pcm: list[np.ndarray], sessions: dict, kill_after_s: float | None = None):
    """Real-time paced streams, each opened once the one before is ready (as microphones arrive; a
    burst of simultaneous connections can all read both replicas as idle and land on one); optionally
    SIGKILL the replica of stream 0 ``kill_after_s`` after the last stream is ready."""
    async def one(i, ready: asyncio.Event):
        def on_ready(r):
            sessions[i] = r.session
            ready.set()
        try:
            return await stream_pcm(f"ws://{base}", pcm[i], 16000, realtime=True, token=TOKEN, on_ready=on_ready)
        except ServerError as e:
            return e
        finally:
            ready.set()
    tasks = []
    for i in range(len(pcm)):
        ready = asyncio.Event()
        tasks.append(asyncio.create_task(one(i, ready)))
        await asyncio.wait_for(ready.wait(), timeout=30)
    killed = None
    if kill_after_s is not None:
        await asyncio.sleep(kill_after_s)
        per = (await asyncio.to_thread(application, base))["per_replica"]
        killed = sessions[0].split("-")[0]
        os.kill(per[killed]["pid"], signal.SIGKILL)
    return await asyncio.gather(*tasks), killed


def test_health_and_metrics_per_replica_and_for_the_application(app):
    wait_for_replicas(app, 2)
    status, text = get(f"http://{app}/health")
    h = json.loads(text)
    assert status == 200 and h["status"] == "ok" and h["replica"] in h["application"]["per_replica"]
    assert h["application"]["replicas"] == 2
    assert len({r["node"] for r in h["application"]["per_replica"].values()}) == 2  # one replica per node
    status, text = get(f"http://{app}/metrics")
    assert status == 200 and "llmcodec_blocks_total" in text
    status, text = get(f"http://{app}/metrics/application")
    assert status == 200 and "llmcodec_app_replicas 2.0" in text
    assert get(f"http://{app}/metrics", token=None)[0] == 401
    status, text = get(f"http://{app}/")
    assert status == 200 and 'src="app.js"' in text  # the browser page


def test_refusals_are_http_answers_as_from_llmcodec_serve(app):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect
    for headers, status in (({}, 401), ({"Authorization": "Bearer nope"}, 403)):
        with pytest.raises(InvalidStatus) as e:
            connect(f"ws://{app}/v1/stream", additional_headers=headers, open_timeout=30)
        assert e.value.response.status_code == status


def test_two_replicas_serve_concurrent_real_time_streams_with_exact_tokens(app, default_backend, speech_30s):
    pcm = clips(speech_30s, 4)
    sessions: dict[int, str] = {}
    results, _ = asyncio.run(run_streams(app, pcm, sessions))
    assert len({s.split("-")[0] for s in sessions.values()}) == 2, f"one replica took every stream: {sessions}"
    for clip, r in zip(pcm, results):
        assert not isinstance(r, Exception), r
        assert r.end_blocks == len(r.blocks) == int(np.ceil(clip.size / 1920))
        assert token_differences(r.codes(), encode_all(default_backend, clip)) == []


def test_a_killed_replica_closes_its_streams_cleanly_and_is_replaced(app, default_backend, speech_30s):
    from ray import serve
    from llmcodec.stream.ray_serve import APP_NAME, DEPLOYMENT
    pcm = clips(speech_30s, 4)
    sessions: dict[int, str] = {}
    results, killed = asyncio.run(run_streams(app, pcm, sessions, kill_after_s=1.5))
    on_killed = [i for i, s in sessions.items() if s.startswith(killed + "-")]
    others = [i for i in sessions if i not in on_killed]
    assert others, f"every stream was on the killed replica: {sessions}"
    for i in on_killed:
        e = results[i]
        assert isinstance(e, ServerError) and e.code == "replica_lost" and "Reconnect" in e.message, e
    for i in others:  # untouched: every block, the offline tokens
        r = results[i]
        assert not isinstance(r, Exception), r
        assert token_differences(r.codes(), encode_all(default_backend, pcm[i])) == []
    wait_for_replicas(app, 2)  # Serve starts a replacement
    assert serve.status().applications[APP_NAME].deployments[DEPLOYMENT].replica_states.get("RUNNING") == 2
    assert killed not in application(app)["per_replica"]
    # a client that reconnects gets a new stream on a live replica, with exact tokens
    again: dict[int, str] = {}
    (r,), _ = asyncio.run(run_streams(app, pcm[:1], again))
    assert not again[0].startswith(killed + "-")
    assert token_differences(r.codes(), encode_all(default_backend, pcm[0])) == []


def test_serve_config_file_is_a_valid_serve_deploy_config(tmp_path):
    import yaml
    from ray.serve.schema import ServeDeploySchema
    from llmcodec.stream.ray_serve import ServeOptions, config_yaml
    text = config_yaml(ServeOptions(replicas=3, backend="onnx", server={"max_batch": 8}), "0.0.0.0", 8765)
    cfg = ServeDeploySchema.model_validate(yaml.safe_load(text))
    a = cfg.applications[0]
    assert a.import_path == "llmcodec.stream.ray_serve:build_app" and a.args["replicas"] == 3
    assert "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH" in text and "serve deploy" in text
    with pytest.raises(ValueError, match="replicas"):
        ServeOptions(replicas=0)
    with pytest.raises(ValueError, match="max_batch"):
        ServeOptions(server={"max_batch": 0})
