"""Hugging Face checkpoints: open (dir or hub id), check, read slices, write atomically.

The only module that reads or writes weight files. Headers are read without
touching tensor data, so every check runs before any heavy work.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np
import torch

from arm_ray.atomic import atomic_dir, atomic_write_bytes
from arm_ray.errors import CheckpointError

WEIGHT_INDEX = "model.safetensors.index.json"
# Fields whose difference makes two checkpoints unmergeable, in the order they are reported.
ARCH_FIELDS = ("model_type", "architectures", "hidden_size", "intermediate_size", "num_hidden_layers",
               "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size", "hidden_act",
               "tie_word_embeddings")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
                   "tokenizer.model", "chat_template.jinja", "added_tokens.json")
_DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


@dataclass
class TensorInfo:
    file: str
    dtype: str
    shape: tuple[int, ...]
    offset: int = 0  # byte offset of the tensor's data in its file


@dataclass
class Checkpoint:
    name: str
    path: Path
    config: dict
    tensors: dict[str, TensorInfo] = field(default_factory=dict)

    @property
    def files(self) -> list[str]:
        return sorted({t.file for t in self.tensors.values()})

    def load_state_dict(self, device: str = "cpu") -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file

        sd: dict[str, torch.Tensor] = {}
        for f in self.files:
            part = load_file(self.path / f, device=device)
            for k, t in part.items():  # one pass over weights just read: NaN or Inf would poison every merge
                if t.is_floating_point() and not all_finite(t):
                    bad = int((~torch.isfinite(t)).sum())
                    raise CheckpointError(f"{self.name}: tensor {k} in {self.path / f} holds {bad} NaN or Inf "
                                          "values")
            sd.update(part)
        return {k: sd[k] for k in sorted(sd)}

    def tensor_bytes(self, name: str) -> int:
        info = self.tensors[name]
        return int(np.prod(info.shape, dtype=np.int64)) * _DTYPE_SIZES[info.dtype]

    def row_bytes(self, name: str) -> int:
        info = self.tensors[name]
        return self.tensor_bytes(name) // max(1, info.shape[0]) if info.shape else self.tensor_bytes(name)

    def read_tensor(self, name: str, device: str | torch.device = "cpu",
                    rows: tuple[int, int] | None = None) -> torch.Tensor:
        """Tensor `name` (or its rows `start:stop`) on `device`, checked finite; nothing else is read.

        Only this tensor's bytes are read (into the tensor on the CPU; through a map dropped on return for another
        device), so a process that streams a checkpoint tensor by tensor holds one tensor at a time; the file pages
        stay in the page cache that every actor on the node shares.
        """
        info = self.tensors[name]
        dtype, np_bits, _ = _bit_views(info.dtype, f"{self.name}: cannot read {name}")
        shape, offset = info.shape, info.offset
        if rows is not None:
            row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(np_bits).itemsize
            shape, offset = (rows[1] - rows[0], *shape[1:]), offset + rows[0] * row_bytes
        if torch.device(device).type == "cpu":  # read straight into the tensor: one copy, no mapping left in RSS
            t = torch.empty(shape, dtype=dtype)
            with (self.path / info.file).open("rb", buffering=0) as f:
                f.seek(offset)
                if f.readinto(t.view(_BITS[t.element_size()][1]).numpy().reshape(-1).view(np.uint8)) != \
                        t.numel() * t.element_size():
                    raise CheckpointError(f"{self.name}: {self.path / info.file} ends inside tensor {name}")
        else:  # a map of the tensor's bytes copied to the device (pages from the shared page cache)
            arr = np.memmap(self.path / info.file, dtype=np_bits, mode="r", offset=offset, shape=shape)
            with warnings.catch_warnings():  # read-only map: torch warns, but the tensor is copied before any write
                warnings.simplefilter("ignore", UserWarning)
                t = torch.from_numpy(arr).view(dtype).to(device, copy=True)
            del arr
        if not all_finite(t):  # NaN or Inf would poison every merge and every trace
            raise CheckpointError(f"{self.name}: tensor {name} in {self.path / info.file} holds "
                                  f"{int((~torch.isfinite(t)).sum())} NaN or Inf values")
        return t

    def read_slice(self, name: str, axis: int, index: np.ndarray) -> torch.Tensor:
        """Entries `index` of tensor `name` along `axis` (0: rows, 1: columns), exact bits.

        The file is memory-mapped and numpy gathers the entries in one pass: rows
        cost only their own bytes; columns visit each row once (no per-run reads).
        """
        info = self.tensors[name]
        dtype, np_bits, _ = _bit_views(info.dtype, f"{self.name}: cannot read {name} as a slice")
        arr = np.memmap(self.path / info.file, dtype=np_bits, mode="r", offset=info.offset, shape=info.shape)
        picked = np.take(arr, np.asarray(index, dtype=np.int64), axis=axis)
        del arr
        return torch.from_numpy(picked).view(dtype)

    def tokenizer_fingerprint(self) -> str | None:
        """Hash of the vocabulary and added tokens; None when the checkpoint has no tokenizer files."""
        tj = self.path / "tokenizer.json"
        if tj.is_file():
            data = json.loads(tj.read_text(encoding="utf-8"))
            core = {"model": data.get("model"), "added_tokens": data.get("added_tokens")}
            return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()
        vocab = self.path / "vocab.json"
        if vocab.is_file():
            return hashlib.sha256(vocab.read_bytes()).hexdigest()
        return None


def all_finite(t: torch.Tensor, chunk: int = 1 << 22) -> bool:
    """No NaN or Inf, checked a few million entries at a time (a whole-tensor isfinite would add a tensor's
    worth of memory, or four times that for bf16)."""
    flat = t.reshape(-1)
    return all(bool(torch.isfinite(c).all()) for c in flat.split(chunk))


def read_safetensors_header(path: Path) -> tuple[dict, int]:
    """Parse a .safetensors header and check that the file holds every byte it announces.

    Returns the header (tensor name -> dtype, shape, data_offsets) and the byte offset where tensor data starts.
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                raise CheckpointError(f"{path}: corrupt safetensors file (shorter than its 8-byte header length)")
            (n,) = struct.unpack("<Q", raw)
            if n > size - 8:
                raise CheckpointError(f"{path}: corrupt safetensors file (header of {n} bytes in a {size}-byte file)")
            header = json.loads(f.read(n))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{path}: corrupt safetensors file (header is not JSON)") from None
    header.pop("__metadata__", None)
    end = max((v["data_offsets"][1] for v in header.values()), default=0)
    if 8 + n + end != size:
        raise CheckpointError(f"{path}: corrupt or truncated safetensors file "
                              f"(header announces {8 + n + end} bytes, file has {size})")
    for name, v in header.items():
        expect = int(np.prod(v["shape"], dtype=np.int64)) * _DTYPE_SIZES.get(v["dtype"], 0)
        if _DTYPE_SIZES.get(v["dtype"]) and v["data_offsets"][1] - v["data_offsets"][0] != expect:
            raise CheckpointError(f"{path}: corrupt safetensors file (tensor {name} has the wrong byte length)")
    return header, 8 + n


