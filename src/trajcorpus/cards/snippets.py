"""The card's loading snippets: one definition, so the card, docs/output-format.md and the
README show the same calls (tests/test_docs_run.py runs all of them against a demo output)."""

from __future__ import annotations

__all__ = ["loading_snippets"]


def loading_snippets(config: str, tar_config: str | None, flat_patches: bool) -> dict[str, str]:
    """The loading snippets of the card; docs/output-format.md shows the same calls. They name
    the folder ``os.path.abspath(".")`` (they run from inside it; ``datasets`` names a dataset
    after its folder, so not ``"."``), so the card does not depend on where the folder is."""
    head = ('import os\n\n'
            'OUT = os.path.abspath(".")  # this folder (after trajcorpus publish: "ORG/NAME" '
            'on the hub)\n')
    snippets = {
        "datasets": "import numpy as np\nfrom datasets import load_dataset\n" + head
        + f'ds = load_dataset(OUT, "{config}", split="train", streaming=True)\n'
        'ex = next(iter(ds))\n'
        'tokens = np.asarray(ex["tokens"], np.int32)  # likewise modality, loss_mask, ...'
        + ('\npatches = np.frombuffer(ex["patches"], np.uint8).reshape(ex["patches_shape"])'
           '  # stored flat' if flat_patches else ''),
        "torch": "from trajcorpus.shards import ShardDataset, TorchShardDataset\n"
        + head.replace('"ORG/NAME" on the hub', '"hf://datasets/ORG/NAME"')
        + f'tds = TorchShardDataset(ShardDataset(OUT, "{config}"), batch_size=32, seed=0,\n'
        '                        shuffle_buffer=1000, normalize=True)\n'
        'loader = tds.loader(num_workers=2)  # a DataLoader that can save and resume\n'
        'for batch in loader:  # dict of tensors; patches padded, with counts\n'
        '    ...\n'
        'state = loader.state_dict()  # resume later with load_state_dict(state)',
        "numpy": "from trajcorpus.shards import NumpyLoader, ShardDataset\n"
        + head.replace('"ORG/NAME" on the hub', '"hf://datasets/ORG/NAME"')
        + f'loader = NumpyLoader(ShardDataset(OUT, "{config}"), batch_size=32, seed=0,\n'
        '                     shuffle_buffer=1000, rank=0, world_size=1)  # rank: this host\n'
        'for batch in loader:  # dict of NumPy arrays (e.g. for JAX)\n'
        '    ...',
    }
    if tar_config is not None:
        snippets["webdataset"] = (
            "from datasets import load_dataset\n"
            "from trajcorpus.shards import read_manifest, webdataset_data_files, "
            "webdataset_features\n" + head.replace(
                '"ORG/NAME" on the hub', '"hf://datasets/ORG/NAME"')
            + f'files = webdataset_data_files(read_manifest(OUT), "{tar_config}")\n'
            'ds = load_dataset("webdataset", data_files={s: f"{OUT}/{p}" for s, p in '
            'files.items()},\n'
            '                  split="train", streaming=True, features=webdataset_features())')
    return snippets
