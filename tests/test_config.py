from dataclasses import dataclass

import pytest

from sweeplab import config as C
from tests.conftest import ToyConfig


def test_build_coerces_types_and_keeps_defaults():
    cfg = C.build(ToyConfig, {"lr": "0.5", "steps": 3.0, "fail": "false", "sizes": [3, 4]})
    assert cfg.lr == 0.5 and isinstance(cfg.lr, float)
    assert cfg.steps == 3 and isinstance(cfg.steps, int)
    assert cfg.fail is False and cfg.sizes == (3, 4) and cfg.width == 4


def test_build_reports_every_problem_at_once():
    with pytest.raises(ValueError) as err:
        C.build(ToyConfig, {"lr": 20.0, "steps": 1.5, "optimizer": "rmsprop", "nope": 1, "sizes": [0]})
    lines = str(err.value).splitlines()
    assert len(lines) == 5
    assert any("unknown config key 'nope'" in line for line in lines)
    assert any("lr: 20.0 is above the maximum 10.0" in line for line in lines)
    assert any("steps: expected an integer" in line for line in lines)
    assert any("'rmsprop' is not one of ['sgd', 'adam']" in line for line in lines)
    assert any("sizes: 0 is below the minimum 1" in line for line in lines)


def test_fields_carry_docs_and_valid_values():
    info = C.fields(ToyConfig)
    assert list(info)[:7] == ["lr", "steps", "width", "optimizer", "momentum", "fail", "sizes"]  # declaration order
    assert info["optimizer"].choices == ("sgd", "adam") and info["lr"].doc == "learning rate"
    assert info["sizes"].type is tuple and info["sizes"].item_type is int


def test_empty_tuples_need_allow_empty():
    with pytest.raises(ValueError, match=r"^sizes: empty list \(give at least one value\)$"):
        C.build(ToyConfig, {"sizes": []})

    @dataclass(frozen=True)
    class Tags:
        tags: tuple[str, ...] = C.param(("a",), "extra tags", allow_empty=True)
        ids: tuple[int, ...] = C.param((1,), "ids")

    assert C.fields(Tags)["tags"].allow_empty and not C.fields(Tags)["ids"].allow_empty
    assert C.build(Tags, {"tags": []}).tags == ()
    with pytest.raises(ValueError, match="ids: empty list"):
        C.build(Tags, {"ids": ()})


def test_conditions_are_described_and_chained():
    infos = C.fields(ToyConfig)
    assert infos["momentum"].condition() == "optimizer=sgd" and infos["lr"].condition() == ""
    assert C.active(ToyConfig, {"optimizer": "adam"})["momentum"] is False
    assert C.active(ToyConfig, {})["momentum"] is True  # the default optimizer is sgd


def test_scalar_columns_flatten_tuples():
    assert C.scalar_columns(ToyConfig())["sizes"] == "1,2"


def test_mutable_default_rejected():
    with pytest.raises(TypeError):
        C.param([1, 2], "a list")


@pytest.mark.parametrize("value", [True, "abc", 1.5, None])
def test_int_rejects(value):
    with pytest.raises(ValueError, match="steps"):
        C.build(ToyConfig, {"steps": value})


@pytest.mark.parametrize("value", [False, "x", float("nan"), float("inf")])
def test_float_rejects(value):
    with pytest.raises(ValueError, match="lr: expected a"):
        C.build(ToyConfig, {"lr": value})


def test_folder_and_multiple_of_fields_are_checked_when_coerced(tmp_path):
    @dataclass(frozen=True)
    class Data:
        root: str = C.param("", "dataset root; empty: embedded", folder=True)
        crop: int = C.param(32, "crop side", low=16, multiple_of=16)
        shape: tuple[int, ...] = C.param((16, 32), "volume shape", multiple_of=16)

    infos = C.fields(Data)
    assert infos["root"].rule() == "existing folder" and infos["crop"].rule() == "[16, ], multiple of 16"
    assert C.build(Data, {"root": str(tmp_path), "crop": 48, "shape": [32, 64]}).shape == (32, 64)
    assert C.build(Data, {"root": ""}).root == ""  # empty: not a path
    with pytest.raises(ValueError) as err:
        C.build(Data, {"root": str(tmp_path / "gone"), "crop": 40, "shape": [16, 24]})
    assert str(err.value).splitlines() == [f"root: folder not found: {tmp_path / 'gone'}",
                                           "crop: 40 is not a multiple of 16",
                                           "shape: [16, 24]: every value must be a multiple of 16"]