def resolve(ref: str) -> Path:
    """A local directory, or a hub id fetched to the local cache (weights, config and tokenizer only)."""
    p = Path(ref).expanduser()
    if p.exists():
        if not p.is_dir():
            raise CheckpointError(f"{ref}: expected a checkpoint directory, found a file")
        return p
    here = "" if p.is_absolute() else f" (relative paths are relative to the working directory {Path.cwd()})"
    if ref.startswith((".", "/", "~")) or ref.count("/") != 1:
        raise CheckpointError(f"{ref}: no such checkpoint directory{here}, and not a hub id of the form owner/name")
    if p.parent.is_dir():  # `pool/base` beside an existing `pool/`: a local path that is missing, not a hub id
        raise CheckpointError(f"{ref}: no such checkpoint directory{here}; {p.parent}/ exists but holds no "
                              f"{p.name!r}")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(ref, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt",
                                                           "*.jinja"]))
    except Exception as e:
        raise CheckpointError(f"{ref}: not a local directory{here}, and the hub download failed "
                              f"({type(e).__name__}: {e})") from None


def open_checkpoint(ref: str, name: str | None = None) -> Checkpoint:
    path = resolve(ref)
    name = name or ref
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(f"{name}: {path} has no config.json")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{cfg_path}:{e.lineno}: not valid JSON ({e.msg})") from None
    index = path / WEIGHT_INDEX
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        files = sorted(set(weight_map.values()))
    else:
        files = sorted(f.name for f in path.glob("*.safetensors"))
        weight_map = None
    if not files:
        raise CheckpointError(f"{name}: {path} holds no .safetensors weights")
    tensors: dict[str, TensorInfo] = {}
    for f in files:
        fp = path / f
        if not fp.is_file():
            raise CheckpointError(f"{name}: {fp} is listed in {WEIGHT_INDEX} but missing")
        header, data_start = read_safetensors_header(fp)
        for t, v in header.items():
            tensors[t] = TensorInfo(f, v["dtype"], tuple(v["shape"]), data_start + v["data_offsets"][0])
    if weight_map is not None:
        missing = sorted(set(weight_map) - set(tensors))
        if missing:
            raise CheckpointError(f"{name}: {WEIGHT_INDEX} lists {missing[0]} but no shard holds it")
    return Checkpoint(name, path, config, tensors)


