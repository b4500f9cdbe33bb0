"""`edge-sealant serve` against real clients (tritonclient HTTP and gRPC), on loopback only.

The server runs in its own process (as in production; and kserve and tritonclient.grpc
cannot share one process: both register the `inference` protobuf package). Tiny models
(MobileNetV3-Small at 64x32), small images.
"""

from __future__ import annotations

import base64
import http.client
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from deploy_fixtures import make_run, write_jpeg

# Not importorskip: importing kserve here would clash with tritonclient.grpc (see above).
if importlib.util.find_spec("kserve") is None:
    pytest.skip("serving needs the serve extra (pip install 'edge-sealant[serve]')", allow_module_level=True)
httpclient = pytest.importorskip("tritonclient.http")
grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

from edge_sealant.cli import app  # noqa: E402
from edge_sealant.serve.tensors import encode_bytes_tensor  # noqa: E402

runner = CliRunner()
NAME = "edge-sealant"
MAX_REQUEST_MB = 1.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``edge-sealant serve`` in a subprocess, its log in a file."""

    def __init__(self, model: Path, log: Path, *extra: str):
        self.http_port, self.grpc_port = free_port(), free_port()
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge_sealant", "serve", str(model), "--http-port", str(self.http_port),
             "--grpc-port", str(self.grpc_port), *extra],
            stdout=open(log, "wb"), stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        self.http = f"127.0.0.1:{self.http_port}"
        self.grpc = f"127.0.0.1:{self.grpc_port}"
        self._wait_ready()

    def _wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(f"http://{self.http}/v2/health/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"server not ready in {timeout} s:\n{self.log.read_text()}")

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


@pytest.fixture(scope="module")
def heatmap_model(tmp_path_factory) -> Path:
    from edge_sealant.export import export_run

    run = make_run(tmp_path_factory.mktemp("serve-run") / "run", heatmap=True, seed=3)
    export_run(run, formats=["onnx", "openvino"], precisions=["fp32"])
    return run / "openvino" / "fp32" / "model.xml"


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("serve-images")
    return [write_jpeg(folder / f"img_{i}.jpg", 300 + i, size) for i, size in enumerate([(120, 40), (64, 32), (200, 80), (90, 30)])]


@pytest.fixture(scope="module")
def server(heatmap_model, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve-log") / "server.log"
    srv = Server(heatmap_model, log, "--max-request-mb", str(MAX_REQUEST_MB), "--max-batch", "8")
    yield srv
    code = srv.stop()
    text = log.read_text()
    assert code == 0, text
    assert "Traceback" not in text, text  # client errors are one line each, never a traceback


def bytes_input(module, files: list[Path]):
    data = np.array([f.read_bytes() for f in files], dtype=np.object_)
    tensor = module.InferInput("image", [len(files)], "BYTES")
    tensor.set_data_from_numpy(data)
    return tensor


def predict_cli(model: Path, files: list[Path]) -> tuple[dict[str, float], float]:
    """What `edge-sealant predict --json` says, file by file (6 decimals), and its threshold."""
    result = runner.invoke(app, ["predict", str(model), str(files[0].parent), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    return {Path(row["path"]).name: row["probability"] for row in report["rows"]}, report["threshold"]


# --------------------------------------------------------------------------- good requests
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_probabilities_equal_predict(server, heatmap_model, jpegs, protocol):
    module = httpclient if protocol == "http" else grpcclient
    client = module.InferenceServerClient(server.http if protocol == "http" else server.grpc)
    result = client.infer(NAME, [bytes_input(module, jpegs)])
    expected, threshold = predict_cli(heatmap_model, jpegs)
    probabilities = result.as_numpy("probability")
    assert probabilities.dtype == np.float32 and probabilities.shape == (len(jpegs),)
    for path, value in zip(jpegs, probabilities):
        assert abs(float(value) - expected[path.name]) <= 1e-6, (path.name, value, expected[path.name])
    assert result.as_numpy("is_defect").tolist() == [bool(p >= threshold) for p in probabilities]


def test_uint8_pixels_and_heatmap_match_the_inspector(server, heatmap_model, jpegs):
    from edge_sealant.runtime import Inspector

    inspector = Inspector.load(heatmap_model)
    pixels = cv2.imread(str(jpegs[2]))  # BGR, any size: the server resizes like training
    expected = inspector.inspect(pixels)
    for module, url in ((httpclient, server.http), (grpcclient, server.grpc)):
        tensor = module.InferInput("image", [1, *pixels.shape], "UINT8")
        tensor.set_data_from_numpy(pixels[None])
        result = module.InferenceServerClient(url).infer(NAME, [tensor])
        assert abs(float(result.as_numpy("probability")[0]) - expected.probability) <= 1e-6
        heatmap = result.as_numpy("heatmap")
        assert heatmap.shape == (1, *expected.heatmap.shape)
        np.testing.assert_allclose(heatmap[0], expected.heatmap, atol=1e-6)


def test_rgb_color_order_parameter(server, jpegs):
    pixels = cv2.imread(str(jpegs[0]))
    values = []
    for array, parameters in ((pixels, {}), (pixels[..., ::-1], {"color_order": "RGB"})):
        body = {"inputs": [{"name": "image", "datatype": "UINT8", "shape": [1, *array.shape],
                            "data": array.reshape(-1).tolist(), "parameters": parameters}]}
        status, reply = post(server, f"/v2/models/{NAME}/infer", json.dumps(body).encode())
        assert status == 200, reply
        values.append(reply["outputs"][0]["data"][0])
    assert values[0] == pytest.approx(values[1], abs=1e-7)
    body["inputs"][0]["parameters"] = {"color_order": "HSV"}
    status, reply = post(server, f"/v2/models/{NAME}/infer", json.dumps(body).encode())
    assert status == 400 and "color_order" in reply["error"]


def test_json_base64_and_requested_outputs(server, jpegs):
    body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                        "data": [base64.b64encode(jpegs[1].read_bytes()).decode()]}],
            "outputs": [{"name": "probability"}]}
    status, reply = post(server, f"/v2/models/{NAME}/infer", json.dumps(body).encode())
    assert status == 200, reply
    assert [o["name"] for o in reply["outputs"]] == ["probability"]
    assert reply["parameters"]["labels"] == "normal,defect" and 0 <= reply["outputs"][0]["data"][0] <= 1


def test_health_metadata_and_card(server, heatmap_model):
    from edge_sealant.runtime import read_card

    card = read_card(heatmap_model)
    http = httpclient.InferenceServerClient(server.http)
    grpc = grpcclient.InferenceServerClient(server.grpc)
    assert http.is_server_live() and http.is_server_ready() and http.is_model_ready(NAME)
    assert grpc.is_server_live() and grpc.is_server_ready() and grpc.is_model_ready(NAME)
    meta = http.get_model_metadata(NAME)
    grpc_meta = grpc.get_model_metadata(NAME, as_json=True)
    assert meta["platform"] == grpc_meta["platform"] == "openvino_ir"
    assert meta["versions"] == grpc_meta["versions"] and len(meta["versions"][0]) == 12
    assert [o["name"] for o in meta["outputs"]] == ["probability", "is_defect", "heatmap"]
    assert meta["outputs"][2]["shape"] == [-1, *card.heatmap_size]
    config = http.get_model_config(NAME)
    parameters = {k: v["string_value"] for k, v in config["parameters"].items()}
    assert float(parameters["threshold"]) == card.threshold
    assert parameters["input_size"] == f"{card.height}x{card.width}"
    assert json.loads(parameters["card"])["labels"] == list(card.labels)


# ---------------------------------------------------------------------------- bad requests
def post(server, path: str, body: bytes, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://{server.http}{path}", data=body, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def infer_body(datatype: str, shape: list, data: list, name: str = "image") -> bytes:
    return json.dumps({"inputs": [{"name": name, "datatype": datatype, "shape": shape, "data": data}]}).encode()


BAD_REQUESTS = {
    "wrong datatype": (infer_body("FP32", [1], [0.5]), 400, "datatype FP32"),
    "wrong shape": (infer_body("UINT8", [1, 4, 4], [0] * 16), 400, "[N, H, W, 3]"),
    "shape does not hold the data": (infer_body("UINT8", [1, 4, 4, 3], [0] * 5), 400, "does not hold"),
    "not an image": (infer_body("BYTES", [1], [base64.b64encode(b"not an image at all").decode()]), 400, "not a readable image"),
    "a path is not read": (infer_body("BYTES", [1], ["/etc/passwd"]), 400, "base64"),
    "empty batch": (infer_body("BYTES", [0], []), 400, "empty batch"),
    "unknown input": (infer_body("BYTES", [1], ["aGk="], name="frame"), 400, "unknown input 'frame'"),
    "not JSON": (b"{this is not json", 400, "not JSON"),
    "too many images": (infer_body("UINT8", [9, 1, 1, 3], [0] * 27), 400, "at most 8"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_rest_requests_get_4xx_in_one_line(server, jpegs, case):
    body, status, words = BAD_REQUESTS[case]
    code, reply = post(server, f"/v2/models/{NAME}/infer", body)
    assert code == status and words in reply["error"] and "\n" not in reply["error"], (code, reply)
    # ... and the server keeps serving
    result = httpclient.InferenceServerClient(server.http).infer(NAME, [bytes_input(httpclient, jpegs[:1])])
    assert result.as_numpy("probability").shape == (1,)


def test_unknown_model_and_oversized_body(server, jpegs):
    code, reply = post(server, "/v2/models/no-such-model/infer", infer_body("BYTES", [1], ["aGk="]))
    assert code == 404 and "no-such-model" in reply["error"]
    big = infer_body("UINT8", [1, 600, 600, 3], [0] * (600 * 600 * 3))  # ~2 MB of JSON > 1 MB limit
    code, reply = post(server, f"/v2/models/{NAME}/infer", big)
    assert code == 413 and "--max-request-mb" in reply["error"]
    with pytest.raises(InferenceServerException) as err:  # a real client sees the status too
        httpclient.InferenceServerClient(server.http).infer("no-such-model", [bytes_input(httpclient, jpegs[:1])])
    assert "404" in str(err.value.status())


def test_bad_grpc_requests_get_status_codes(server, jpegs):
    client = grpcclient.InferenceServerClient(server.grpc)
    cases = []
    wrong = grpcclient.InferInput("image", [1], "FP32")
    wrong.set_data_from_numpy(np.array([0.5], dtype=np.float32))
    cases.append((NAME, wrong, "INVALID_ARGUMENT", "datatype FP32"))
    garbage = grpcclient.InferInput("image", [1], "BYTES")
    garbage.set_data_from_numpy(np.array([b"not an image"], dtype=np.object_))
    cases.append((NAME, garbage, "INVALID_ARGUMENT", "not a readable image"))
    empty = grpcclient.InferInput("image", [0], "BYTES")
    empty.set_data_from_numpy(np.zeros((0,), dtype=np.object_))
    cases.append((NAME, empty, "INVALID_ARGUMENT", "empty batch"))
    cases.append(("no-such-model", bytes_input(grpcclient, jpegs[:1]), "NOT_FOUND", "no-such-model"))
    huge = grpcclient.InferInput("image", [1, 700, 700, 3], "UINT8")
    huge.set_data_from_numpy(np.zeros((1, 700, 700, 3), dtype=np.uint8))  # 1.4 MB > 1 MB
    cases.append((NAME, huge, "RESOURCE_EXHAUSTED", ""))
    for model, tensor, status, words in cases:
        with pytest.raises(InferenceServerException) as err:
            client.infer(model, [tensor])
        assert status in str(err.value.status()) and words in err.value.message(), (status, str(err.value))
    assert client.infer(NAME, [bytes_input(grpcclient, jpegs[:1])]).as_numpy("probability").shape == (1,)


def test_metrics_count_requests_and_decisions(server, jpegs):
    client = httpclient.InferenceServerClient(server.http)
    client.infer(NAME, [bytes_input(httpclient, jpegs)])
    post(server, f"/v2/models/{NAME}/infer", infer_body("FP32", [1], [0.5]))
    with urllib.request.urlopen(f"http://{server.http}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    counts = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
              if line.startswith("edge_sealant_") and not line.startswith("#")}
    ok = f'edge_sealant_requests_total{{model="{NAME}",outcome="ok",protocol="rest"}}'
    bad = f'edge_sealant_requests_total{{model="{NAME}",outcome="client_error",protocol="rest"}}'
    assert counts[ok] >= 1 and counts[bad] >= 1
    images = sum(v for k, v in counts.items() if k.startswith("edge_sealant_decisions_total"))
    assert images >= len(jpegs)
    assert counts[f'edge_sealant_request_seconds_count{{model="{NAME}",protocol="rest"}}'] >= 2


# --------------------------------------------------------------------- lifecycle and bundle
def test_sigterm_finishes_in_flight_requests(heatmap_model, tmp_path):
    """Serve an ONNX model from a bundle zip; SIGTERM while requests run: every one of them completes."""
    import shutil

    from edge_sealant.bundle import build_bundle

    run = shutil.copytree(heatmap_model.parents[2], tmp_path / "run", ignore=shutil.ignore_patterns("openvino"))
    build_bundle(run, tmp_path / "deploy.zip")  # its only model: ONNX fp32
    frames = [cv2.imencode(".png", np.random.default_rng(i).integers(0, 256, (824, 2532, 3), dtype=np.uint8))[1].tobytes()
              for i in range(2)]
    server = Server(tmp_path / "deploy.zip", tmp_path / "server.log", "--grace-s", "60", "--max-request-mb", "128")
    assert httpclient.InferenceServerClient(server.http).get_model_metadata(NAME)["platform"] == "onnxruntime_onnx"
    header = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [16],
                                      "parameters": {"binary_data_size": len(encode_bytes_tensor(frames * 8))}}]}).encode()
    body = header + encode_bytes_tensor(frames * 8)  # 16 big PNGs: a request slow enough to be in flight at SIGTERM
    outcomes: list = []
    sent = threading.Barrier(4)

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=120)
        connection.request("POST", f"/v2/models/{NAME}/infer", body, {"Inference-Header-Content-Length": str(len(header))})
        sent.wait()
        reply = connection.getresponse()
        outcomes.append((reply.status, time.monotonic(), json.loads(reply.read())))

    threads = [threading.Thread(target=client) for _ in range(3)]
    for thread in threads:
        thread.start()
    sent.wait()  # every request is on the wire: the server is decoding them
    signalled = time.monotonic()
    code = server.stop()
    for thread in threads:
        thread.join(60)
    log = server.log.read_text()
    assert code == 0, log
    assert [o[0] for o in outcomes] == [200] * 3, outcomes
    assert all(o[2]["outputs"][0]["shape"] == [16] for o in outcomes)
    assert max(o[1] for o in outcomes) > signalled
    assert "Waiting for connections to close" in log  # uvicorn drained open requests: they were in flight
    with pytest.raises(OSError):  # and the server is gone
        urllib.request.urlopen(f"http://{server.http}/v2/health/live", timeout=2)
    assert "Traceback" not in log, log


def test_workers_share_the_ports_and_add_up_metrics(heatmap_model, jpegs, tmp_path):
    import psutil

    server = Server(heatmap_model, tmp_path / "server.log", "--workers", "2")
    try:
        children = psutil.Process(server.proc.pid).children()
        workers = [c for c in children if "spawn_main" in " ".join(_cmdline(c))]  # not the resource tracker
        assert len(workers) == 2, [_cmdline(c) for c in children]
        grpc = grpcclient.InferenceServerClient(server.grpc)
        for _ in range(6):
            assert grpc.infer(NAME, [bytes_input(grpcclient, jpegs[:1])]).as_numpy("probability").shape == (1,)
            httpclient.InferenceServerClient(server.http).infer(NAME, [bytes_input(httpclient, jpegs[:2])])
        with urllib.request.urlopen(f"http://{server.http}/metrics", timeout=10) as reply:
            text = reply.read().decode()
        totals = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if line.startswith("edge_sealant_requests_total")}
        # Whichever worker answered the scrape, it reports every worker's requests.
        assert totals[f'edge_sealant_requests_total{{model="{NAME}",outcome="ok",protocol="grpc"}}'] == 6
        assert totals[f'edge_sealant_requests_total{{model="{NAME}",outcome="ok",protocol="rest"}}'] == 6
    finally:
        code = server.stop()
    assert code == 0, server.log.read_text()
    assert not any(w.is_running() for w in workers)


def _cmdline(process) -> list[str]:
    import psutil

    try:
        return process.cmdline()
    except psutil.Error:  # gone already
        return []


def test_a_port_in_use_is_a_one_line_error(server, heatmap_model):
    result = subprocess.run(
        [sys.executable, "-m", "edge_sealant", "serve", str(heatmap_model), "--http-port", str(server.http_port),
         "--grpc-port", str(free_port())], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Address already in use" in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_serve_cli_errors_are_one_line(tmp_path):
    result = runner.invoke(app, ["serve", str(tmp_path / "missing.xml")])
    assert result.exit_code == 1 and "missing.xml" in result.output
    result = runner.invoke(app, ["serve", str(tmp_path / "missing.xml"), "--http-port", "8080", "--grpc-port", "8080"])
    assert result.exit_code == 1 and "both 8080" in result.output


def test_without_the_serve_extra_the_error_is_one_line(heatmap_model, tmp_path):
    blocker = tmp_path / "no_kserve"
    blocker.mkdir()
    (blocker / "kserve.py").write_text("raise ModuleNotFoundError(\"No module named 'kserve'\", name='kserve')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "edge_sealant", "serve", str(heatmap_model)], capture_output=True,
                            text=True, timeout=120, env=env)
    assert result.returncode == 1 and "pip install 'edge-sealant[serve]'" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr


def test_serve_package_does_not_import_kserve_until_a_server_starts():
    code = "import sys, edge_sealant.serve, edge_sealant.serve.service, edge_sealant.cli; print('kserve' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
