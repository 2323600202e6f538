"""Peer environment set-up: pinned lists for every peer, up-to-date detection, and clear failures that leave nothing behind."""
from __future__ import annotations

import json
import re
import tomllib

import pytest

from benchmarks.peers import setup
from benchmarks.peers.setup import PEERS, Peer, PeerSetupError, ensure, is_up_to_date, main, selected_peers


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """Environments and requirement lists under tmp_path instead of the repository."""
    monkeypatch.setattr(setup, "VENVS", tmp_path / "venvs")
    monkeypatch.setattr(setup, "REQUIREMENTS", tmp_path / "requirements")
    (tmp_path / "requirements").mkdir()
    return tmp_path


def test_every_peer_has_a_fully_pinned_list_with_torch_2_13():
    for peer in PEERS.values():
        lines = [line for line in peer.requirements.read_text().splitlines() if line and not line.startswith("#")]
        assert lines and all("==" in line for line in lines), peer.name
        names = {line.split("==")[0].lower() for line in lines}
        assert peer.name in names and "onnxruntime" in names
        if peer.role == "learning":
            assert "torch==2.13.0" in lines and {"onnx", "onnxscript"} <= names


def test_learning_peers_pin_every_dependency_of_lutnets_core():
    """The runners import lutnet's core (errors, data splits), so its install requirements must be in each learning environment."""
    project = tomllib.loads((setup.REPOSITORY / "pyproject.toml").read_text())["project"]
    core = {re.split(r"[<>=!~ \[]", requirement)[0].lower() for requirement in project["dependencies"]}
    for peer in PEERS.values():
        if peer.role == "learning":
            names = {line.split("==")[0].lower() for line in peer.requirements.read_text().splitlines() if line and not line.startswith("#")}
            assert core <= names, (peer.name, sorted(core - names))


def test_unknown_peer_names_the_known_ones():
    with pytest.raises(PeerSetupError, match="expected pykan or deepsplines or inkan or kserve or bentoml, got tensorflow"):
        selected_peers(["tensorflow"])
    assert [peer.name for peer in selected_peers(["inkan", "kserve"])] == ["inkan", "kserve"]


def test_cli_reports_a_bad_name_in_one_line_and_exits_2(capsys):
    assert main(["--only", "nope"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("benchmarks.peers.setup: error: unknown peer")


def test_stamp_matches_only_the_requirements_it_was_built_from(sandbox):
    peer = Peer("toy", "json", "learning")
    peer.requirements.write_text("numpy==2.4.6\n")
    assert not is_up_to_date(peer)
    peer.python.parent.mkdir(parents=True)
    peer.python.touch()
    (peer.venv / setup.STAMP_NAME).write_text(json.dumps({**setup.build_fingerprint(peer), "setup_seconds": 12.0}))
    assert is_up_to_date(peer)
    assert ensure(peer) == {"peer": "toy", "built": False, "setup_seconds": 12.0}
    peer.requirements.write_text("numpy==2.4.5\n")
    assert not is_up_to_date(peer)


@pytest.mark.slow
def test_a_package_pip_cannot_install_fails_clearly_and_leaves_no_environment(sandbox):
    peer = Peer("broken", "json", "learning")
    peer.requirements.write_text("not a requirement!!\n")
    with pytest.raises(PeerSetupError) as caught:
        ensure(peer)
    message = str(caught.value)
    assert message.startswith("broken: pip install -r broken.txt failed (exit ") and "not a requirement!!" in message
    assert "WARNING: Location" not in message
    assert not peer.venv.exists()
