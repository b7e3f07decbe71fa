"""pydeberta.hub: every name (bundled, folder, file, Hub id online or from the offline cache) resolves
to its folder; huggingface_hub's own cache readers check the cache layout the tests build."""

import sys

import pytest

from checkpoints import COMMIT, hf_cache
from pydeberta import hub
from pydeberta.checkpoint import read_state_dict
from pydeberta.hub import resolve_model_folder

# ------------------------------------------------------------------------------------------------
# resolve_model_folder
# ------------------------------------------------------------------------------------------------

@pytest.fixture
def cached_repo(safetensors_folder, tmp_path):
    """A cache holding "org/tiny-deberta", checked against huggingface_hub's own cache readers."""
    huggingface_hub = pytest.importorskip("huggingface_hub")
    cache = tmp_path / "hub"
    files = {name: (safetensors_folder / name).read_bytes() for name in ("config.json", "model.safetensors")}
    snapshot = hf_cache(cache, "org/tiny-deberta", files)
    found = huggingface_hub.try_to_load_from_cache("org/tiny-deberta", "config.json", cache_dir=cache)
    assert found == str(snapshot / "config.json")
    info = huggingface_hub.scan_cache_dir(cache)
    assert [repo.repo_id for repo in info.repos] == ["org/tiny-deberta"] and not info.warnings
    return cache, snapshot


def test_resolve_hub_id_from_cache_with_local_files_only(cached_repo):
    cache, snapshot = cached_repo
    folder = resolve_model_folder("org/tiny-deberta", cache_dir=cache, local_files_only=True)
    assert folder == snapshot
    assert sorted(read_state_dict(folder)) == sorted(read_state_dict(snapshot.resolve()))
    assert resolve_model_folder("org/tiny-deberta", revision=COMMIT, cache_dir=cache, local_files_only=True) == snapshot


def test_resolve_hub_id_from_cache_with_hf_hub_offline(cached_repo, monkeypatch):
    cache, snapshot = cached_repo
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model_folder("org/tiny-deberta", cache_dir=cache) == snapshot


def test_resolve_missing_hub_id_names_it(cached_repo, monkeypatch):
    cache, _ = cached_repo
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="org/missing.*local Hugging Face cache"):
        resolve_model_folder("org/missing", cache_dir=cache)


def test_connection_error_retries_from_cache(monkeypatch, tmp_path):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    calls = []

    def snapshot_download(repo_id, *, local_files_only, **kwargs):
        calls.append((local_files_only, kwargs["allow_patterns"]))
        if not local_files_only:
            raise ConnectionError("network unreachable")
        return str(tmp_path)

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    assert resolve_model_folder("org/name") == tmp_path
    assert calls == [(False, list(hub.HUB_FILES)), (True, list(hub.HUB_FILES))]


def test_hub_id_without_huggingface_hub_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(FileNotFoundError, match="pip install huggingface_hub"):
        resolve_model_folder("org/name")


def test_resolve_local_folder_file_and_bundled_name(safetensors_folder, monkeypatch):
    assert resolve_model_folder(safetensors_folder) == safetensors_folder
    assert resolve_model_folder(str(safetensors_folder / "config.json")) == safetensors_folder
    monkeypatch.setitem(hub.BUNDLED_MODELS, "tiny-deberta", safetensors_folder)
    assert resolve_model_folder("tiny-deberta") == safetensors_folder


@pytest.mark.parametrize("name", ["no-such-model", "./no/such/folder", "a/b/c", "../x"])
def test_resolve_neither_path_nor_hub_id(name):
    with pytest.raises(FileNotFoundError, match="not a Hugging Face Hub id"):
        resolve_model_folder(name)


@pytest.mark.parametrize("name, is_hub_id", [
    ("microsoft/deberta-v3-base", True), ("org/name_1.0", True), ("org/name", True),
    ("./name", False), ("../name", False), ("org/a/b", False), ("org/-name", False), ("org/na--me", False),
    ("org/na..me", False), ("name", False), ("org/", False),
])
def test_hub_id_pattern(name, is_hub_id):
    assert bool(hub._HUB_ID.fullmatch(name)) == is_hub_id

