"""Hugging Face datasets: a hub id, a local data directory, or a directory written by save_to_disk."""

from __future__ import annotations

import os

from iswcli.errors import IswtError
from iswcli.tasks.prompt import Prompt, rows_to_prompts


def hf_spec(spec: str, split: str | None) -> tuple[str, str]:
    """'NAME[:SPLIT]' and --split -> (name, split); split defaults to 'train'."""
    name, own = spec, None
    if ":" in spec and not os.path.exists(spec):
        name, _, own = spec.rpartition(":")
    if not name or own == "":
        raise IswtError(f"hf:{spec}: expected hf:NAME or hf:NAME:SPLIT")
    if own is not None and split is not None and own != split:
        raise IswtError(f"--split {split}: conflicts with split '{own}' in hf:{spec}")
    return name, own or split or "train"


_OFFLINE = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
_PROXIES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def _check_hub_reachable(label: str, timeout_s: float = 3.0) -> None:
    """One connection attempt to the Hub before datasets tries: offline, datasets retries for half a minute
    and prints each retry. Skipped in offline mode (the local cache answers) and behind a proxy (a direct
    connection says nothing about the proxy's)."""
    import socket
    from urllib.parse import urlparse

    if any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in _OFFLINE):
        return
    if any(os.environ.get(v) for v in _PROXIES):
        return
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        raise IswtError(
            f"{label}: the Hugging Face Hub ({host}) is unreachable ({exc.strerror or exc}); give a local dataset "
            "directory, or set HF_HUB_OFFLINE=1 to read a copy from the local cache"
        ) from None


def _is_path(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or os.path.exists(name)


def hf_prompts(spec: str, split: str | None, limit: int | None) -> list[Prompt]:
    name, hf_split = hf_spec(spec, split)
    label = f"hf:{name}"
    explicit_split = split is not None or ":" in spec and not os.path.exists(spec)
    try:
        import datasets
    except ImportError:
        raise IswtError(f"{label}: the datasets package is not installed (pip install datasets)") from None

    if _is_path(name):
        path = os.path.expanduser(name)
        if not os.path.isdir(path):
            raise IswtError(f"{label}: no such dataset directory")
        saved = any(os.path.isfile(os.path.join(path, f)) for f in ("state.json", "dataset_dict.json"))
    else:
        path, saved = name, False
        _check_hub_reachable(label)
    try:
        if saved:
            ds = datasets.load_from_disk(path)
            if isinstance(ds, datasets.DatasetDict):
                if hf_split not in ds:
                    raise IswtError(f"{label}: no split '{hf_split}' (splits: {', '.join(sorted(ds))})")
                ds = ds[hf_split]
            elif explicit_split and (ds.split is None or str(ds.split) != hf_split):
                raise IswtError(f"--split {hf_split}: {label} is a saved dataset without splits")
        else:
            ds = datasets.load_dataset(path, split=hf_split)
    except IswtError:
        raise
    except Exception as e:  # datasets raises many types; report the cause
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        cause = f"{type(e).__name__}: {first}" if first else type(e).__name__
        raise IswtError(f"{label}: cannot load dataset ({cause})") from None
    if not isinstance(ds, datasets.Dataset):
        raise IswtError(f"{label}: cannot load dataset (not a single split)")
    if limit is not None and limit < len(ds):
        ds = ds.select(range(limit))
    rows = ds.to_list()
    if not rows:
        raise IswtError(f"{label}: split '{hf_split}' contains no prompts")
    return rows_to_prompts(rows, label, label, question_ok=True, default_id=lambda i: f"{name}:{hf_split}:{i}")
