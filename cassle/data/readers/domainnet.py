"""DomainNet: per-domain image lists and class folders."""

from __future__ import annotations

from pathlib import Path

import torch

from cassle.data.base import FileImageDataset, decode_file
from cassle.data.readers.common import DOMAINNET_DOMAINS, _fail, _require_dir


def _domainnet_lists(root: Path) -> dict[tuple[str, str], Path]:
    _require_dir(
        root,
        "DomainNet",
        "Pass --data_dir pointing to the DomainNet root (domain folders and <domain>_train.txt lists).",
    )
    lists = {(d, s): root / f"{d}_{s}.txt" for d in DOMAINNET_DOMAINS for s in ("train", "test")}
    missing = [p.name for p in lists.values() if not p.is_file()]
    if missing:
        _fail(
            f"DomainNet is incomplete: {root} lacks the split lists {', '.join(missing)}. Every domain "
            f"({', '.join(DOMAINNET_DOMAINS)}) needs <domain>_train.txt and <domain>_test.txt with lines "
            "'<domain>/<class>/<file>.jpg <label>' next to the extracted domain folders."
        )
    return lists


def _parse_domainnet_list(path: Path, domain: str) -> list[tuple[str, int]]:
    entries = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
            _fail(f"{path}:{n}: expected '<domain>/<class>/<file>.jpg <label>', got {line.strip()!r}. Fix the list.")
        rel, label = fields[0], int(fields[1])
        parts = rel.split("/")
        if len(parts) < 3 or parts[0] != domain or label < 0:
            _fail(
                f"{path}:{n}: {line.strip()!r} should read '{domain}/<class>/<file> <label>' with label >= 0. "
                "Fix the list or use the official DomainNet split files."
            )
        entries.append((rel, label))
    if not entries:
        _fail(f"{path} is empty; it should list the {domain} images, one '<path> <label>' per line.")
    return entries


def _domainnet_classes(lists: dict[tuple[str, str], list[tuple[str, int]]]) -> list[str]:
    """Class names indexed by label, from the class folder in every list's paths."""
    by_label: dict[int, str] = {}
    for entries in lists.values():
        for rel, label in entries:
            cls = rel.split("/")[1]
            if by_label.setdefault(label, cls) != cls:
                _fail(
                    f"DomainNet lists disagree: label {label} is used for both {by_label[label]!r} and {cls!r}. "
                    "Use the official split lists, where every class folder has one label."
                )
    return [by_label.get(i, f"class_{i}") for i in range(max(by_label) + 1)]


def _read_domainnet(root: Path | None, train: bool) -> FileImageDataset:
    assert root is not None
    list_paths = _domainnet_lists(root)
    parsed = {key: _parse_domainnet_list(p, key[0]) for key, p in list_paths.items()}
    classes = _domainnet_classes(parsed)
    split = "train" if train else "test"
    paths: list[str] = []
    targets: list[int] = []
    domains: list[int] = []
    for d_idx, domain in enumerate(DOMAINNET_DOMAINS):
        entries = parsed[(domain, split)]
        first = root / entries[0][0]
        if not first.is_file():
            _fail(
                f"DomainNet images missing: {first} (listed in {list_paths[(domain, split)].name}) does not exist. "
                f"Extract {domain}.zip into {root}."
            )
        paths.extend(str(root / rel) for rel, _ in entries)
        targets.extend(label for _, label in entries)
        domains.extend([d_idx] * len(entries))
    return FileImageDataset(
        paths,
        torch.tensor(targets, dtype=torch.long),
        num_classes=len(classes),
        classes=classes,
        domains=torch.tensor(domains, dtype=torch.long),
        domain_names=list(DOMAINNET_DOMAINS),
    )


def _check_domainnet(root: Path | None) -> None:
    assert root is not None
    for (domain, split), path in _domainnet_lists(root).items():
        with open(path) as f:
            first_line = next((line for line in f if line.strip()), "")
        if not first_line:
            _fail(f"{path} is empty; it should list the {domain} images, one '<path> <label>' per line.")
        rel = first_line.split()[0]
        if not (root / rel).is_file():
            _fail(
                f"DomainNet images missing: {root / rel} (listed in {path.name}) does not exist. "
                f"Extract {domain}.zip into {root}."
            )
        decode_file(str(root / rel))  # cheap start-up check of the format: a corrupt file is named now, not mid-run
