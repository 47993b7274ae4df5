"""How much a file may make PruneLab spend: every limit, its unit, its reason and the variable that changes it.

Files say how big their contents are before they are read (a zip's central directory, a safetensors header,
the npy header of each array in an .npz, the sizes in a Hugging Face config.json). core.preflight compares
those declared sizes with the limits here *before* memory is spent, so a 4 MB file cannot make PruneLab
allocate 4.5 GB. A refusal is one PruneLabError line naming the file, the size, the limit and the environment
variable that raises it; the same variables apply to the command line and the dashboard.

Units: MB is 2**20 bytes and GB 2**30 bytes (as Streamlit's upload limit counts them).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from core.errors import PruneLabError

MB = 2**20  # bytes


@dataclass(frozen=True)
class Limit:
    """A ceiling on one quantity: `default` in `unit`, overridden by the environment variable `env` (a positive
    whole number in the same unit); `scale` converts the unit to what is compared (bytes for MB)."""

    env: str
    default: int
    unit: str
    reason: str
    scale: int = 1

    def value(self) -> int:
        """The limit in compared units (bytes for a size), from the environment when set."""
        text = os.environ.get(self.env, "").strip()
        if not text:
            return self.default * self.scale
        try:
            number = int(text.replace("_", ""))
        except ValueError:
            number = 0
        if number < 1:
            raise PruneLabError(f"{self.env} must be a positive whole number of {self.unit}, got {text!r:.40}")
        return number * self.scale

    def check(self, amount: int, subject: str) -> None:
        """Refuse (one line) when amount, in compared units, is over the limit. `subject` says what was measured,
        e.g. "weights file w.pt would decompress to"; the amount and the limit follow it."""
        limit = self.value()
        if amount > limit:
            raise PruneLabError(f"{subject} {self.show(amount)}, over the limit of {self.show(limit)}; set "
                                f"{self.env} to raise it")

    def show(self, amount: int) -> str:
        """amount (compared units) as people read it: '4.3 GB (4352 MB)', '12 s', '1,000,000 parameters'."""
        if self.scale != MB:
            return f"{amount:,} {self.unit}"
        mb = amount / MB
        whole = f"{mb:.0f} MB" if mb >= 1 or amount == 0 else f"{amount:,} bytes"
        return f"{amount / 2**30:.1f} GB ({whole})" if amount >= 2**30 else whole


MAX_PARAMS = Limit(
    "PRUNELAB_MAX_PARAMS", 1_000_000_000, "parameters",
    "a Hugging Face model's size, counted from its config.json before it is built: PruneLab holds the model, a "
    "pruned copy and, to fine-tune, gradients and two optimiser moments — about 5 float32 copies, 20 GB at 1e9")
MAX_WEIGHTS = Limit(
    "PRUNELAB_MAX_WEIGHTS_MB", 4096, "MB",
    "a weights file (.pt/.pth/.safetensors, or one in a Hugging Face folder) on disk and once decompressed: 4 GB "
    "holds MAX_PARAMS float32 values; torch.load inflates every compressed member of a .pt in memory",
    scale=MB)
MAX_DATA = Limit(
    "PRUNELAB_MAX_DATA_MB", 4096, "MB",
    "the arrays of an .npz data file, as their headers declare them: numpy allocates each whole array before "
    "reading it; 4 GB holds 5,000 224x224 RGB images in float32 (3 GB), the most PruneLab keeps (max_samples)",
    scale=MB)
MAX_LAYERS = Limit(
    "PRUNELAB_MAX_LAYERS", 1_000, "layers",
    "layer, block and expert counts in a Hugging Face config.json: transformers builds one Python module per "
    "layer before any size is known, so 10^9 layers hang; the deepest real models have ~130")
MAX_LABELS = Limit(
    "PRUNELAB_MAX_LABELS", 100_000, "labels",
    "num_labels (or id2label) in a Hugging Face config.json: transformers makes a dict entry per label before any "
    "tensor, so 10^12 labels ask for tens of GB; ImageNet-21k has 21,843")
MAX_ZIP_ENTRIES = Limit(
    "PRUNELAB_MAX_ZIP_ENTRIES", 100_000, "members",
    "members of a zip (.pt/.pth/.bin saved by torch.save, .npz): zipfile builds a ~500-byte object per member "
    "(measured) before any size in it can be read; torch.save writes one per tensor, and models have thousands")
MAX_CONFIG = Limit(
    "PRUNELAB_MAX_CONFIG_MB", 16, "MB",
    "a Hugging Face config.json, read whole: the largest real ones (21k labels spelled out) are about 1 MB",
    scale=MB)
LOAD_TIMEOUT = Limit(
    "PRUNELAB_LOAD_TIMEOUT_S", 120, "s",
    "the dashboard's check-load of your own model in a separate process, which is killed when it takes longer: "
    "a factory that trains for a minute fits, one that never returns no longer holds the session")


def _half_of_ram_mb() -> int:
    """Half of this machine's physical memory in MB (8 GB when it cannot be read)."""
    try:
        return max(1, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2 // MB)
    except (ValueError, OSError):
        return 8192


LOAD_MEMORY = Limit(
    "PRUNELAB_LOAD_MEMORY_MB", _half_of_ram_mb(), "MB",
    "memory the dashboard's check-load may add to its process (its address-space limit, on top of Python and "
    "torch): half of this machine's RAM, so a model that would exhaust the machine is stopped, not the server",
    scale=MB)

SAFETENSORS_HEADER_BYTES = 100 * MB  # the safetensors format's own ceiling on its JSON header (its Rust reader's)
