"""Training sources -> migrl records: one small module per released format, and ``prepare``.

Each loader reads a source in its official format and returns a ``SourceReport``: the records it
could build, one error per bad item (file, item, field, reason), and counts of items it left out on
purpose (not an error: e.g. an answer with several boxes). ``prepare`` samples the paper's
cold-start mix and RL pool from them by a YAML recipe.

- ``mgrounding``  MGrounding-630k (Migician): multi-image conversations, Qwen2 [0, 1000) boxes
- ``refcoco``     RefCOCO / RefCOCO+ / RefCOCOg: refs file + COCO instances.json
- ``detection``   ODinW and V3Det: COCO detection JSON -> single-box grounding items
"""

from migrl.sources.convert import SourceReport

__all__ = ["SourceReport"]
