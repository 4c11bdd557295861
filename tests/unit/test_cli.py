"""Command lines: every flag also from STORK_<FLAG>, the command line winning."""

from __future__ import annotations

import pytest

from extender.cli import build_parser
from storkcore.cli import driver_options, env_name


def test_env_name():
    assert env_name("--csi-driver-name") == "STORK_CSI_DRIVER_NAME"


def test_flags_come_from_environment(monkeypatch):
    monkeypatch.setenv("STORK_DRIVER", "csi")
    monkeypatch.setenv("STORK_CSI_DRIVER_NAME", "a.io, kubernetes.io/no-provisioner")
    monkeypatch.setenv("STORK_SCORE_MODE", "normalized")
    monkeypatch.setenv("STORK_THREADS", "3")
    args = build_parser().parse_args([])
    assert args.driver == "csi" and args.score_mode == "normalized" and args.threads == 3
    assert driver_options(args).csi_driver_names == ("a.io", "kubernetes.io/no-provisioner")


def test_command_line_wins_over_environment(monkeypatch):
    monkeypatch.setenv("STORK_DRIVER", "csi")
    args = build_parser().parse_args(["--driver", "longhorn", "--longhorn-namespace", "lh"])
    assert args.driver == "longhorn" and driver_options(args).longhorn_namespace == "lh"


def test_driver_is_required_and_choices_are_checked(monkeypatch, capsys):
    monkeypatch.delenv("STORK_DRIVER", raising=False)
    with pytest.raises(SystemExit):
        build_parser().parse_args([])
    assert "--driver" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--driver", "csi", "--score-mode", "best"])


def test_topology_label_keys_are_configurable():
    args = build_parser().parse_args(["--driver", "csi", "--rack-label", "example.com/rack"])
    topology = driver_options(args).topology
    assert topology.rack == ("example.com/rack",)
    assert topology.zone[0] == "topology.kubernetes.io/zone"