def load_model(path: str | Path, dtype: torch.dtype = torch.float32):
    """A checkpoint directory (or hub id) as a transformers causal LM on the CPU, for generation or training."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)


def save_model(model, out: Path, tokenizer=None) -> None:
    """A transformers model, and its tokenizer when given, written as a checkpoint directory (safetensors)."""
    model.save_pretrained(out)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)


def load_gguf(path: str | Path):
    """A GGUF file (what llama.cpp writes) as a plain float32 transformers causal LM and its tokenizer.

    transformers dequantizes the file's tensors (`gguf` package) but marks the model as GGUF-quantized, and
    `save_pretrained` refuses such a model; rebuilt from its config (less `quantization_config`) with the same
    state dict, it saves as an ordinary safetensors checkpoint. The chat template comes from the file."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such GGUF file")
    try:
        loaded = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except (ValueError, OSError, KeyError) as e:
        raise CheckpointError(f"{path}: transformers cannot read this GGUF file ({e})") from None
    config = loaded.config.to_dict()
    config.pop("quantization_config", None)
    config.pop("_name_or_path", None)
    config = AutoConfig.for_model(**config)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    # tied embeddings: lm_head.weight is the embedding itself and may be absent from the state dict
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise CheckpointError(f"{path}: rebuilt model's weights do not match the file's (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]})")
    if config.tie_word_embeddings:
        model.tie_weights()
    model.eval()
    return model, tokenizer


def write_tensor_file(path: Path, tensors: Mapping[str, torch.Tensor]) -> None:
    """A few small tensors (not a model) as one safetensors file, atomically."""
    from safetensors.torch import save

    atomic_write_bytes(Path(path), save({k: v.contiguous() for k, v in tensors.items()}))


