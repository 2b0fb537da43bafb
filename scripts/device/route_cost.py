"""The route's cost against one retrain (issue 16's <= 2x target): the uniform supernet's training
plus one ``supernet select`` (fine-tuned finalists included), over one retrain timed with the GPU to
itself. Prints the figures and writes them as JSON.

    python3 scripts/device/route_cost.py ALONE_JSON CKPT SELECT_JSON OUT_JSON EPOCHS

ALONE_JSON is ``retrain_archs.py``'s JSON of that one retrain; CKPT the supernet's checkpoint (its
``search.json`` sits beside the checkpoint folder).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    alone_json, ckpt, select_json, out, epochs = sys.argv[1:6]
    alone = json.loads(Path(alone_json).read_text())["rows"][0]["train_seconds"][0]
    search = json.loads((Path(ckpt).parents[1] / "search.json").read_text())["search_seconds"]
    select = json.loads(Path(select_json).read_text())
    cost = {
        "retrain_seconds": alone,
        "supernet_seconds": search,
        "select_seconds": select["seconds"],
        "finetune_seconds": select.get("finetune_seconds"),
        "ratio": (search + select["seconds"]) / alone,
        "epochs": int(epochs),
    }
    Path(out).write_text(json.dumps(cost, indent=1))
    print(cost)


if __name__ == "__main__":
    main()
