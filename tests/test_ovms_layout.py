"""The bundle's ``ovms/`` folder is a model repository OpenVINO Model Server accepts.

``ovms/config.json`` is validated against OVMS's own config schema (``MODELS_CONFIG_SCHEMA`` of
``src/schema.cpp``, transcribed in ``tests/data/ovms_config_schema.json``; its ``$comment`` names
the commit), and every ``base_path`` must lead to a version folder ``1/`` holding the IR.
No OVMS binary is needed: the schema is what OVMS checks first when it reads the file.
"""

from __future__ import annotations

import copy
import json
import posixpath
import zipfile
from pathlib import Path

import pytest

jsonschema = pytest.importorskip("jsonschema")

pytest.register_assert_rewrite("deploy_fixtures")  # before the import below
from deploy_fixtures import SIZE  # noqa: E402

pytest_plugins = ["deploy_fixtures"]  # session fixture exported_run: ONNX fp32 + OpenVINO fp32/fp16

SCHEMA_PATH = Path(__file__).parent / "data" / "ovms_config_schema.json"
CONFIG = "ovms/config.json"


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


@pytest.fixture(scope="module")
def validator(schema):
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


@pytest.fixture(scope="module")
def bundle(exported_run, tmp_path_factory) -> Path:
    from edge_sealant.bundle import build_bundle

    return build_bundle(exported_run, tmp_path_factory.mktemp("ovms-bundle") / "deploy.zip")


@pytest.fixture(scope="module")
def ovms_config(bundle) -> dict:
    with zipfile.ZipFile(bundle) as zf:
        return json.loads(zf.read(CONFIG))


def _errors(validator, document) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(document)]


def test_schema_names_its_source(schema):
    comment = schema["$comment"]
    assert "openvinotoolkit/model_server" in comment and "src/schema.cpp" in comment
    assert "a863f41811b6fe61272c0b805e025f6dffef63c2" in comment


def test_bundle_config_matches_ovms_schema(validator, ovms_config):
    assert _errors(validator, ovms_config) == []
    assert ovms_config["model_config_list"], "no model in ovms/config.json"


def test_every_base_path_is_a_version_folder_with_the_ir(bundle, ovms_config):
    with zipfile.ZipFile(bundle) as zf:
        names = set(zf.namelist())
        entries = [item["config"] for item in ovms_config["model_config_list"]]
        assert len({e["name"] for e in entries}) == len(entries), "duplicate model names"
        for entry in entries:
            base = entry["base_path"]
            # relative to config.json (OVMS resolves it against the config file's folder)
            assert not posixpath.isabs(base) and ".." not in base.split("/"), base
            folder = posixpath.normpath(posixpath.join(posixpath.dirname(CONFIG), base))
            for file in ("1/model.xml", "1/model.bin"):
                assert f"{folder}/{file}" in names, f"{entry['name']}: {folder}/{file} missing"
            # OVMS treats every numeric subfolder as a model version: only version 1 here
            versions = {n[len(folder) + 1:].split("/")[0] for n in names if n.startswith(folder + "/")}
            assert versions == {"1"}, versions
            # the same IR as the bundle's models/openvino-<precision>/ copy
            precision = entry["name"].rsplit("_", 1)[-1]
            for file in ("model.xml", "model.bin"):
                assert zf.read(f"{folder}/1/{file}") == zf.read(f"models/openvino-{precision}/{file}")


def test_ovms_ir_tensor_names(bundle, ovms_config, tmp_path):
    """What an OVMS client must send and read: the IR's own names (docs/serving.md says so)."""
    import openvino as ov

    entry = ovms_config["model_config_list"][0]["config"]
    folder = posixpath.join("ovms", entry["base_path"], "1")
    with zipfile.ZipFile(bundle) as zf:
        for file in ("model.xml", "model.bin"):
            (tmp_path / file).write_bytes(zf.read(f"{folder}/{file}"))
    model = ov.Core().read_model(str(tmp_path / "model.xml"))
    (inp,) = model.inputs
    assert inp.get_any_name() == "images" and inp.get_element_type() == ov.Type.u8
    shape = inp.get_partial_shape()
    assert shape[0].is_dynamic and [shape[i].get_length() for i in (1, 2, 3)] == [SIZE[0], SIZE[1], 3]
    assert [o.get_any_name() for o in model.outputs] == ["defect_probability"]


def _drop_name(c):
    del c["model_config_list"][0]["config"]["name"]


def _drop_base_path(c):
    del c["model_config_list"][0]["config"]["base_path"]


def _numeric_base_path(c):
    c["model_config_list"][0]["config"]["base_path"] = 1


def _misspelt_key(c):
    c["model_config_list"][0]["config"]["target_devices"] = "CPU"


def _nested_plugin_value(c):
    c["model_config_list"][0]["config"]["plugin_config"] = {"PERFORMANCE_HINT": ["LATENCY"]}


def _negative_nireq(c):
    c["model_config_list"][0]["config"]["nireq"] = -1


def _bad_version_policy(c):
    c["model_config_list"][0]["config"]["model_version_policy"] = {"latest": {"num_versions": 0}}


def _config_not_wrapped(c):
    c["model_config_list"][0] = c["model_config_list"][0]["config"]


def _unknown_top_level(c):
    c["models"] = []


@pytest.mark.parametrize("mutate", [
    _drop_name, _drop_base_path, _numeric_base_path, _misspelt_key, _nested_plugin_value,
    _negative_nireq, _bad_version_policy, _config_not_wrapped, _unknown_top_level,
])
def test_schema_rejects_broken_configs(validator, ovms_config, mutate):
    broken = copy.deepcopy(ovms_config)
    mutate(broken)
    assert _errors(validator, broken), f"{mutate.__name__}: accepted by the schema"


def test_schema_accepts_documented_options(validator):
    """Options OVMS documents (shape/layout as string or per input, version policy, batch "auto")."""
    config = {"model_config_list": [{"config": {
        "name": "m", "base_path": "/models/m", "batch_size": "auto", "nireq": 2, "target_device": "CPU",
        "shape": {"images": "(1,64,32,3)"}, "layout": "NHWC:NHWC", "allow_cache": True,
        "model_version_policy": {"specific": {"versions": [1, 2]}},
        "plugin_config": {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "ENABLE_CPU_PINNING": False},
    }}], "monitoring": {"metrics": {"enable": True}}}
    assert _errors(validator, config) == []