def read_tensor_file(path: str | Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def check_compatible(checkpoints: list[Checkpoint]) -> None:
    """Same architecture, tensor names, shapes and tokenizer; the error names both models and the field."""
    ref = checkpoints[0]
    ref_tok = ref.tokenizer_fingerprint()
    for other in checkpoints[1:]:
        pair = f"{ref.name} and {other.name}"
        for key in ARCH_FIELDS:
            if ref.config.get(key) != other.config.get(key):
                raise CheckpointError(f"{pair} differ in config field {key!r}: "
                                      f"{ref.config.get(key)!r} vs {other.config.get(key)!r}")
        for t in sorted(set(ref.tensors) | set(other.tensors)):
            a, b = ref.tensors.get(t), other.tensors.get(t)
            if a is None or b is None:
                raise CheckpointError(f"{pair} differ: tensor {t} exists only in {(other if a is None else ref).name}")
            if a.shape != b.shape:
                raise CheckpointError(f"{pair} differ in the shape of {t}: {list(a.shape)} vs {list(b.shape)}")
        tok = other.tokenizer_fingerprint()
        if ref_tok and tok and ref_tok != tok:
            raise CheckpointError(f"{pair} have different tokenizers (tokenizer.json vocabularies differ)")


def first_nonweight_files(path: Path) -> list[Path]:
    """Config, generation config and tokenizer files that travel with a written model."""
    keep = {"config.json", "generation_config.json", *TOKENIZER_FILES}
    return sorted(p for p in path.iterdir() if p.is_file() and p.name in keep)


def _shard_plan(sizes: Mapping[str, int], max_shard_bytes: int) -> list[list[str]]:
    shards: list[list[str]] = [[]]
    used = 0
    for name in sorted(sizes):
        if shards[-1] and used + sizes[name] > max_shard_bytes:
            shards.append([])
            used = 0
        shards[-1].append(name)
        used += sizes[name]
    return shards


def _shard_names(n: int) -> list[str]:
    return ["model.safetensors"] if n == 1 else [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]


def _write_index(out: Path, weight_map: dict[str, str], total: int) -> None:
    if len(set(weight_map.values())) > 1:
        (out / WEIGHT_INDEX).write_text(json.dumps({"metadata": {"total_size": total},
                                                    "weight_map": dict(sorted(weight_map.items()))}, indent=2) + "\n")


def write_state_dict(state_dict: Mapping[str, torch.Tensor], out: Path, source: Checkpoint,
                     max_shard_bytes: int = 2 << 30, readme: str | None = None, overwrite: bool = False) -> None:
    """A complete HF checkpoint (sharded safetensors + source's config/tokenizer files), atomically."""
    sizes = {k: v.numel() * v.element_size() for k, v in state_dict.items()}
    write_tensors(((k, state_dict[k]) for k in sorted(state_dict)), source, out, max_shard_bytes, readme,
                  overwrite, sizes)


def write_tensors(tensors: Iterable[tuple[str, torch.Tensor]], source: Checkpoint, out: Path,
                  max_shard_bytes: int = 2 << 30, readme: str | None = None, overwrite: bool = False,
                  sizes: Mapping[str, int] | None = None) -> None:
    """Like `write_state_dict` for tensors arriving one by one in name order: one shard is held at a time.

    The shards are planned from `sizes` (default: the source's tensors, which a candidate shares).
    """
    from safetensors.torch import save_file

    sizes = dict(sizes or {n: source.tensor_bytes(n) for n in source.tensors})
    plan = _shard_plan(sizes, max_shard_bytes)
    shard_of = {n: i for i, names in enumerate(plan) for n in names}
    files = _shard_names(len(plan))
    with atomic_dir(out, overwrite=overwrite) as tmp:
        weight_map, held, total = {}, {}, 0
        for name, t in tensors:
            if name not in shard_of:
                raise CheckpointError(f"{out}: tensor {name} is not in {source.name}'s layout")
            held[name] = t.detach().to("cpu").contiguous()
            total += held[name].numel() * held[name].element_size()
            i = shard_of[name]
            if all(n in held for n in plan[i]):
                save_file({n: held.pop(n) for n in plan[i]}, tmp / files[i], metadata={"format": "pt"})
                weight_map.update({n: files[i] for n in plan[i]})
        if held or len(weight_map) != len(shard_of):
            missing = sorted(set(shard_of) - set(weight_map) - set(held))
            raise CheckpointError(f"{out}: no tensor {missing[0] if missing else sorted(held)[0]} was produced")
        _write_index(tmp, weight_map, total)
        _copy_side_files(source.path, tmp, readme)


def _copy_side_files(src: Path, dst: Path, readme: str | None) -> None:
    for f in first_nonweight_files(src):
        shutil.copyfile(f, dst / f.name)
    if readme is not None:
        (dst / "README.md").write_text(readme, encoding="utf-8")


_TORCH_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
_BITS = {1: (np.int8, torch.int8), 2: (np.int16, torch.int16), 4: (np.int32, torch.int32), 8: (np.int64, torch.int64)}


def _bit_views(dtype: str, what: str):
    """The torch float dtype of a safetensors dtype, and the numpy/torch integer types of its raw bits."""
    torch_dtype = _TORCH_DTYPES.get(dtype)
    if torch_dtype is None:
        raise CheckpointError(f"{what}: dtype {dtype} is not a float type")
    return (torch_dtype, *_BITS[torch.finfo(torch_dtype).bits // 8])


def transplant_checkpoint(backbone: Checkpoint, donors: Mapping[str, Checkpoint],
                          edits: Mapping[str, list], apply: Callable, out: Path,
                          readme: str | None = None, overwrite: bool = False,
                          progress: Callable[[int], None] | None = None) -> int:
    """Copy the backbone's files, then overwrite the edited rows/columns in place; `out` appears atomically.

    `edits`: donor name -> list of TensorEdit; `apply(tensor, donor_values, edit)`
    does the copy. Each shard is copied byte for byte and only the bytes of the
    moved rows and columns are rewritten, through a memory map of the copy, as
    raw bits (so bf16 stays exactly bf16). Only the donor rows and columns named
    by the edits are read. Returns the number of tensor edits applied.
    """
    import mmap

    by_tensor: dict[str, list] = {}
    for donor, donor_edits in edits.items():
        for e in donor_edits:
            if e.name not in backbone.tensors:
                raise CheckpointError(f"{backbone.name}: transplant target {e.name} is not in the checkpoint")
            by_tensor.setdefault(e.name, []).append((donor, e))
    changed = 0
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for fname in backbone.files:
            dst = tmp / fname
            shutil.copyfile(backbone.path / fname, dst)
            names = sorted(n for n in by_tensor if backbone.tensors[n].file == fname)
            if names:
                # the copy is byte-identical, so the backbone's header offsets address it
                with dst.open("r+b") as f, mmap.mmap(f.fileno(), 0) as mm:
                    for name in names:
                        info = backbone.tensors[name]
                        dtype, np_bits, torch_bits = _bit_views(info.dtype, f"{dst}: cannot transplant into {name}")
                        arr = np.frombuffer(mm, dtype=np_bits, count=int(np.prod(info.shape)),
                                            offset=info.offset).reshape(info.shape)
                        target = torch.from_numpy(arr)
                        for donor, e in by_tensor[name]:
                            values = donors[donor].read_slice(name, e.axis, e.index).to(dtype)
                            apply(target, values.view(torch_bits), e)
                            changed += 1
                        del target, arr  # release the map's buffer before it closes
                # no msync here: atomic_dir fsyncs every file, which writes the mapped pages too
            if progress:
                progress(1)
        if (backbone.path / WEIGHT_INDEX).is_file():
            shutil.copyfile(backbone.path / WEIGHT_INDEX, tmp / WEIGHT_INDEX)
        _copy_side_files(backbone.path, tmp, readme)
    return changed
